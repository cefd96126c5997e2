"""Exact deduplication: the same random draws give the same counts with and without it, for fewer forward passes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from robusttext.certificate.deletion import DeletionMechanism
from robusttext.certificate.engine import MonteCarloEngine
from robusttext.certificate.stats import EditDistanceCertificate

from _engine_helpers import certify_with

TEXTS = [
    "the film is a warm , funny and moving story",
    "bad",
    "",
    "an overlong , self - indulgent mess that never finds its footing or its tone , sadly",
]


class Recorder:
    """A deterministic toy base classifier that records every sample it is asked to classify."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def __call__(self, samples):
        self.seen.extend(samples)
        return np.array([sum(s) % 3 for s in samples], dtype=np.int64)


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.mark.parametrize("p_del", [0.5, 0.9])
def test_dedup_counts_equal_plain_counts_for_the_same_draws(tokenizer, p_del):
    mechanism = DeletionMechanism(tokenizer, p_del, "word", max_length=8)  # truncation adds duplicates
    for text in TEXTS:
        x = [mechanism.prepare(text)]
        plain, dedup = Recorder(), Recorder()
        a = MonteCarloEngine(plain, 3, batch_size=7, dedup=False).count(x, mechanism, 1200, seed=4, indices=[17])[0]
        b = MonteCarloEngine(dedup, 3, batch_size=7, dedup=True).count(x, mechanism, 1200, seed=4, indices=[17])[0]
        # plain path: every sample classified once; counts are the class histogram of those samples
        assert len(plain.seen) == 1200
        assert a.tolist() == np.bincount([sum(s) % 3 for s in plain.seen], minlength=3).tolist()
        # dedup: identical counts, every distinct sample classified exactly once
        assert b.tolist() == a.tolist()
        assert Counter(dedup.seen) == Counter(set(plain.seen))


def test_dedup_certifications_equal_plain_ones(tokenizer):
    mechanism = DeletionMechanism(tokenizer, 0.9, "word")
    xs = [mechanism.prepare(t) for t in TEXTS]
    cert = EditDistanceCertificate(p_del=0.9)
    runs = {}
    recorders = {}
    for dedup in (False, True):
        recorders[dedup] = Recorder()
        engine = MonteCarloEngine(recorders[dedup], 3, batch_size=16, dedup=dedup)
        runs[dedup] = certify_with(engine, xs, mechanism, cert, n0=50, n=1000, alpha=0.05, looks=[100, 1000], seed=2)
    for plain, dd in zip(runs[False], runs[True]):
        assert (plain.prediction, plain.radius, plain.top1_lower, plain.looks_used, plain.n_samples) == (
            dd.prediction, dd.radius, dd.top1_lower, dd.looks_used, dd.n_samples)
        assert plain.n_queries == plain.n_samples
        assert dd.n_queries <= dd.n_samples
    # every distinct sample of the call is classified exactly once, across inputs too: "bad" has
    # 2 deletion patterns ("bad" and the empty text) and "" one (the empty text, drawn by all four)
    seen = recorders[True].seen
    assert len(seen) == len(set(seen)) == engine.forward_passes
    assert set(seen) == set(recorders[False].seen)
    # n_queries is what each input costs alone: "bad" needs its 2 patterns, "" its one
    assert runs[True][1].n_queries == 2 and runs[True][2].n_queries == 1
    assert sum(r.n_queries for r in runs[True]) > engine.forward_passes  # shared copies classified once


def test_n_queries_do_not_depend_on_which_inputs_share_a_call(tokenizer):
    """Sharding deals inputs out to processes in other groups: each input's record must not change."""
    mechanism = DeletionMechanism(tokenizer, 0.9, "word")
    xs = [mechanism.prepare(t) for t in TEXTS]
    cert = EditDistanceCertificate(p_del=0.9)
    engine = MonteCarloEngine(Recorder(), 3, batch_size=16, dedup=True)
    together = certify_with(engine, xs, mechanism, cert, n0=50, n=1000, alpha=0.05, looks=[100, 1000], seed=2,
                            exact_budget=4)
    alone = [certify_with(engine, [x], mechanism, cert, n0=50, n=1000, alpha=0.05, looks=[100, 1000], seed=2,
                          indices=[i], exact_budget=4)[0] for i, x in enumerate(xs)]
    for a, b in zip(together, alone):
        assert (a.n_queries, a.n_samples, a.radius, a.top1_lower) == (b.n_queries, b.n_samples, b.radius, b.top1_lower)


def test_dedup_with_a_real_model_gives_identical_counts(tiny_model_dir):
    from robusttext import SmoothedTextClassifier
    from robusttext.certificate.models import load_classifier

    model, tok = load_classifier(tiny_model_dir)
    plain = SmoothedTextClassifier(model, tok, p_del=0.8, dedup=False, batch_size=32, seed=1)
    dedup = SmoothedTextClassifier(model, tok, p_del=0.8, dedup=True, batch_size=32, seed=1)
    xs = [plain.mechanism.prepare(t) for t in TEXTS]
    a = plain.engine.count(xs, plain.mechanism, 300, seed=1)
    b = dedup.engine.count(xs, dedup.mechanism, 300, seed=1)
    assert [c.tolist() for c in a] == [c.tolist() for c in b]


class _ArrayMechanism:
    """Noisy copies as one array per draw (like images), or as a list of the same rows."""

    def __init__(self, as_array: bool) -> None:
        self.as_array = as_array

    def draw(self, x, n, rng):
        rows = x + rng.integers(0, 3, size=(n, len(x)))
        return rows if self.as_array else list(rows)

    def key(self, sample):
        return None

    def cost(self, sample):
        return 0


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_array_blocks_count_like_the_per_sample_path(batch_size):
    """Samples drawn as arrays are classified as array slices: same counts and queries as one by one."""
    xs = [np.arange(4) * k for k in range(5)]
    seen: dict[bool, list] = {True: [], False: []}

    def classify(as_array):
        def f(batch):
            assert isinstance(batch, np.ndarray) == as_array
            seen[as_array].extend(tuple(r) for r in batch)
            return np.array([int(r.sum()) % 4 for r in batch])
        return f

    runs = {a: MonteCarloEngine(classify(a), 4, batch_size=batch_size, dedup=False, pool_batches=2).count(
        xs, _ArrayMechanism(a), 1500, seed=3) for a in (True, False)}
    assert [c.tolist() for c in runs[True]] == [c.tolist() for c in runs[False]]
    assert all(int(c.sum()) == 1500 for c in runs[True])
    assert sorted(seen[True]) == sorted(seen[False]) and len(seen[True]) == 5 * 1500
