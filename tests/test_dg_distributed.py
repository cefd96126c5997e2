"""`robusttext dg` on 2 real CPU processes equals 1 process with the same global batch: the same
runs, the same accuracy traces and tables, the same Fishr penalty trace (dropout off, so the only
difference left is the order of floating-point sums)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _multiprocess import launch_two


def _no_dropout_copy(src: str, dst: Path) -> str:
    """The tiny model with dropout 0 (two processes draw their own dropout masks)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(src, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return str(dst)


def _argv(model: str, data: Path, out: Path, batch: int) -> list[str]:
    return ["dg", "--model", model, "--dataset", str(data), "--algorithms", "erm,fishr", "--test-domains", "c",
            "--max-steps", "2", "--eval-steps", "1", "--logging-steps", "1", "--per-device-train-batch-size", str(batch),
            "--report-to", "none", "--output-dir", str(out), "--max-length", "16", "--disable-tqdm", "true",
            "--hparams", '{"fishr_anneal_steps": 0}', "--learning-rate", "1e-3"]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_equal_one_process_for_the_sweep(tiny_model_dir, tmp_path):
    from robusttext.cli import main

    data = tmp_path / "d.jsonl"
    words = {0: ["bad", "awful", "dull", "poor"], 1: ["good", "great", "fun", "fine"]}
    data.write_text("".join(json.dumps({"text": f"{d} {words[i % 2][(i // 2) % 4]} thing {i}", "label": i % 2, "domain": d}) + "\n"
                            for d in "abc" for i in range(20)))
    model = _no_dropout_copy(tiny_model_dir, tmp_path / "tiny")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([*launch_two(), "-m", "robusttext.cli", *_argv(model, data, tmp_path / "two", 4)], env=env,
                         capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert two.returncode == 0, two.stderr[-3000:]
    assert main(_argv(model, data, tmp_path / "one", 8)) == 0  # one process, the same global batch of 8
    a, b = (json.loads((tmp_path / k / "dg_results.json").read_text()) for k in ("two", "one"))
    assert [(r["algorithm"], r["heldout"], r["seed"]) for r in a["runs"]] == [(r["algorithm"], r["heldout"], r["seed"]) for r in b["runs"]]
    assert a["tables"] == b["tables"]
    for ra, rb in zip(a["runs"], b["runs"]):
        assert ra["trace"] == rb["trace"]
        pa, pb = ([t.get("fishr_penalty") for t in r["loss_trace"]] for r in (ra, rb))
        assert len(pa) == 2 and pa == pytest.approx(pb, rel=1e-4, abs=1e-9)
        assert [t["loss"] for t in ra["loss_trace"]] == pytest.approx([t["loss"] for t in rb["loss_trace"]], rel=1e-4)
    assert max(t["fishr_penalty"] for r in a["runs"] for t in r["loss_trace"]) > 0  # the penalty is computed
