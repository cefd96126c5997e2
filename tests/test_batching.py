"""The array pipeline (masks -> packed dedup -> gathered token rows -> pooled, length-sorted batches) against
the per-copy path: the same draws give the same copies, counts, forward passes and certificates."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from robusttext.certificate.batching import kept_token_rows, length_batches, prefetch, sample_key, unique_masks, unit_spans
from robusttext.certificate.deletion import DeletionMechanism, keep_masks
from robusttext.certificate.engine import MonteCarloEngine
from robusttext.certificate.protocol import CertifyProtocol
from robusttext.certificate.rates import AdaptiveRate
from robusttext.certificate.stats import EditDistanceCertificate

TEXTS = [
    "the the film is a warm , funny and moving story",  # a repeated word: distinct masks, equal ids
    "bad",
    "",
    "an overlong , self - indulgent mess that never finds its footing or its tone , sadly",
    "unbelievably , astonishingly wonderful",  # words of several word pieces
]


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def toy_class(ids) -> int:
    """A deterministic toy base classifier on a sequence of ids (3 classes)."""
    return int(sum(int(t) * (i + 1) for i, t in enumerate(ids)) % 3)


class Both:
    """The toy classifier as the per-copy ``classify`` and as ``classify_rows``; records what it sees."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def __call__(self, samples):
        self.seen.extend(tuple(s) for s in samples)
        return np.array([toy_class(s) for s in samples], dtype=np.int64)

    def rows(self, ids, lengths):
        samples = [tuple(row[:n]) for row, n in zip(ids.tolist(), lengths.tolist())]
        return self(samples)


@pytest.mark.parametrize("unit", ["word", "token", "char"])
@pytest.mark.parametrize("max_length", [6, 512])
def test_rows_hold_the_per_copy_encoding_of_every_mask(tokenizer, unit, max_length):
    mechanism = DeletionMechanism(tokenizer, 0.5, unit, max_length=max_length)
    for text in TEXTS:
        x = mechanism.prepare(text)
        masks = keep_masks(np.random.default_rng(3), 400, len(x), 0.5)
        copies = mechanism.encode_kept(x, masks)  # one tuple per mask, in draw order
        chunk = mechanism.encode_rows(x, masks)
        distinct = list(dict.fromkeys(copies))  # first-occurrence order
        assert chunk.keys == [sample_key(c) for c in distinct]
        assert chunk.mult.tolist() == [Counter(copies)[c] for c in distinct]
        for c, row, n in zip(distinct, chunk.ids.tolist(), chunk.lengths.tolist()):
            assert tuple(row[:n]) == c


def test_kept_token_rows_truncate_inside_the_frame():
    # units of 1, 2 and 3 tokens; keep at most 4 body tokens; frame (101,) ... (102, 7)
    spans = unit_spans([[5], [6, 7], [8, 9, 10]])
    masks = np.array(list(itertools.product([False, True], repeat=3)), dtype=bool)
    ids, lengths = kept_token_rows(spans, masks, 4, ((101,), (102, 7)), pad_id=-1)
    for mask, row, n in zip(masks, ids.tolist(), lengths.tolist()):
        body = [t for keep, unit in zip(mask, [[5], [6, 7], [8, 9, 10]]) if keep for t in unit][:4]
        assert row[:n] == [101, *body, 102, 7] and all(v == -1 for v in row[n:])


def test_unique_masks_in_first_occurrence_order_with_counts():
    rng = np.random.default_rng(0)
    for length in (0, 1, 7, 8, 9, 70):
        masks = rng.random((300, length)) < 0.2
        rows, mult = unique_masks(masks)
        order = list(dict.fromkeys(map(tuple, masks.tolist())))
        assert [tuple(r) for r in rows.tolist()] == (order if length else [()])
        assert mult.tolist() == [Counter(map(tuple, masks.tolist()))[r] for r in order]


@pytest.mark.parametrize("budget", [None, 1, 40, 10_000])
def test_length_batches_cover_every_row_once_within_the_budget(budget):
    lengths = np.random.default_rng(1).integers(1, 30, size=257)
    order, batches = length_batches(lengths, 16, budget)
    assert sorted(order.tolist()) == list(range(257))
    assert np.all(np.diff(lengths[order]) >= 0)
    assert [b.start for b in batches] == [0] + [b.stop for b in batches[:-1]] and batches[-1].stop == 257
    for b in batches:
        rows = lengths[order[b]]
        assert len(rows) <= 16
        if budget is not None and len(rows) > 1:
            assert len(rows) * rows.max() <= budget


def engines(clf: Both, **kw):
    """The per-copy engine and the array engine on the same toy classifier."""
    return (MonteCarloEngine(clf, 3, **kw), MonteCarloEngine(clf, 3, classify_rows=clf.rows, **kw))


@pytest.mark.parametrize("p_del", [0.5, 0.9])
def test_array_path_counts_equal_the_per_copy_path_for_the_same_draws(tokenizer, p_del):
    mechanism = DeletionMechanism(tokenizer, p_del, "word", max_length=8)
    xs = [mechanism.prepare(t) for t in TEXTS]
    per_copy, arrays = Both(), Both()
    a = engines(per_copy, batch_size=7)[0].count(xs, mechanism, 1500, seed=4)
    engine = engines(arrays, batch_size=7)[1]
    b = engine.count(xs, mechanism, 1500, seed=4)
    assert [c.tolist() for c in a] == [c.tolist() for c in b]
    # exact dedup across the call: every distinct copy classified once
    assert len(arrays.seen) == len(set(arrays.seen)) == engine.forward_passes
    assert set(arrays.seen) == set(per_copy.seen)
    # oracle: input 0's class histogram over its own draws (its stream [seed, index], chunks of 1000)
    rng = np.random.default_rng([4, 0])
    draws = [s for size in (1000, 500) for s in mechanism.encode_kept(xs[0], keep_masks(rng, size, len(xs[0]), p_del))]
    assert b[0].tolist() == np.bincount([toy_class(s) for s in draws], minlength=3).tolist()


@pytest.mark.parametrize("rate", [0.9, AdaptiveRate(k=3, p_lb=0.5)])
def test_array_path_certifies_exactly_like_the_per_copy_path(tokenizer, rate):
    """Sequential looks, futility, candidates and exact strata (residual draws as rows) all unchanged."""
    mechanism = DeletionMechanism(tokenizer, rate, "word")
    xs = [mechanism.prepare(t) for t in TEXTS]
    protocol = CertifyProtocol(n0=50, n=2000, alpha=0.05, exact_budget=40)
    out, passes = {}, {}
    for k, engine in enumerate(engines(Both(), batch_size=16)):
        cert = lambda x: EditDistanceCertificate(p_del=x.p_del)  # noqa: E731
        res = engine.certify(xs, mechanism, cert, protocol, seed=9, indices=[3, 1, 4, 1, 5])
        out[k] = [(c.prediction, c.radius, c.top1_lower, c.top2_upper, c.n_samples, c.n_queries, c.looks_used,
                   c.exact_mass) for c in res]
        passes[k] = engine.forward_passes
    assert out[0] == out[1] and passes[0] == passes[1]
    assert any(o[7] > 0 for o in out[1])  # some input used exact strata


def test_token_budget_and_prefetch_change_batches_not_counts(tokenizer):
    mechanism = DeletionMechanism(tokenizer, 0.7, "word")
    xs = [mechanism.prepare(t) for t in TEXTS]
    base = MonteCarloEngine(Both(), 3, batch_size=32, classify_rows=Both().rows)
    want = [c.tolist() for c in base.count(xs, mechanism, 2500, seed=1)]
    for budget, ahead in ((64, 0), (None, 3), (100, 1)):
        clf = Both()
        engine = MonteCarloEngine(clf, 3, batch_size=32, classify_rows=clf.rows, token_budget=budget, prefetch=ahead)
        assert [c.tolist() for c in engine.count(xs, mechanism, 2500, seed=1)] == want
        assert engine.forward_passes == base.forward_passes
        assert 0.0 <= engine.padding_share < 1.0


def test_prefetch_keeps_order_and_raises_the_producers_error():
    assert list(prefetch(iter(range(100)), 3)) == list(range(100))

    def broken():
        yield 1
        raise KeyError("draw failed")

    got = []
    with pytest.raises(KeyError, match="draw failed"):
        for v in prefetch(broken(), 2):
            got.append(v)
    assert got == [1]


def test_a_real_model_gives_the_same_certificates_on_both_paths(tiny_model_dir):
    from robusttext import SmoothedTextClassifier
    from robusttext.certificate.models import load_classifier

    model, tok = load_classifier(tiny_model_dir)
    clf = SmoothedTextClassifier(model, tok, p_del=0.8, batch_size=32, seed=1, autocast_dtype=None)
    assert clf.engine.classify_rows is not None
    arrays = clf.certify(TEXTS, n0=20, n=300)
    clf.engine.classify_rows = None  # the per-copy path
    per_copy = clf.certify(TEXTS, n0=20, n=300)
    assert [(c.prediction, c.radius, c.top1_lower, c.n_queries) for c in arrays] == [
        (c.prediction, c.radius, c.top1_lower, c.n_queries) for c in per_copy]
