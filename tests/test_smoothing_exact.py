"""SmoothedTextClassifier against the exact smoothed distribution, computed by enumerating every deletion."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from robusttext import SmoothedTextClassifier, edit_distance_radius

TEXT = "a quiet , patient film that earns every one of its tears"  # 12 words -> 4096 deletion patterns
P_DEL = 0.6


def all_masks(n: int) -> np.ndarray:
    return np.array(list(itertools.product([False, True], repeat=n)), dtype=bool)


def mask_weights(masks: np.ndarray) -> np.ndarray:
    kept = masks.sum(1)
    return (1 - P_DEL) ** kept * P_DEL ** (masks.shape[1] - kept)


@pytest.fixture(scope="module")
def clf(tiny_model_dir):
    """A tiny random BERT whose smoothed class-1 probability on TEXT is set to about 0.75.

    Large initial weights make the base prediction depend on which words survive; the head's bias is
    then shifted so that the deletion-weighted 25% quantile of the logit margin sits at zero.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    cfg = BertConfig.from_pretrained(tiny_model_dir, initializer_range=0.5)
    model = BertForSequenceClassification(cfg).eval()
    clf = SmoothedTextClassifier(model, tok, p_del=P_DEL, unit="word", batch_size=256, seed=11)
    x = clf.mechanism.prepare(TEXT)
    masks = all_masks(len(x))
    encoded = clf.mechanism.encode_kept(x, masks)
    logits = torch.cat([clf.logits(encoded[i : i + 512]) for i in range(0, len(encoded), 512)])
    margin = (logits[:, 1] - logits[:, 0]).numpy()
    order = np.argsort(margin)
    cum = np.cumsum(mask_weights(masks)[order])
    q25 = margin[order][np.searchsorted(cum, 0.25)]
    with torch.no_grad():
        model.classifier.bias[1] -= float(q25) - 1e-4
    return clf


@pytest.fixture(scope="module")
def exact(clf) -> np.ndarray:
    """P[f(delete(x)) = c] for every class c: a sum over all 2^n keep-masks weighted by their probability."""
    x = clf.mechanism.prepare(TEXT)
    masks = all_masks(len(x))
    encoded = clf.mechanism.encode_kept(x, masks)
    classes = np.concatenate([clf.classify(encoded[i : i + 512]) for i in range(0, len(encoded), 512)])
    weights = mask_weights(masks)
    assert weights.sum() == pytest.approx(1.0)
    dist = np.bincount(classes, weights=weights, minlength=clf.num_classes)
    assert 0.6 < dist.max() < 0.9, f"want a non-trivial smoothed distribution, got {dist}"
    return dist


def consistent_with_rate(failures: int, trials: int, alpha: float) -> bool:
    """One-sided binomial test of H0: failure rate <= alpha (rejected only at p < 1e-3)."""
    return bool(stats.binom.sf(failures - 1, trials, alpha) > 1e-3)


@pytest.mark.parametrize("looks", [None, "auto"])
def test_top1_lower_covers_exact_probability_at_stated_rate(clf, exact, looks):
    trials, alpha = 300, 0.2
    out = clf.certify([TEXT] * trials, n0=10, n=60, alpha=alpha, looks=looks, indices=range(trials))
    failures = 0
    for c in out:
        if c.prediction >= 0:
            failures += c.top1_lower > exact[c.prediction]
            assert c.radius == edit_distance_radius(c.top1_lower, c.top2_upper, P_DEL)
        else:
            assert c.radius == -1
    assert consistent_with_rate(failures, trials, alpha), (failures, trials)


def test_the_coverage_check_catches_an_unsound_bound(clf, exact):
    # Same Monte Carlo counts, but the point estimate k/n used as if it were a lower bound.
    top = int(np.argmax(exact))
    counts = clf.engine.count([clf.mechanism.prepare(TEXT)] * 300, clf.mechanism, 60, seed=5, indices=range(300))
    failures = sum(c[top] / 60 > exact[top] for c in counts)
    assert not consistent_with_rate(int(failures), 300, 0.2)


def test_monte_carlo_counts_match_exact_distribution(clf, exact):
    counts = clf.engine.count([clf.mechanism.prepare(TEXT)], clf.mechanism, 20000, seed=1)[0]
    # chi-square goodness of fit against the enumerated distribution
    expected = exact * 20000
    keep = expected > 5
    chi2 = float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    assert stats.chi2.sf(chi2, max(1, keep.sum() - 1)) > 1e-4


def test_predict_returns_exact_top_class_or_abstains(clf, exact):
    alpha = 0.05
    out = clf.predict([TEXT] * 100, n=200, alpha=alpha, indices=range(100))
    wrong = sum(p.prediction not in (-1, int(np.argmax(exact))) for p in out)
    assert consistent_with_rate(wrong, 100, alpha)
    assert all(sum(p.counts) == 200 for p in out)


def test_reproducible_from_seed_and_independent_of_batching(clf):
    texts = [TEXT, "short one", "", "another rather longer sentence with quite a few words in it"]
    a = clf.certify(texts, n0=10, n=50, alpha=0.1)
    other = SmoothedTextClassifier(clf.model, clf.tokenizer, p_del=P_DEL, batch_size=3, seed=11, dedup=False)
    b = other.certify(texts[::-1], n0=10, n=50, alpha=0.1, indices=[3, 2, 1, 0])[::-1]
    for x, y in zip(a, b):
        assert (x.prediction, x.radius, x.top1_lower, x.n_samples) == (y.prediction, y.radius, y.top1_lower, y.n_samples)
        assert x.exact_mass == y.exact_mass
        assert x.n_queries <= y.n_queries  # dedup only saves forward passes
        if y.exact_mass == 0:
            assert y.n_queries == y.n_samples


def test_bad_arguments_are_clear_errors(clf):
    with pytest.raises(ValueError, match="n0"):
        clf.certify([TEXT], n0=0, n=10)
    with pytest.raises(ValueError, match="alpha"):
        clf.certify([TEXT], n0=5, n=10, alpha=1.5)
    with pytest.raises(ValueError, match="looks"):
        clf.certify([TEXT], n0=5, n=10, looks=[5, 20])
    with pytest.raises(ValueError, match="p_del"):
        SmoothedTextClassifier(clf.model, clf.tokenizer, p_del=0.0)
