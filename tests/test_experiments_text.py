"""The ``experiments/`` scripts of the text commands: each is the product command plus the options that exist to
reproduce one figure of docs/benchmarks.md, converted into the library's configuration objects. Small, fast runs."""

from __future__ import annotations

import importlib.util
import json

import pytest

from _experiments import EXPERIMENTS, experiment


def test_every_experiment_script_is_tested_here_or_elsewhere():
    tested = {"_run.py", "evaluate_text.py", "tune_rates.py"}  # tune_rates: tests/test_adaptdel.py
    assert {p.name for p in EXPERIMENTS.glob("*.py")} == tested


def test_evaluate_experiment_refuses_bad_settings_in_one_line(capsys):
    ev = experiment("evaluate_text")
    for bad, flag in ((["--significance", "2"], "--significance"), (["--confirm-n", "0"], "--confirm-n"),
                      (["--smoothed-num-examples", "0"], "--smoothed-num-examples"), (["--futility", "0.2"], "--futility")):
        assert ev.main(["--model", "x", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0] and err[0].startswith("experiments/evaluate_text.py: error:"), err


@pytest.mark.skipif(importlib.util.find_spec("textattack") is None,
                    reason="textattack not installed (the [attacks] extra needs transformers<5: .ci/constraints.txt)")
def test_evaluate_experiment_runs_the_smoothed_target_on_its_own_recipes_and_examples(tmp_path, tiny_model_dir,
                                                                                       data_dir, capsys):
    from _attack_helpers import short_sst2

    dataset = short_sst2(data_dir, tmp_path, 4)
    out = tmp_path / "eval"
    code = experiment("evaluate_text").main([
        "--model", tiny_model_dir, "--dataset", dataset, "--max-length", "64", "--n0", "10", "--n", "40", "--p-del", "0.7",
        "--recipes", "deepwordbug,pruthi", "--attack-target", "both", "--smoothed-recipes", "deepwordbug",
        "--smoothed-num-examples", "2", "--attack-n", "5", "--confirm-n", "30", "--significance", "0.01",
        "--output-dir", str(out)])
    assert code in (0, 1)  # 1: the cross-check flagged the (random) model's certificates
    s = json.loads((out / "evaluation_summary.json").read_text())
    assert s["num_examples"] == 4 and s["num_attacked"] == {"smoothed": 2, "base": 4}
    assert s["accuracy_under_attack"]["smoothed"].keys() == {"deepwordbug"}
    assert s["accuracy_under_attack"]["base"].keys() == {"deepwordbug", "pruthi"}
    assert s["evaluate_parameters"] == {"attack_target": "both", "confirm_n": 30, "significance": 0.01}
    assert s["crosscheck"]["message"] in capsys.readouterr().out
