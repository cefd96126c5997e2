"""``robusttext evaluate`` end to end on real SST-2: files, numbers recomputed from the per-input records,
the local ``certified_accuracy`` metric against hand-computed values, CLI errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from _attack_helpers import evaluated_run

if importlib.util.find_spec("textattack") is None:
    pytest.skip("textattack not installed: the evaluate tests need the [attacks] extra (transformers<5: pip install -c .ci/constraints.txt -e '.[all]')", allow_module_level=True)


def test_certified_accuracy_metric_by_hand():
    from robusttext.hub.metrics import load_metric

    m = load_metric("certified_accuracy")
    preds, refs, radii = [1, 0, -1, 1, 2], [1, 0, 1, 0, 2], [2, 0, -1, 5, 1]
    # correct & radius >= r: r=0 -> inputs 0, 1, 4; r=1 -> 0, 4; r=2 -> 0; r=3 -> none
    assert m.compute(predictions=preds, references=refs, radii=radii, radius=1)["certified_accuracy"] == pytest.approx(2 / 5)
    curve = m.compute(predictions=preds, references=refs, radii=radii, radius=[0, 1, 2, 3])["certified_accuracy"]
    assert curve == pytest.approx({"0": 3 / 5, "1": 2 / 5, "2": 1 / 5, "3": 0.0})


def test_evaluate_outputs_match_records(tmp_path_factory, tiny_model_dir, data_dir):
    from robusttext.runs.results import read_jsonl

    out, _, _ = evaluated_run(tmp_path_factory, tiny_model_dir, data_dir)
    out = Path(out)
    for name in ("robustness_report.md", "evaluation_summary.json", "crosscheck.json", "certified_accuracy.png",
                 "attack_accuracy.png", "certify/results.jsonl", "attack_base/attack_results.jsonl",
                 "attack_smoothed/attack_summary.json"):
        assert (out / name).exists(), name
    s = json.loads((out / "evaluation_summary.json").read_text())
    certs = read_jsonl(out / "certify" / "results.jsonl")
    assert s["num_examples"] == len(certs) == 30
    assert s["clean_accuracy"] == pytest.approx(sum(r["clean_prediction"] == r["label"] for r in certs) / 30)
    assert s["smoothed_accuracy"] == pytest.approx(sum(r["prediction"] == r["label"] for r in certs) / 30)
    for r_str, value in s["certified_accuracy"].items():
        hits = sum(r["prediction"] == r["label"] and r["radius"] >= int(r_str) for r in certs)
        assert value == pytest.approx(hits / 30), r_str
    for target in ("base", "smoothed"):
        recs = read_jsonl(out / f"attack_{target}" / "attack_results.jsonl")
        assert len(recs) == 30 and all(r["target"] == target for r in recs)
        failed = sum(r["result"] in ("failed", "maximized") for r in recs)
        assert s["accuracy_under_attack"][target]["deepwordbug"] == pytest.approx(failed / 30)
        # base attacks skip exactly the inputs the base model gets wrong
        if target == "base":
            clean_wrong = {r["index"] for r in certs if r["clean_prediction"] != r["label"]}
            assert {r["index"] for r in recs if r["result"] == "skipped"} == clean_wrong
    report = (out / "robustness_report.md").read_text()
    assert "## Cross-check" in report and "deepwordbug" in report and s["crosscheck"]["message"] in report
    assert s["crosscheck"]["sound"]


def test_evaluate_cli_refuses_bad_options(capsys):
    from robusttext.cli import main

    assert main(["evaluate", "--recipes", "bae", "--model", "x"]) == 2
    assert "cannot run offline" in capsys.readouterr().err
    assert main(["evaluate", "--model", "x", "--significance", "2"]) == 2  # an experiment's option, not the product's
    assert "--significance" in capsys.readouterr().err
    from robusttext.evaluation.evaluate import EvaluateConfig

    for bad, field in ((dict(significance=2), "significance"), (dict(confirm_n=0), "confirm_n"),
                       (dict(attack_target="all"), "attack_target"), (dict(smoothed_num_examples=0), "smoothed_num_examples")):
        with pytest.raises(ValueError, match=f"^{field} must be"):
            EvaluateConfig(**bad)


def test_evaluate_writes_the_model_card_merged_into_a_hand_written_one(tmp_path_factory, tiny_model_dir, data_dir,
                                                                        tmp_path, capsys):
    """evaluate --update-model-card (and evaluate_model(update_model_card=True)) writes its certify part's results
    through robusttext.hub.model_card: the card round-trips through huggingface_hub, the hand-written card is kept."""
    import shutil

    import yaml
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from _attack_helpers import short_sst2, trained_tiny_model
    from robusttext import CertifyProtocol
    from robusttext.cli import main
    from robusttext.evaluation.attacks import AttackConfig
    from robusttext.evaluation.evaluate import EvaluateConfig, evaluate_model
    from robusttext.runs.data import DataSpec

    model = tmp_path / "model"
    shutil.copytree(trained_tiny_model(tmp_path_factory, tiny_model_dir, data_dir), model)
    mine = "---\nlicense: mit\n---\n\n# My model\n\nWritten by hand.\n"
    (model / "README.md").write_text(mine)
    dataset = short_sst2(data_dir, tmp_path, 6)

    def card_numbers(path):
        results = [r for r in ModelCard.load(path).data.eval_results
                   if (r.metric_args or {}).get("method") == "robusttext randomized deletion"]
        _, parsed = model_index_to_eval_results(yaml.safe_load(path.read_text().split("---\n")[1])["model-index"])
        raw = {(r.metric_type, (r.metric_args or {}).get("radius")): r.metric_value for r in parsed
               if (r.metric_args or {}).get("method") == "robusttext randomized deletion"}
        assert raw == {(r.metric_type, (r.metric_args or {}).get("radius")): r.metric_value for r in results}
        return raw

    def expected(s):
        out = {("accuracy", None): s["clean_accuracy"], ("smoothed_accuracy", None): s["smoothed_accuracy"],
               ("median_certified_radius", None): s["median_certified_radius"]}
        return {**out, **{("certified_accuracy", int(r)): v for r, v in s["certified_accuracy"].items()}}

    args = ["evaluate", "--model", str(model), "--dataset", dataset, "--max-length", "64", "--n0", "20", "--n", "60",
            "--p-del", "0.7", "--recipes", "deepwordbug", "--attack-target", "base", "--output-dir", str(tmp_path / "cli")]
    assert main([*args, "--update-model-card"]) == 0
    assert f"wrote {model / 'README.md'}" in capsys.readouterr().out
    summary = json.loads((tmp_path / "cli" / "evaluation_summary.json").read_text())
    text = (model / "README.md").read_text()
    assert text.startswith("---\nlicense: mit\n") and "# My model\n\nWritten by hand.\n" in text
    assert text.count("<!-- robusttext:start") == 1 and "| certified accuracy |" in text
    assert card_numbers(model / "README.md") == expected(summary) and summary["num_examples"] == 6
    # the library twin: the same writer, a second write replaces (never duplicates)
    s = evaluate_model(str(model), DataSpec(dataset, "train", max_examples=4), tmp_path / "lib",
                       CertifyProtocol(n0=20, n=60), AttackConfig("deepwordbug"), EvaluateConfig("base"),
                       update_model_card=True)
    text = (model / "README.md").read_text()
    assert text.count("model-index:") == 1 and "# My model\n\nWritten by hand.\n" in text
    by_split = {}
    for r in ModelCard.load(model / "README.md").data.eval_results:  # this split's entries added, the test split's kept
        by_split.setdefault(r.dataset_split, {})[(r.metric_type, (r.metric_args or {}).get("radius"))] = r.metric_value
    assert by_split == {"test": expected(summary), "train": expected(s)}


@pytest.mark.slow
@pytest.mark.multiprocess
def test_evaluate_script_two_processes_match_one(tmp_path_factory, tiny_model_dir, data_dir, tmp_path):
    """scripts/evaluate_hub_model.py under ``accelerate launch`` with 2 processes writes the same
    certification and attack records as one process (per-input seeds, sharded examples)."""
    import os
    import subprocess
    import sys

    from _attack_helpers import short_sst2, trained_tiny_model
    from _multiprocess import assert_two_shares, launch_two
    from robusttext.runs.results import read_jsonl

    root = Path(__file__).resolve().parents[1]
    model = trained_tiny_model(tmp_path_factory, tiny_model_dir, data_dir)
    dataset = short_sst2(data_dir, tmp_path, 6)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(root / "scripts" / "evaluate_hub_model.py")

    def args(out):
        return ["--model", model, "--dataset", dataset, "--max-length", "64", "--n0", "30", "--n", "100",
                "--p-del", "0.7", "--recipes", "deepwordbug", "--attack-target", "both", "--attack-n", "10",
                "--chunk-size", "2", "--output-dir", str(out)]

    one = subprocess.run([sys.executable, script, *args(tmp_path / "one")], env=env, cwd=root, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([*launch_two(), script, *args(tmp_path / "two")], env=env, cwd=root, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert_two_shares(tmp_path / "two" / "certify", 6)
    for target in ("base", "smoothed"):
        assert_two_shares(tmp_path / "two" / f"attack_{target}" / "recipes" / "deepwordbug", 6)

    def strip(recs):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in recs]

    for name in ("certify/results.jsonl", "attack_base/attack_results.jsonl", "attack_smoothed/attack_results.jsonl"):
        assert strip(read_jsonl(tmp_path / "one" / name)) == strip(read_jsonl(tmp_path / "two" / name)), name
