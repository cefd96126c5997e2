"""Model cards from certify runs: model-index round-trips through huggingface_hub, a hand-written card is merged
byte for byte, a second write replaces, and --push-to-hub refuses offline / without a token, changing nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SECTION = re.compile(r"<!-- robusttext:start [^>]*-->.*?<!-- robusttext:end [^>]*-->\n", re.S)


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    """A real certify run of the tiny model on 12 labelled texts: (run folder, summary)."""
    from robusttext.cli.arguments import CertifyArguments, ModelDataArguments, SmoothingArguments
    from robusttext.cli.convert import certify_from_arguments as certify_dataset

    folder = tmp_path_factory.mktemp("card_run")
    data = folder / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": f"{'good' if i % 2 else 'bad'} film {i} " * (1 + i % 3), "label": i % 2})
                            + "\n" for i in range(12)))
    summary = certify_dataset(ModelDataArguments(model=tiny_model_dir, dataset=str(data)),
                              SmoothingArguments(p_del=0.9, unit="word"),
                              CertifyArguments(n0=16, n=64, seed=0, output_dir=str(folder / "certify")))
    return folder / "certify", summary


@pytest.fixture()
def model(tiny_model_dir, tmp_path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(tiny_model_dir, out)
    return out


def expected_metrics(summary: dict) -> dict:
    """(metric type, radius) -> value, straight from summary.json."""
    out = {("accuracy", None): summary["clean_accuracy"], ("smoothed_accuracy", None): summary["smoothed_accuracy"],
           ("median_certified_radius", None): summary["median_certified_radius"]}
    out.update({("certified_accuracy", int(r)): v for r, v in summary["certified_accuracy"].items()})
    return out


def robusttext_results(results: list) -> dict:
    return {(r.metric_type, (r.metric_args or {}).get("radius")): r.metric_value for r in results
            if (r.metric_args or {}).get("method") == "robusttext randomized deletion"}


def test_card_round_trips_through_huggingface_hub(run, model):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from robusttext.hub.model_card import write_model_card

    run_dir, summary = run
    card_path = write_model_card(run_dir, model)
    card = ModelCard.load(card_path)
    results = card.data.eval_results
    assert robusttext_results(results) == expected_metrics(summary)
    assert len(summary["certified_accuracy"]) == 7  # radii 0..6 at p_del 0.9
    first = results[0]
    assert (first.task_type, first.dataset_split, first.dataset_name) == ("text-classification", "test", "reviews.jsonl")
    assert first.dataset_type == summary["parameters"]["dataset"]
    assert {k: first.metric_args[k] for k in ("unit", "rate_schedule", "n0", "n", "alpha", "top2")} == {
        "unit": "word", "rate_schedule": "fixed:0.9", "n0": 16, "n": 64, "alpha": 0.05, "top2": "complement"}
    # the model-index parser on the raw YAML gives the same numbers
    front = card_path.read_text().split("---\n")[1]
    _, parsed = model_index_to_eval_results(yaml.safe_load(front)["model-index"])
    assert robusttext_results(parsed) == expected_metrics(summary)
    text = card_path.read_text()
    assert "| certified accuracy |" in text and "robusttext certify --model" in text and "Written by robusttext" in text
    image = re.search(r"!\[[^]]*\]\(([^)]+)\)", text).group(1)
    assert (model / image).is_file()


def test_hand_written_card_is_merged_and_a_second_write_replaces(run, model):
    from huggingface_hub import ModelCard

    from robusttext.hub.model_card import write_model_card

    run_dir, summary = run
    front = "license: mit\ntags:   [mine, 'quoted']   # my comment\nlanguage:\n  - en\n"
    body = "\n# My model\r\n\nWritten by hand, with trailing spaces   \n\n<!-- not ours -->\n"
    (model / "README.md").write_bytes(f"---\n{front}---\n{body}".encode())
    write_model_card(run_dir, model)
    first = (model / "README.md").read_bytes().decode()
    new_front, new_body = first.split("---\n", 2)[1:]
    assert new_front.startswith(front) and new_front[len(front):].startswith("model-index:")
    assert new_body.startswith(body) and SECTION.fullmatch(new_body[len(body):].lstrip("\n"))
    # a second write of other numbers replaces the section and the entries: nothing is duplicated
    changed = {**summary, "smoothed_accuracy": 0.123}
    (run_dir / "summary.json").write_text(json.dumps(changed))
    try:
        write_model_card(run_dir, model)
    finally:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    second = (model / "README.md").read_bytes().decode()
    assert second.count("<!-- robusttext:start") == 1 and second.count("model-index:") == 1
    assert SECTION.sub("", second.split("---\n", 2)[2]) == SECTION.sub("", new_body)
    assert robusttext_results(ModelCard.load(model / "README.md").data.eval_results) == expected_metrics(changed)
    assert second.split("model-index:")[0] == first.split("model-index:")[0]  # the user's YAML lines, byte for byte


def test_other_results_in_the_card_are_kept(run, model):
    from huggingface_hub import ModelCard

    from robusttext.hub.model_card import write_model_card

    run_dir, summary = run
    theirs = ("---\nmodel-index:\n- name: my-model\n  results:\n  - task: {type: text-classification}\n"
              "    dataset: {name: IMDB, type: imdb, split: test}\n    metrics:\n    - {type: f1, value: 0.91}\n"
              "license: apache-2.0\n---\nbody\n<!-- robusttext:start other|x|y -->\nan older section of another split\n"
              "<!-- robusttext:end other|x|y -->\ntail text\n")
    (model / "README.md").write_text(theirs)
    write_model_card(run_dir, model)
    write_model_card(run_dir, model)
    text = (model / "README.md").read_text()
    results = ModelCard.load(model / "README.md").data.eval_results
    assert [(r.dataset_type, r.metric_type, r.metric_value) for r in results if r.dataset_type == "imdb"] == [("imdb", "f1", 0.91)]
    assert robusttext_results(results) == expected_metrics(summary)
    assert len(results) == 1 + len(expected_metrics(summary))
    assert "license: apache-2.0\n---\nbody\n<!-- robusttext:start other|x|y -->\nan older section of another split\n" \
           "<!-- robusttext:end other|x|y -->\ntail text\n" in text
    assert "name: my-model" in text


def cli(*argv: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "robusttext.cli", *argv], env=full, capture_output=True, text=True,
                          timeout=600)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def test_cli_card_writes_and_push_refuses_offline_or_without_token(run, model, tmp_path):
    run_dir, _ = run
    (model / "README.md").write_text("mine\n")
    line = one_line_error(cli("card", str(run_dir), "--model-dir", str(model), "--push-to-hub", "me/model",
                              HF_HUB_OFFLINE="1"))
    assert "--push-to-hub me/model: HF_HUB_OFFLINE is set" in line
    assert (model / "README.md").read_text() == "mine\n" and not list(model.glob("*.png"))  # nothing changed
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_TOKEN")}
    proc = subprocess.run([sys.executable, "-m", "robusttext.cli", "card", str(run_dir), "--model-dir", str(model),
                           "--push-to-hub", "me/model"], capture_output=True, text=True, timeout=600,
                          env={**env, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")})
    assert "no Hugging Face token; set HF_TOKEN" in one_line_error(proc)
    assert (model / "README.md").read_text() == "mine\n"
    assert "no summary.json" in one_line_error(cli("card", str(tmp_path), "--model-dir", str(model)))
    done = cli("card", str(run_dir), "--model-dir", str(model))
    assert done.returncode == 0, done.stderr
    assert (model / "README.md").read_text().split("---\n", 2)[2].startswith("mine\n")


def test_certify_push_offline_refuses_before_certifying(tiny_model_dir, run, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "good film", "label": 1}\n')
    out = tmp_path / "certify"
    line = one_line_error(cli("certify", "--model", tiny_model_dir, "--dataset", str(data), "--n", "16",
                              "--output-dir", str(out), "--push-to-hub", "me/model", HF_HUB_OFFLINE="1"))
    assert "HF_HUB_OFFLINE is set" in line
    assert not out.exists() and not (Path(tiny_model_dir) / "README.md").exists()


def test_evaluate_certified_accuracy_metric_gives_the_reports_numbers(run):
    import evaluate

    from robusttext.hub.metrics import metric_path

    run_dir, summary = run
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    metric = evaluate.load(metric_path("certified_accuracy"))  # offline: HF_HUB_OFFLINE=1 in the tests
    inputs = dict(predictions=[r["prediction"] for r in records], references=[r["label"] for r in records],
                  radii=[r["radius"] for r in records])
    radii = [int(r) for r in summary["certified_accuracy"]]
    assert metric.compute(**inputs, radius=radii)["certified_accuracy"] == summary["certified_accuracy"]
    # brute force at one radius: correct and certified at >= 2
    at2 = sum(r["prediction"] == r["label"] and r["radius"] >= 2 for r in records) / len(records)
    assert metric.compute(**inputs, radius=2)["certified_accuracy"] == at2 == summary["certified_accuracy"]["2"]
    assert 0 < summary["certified_accuracy"]["0"]  # a run with certified inputs, not an empty comparison


def test_radii_are_in_numeric_order(run, model, tmp_path):
    from huggingface_hub import ModelCard

    from robusttext.hub.model_card import write_model_card

    run_dir, summary = run
    wide = {**summary, "certified_accuracy": {str(r): 1 / (r + 1) for r in range(12)}}
    other = tmp_path / "wide"
    shutil.copytree(run_dir, other)
    (other / "summary.json").write_text(json.dumps(wide, sort_keys=True))  # as written: "10" before "2"
    write_model_card(other, model)
    radii = [r.metric_args["radius"] for r in ModelCard.load(model / "README.md").data.eval_results
             if r.metric_type == "certified_accuracy"]
    assert radii == list(range(12))
    assert "| radius (words) | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 |" in (model / "README.md").read_text()
