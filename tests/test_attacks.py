"""TextAttack glue on real data: recipes run offline, records' edit counts match an independent
Levenshtein, the smoothed wrapper is a deterministic function of the text, runs resume."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _attack_helpers import levenshtein, read_tsv, short_sst2, trained_tiny_model

if importlib.util.find_spec("textattack") is None:  # importing it needs robusttext's offline NLTK setup
    pytest.skip("textattack not installed: the attack tests need the [attacks] extra (transformers<5: pip install -c .ci/constraints.txt -e '.[all]')", allow_module_level=True)


def test_import_robusttext_does_not_import_textattack():
    code = (
        "import sys, robusttext, robusttext.evaluation.attacks, robusttext.evaluation.crosscheck, robusttext.evaluation.evaluate, robusttext.cli; "
        "assert 'textattack' not in sys.modules, 'textattack imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize("name", ["textfooler", "bae", "textbugger", "checklist"])
def test_unavailable_recipes_name_what_is_missing(name):
    from robusttext.evaluation.attacks import UNAVAILABLE, parse_recipes

    with pytest.raises(ValueError, match="cannot run offline") as err:
        parse_recipes(f"deepwordbug,{name}")
    assert UNAVAILABLE[name] in str(err.value)


def test_unknown_recipe_is_refused():
    from robusttext.evaluation.attacks import parse_recipes

    with pytest.raises(ValueError, match="unknown recipe"):
        parse_recipes("deepwordbugg")
    assert parse_recipes(" PWWS, pruthi,pwws") == ["pwws", "pruthi"]


def test_nltk_data_offline(tmp_path, monkeypatch):
    """The stopword list and WordNet folder are written so that NLTK's own readers load them."""
    import nltk
    from nltk.corpus.reader import WordListCorpusReader
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    from robusttext.runs.textattack_env import find_wordnet_source, prepare_nltk_data

    info = prepare_nltk_data(tmp_path)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])  # NLTK reads only from its paths
    words = WordListCorpusReader(str(tmp_path / "corpora" / "stopwords"), ["english"]).words("english")
    assert len(words) == 179 and len(set(words)) == 179 and {"the", "wouldn't", "any"} <= set(words)
    if find_wordnet_source() is None:
        pytest.skip("WordNet not installed (apt-get install wordnet-base wordnet-sense-index)")
    assert info["wordnet"]
    wn = WordNetCorpusReader(str(tmp_path / "corpora" / "wordnet"), None)
    lemmas = {l for s in wn.synsets("movie") for l in s.lemma_names()}
    assert {"film", "flick", "picture"} <= lemmas
    assert wn.synset("dog.n.01").lexname() == "noun.animal"


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory, tiny_model_dir, data_dir):
    return trained_tiny_model(tmp_path_factory, tiny_model_dir, data_dir)


def _args(model, dataset, out, recipes, n_examples, smoothed=False, attack_n=None, n=50):
    """The library call's arguments: a smoothed classifier, the data, the output folder, the attack config."""
    from robusttext import SmoothedTextClassifier
    from robusttext.evaluation.attacks import AttackConfig
    from robusttext.runs.data import DataSpec

    clf = SmoothedTextClassifier.from_pretrained(str(model), p_del=0.9, unit="word", max_length=64, batch_size=64)
    config = AttackConfig(recipes=recipes, smoothed=smoothed, n=attack_n or n)
    return clf, DataSpec(dataset, "test", max_examples=n_examples), str(out), config


def test_smoothed_wrapper_is_deterministic(tiny_trained, data_dir):
    from robusttext.evaluation.attacks import SmoothedModelWrapper
    from robusttext.certificate.smoothing import SmoothedTextClassifier

    clf = SmoothedTextClassifier.from_pretrained(tiny_trained, p_del=0.9, max_length=64)
    texts = [t for t, _ in read_tsv(Path(data_dir) / "sst2" / "test.tsv")[:6]]
    w = SmoothedModelWrapper(clf, n=40, seed=3)
    a = w(texts)
    b = w(list(reversed(texts)))[::-1]  # other batch order and neighbours
    c = np.concatenate([w([t]) for t in texts])  # one text per call
    d = SmoothedModelWrapper(SmoothedTextClassifier.from_pretrained(tiny_trained, p_del=0.9, max_length=64), n=40, seed=3)(texts)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(a, d)  # a fresh process-like wrapper: same numbers
    assert a.shape == (6, 2)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    np.testing.assert_allclose(a * 40, np.round(a * 40))  # frequencies of 40 samples
    e = SmoothedModelWrapper(clf, n=40, seed=4)(texts)
    assert not np.array_equal(a, e)  # the seed matters (6 texts x 40 samples: equal by chance ~never)


def _check_records(records, recipes, n_examples):
    assert len(records) == len(recipes) * n_examples
    for r in records:
        assert r["recipe"] in recipes
        # edit counts against the textbook DP, in words (whitespace runs) and characters
        assert r["word_edits"] == levenshtein(r["original_text"].split(), r["perturbed_text"].split())
        assert r["char_edits"] == levenshtein(r["original_text"], r["perturbed_text"])
        assert (r["result"] == "skipped") == (r["original_prediction"] != r["label"])
        if r["result"] == "successful" and r["recipe"] != "input-reduction":
            assert r["perturbed_prediction"] != r["label"] and r["char_edits"] > 0
        if r["result"] in ("failed", "maximized"):
            assert r["perturbed_prediction"] == r["label"]


def test_attack_base_model_sst2_all_recipes_and_resume(tiny_trained, data_dir, tmp_path, monkeypatch):
    from robusttext.evaluation import attacks
    from robusttext.runs.results import read_jsonl

    recipes = ["deepwordbug", "pruthi", "pwws", "input-reduction"]
    from robusttext.runs.textattack_env import find_wordnet_source

    if find_wordnet_source() is None:
        recipes.remove("pwws")
    dataset = short_sst2(data_dir, tmp_path, 8)
    args = _args(tiny_trained, dataset, tmp_path / "out", ",".join(recipes), 8)
    summary = attacks.run_attacks(*args)
    records = read_jsonl(tmp_path / "out" / "attack_results.jsonl")
    _check_records(records, recipes, 8)
    assert any(r["result"] == "successful" for r in records if r["recipe"] == "deepwordbug")
    for name in recipes:
        recs = [r for r in records if r["recipe"] == name]
        s = summary["recipes"][name]
        k = {kind: sum(r["result"] == kind for r in recs) for kind in ("successful", "failed", "skipped", "maximized")}
        assert (s["successful"], s["failed"], s["skipped"], s["maximized"]) == tuple(k.values())
        assert s["accuracy_under_attack"] == pytest.approx((k["failed"] + k["maximized"]) / 8)
        assert s["original_accuracy"] == pytest.approx((8 - k["skipped"]) / 8)
    assert json.loads((tmp_path / "out" / "attack_summary.json").read_text())["recipes"] == summary["recipes"]

    # Resume: a rerun attacks nothing again and gives the same files.
    def boom(*a, **k):
        raise AssertionError("resumed run rebuilt an attack")

    monkeypatch.setattr(attacks, "build_attack", boom)
    again = attacks.run_attacks(*args)
    assert again["recipes"] == summary["recipes"]
    # Other parameters into the same folder are refused.
    other = _args(tiny_trained, dataset, tmp_path / "out", ",".join(recipes), 8, smoothed=True)
    with pytest.raises(ValueError, match="other parameters"):
        attacks.run_attacks(*other)


def test_attack_smoothed_model_agnews_resumes_after_interrupt(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    """The smoothed wrapper on real AG News (4 classes, random tiny model: only plumbing is checked)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from robusttext.evaluation import attacks
    from robusttext.runs.results import read_jsonl

    import torch

    torch.manual_seed(1)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    names = ["Business", "Sci/Tech", "Sports", "World"]
    cfg = BertConfig.from_pretrained(tiny_model_dir, num_labels=4, id2label=dict(enumerate(names)),
                                     label2id={n: i for i, n in enumerate(names)})
    model_dir = tmp_path / "tiny4"
    BertForSequenceClassification(cfg).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    dataset = str(Path(data_dir) / "agnews" / "test.tsv")
    args = _args(str(model_dir), dataset, tmp_path / "out", "deepwordbug", 3, smoothed=True, attack_n=16)

    calls = {"n": 0}
    real = attacks.result_record

    def interrupt_after_two(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(attacks, "result_record", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        attacks.run_attacks(*args)
    assert len(read_jsonl(tmp_path / "out" / "recipes" / "deepwordbug" / "results.part0.jsonl")) == 2
    monkeypatch.setattr(attacks, "result_record", real)
    summary = attacks.run_attacks(*args)
    records = read_jsonl(tmp_path / "out" / "attack_results.jsonl")
    assert [r["index"] for r in records] == [0, 1, 2]
    _check_records(records, ["deepwordbug"], 3)
    assert summary["target"] == "smoothed" and summary["parameters"]["attack_n"] == 16
