"""The Python twins of ``robusttext train`` and ``tune-rates``, called directly (no command line), on objects a
Python user holds: a model folder, texts and labels, ``TrainingArguments``, a recipe, a protocol."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import TrainingArguments

from robusttext import CertifyProtocol, SmoothedTextClassifier
from robusttext.certificate.rates import BinnedRate, FixedRate, load
from robusttext.evaluation.tuning import TuneConfig, tune_rates
from robusttext.runs.data import DataSpec, as_text_data
from robusttext.training.trainer import TrainingRecipe, train_classifier

TEXTS = ["a gripping , funny film", "dull and long", "the plot never lands", "one of the best of the year",
         "bad acting , worse script", "a warm and wise story", "two hours i will not get back", "lovely"] * 2
LABELS = [1, 0, 0, 1, 0, 1, 0, 1] * 2


def training_args(out: Path, **kw) -> TrainingArguments:
    return TrainingArguments(output_dir=str(out), max_steps=2, per_device_train_batch_size=4, report_to="none",
                             save_strategy="no", use_cpu=True, disable_tqdm=True, seed=1, **kw)


def test_train_classifier_on_texts_and_labels_records_its_noise(tiny_model_dir, tmp_path):
    out = tmp_path / "m"
    metrics = train_classifier(tiny_model_dir, (TEXTS, LABELS), training_args(out), TrainingRecipe(rate=0.7))
    assert metrics["train_runtime"] >= 0
    info = json.loads((out / "robusttext_training.json").read_text())
    assert info["p_del"] == 0.7 and info["rate_schedule"] is None and info["unit"] == "word"
    assert info["model"] == tiny_model_dir and info["dataset"] == "texts" and info["algorithm"] == "erm"
    assert load(out) == FixedRate(0.7)  # certify's default from now on
    clf = SmoothedTextClassifier.from_pretrained(str(out))
    assert clf.p_del == pytest.approx(0.7) and clf.name_or_path == str(out)


def test_train_classifier_reads_a_data_spec_and_an_eval_split(tiny_model_dir, tmp_path):
    for split, n in (("train", 12), ("validation", 6)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                                                         for t, y in zip(TEXTS[:n], LABELS[:n])))
    out = tmp_path / "m"
    metrics = train_classifier(tiny_model_dir, DataSpec(str(tmp_path), "train"), training_args(out),
                               TrainingRecipe(rate="adaptive:k=3,p_lb=0.5"), eval_data=DataSpec(str(tmp_path), "validation"))
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    info = json.loads((out / "robusttext_training.json").read_text())
    assert info["dataset"] == str(tmp_path) and info["split"] == "train" and info["p_del"] is None
    assert info["rate_schedule"]["kind"] == "adaptive"


@pytest.mark.parametrize("bad, field", [
    (dict(rate=1.0), "p_del"), (dict(unit="sentence"), "unit"), (dict(algorithm="irm"), "algorithm"),
    (dict(noise_copies=0), "--noise-copies"), (dict(rate=0.0, noise_copies=2), "--noise-copies"),
    (dict(consistency_weight=1.0), "--consistency-weight"), (dict(algorithm="fishr", noise_copies=2), "--noise-copies"),
])
def test_a_recipe_is_checked_when_it_is_made(bad, field):
    with pytest.raises(ValueError, match=field):
        TrainingRecipe(**bad)


def test_tune_rates_writes_the_schedule_it_returns_into_the_model_folder(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    clf = SmoothedTextClassifier.from_pretrained(str(model), p_del=0.9, seed=0)
    val = as_text_data((TEXTS, LABELS))
    config = TuneConfig(edges=(3, 5), iterations=1, max_per_bin=4, p_lb=0.9)
    result = tune_rates(clf, val, CertifyProtocol(n0=10, n=40), config)
    written = load(model)
    assert isinstance(written, BinnedRate) and written.to_dict() == result["schedule"]
    assert json.loads((model / "tune_rates.json").read_text())["schedule"] == result["schedule"]
    assert written.edges == (3, 5) and len(result["bins"]) == 3
    # every bin's rate is floored at p_lb: p(L) = max(0.9, 1 - v/L)
    assert all(written(n) >= 0.9 - 1e-12 for n in range(1, 30))


def test_tune_rates_refuses_test_data_and_bad_configs(tiny_model_dir, tmp_path):
    clf = SmoothedTextClassifier.from_pretrained(tiny_model_dir, p_del=0.9)
    with pytest.raises(ValueError, match="never on test data"):
        tune_rates(clf, DataSpec(str(tmp_path / "x.jsonl"), "test"), config=TuneConfig())
    with pytest.raises(ValueError, match="--guard pooled needs --max-drop"):
        TuneConfig(guard="pooled")
    with pytest.raises(ValueError, match="--edges"):
        TuneConfig(edges="a|b")
