"""The Python twins of ``robusttext certify`` and ``predict``, called directly (no command line): a
certification run from objects a Python user holds (a smoothed classifier, texts and labels or a
``datasets.Dataset``, a protocol, a folder), resumed after an interrupt, and sharded over 2 processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from robusttext import CertifyProtocol, SmoothedTextClassifier
from robusttext.runs.certify import certify_dataset, predict_texts
from robusttext.runs.data import DataSpec

from _multiprocess import assert_two_shares, launch_two

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"seconds"}
TEXTS = ["a gripping , funny film", "dull and long", "the plot never lands", "", "one of the best of the year",
         "bad acting , worse script , and a soundtrack that never stops"]
LABELS = [1, 0, 0, 1, 1, 0]
PROTOCOL = CertifyProtocol(n0=10, n=60, alpha=0.05)


def records(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def clf(tiny_model_dir) -> SmoothedTextClassifier:
    return SmoothedTextClassifier.from_pretrained(tiny_model_dir, p_del=0.8, seed=3)


def test_certify_dataset_records_the_classifier_certificates(clf, tmp_path):
    summary = certify_dataset(clf, (TEXTS, LABELS), tmp_path / "run", PROTOCOL, chunk_size=4)
    recs = records(tmp_path / "run")
    # the oracle: the classifier's own certificates, input i on its own stream i (the run adds nothing)
    direct = clf.certify(TEXTS, PROTOCOL, indices=list(range(len(TEXTS))))
    assert [r["index"] for r in recs] == list(range(len(TEXTS)))
    assert [(r["prediction"], r["radius"], r["top1_lower"]) for r in recs] == \
        [(c.prediction, c.radius, c.top1_lower) for c in direct]
    assert [r["label"] for r in recs] == LABELS
    assert [r["correct"] for r in recs] == [c.prediction == y for c, y in zip(direct, LABELS)]
    assert summary["num_examples"] == len(TEXTS)
    assert summary["parameters"]["model"] == clf.name_or_path
    assert summary["parameters"]["n"] == 60 and summary["parameters"]["p_del"] == 0.8
    for name in ("summary.json", "report.md", "certified_accuracy.png", "radius_by_length.png", "run_config.json"):
        assert (tmp_path / "run" / name).exists(), name


def test_a_dataset_a_file_spec_and_lists_give_the_same_run(clf, tmp_path):
    from datasets import Dataset

    certify_dataset(clf, (TEXTS, LABELS), tmp_path / "lists", PROTOCOL)
    certify_dataset(clf, Dataset.from_dict({"sentence": TEXTS, "label": LABELS}), tmp_path / "dataset", PROTOCOL)
    tsv = tmp_path / "data.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(TEXTS, LABELS)))
    certify_dataset(clf, DataSpec(str(tsv), "test"), tmp_path / "spec", PROTOCOL)
    assert records(tmp_path / "lists") == records(tmp_path / "dataset") == records(tmp_path / "spec")
    spec = json.loads((tmp_path / "spec" / "summary.json").read_text())["parameters"]
    assert spec["dataset"] == str(tsv) and spec["split"] == "test"


def test_unlabelled_texts_give_radii_without_accuracy(clf, tmp_path):
    summary = certify_dataset(clf, TEXTS, tmp_path / "run", PROTOCOL)
    assert summary["certified_accuracy"] is None
    assert all(r["label"] is None and r["correct"] is None for r in records(tmp_path / "run"))


def test_resume_keeps_finished_inputs_and_completes_the_rest(clf, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    certify_dataset(clf, (TEXTS, LABELS), full, PROTOCOL, chunk_size=2)
    # what an interrupt leaves: the run's config, a part file with the first block and a torn line
    part.mkdir()
    shutil.copy(full / "run_config.json", part / "run_config.json")
    lines = (full / "results.jsonl").read_text().splitlines()
    (part / "results.part0.jsonl").write_text("\n".join(lines[:2]) + '\n{"index": 2, "lab')
    certify_dataset(clf, (TEXTS, LABELS), part, PROTOCOL, chunk_size=2)
    assert records(part) == records(full)
    assert (part / "results.jsonl").read_text().splitlines()[:2] == lines[:2]  # kept as written
    assert not list(part.glob("results.part*.jsonl"))


def test_a_folder_of_other_parameters_is_refused_unless_overwritten(clf, tmp_path):
    out = tmp_path / "run"
    certify_dataset(clf, (TEXTS, LABELS), out, PROTOCOL)
    with pytest.raises(ValueError, match="other parameters .*n: 60 -> 80"):
        certify_dataset(clf, (TEXTS, LABELS), out, CertifyProtocol(n0=10, n=80))
    certify_dataset(clf, (TEXTS, LABELS), out, CertifyProtocol(n0=10, n=80), overwrite=True)
    assert json.loads((out / "summary.json").read_text())["parameters"]["n"] == 80


def test_bad_arguments_name_the_field(clf, tmp_path):
    with pytest.raises(ValueError, match="^chunk_size must be >= 1"):
        certify_dataset(clf, TEXTS, tmp_path / "run", PROTOCOL, chunk_size=0)
    with pytest.raises(TypeError, match="data must be"):
        certify_dataset(clf, 42, tmp_path / "run", PROTOCOL)
    with pytest.raises(ValueError, match="^max_length must be >= 3"):
        SmoothedTextClassifier(clf.model, clf.tokenizer, max_length=2)


def test_predict_texts_is_the_classifier_predict_and_certify(clf):
    recs = list(predict_texts(clf, TEXTS, n=50, alpha=0.1, chunk_size=4))
    direct = clf.predict(TEXTS, n=50, alpha=0.1, indices=list(range(len(TEXTS))))
    assert [(r["index"], r["prediction"], r["counts"]) for r in recs] == \
        [(i, p.prediction, p.counts) for i, p in enumerate(direct)]
    certified = list(predict_texts(clf, TEXTS[:2], PROTOCOL, certify=True))
    assert [r["radius"] for r in certified] == [c.radius for c in clf.certify(TEXTS[:2], PROTOCOL, indices=[0, 1])]
    assert all(r["unit"] == "word" for r in certified)


SCRIPT = """
import sys
from robusttext import CertifyProtocol, SmoothedTextClassifier
from robusttext.runs.certify import certify_dataset
from robusttext.runs.distributed import end_process_group, process_state

model, out = sys.argv[1], sys.argv[2]
texts = {texts!r}
labels = {labels!r}
clf = SmoothedTextClassifier.from_pretrained(model, p_del=0.8, seed=3, device=process_state().device)
certify_dataset(clf, (texts, labels), out, CertifyProtocol(n0=10, n=60, alpha=0.05), chunk_size=2)
end_process_group()
"""


@pytest.mark.multiprocess
def test_two_processes_give_the_same_results_as_one(clf, tiny_model_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    certify_dataset(clf, (TEXTS, LABELS), one, PROTOCOL, chunk_size=2)
    script = tmp_path / "certify_two.py"
    script.write_text(textwrap.dedent(SCRIPT.format(texts=TEXTS, labels=LABELS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launch_two(), str(script), tiny_model_dir, str(two)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_two_shares(two, len(TEXTS))
    assert records(one) == records(two)
    assert not list(two.glob("results.part*.jsonl"))
