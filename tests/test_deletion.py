"""The deletion mechanism and the training collator."""

from __future__ import annotations

import numpy as np
import pytest

from robusttext.certificate.deletion import DeletionCollator, DeletionMechanism, keep_masks, split_units


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def reference_encoding(tokenizer, units, mask, unit, max_length):
    """Oracle: rejoin the kept units as a string and let the tokenizer encode it whole (special tokens and
    truncation its own); kept sub-tokens go between BERT's [CLS] and [SEP] by hand."""
    if unit == "token":
        kept = [t for k, t in zip(mask, units) if k][: max_length - 2]
        return (tokenizer.cls_token_id, *kept, tokenizer.sep_token_id)
    sep = " " if unit == "word" else ""
    text = sep.join(u for k, u in zip(mask, units) if k)
    return tuple(tokenizer(text, truncation=True, max_length=max_length)["input_ids"])


@pytest.mark.parametrize("unit", ["word", "char", "token"])
def test_encoding_equals_tokenizing_the_rejoined_text(tokenizer, unit):
    text = "The film's score -- haunting, unforgettable; a 10/10 masterpiece!  Don't miss it."
    mech = DeletionMechanism(tokenizer, p_del=0.5, unit=unit, max_length=24)
    x = mech.prepare(text)
    if unit == "word":
        assert x.unit_ids is not None  # WordPiece: the per-word fast path applies
    rng = np.random.default_rng(0)
    masks = keep_masks(rng, 300, len(x), 0.5)
    got = mech.encode_kept(x, masks)
    for m, ids in zip(masks, got):
        assert ids == reference_encoding(tokenizer, x.units, m, unit, 24)


def test_deletion_rate_and_independence(tokenizer):
    mech = DeletionMechanism(tokenizer, p_del=0.9, unit="word")
    masks = keep_masks(np.random.default_rng(3), 20000, 12, 0.9)
    assert masks.mean() == pytest.approx(0.1, abs=0.005)
    # independence: the number of kept units is Binomial(12, 0.1)
    from scipy import stats

    observed = np.bincount(masks.sum(1), minlength=13)
    expected = stats.binom.pmf(np.arange(13), 12, 0.1) * 20000
    keep = expected > 5
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4
    assert mech.p_del == 0.9


def test_long_text_is_deleted_before_truncation(tokenizer):
    # 400 distinct words, far beyond max_length=32: the noisy copies must reach words past the limit.
    words = [f"w{i}" for i in range(400)]
    mech = DeletionMechanism(tokenizer, p_del=0.9, unit="word", max_length=32)
    x = mech.prepare(" ".join(words))
    clean = mech.encode_clean(x)
    assert len(clean) == 32  # the clean input is truncated
    late_ids = set(tokenizer(" ".join(words[300:]), add_special_tokens=False)["input_ids"]) - set(clean)
    samples = mech.draw(x, 50, np.random.default_rng(0))
    assert all(len(s) <= 32 for s in samples)
    assert any(late_ids & set(s) for s in samples)


def test_empty_text_gives_only_special_tokens(tokenizer):
    mech = DeletionMechanism(tokenizer, p_del=0.9, unit="word")
    x = mech.prepare("")
    assert len(x) == 0
    samples = mech.draw(x, 5, np.random.default_rng(0))
    assert samples == [(tokenizer.cls_token_id, tokenizer.sep_token_id)] * 5


def test_units_and_errors(tokenizer):
    assert split_units("  a  bb\tc\n", "word") == ["a", "bb", "c"]
    assert split_units("ab ", "char") == ["a", "b", " "]
    for bad in (1.0, -0.1, 2):  # 0 is allowed here (clean training); certification rejects it
        with pytest.raises(ValueError, match="p_del"):
            DeletionMechanism(tokenizer, p_del=bad)
    with pytest.raises(ValueError, match="unit"):
        DeletionMechanism(tokenizer, p_del=0.5, unit="sentence")
    with pytest.raises(TypeError):
        DeletionMechanism(tokenizer, p_del=0.5).prepare(None)


def test_collator_applies_fresh_noise_each_batch(tokenizer):
    coll = DeletionCollator(tokenizer, p_del=0.5, unit="word", seed=0)
    feats = [{"text": "one two three four five six seven eight", "label": 1}, {"text": "nine ten", "label": 0}]
    b1, b2 = coll(feats), coll(feats)
    assert b1["labels"].tolist() == [1, 0]
    assert b1["input_ids"].shape[0] == 2 and b1["attention_mask"].shape == b1["input_ids"].shape
    assert not (b1["input_ids"].shape == b2["input_ids"].shape and bool((b1["input_ids"] == b2["input_ids"]).all()))
    clean = DeletionCollator(tokenizer, p_del=0.0, unit="word")(feats)
    ref = tokenizer([f["text"] for f in feats], padding=True, return_tensors="pt")
    assert clean["input_ids"].tolist() == ref["input_ids"].tolist()
    with pytest.raises(KeyError, match="remove_unused_columns"):
        coll([{"sentence": "x", "label": 0}])
