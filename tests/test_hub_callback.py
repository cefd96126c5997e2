"""CertifiedEvalCallback: certified metrics at each Trainer evaluation, equal to `robusttext certify`'s, usable for
best-model selection, the same on 2 processes as on 1, and a clear error without an evaluation set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _certify_eval_job import build, make_data
from _multiprocess import launch_two

ROOT = Path(__file__).resolve().parents[1]
EVAL = dict(eval_strategy="steps", eval_steps=2, max_steps=8, learning_rate=5e-3, save_strategy="steps", save_steps=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("cb_data"))


def test_metrics_equal_a_separate_certify_of_the_checkpoint(tiny_model_dir, data, tmp_path):
    from robusttext.cli.arguments import CertifyArguments, ModelDataArguments, SmoothingArguments
    from robusttext.cli.convert import certify_from_arguments as certify_dataset

    trainer, callback = build(tiny_model_dir, data, tmp_path / "run", 20, **EVAL)
    trainer.train()
    assert [h["step"] for h in callback.history] == [2, 4, 6, 8]
    for step in (4, 8):
        metrics = next(h["metrics"] for h in callback.history if h["step"] == step)
        summary = certify_dataset(
            ModelDataArguments(model=str(tmp_path / "run" / f"checkpoint-{step}"), dataset=str(data / "validation.jsonl"),
                               max_examples=20),
            SmoothingArguments(p_del=0.9, unit="word"),
            CertifyArguments(n0=16, n=64, seed=0, chunk_size=8, output_dir=str(tmp_path / f"certify{step}")))
        assert metrics["smoothed_accuracy"] == summary["smoothed_accuracy"]
        assert metrics["abstain_rate"] == summary["abstain_rate"]
        assert metrics["median_radius"] == summary["median_certified_radius"]
        assert {f"certified_accuracy_r{k}": v for k, v in summary["certified_accuracy"].items()} == {
            k: v for k, v in metrics.items() if k.startswith("certified_accuracy_r")}
    # what the Trainer logged (every report_to integration receives these dicts) carries the metrics too
    logged = [h for h in trainer.state.log_history if "eval_smoothed_accuracy" in h]
    assert [h["eval_certified_accuracy_r2"] for h in logged] == [h["metrics"]["certified_accuracy_r2"] for h in callback.history]


@pytest.mark.parametrize("attach", [True, False], ids=["attach", "callbacks-list"])
def test_trainer_selects_its_best_checkpoint_by_certified_accuracy(tiny_model_dir, data, tmp_path, attach):
    trainer, callback = build(tiny_model_dir, data, tmp_path / "run", 20, attach=attach, **EVAL,
                              metric_for_best_model="eval_certified_accuracy_r1", load_best_model_at_end=True)
    trainer.train()
    values = [h["metrics"]["certified_accuracy_r1"] for h in callback.history]
    best = values.index(max(values))  # the Trainer keeps the first of equal values
    assert len(set(values)) > 1, values  # the selection had a choice
    assert trainer.state.best_metric == max(values)
    assert Path(trainer.state.best_model_checkpoint).name == f"checkpoint-{callback.history[best]['step']}"
    # the loaded best model is the one with that certified accuracy
    assert trainer.evaluate()["eval_certified_accuracy_r1"] == max(values)


def test_without_an_evaluation_set_is_one_clear_error(tiny_model_dir, data, tmp_path):
    from robusttext import CertifiedEvalCallback

    trainer, _ = build(tiny_model_dir, data, tmp_path / "run", 4, attach=False)
    trainer.eval_dataset = None
    with pytest.raises(ValueError, match="no evaluation set to certify; pass eval_dataset= to the Trainer"):
        CertifiedEvalCallback(num_examples=4).attach(trainer)
    with pytest.raises(ValueError, match="radii must be integers >= 0"):
        CertifiedEvalCallback(radii=[0, 1.5])


def test_cli_certify_eval_without_eval_split_exits_2(tiny_model_dir, data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "robusttext.cli", "train", "--model", tiny_model_dir, "--dataset",
                           str(data / "train.jsonl"), "--certify-eval", "8", "--max_steps", "1",
                           "--output_dir", str(tmp_path / "m")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("--certify-eval needs an evaluation set: add --eval-split (or --test-domains)")
    assert not (tmp_path / "m" / "config.json").exists()


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_give_the_same_metrics_as_one(tiny_model_dir, data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    job = str(ROOT / "tests" / "_certify_eval_job.py")
    args = [tiny_model_dir, str(data), "--examples", "20"]
    one = subprocess.run([sys.executable, job, args[0], args[1], str(tmp_path / "one"), *args[2:]], env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([*launch_two(), job, args[0], args[1], str(tmp_path / "two"), *args[2:]], env=env,
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    alone = json.loads((tmp_path / "one" / "rank0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert alone["world_size"] == 1 and alone["shares"] == list(range(20))
    assert [r["world_size"] for r in ranks] == [2, 2]
    # blocks of 8 inputs dealt out by rank: 0-7 and 16-19 on rank 0, 8-15 on rank 1
    assert ranks[0]["shares"] == [*range(8), *range(16, 20)] and ranks[1]["shares"] == list(range(8, 16))
    ours = ("eval_smoothed_accuracy", "eval_abstain_rate", "eval_median_radius", "eval_certified_accuracy_r")
    certified = lambda m: {k: v for k, v in m.items() if k.startswith(ours)}  # noqa: E731
    assert len(certified(alone["metrics"])) == 3 + 7  # radii 0..6 at p_del 0.9
    assert certified(ranks[0]["metrics"]) == certified(ranks[1]["metrics"]) == certified(alone["metrics"])


@pytest.mark.parametrize("p_del", [0.0, 1.0, "uniform"])
def test_a_rate_that_cannot_be_certified_is_refused_where_it_enters(p_del):
    """Clean training (0), certain deletion (1) and a training-only schedule have no certificate: the callback
    refuses them when built (the command line builds it before loading anything), not at the first evaluation."""
    from robusttext import CertifiedEvalCallback
    from robusttext.certificate.rates import UniformRate

    rate = UniformRate(0.7, 0.99) if p_del == "uniform" else p_del
    with pytest.raises(ValueError, match="p_del"):
        CertifiedEvalCallback(8, p_del=rate)
    CertifiedEvalCallback(8, p_del=0.9)  # a certifiable rate is taken
