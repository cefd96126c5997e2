"""`robusttext train` on 2 real CPU processes: both join one data-parallel run (gloo), not two lone ones."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from _experiments import EXPERIMENTS
from _multiprocess import launch_two


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--noise-copies", "2", "--consistency-weight", "10", "--entropy-weight", "0.5"]],
                         ids=["plain", "consistency"])
def test_two_processes_train_one_model_together(tiny_model_dir, tmp_path, extra):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": f"text number {i}", "label": i % 2}) + "\n" for i in range(32)))
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # consistency training's fields are experiments/train_text.py's (robusttext train + TrainingRecipe's fields)
    entry = [str(EXPERIMENTS / "train_text.py")] if extra else ["-m", "robusttext.cli", "train"]
    cmd = [*launch_two(), *entry, "--model", tiny_model_dir, "--dataset", str(data),
           "--split", "train", "--max_steps", "1", "--per_device_train_batch_size", "16", "--save_strategy", "no",
           "--output_dir", str(out), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "robusttext_training.json").read_text())
    assert info["world_size"] == 2
    assert info["noise_copies"] == (2 if extra else 1)
    # one step of 2 processes x 16 examples covers the 32 training examples once: epoch 1.0 (alone: 0.5)
    assert info["metrics"]["epoch"] == pytest.approx(1.0)


@pytest.mark.parametrize("outcome", ["ok", "user error"])
def test_a_command_leaves_the_process_group_it_ran_in(tmp_path, outcome):
    """A process that exits with its gloo group open can abort (SIGABRT) as Python shuts down, so a command
    run by the ``robusttext`` entry point leaves the group when it ends, also when it fails."""
    import torch.distributed as dist

    from robusttext.config import dispatch
    from robusttext.errors import UserError

    def command(argv):
        assert dist.is_initialized() and dist.get_world_size() == 1
        if outcome != "ok":
            raise UserError("--dataset: no such file; give a path")
        return 0

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        code = dispatch("robusttext", {"job": ("a job", command)}, ["job"])
        assert code == (0 if outcome == "ok" else 2)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
