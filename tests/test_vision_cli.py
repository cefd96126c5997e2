"""``robusttext vision ...`` end to end on scikit-learn digits (small, offline): train, attack, certify
(resume, parameter check, 1 vs 2 processes), linear, clear errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robusttext_vision.cli import main

CERT = ["--dataset", "digits", "--split", "test", "--max_examples", "12", "--sigma", "0.25", "--n0", "20",
        "--n", "200", "--alpha", "0.01", "--chunk_size", "5"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("vision_model")
    rc = main(["train", "--dataset", "digits", "--split", "train", "--eval_split", "test", "--arch", "linear",
               "--epochs", "3", "--lr", "0.01", "--output_dir", str(out)])
    assert rc == 0
    return str(out)


def records(path: Path) -> list[dict]:
    rows = [json.loads(l) for l in (path / "results.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds", None)
    return rows


def test_train_writes_a_usable_model(model_dir):
    metrics = json.loads((Path(model_dir) / "metrics.json").read_text())
    assert metrics["num_train"] == 1437 and metrics["clean_accuracy"] > 0.8


def test_attack_command(model_dir, tmp_path):
    rc = main(["attack", "--dataset", "digits", "--split", "test", "--model_dir", model_dir, "--attack", "pgd",
               "--norm", "l2", "--eps", "0", "0.5", "2", "--steps", "10", "--output_dir", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "robustness.json").read_text())["results"]
    clean = json.loads((Path(model_dir) / "metrics.json").read_text())["clean_accuracy"]
    assert res["0"]["accuracy"] == pytest.approx(clean)
    assert res["0"]["accuracy"] >= res["0.5"]["accuracy"] >= res["2"]["accuracy"]
    assert res["2"]["success_rate"] == pytest.approx(1 - res["2"]["accuracy"])


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_attack_like_one(model_dir, tmp_path):
    """PGD's random starts are per batch of images, so 2 processes (each attacking whole batches) write the
    records of 1."""
    from _multiprocess import assert_two_shares, launch_two

    attack = ["attack", "--dataset", "digits", "--split", "test", "--max_examples", "40", "--model_dir", model_dir,
              "--attack", "pgd", "--norm", "linf", "--eps", "0.05", "0.2", "--steps", "5", "--batch_size", "8"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*attack, "--output_dir", str(one)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launch_two(), "-m", "robusttext_vision.cli", *attack, "--output_dir", str(two)], env=env,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_two_shares(two, 40)
    assert records(two) == records(one)
    for path in (one, two):  # the summary counts the records
        recs = records(path)
        res = json.loads((path / "robustness.json").read_text())["results"]
        assert res["0.2"]["accuracy"] == pytest.approx(sum(r["0.2"][0] for r in recs) / 40)


def test_certify_resumes_and_refuses_other_parameters(model_dir, tmp_path, capsys):
    out = tmp_path / "cert"
    assert main(["certify", "--model_dir", model_dir, *CERT, "--output_dir", str(out)]) == 0
    full = records(out)
    assert len(full) == 12 and (out / "certified_accuracy.png").exists() and (out / "report.md").exists()
    # interrupt: keep the first 5 records as a part file, then rerun the same command
    (out / "results.part0.jsonl").write_text("\n".join(json.dumps(r) for r in full[:5]) + "\n")
    (out / "results.jsonl").unlink()
    assert main(["certify", "--model_dir", model_dir, *CERT, "--output_dir", str(out)]) == 0
    assert records(out) == full
    assert main(["certify", "--model_dir", model_dir, *CERT, "--sigma", "0.5", "--output_dir", str(out)]) == 2
    assert "other parameters" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_certify_like_one(model_dir, tmp_path):
    from _multiprocess import assert_two_shares, launch_two

    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["certify", "--model_dir", model_dir, *CERT, "--output_dir", str(one)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launch_two(), "-m", "robusttext_vision.cli", "certify", "--model_dir", model_dir, *CERT,
                           "--output_dir", str(two)], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_two_shares(two, len(records(one)))
    assert records(two) == records(one)


def test_linear_command(tmp_path):
    rc = main(["linear", "--dataset", "digits", "--split", "train", "--eval_split", "test", "--eps", "0.2",
               "--epochs", "15", "--lr", "0.05", "--output_dir", str(tmp_path)])
    assert rc == 0
    rows = json.loads((tmp_path / "linear.json").read_text())["rows"]
    assert rows["robust eps=0.2"]["robust_error"] < rows["regular"]["robust_error"]
    assert (tmp_path / "weights.png").stat().st_size > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["certify", "--sigma", "0"], "sigma must be > 0"),
        (["certify", "--sigma", "-1"], "sigma must be > 0"),
        (["certify", "--n0", "500", "--n", "100"], "n0 .* must be <= n"),
        (["attack", "--eps", "-0.1"], "eps must be >= 0"),
        (["train", "--method", "pgd", "--eps", "-1"], "eps must be >= 0"),
    ],
)
def test_bad_arguments_give_clear_errors(model_dir, tmp_path, capsys, argv, message):
    import re

    extra = ["--dataset", "digits", "--split", "test", "--output_dir", str(tmp_path)]
    if argv[0] in ("certify", "attack"):
        extra += ["--model_dir", model_dir]
    assert main(argv + extra) == 2
    assert re.search(message, capsys.readouterr().err)


def test_unknown_command_and_help(capsys):
    assert main(["segment"]) == 2
    assert "unknown command" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "coloredmnist" in capsys.readouterr().out


def test_registered_as_robusttext_plugin(capsys):
    from importlib.metadata import entry_points

    from robusttext.cli import main as robusttext_main

    if "vision" not in {ep.name for ep in entry_points(group="robusttext.commands")}:
        pytest.skip("the vision entry point is not installed (pip install -e .)")
    assert robusttext_main(["vision", "--help"]) == 0
    assert "certify" in capsys.readouterr().out
