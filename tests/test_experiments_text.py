"""The ``experiments/`` scripts of the text commands: each is the product command plus the options that exist to
reproduce one figure of docs/benchmarks.md, converted into the library's configuration objects. Small, fast runs."""

from __future__ import annotations

import importlib.util
import json

import pytest

from _experiments import EXPERIMENTS, load_experiment


def test_every_experiment_script_is_tested_here_or_elsewhere():
    # bench_rates: tests/test_scripts.py; tune_rates: also tests/test_adaptdel.py; train_text: also tests/test_consistency.py;
    # dg_spurious: tests/test_spurious.py; coloredmnist: tests/test_coloredmnist.py; vision_compare: tests/test_vision_figures.py
    tested = {"bench_rates.py", "evaluate_text.py", "train_text.py", "tune_rates.py",
              "dg_spurious.py", "coloredmnist.py", "vision_compare.py"}
    assert {p.name for p in EXPERIMENTS.glob("*.py")} == tested


def test_evaluate_experiment_refuses_bad_settings_in_one_line(capsys):
    ev = load_experiment("evaluate_text")
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
    code = load_experiment("evaluate_text").main([
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


def test_train_experiment_sets_the_library_fields_the_product_command_leaves_at_their_defaults(tmp_path, monkeypatch):
    """experiments/train_text.py converts its options into TrainingRecipe, Augmentation and the callback's protocol;
    ``robusttext train`` gives the library defaults (the calls are captured: nothing trains)."""
    import robusttext.cli.convert as convert
    from robusttext.cli import main
    from robusttext.hub.callbacks import EVAL_PROTOCOL
    from robusttext.training.trainer import TrainingRecipe

    calls = []
    monkeypatch.setattr(convert, "train_classifier", lambda *a, **kw: calls.append((a, kw)) or {"train_loss": 0.5})
    common = ["--model", "m", "--dataset", "d.jsonl", "--eval-split", "validation", "--p-del", "0.9", "--certify-eval", "4",
              "--output_dir", str(tmp_path / "m")]
    assert load_experiment("train_text").main([*common, "--noise-copies", "2", "--consistency-weight", "10",
                                          "--entropy-weight", "0.5", "--certify-eval-n", "32"]) == 0
    assert main(["train", *common]) == 0
    (exp_args, exp_kw), (cli_args, cli_kw) = calls
    recipe, plain = exp_args[3], cli_args[3]
    assert (recipe.noise_copies, recipe.consistency_weight, recipe.entropy_weight) == (2, 10.0, 0.5)
    defaults = TrainingRecipe(rate=0.9)
    assert (plain.noise_copies, plain.consistency_weight, plain.entropy_weight) == (
        defaults.noise_copies, defaults.consistency_weight, defaults.entropy_weight)
    assert exp_kw["certified_eval"].protocol == EVAL_PROTOCOL.with_budget(n=32)
    assert cli_kw["certified_eval"].protocol == EVAL_PROTOCOL and EVAL_PROTOCOL.n == 256
    assert exp_kw["augmentation"] is None and cli_kw["augmentation"] is None
    if importlib.util.find_spec("textattack") is not None:  # Augmentation needs TextAttack
        from robusttext.training.augment import Augmentation

        assert load_experiment("train_text").main([*common, "--augment", "charswap", "--augment-rate", "0.25",
                                              "--augment-words-pct", "0.3"]) == 0
        assert main(["train", *common, "--augment", "charswap"]) == 0
        assert calls[2][1]["augmentation"] == Augmentation("charswap", 0.25, 0.3)
        assert calls[3][1]["augmentation"] == Augmentation("charswap")


class _Parsed(Exception):
    """Raised instead of running a job: the command's arguments parsed."""


@pytest.mark.parametrize("command, config, patched", [
    ("certify", "configs/certify_sst2.yaml", "robusttext.cli.main.certify_from_arguments"),
    ("train", "configs/train_sst2_rsdel.yaml", "robusttext.cli.main.train_from_arguments"),
    ("quickstart", "configs/quickstart.yaml", "robusttext.cli.main.train_from_arguments"),
    ("evaluate", "configs/evaluate_sst2.yaml", "robusttext.cli.convert.evaluate_from_arguments"),
    ("experiments/evaluate_text.py", "experiments/evaluate_sst2.yaml", "robusttext.cli.convert.evaluate_from_arguments"),
])
def test_text_configs_hold_only_options_of_their_command(command, config, patched, monkeypatch):
    """No config of configs/ or experiments/ sets an option its command lacks (removed options went to experiments/)."""
    from robusttext.cli import main

    def parsed(*args, **kwargs):
        raise _Parsed

    module, name = patched.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, parsed)  # robusttext.cli.main is also a function
    monkeypatch.chdir(EXPERIMENTS.parent)
    run = load_experiment("evaluate_text").command if command.startswith("experiments/") else (
        lambda argv: main([command, *argv]))
    with pytest.raises(_Parsed):
        run(["--config", config, "--model", "m"])
