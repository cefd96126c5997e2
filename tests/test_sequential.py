"""Sequential certification: the union-bound guarantee, checked against an exactly enumerated smoothed classifier.

The base classifier is a deterministic toy over the token ids the real ``DeletionMechanism`` produces
for a 10-word text, so the smoothed distribution P[f(delete(x)) = c] is computable exactly by summing
over all 2^10 keep-masks with weight p^(deleted) (1 - p)^(kept).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from robusttext.certificate.deletion import DeletionMechanism
from robusttext.certificate.engine import MonteCarloEngine, input_rng
from robusttext.certificate.protocol import default_alpha_weights, default_looks
from robusttext.certificate.stats import EditDistanceCertificate, edit_distance_radius, split_alpha_weighted

from _engine_helpers import certify_with

TEXT = "the film is a warm , funny and moving story"  # 10 words -> 1024 deletion patterns
P_DEL = 0.5


@pytest.fixture(scope="module")
def mechanism(minilm_path):
    from transformers import AutoTokenizer

    return DeletionMechanism(AutoTokenizer.from_pretrained(minilm_path), P_DEL, "word")


def make_classifier(mechanism: DeletionMechanism, positive: tuple[str, ...], need: int):
    """f(sample) = 1 iff at least ``need`` of the ``positive`` words survive (a deterministic toy)."""
    ids = {mechanism.tokenizer.convert_tokens_to_ids(w) for w in positive}

    def classify(samples):
        return np.array([int(sum(t in ids for t in s) >= need) for s in samples], dtype=np.int64)

    return classify


def exact_distribution(mechanism: DeletionMechanism, classify, text: str) -> np.ndarray:
    x = mechanism.prepare(text)
    masks = np.array(list(itertools.product([False, True], repeat=len(x))), dtype=bool)
    kept = masks.sum(1)
    weights = (1 - P_DEL) ** kept * P_DEL ** (len(x) - kept)
    classes = classify(mechanism.encode_kept(x, masks))
    dist = np.bincount(classes, weights=weights, minlength=2)
    assert dist.sum() == pytest.approx(1.0)
    return dist


def consistent_with_rate(failures: int, trials: int, alpha: float) -> bool:
    """One-sided exact binomial test of H0: failure rate <= alpha; rejected only at p < 1e-3."""
    return bool(stats.binom.sf(failures - 1, trials, alpha) > 1e-3)


CASES = {
    # classifier: class 1 iff >= need of these words survive; exact P[class 0] is well inside (0.5, 1)
    "two_of_four": (("warm", "funny", "moving", "story"), 2),  # P[class 1] = 11/16
    "both_of_two": (("warm", "funny"), 2),  # P[class 0] = 3/4
}


def exact_case(mechanism: DeletionMechanism, case: str):
    """The toy classifier of ``case``: its exact smoothed distribution on TEXT, an engine and the certificate."""
    classify = make_classifier(mechanism, *CASES[case])
    exact = exact_distribution(mechanism, classify, TEXT)
    return exact, MonteCarloEngine(classify, 2, batch_size=256), EditDistanceCertificate(p_del=P_DEL)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("futility", [0.0, 0.2])
def test_sequential_bound_covers_exact_probability_at_stated_rate(mechanism, case, futility):
    exact, engine, cert = exact_case(mechanism, case)
    assert 0.5 < exact.max() < 0.9, exact
    trials, alpha, n = 400, 0.2, 80
    looks = default_looks(n)
    x = mechanism.prepare(TEXT)
    out = certify_with(engine, 
        [x] * trials, mechanism, cert, n0=10, n=n, alpha=alpha, looks=looks, seed=3, indices=range(trials),
        alpha_weights=default_alpha_weights(looks), futility=futility,
    )
    failures = 0
    for c in out:
        if c.prediction >= 0:
            failures += c.top1_lower > exact[c.prediction]
            assert c.radius == edit_distance_radius(c.top1_lower, c.top2_upper, P_DEL)
        else:
            assert c.radius == -1
    assert consistent_with_rate(failures, trials, alpha), (failures, trials)
    # the test exercises stopping at different looks, not just the last one
    assert len({c.looks_used for c in out}) >= 2


def test_coverage_check_detects_a_bound_that_ignores_the_split(mechanism):
    # Negative control: 20 looks, each bounded at the *full* alpha, reporting the best of them.
    # Without the split the union bound is violated and the coverage check must notice.
    classify = make_classifier(mechanism, *CASES["two_of_four"])
    exact = exact_distribution(mechanism, classify, TEXT)
    top = int(np.argmax(exact))
    cert = EditDistanceCertificate(p_del=P_DEL)
    trials, alpha = 300, 0.1
    x = mechanism.prepare(TEXT)
    failures = 0
    for i in range(trials):
        votes = np.cumsum(classify(mechanism.draw(x, 200, input_rng(9, i))) == top)
        best = 0.0
        for m in range(10, 201, 10):
            counts = np.zeros(2, dtype=np.int64)
            counts[top], counts[1 - top] = votes[m - 1], m - votes[m - 1]
            best = max(best, cert.bounds(counts, top, alpha).top1_lower)
        failures += best > exact[top]
    assert not consistent_with_rate(failures, trials, alpha)


@pytest.mark.parametrize("case", ["one_of_one", "two_of_four"])
@pytest.mark.parametrize("sequential", [False, True])
def test_ambiguous_selection_bound_covers_exact_probability_at_stated_rate(mechanism, case, sequential):
    # "one_of_one": class 1 iff "warm" survives, so P = (1/2, 1/2) exactly: the hardest case for a
    # class chosen from the estimation votes (without the split over candidates about 35% of the
    # one-look bounds fail here). Unless the 3 selection votes are unanimous, both classes stay candidates.
    positive, need = (("warm",), 1) if case == "one_of_one" else CASES[case]
    classify = make_classifier(mechanism, positive, need)
    exact = exact_distribution(mechanism, classify, TEXT)
    engine, cert = MonteCarloEngine(classify, 2, batch_size=256), EditDistanceCertificate(p_del=P_DEL)
    trials, alpha, n = 400, 0.2, 80
    looks = default_looks(n) if sequential else None
    out = certify_with(engine, 
        [mechanism.prepare(TEXT)] * trials, mechanism, cert, n0=3, n=n, alpha=alpha, looks=looks, seed=5,
        indices=range(trials), alpha_weights=default_alpha_weights(looks) if sequential else None,
        futility=0.2 if sequential else 0.0, candidate_pvalue=0.5,
    )
    failures = sum(c.top1_lower > exact[c.prediction] for c in out if c.prediction >= 0)
    assert consistent_with_rate(failures, trials, alpha), (failures, trials)


def test_coverage_check_detects_a_candidate_choice_without_the_split(mechanism):
    # Negative control: bound both classes of a (1/2, 1/2) input at the full alpha and report the larger.
    classify = make_classifier(mechanism, ("warm",), 1)
    cert = EditDistanceCertificate(p_del=P_DEL)
    trials, alpha, x = 400, 0.2, mechanism.prepare(TEXT)
    failures = 0
    for i in range(trials):
        counts = np.bincount(classify(mechanism.draw(x, 80, input_rng(11, i))), minlength=2)
        failures += max(cert.bounds(counts, c, alpha).top1_lower for c in (0, 1)) > 0.5
    assert not consistent_with_rate(failures, trials, alpha)


def test_ambiguous_selection_lets_the_estimation_votes_choose_the_class(mechanism):
    # One selection vote picks the minority class (P = 5/16) about a third of the time, and such an
    # input then abstains; keeping both classes as candidates certifies the majority class instead.
    exact, engine, cert = exact_case(mechanism, "two_of_four")
    top = int(np.argmax(exact))
    x, trials = mechanism.prepare(TEXT), 200
    kw = dict(n0=1, n=400, alpha=0.05, seed=6, indices=range(trials))
    plain = certify_with(engine, [x] * trials, mechanism, cert, **kw)
    kept = certify_with(engine, [x] * trials, mechanism, cert, candidate_pvalue=0.5, **kw)
    assert sum(c.prediction == top for c in kept) > sum(c.prediction == top for c in plain) + trials // 5
    assert sum(c.prediction == 1 - top for c in kept) <= trials // 50


def test_unanimous_inputs_stop_at_the_first_look_with_the_largest_radius(mechanism):
    mechanism = DeletionMechanism(mechanism.tokenizer, 0.9, "word")
    engine = MonteCarloEngine(lambda s: np.zeros(len(s), dtype=np.int64), 2, batch_size=64)
    cert = EditDistanceCertificate(p_del=0.9)
    looks = default_looks(4000)
    out = certify_with(engine, 
        [mechanism.prepare(TEXT)], mechanism, cert, n0=100, n=4000, alpha=0.05, looks=looks,
        alpha_weights=default_alpha_weights(looks),
    )[0]
    alpha_1 = split_alpha_weighted(0.05, default_alpha_weights(looks))[0]
    assert out.looks_used == 1 and out.n_samples == 100 + looks[0]
    assert out.top1_lower == pytest.approx(alpha_1 ** (1 / looks[0]))  # CP lower bound of k = n
    assert out.radius == edit_distance_radius(1.0, 0.0, 0.9) == 6
    # dedup: a 10-word text has at most 2^10 patterns, and far fewer are drawn at p_del = 0.9
    assert out.n_queries < 0.5 * out.n_samples


def test_an_input_that_cannot_win_abstains_early(mechanism):
    # f is a fair 3-sided die on the sample's content: no class can reach a radius, so the input stops early.
    engine = MonteCarloEngine(lambda s: np.array([hash(t) % 3 for t in s], dtype=np.int64), 3)
    looks = default_looks(4000)
    out = certify_with(engine, 
        [mechanism.prepare("a b c d e f g h i j k l m n o p q r s t u v w x y z")], mechanism,
        EditDistanceCertificate(p_del=0.5), n0=100, n=4000, alpha=0.05, looks=looks,
        alpha_weights=default_alpha_weights(looks), futility=0.01,
    )[0]
    assert out.prediction == -1 and out.radius == -1
    assert out.looks_used < len(looks)


def test_split_alpha_weighted_sums_to_alpha_in_proportion():
    levels = split_alpha_weighted(0.05, [1, 1, 8])
    assert sum(levels) == pytest.approx(0.05)
    assert levels == pytest.approx([0.005, 0.005, 0.04])
    assert sum(split_alpha_weighted(0.05, default_alpha_weights([200, 1000, 4000]))) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="weights"):
        split_alpha_weighted(0.05, [1, 0])
    with pytest.raises(ValueError, match="alpha"):
        split_alpha_weighted(1.5, [1])


def test_bad_sequential_arguments_are_clear_errors(mechanism):
    engine = MonteCarloEngine(lambda s: np.zeros(len(s), dtype=np.int64), 2)
    x = [mechanism.prepare(TEXT)]
    cert = EditDistanceCertificate(p_del=0.9)
    with pytest.raises(ValueError, match="alpha_weights"):
        certify_with(engine, x, mechanism, cert, n0=5, n=100, alpha=0.05, looks=[10, 100], alpha_weights=[1.0])
    with pytest.raises(ValueError, match="futility"):
        certify_with(engine, x, mechanism, cert, n0=5, n=100, alpha=0.05, futility=1.0)
    with pytest.raises(ValueError, match="candidate_pvalue"):
        certify_with(engine, x, mechanism, cert, n0=5, n=100, alpha=0.05, candidate_pvalue=1.0)


# --------------------------------------------------------------------------- exact strata (stratified estimation)
def test_strata_list_the_likeliest_deletions_with_exact_probabilities(mechanism):
    mech = DeletionMechanism(mechanism.tokenizer, 0.8, "word")
    x = mech.prepare(TEXT)  # 10 words
    st = mech.strata(x, 60)  # 1 + 10 + 45 = 56 subsets keep <= 2 words; 176 would be needed for 3
    assert len(st.samples) == 56
    kept = np.array([len(s) - 2 for s in st.samples])  # every word of TEXT is one MiniLM token; minus [CLS]/[SEP]
    assert np.bincount(kept).tolist() == [1, 10, 45]
    assert np.allclose(st.probs, 0.2**kept * 0.8 ** (10 - kept))
    closed_form = sum(math.comb(10, j) * 0.2**j * 0.8 ** (10 - j) for j in range(3, 11))
    assert st.residual_mass == pytest.approx(closed_form, rel=1e-12)
    assert st.probs.sum() + st.residual_mass == pytest.approx(1.0, abs=1e-12)
    full = mech.strata(x, 1024)
    assert len(full.samples) == 1024 and full.residual_mass == 0.0
    assert mech.strata(x, 0) is None


def test_residual_draws_follow_the_truncated_kept_count_distribution(mechanism):
    mech = DeletionMechanism(mechanism.tokenizer, 0.8, "word")
    x = mech.prepare(TEXT)
    draws = mech.draw_residual(x, 20000, np.random.default_rng(0), depth=2)
    kept = np.array([len(s) - 2 for s in draws])
    assert kept.min() >= 3
    pmf = stats.binom.pmf(np.arange(3, 11), 10, 0.2)
    observed = np.bincount(kept, minlength=11)[3:]
    expected = 20000 * pmf / pmf.sum()
    keep = expected > 5
    chi2 = float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4
    # given its size, the kept set is uniform: each word survives in 3-word draws with probability 3/10
    three = np.array([[w in s for w in set(x.unit_ids[i][0] for i in range(10))] for s in draws if len(s) == 5])
    assert np.allclose(three.mean(axis=0), 0.3, atol=0.03)


@pytest.mark.parametrize("case", sorted(CASES))
def test_stratified_bound_covers_exact_probability_at_stated_rate(mechanism, case):
    exact, engine, cert = exact_case(mechanism, case)
    trials, alpha, n = 400, 0.2, 80
    looks = default_looks(n)
    x = mechanism.prepare(TEXT)
    out = certify_with(engine, 
        [x] * trials, mechanism, cert, n0=10, n=n, alpha=alpha, looks=looks, seed=4, indices=range(trials),
        alpha_weights=default_alpha_weights(looks), futility=0.2, exact_budget=386,  # keep <= 4 of 10 words
    )
    stratified = [c for c in out if c.exact_mass > 0]
    assert len(stratified) > trials / 2
    assert all(c.exact_mass == pytest.approx(386 / 1024) for c in stratified)  # p_del = 0.5: all 2^10 equally likely
    failures = sum(c.top1_lower > exact[c.prediction] for c in out if c.prediction >= 0)
    assert consistent_with_rate(failures, trials, alpha), (failures, trials)
    # the residual is sampled at the scaled looks: never more than ceil(n * residual) estimation draws
    assert max(c.n_samples for c in stratified) <= 10 + math.ceil(n * (1 - 386 / 1024))


def test_fully_enumerated_inputs_get_the_exact_probability(mechanism):
    exact, engine, cert = exact_case(mechanism, "two_of_four")
    out = certify_with(engine, [mechanism.prepare(TEXT)] * 5, mechanism, cert, n0=10, n=80, alpha=0.05,
                         indices=range(5), exact_budget=1024)
    assert any(c.exact_mass == 1.0 for c in out)
    for c in out:
        if c.exact_mass == 0:  # unanimous selection: sampled as usual
            continue
        assert c.exact_mass == 1.0 and c.looks_used == 0 and c.n_samples == 10
        assert c.prediction == int(np.argmax(exact))
        assert c.top1_lower == pytest.approx(exact.max(), abs=1e-12)
        assert c.radius == edit_distance_radius(exact.max(), 1 - exact.max(), P_DEL)


@pytest.mark.parametrize("w", [0.1, 0.32, 0.6])
@pytest.mark.parametrize("q", [0.05, 0.3, 0.65, 0.95])
@pytest.mark.parametrize("exact_rate", [0.2, 0.66, 0.97])
def test_residual_draws_are_at_least_as_precise_as_plain_sampling(w, q, exact_rate):
    from robusttext.certificate.engine import residual_fraction

    exact_top = (1 - w) * exact_rate
    p = exact_top + w * q  # the top class's exact smoothed probability
    n0 = 10**6  # selection votes at the true rate: the two-standard-error range is tight
    selection = np.array([round(n0 * p), n0 - round(n0 * p)])
    f = residual_fraction(selection, 0, exact_top, w)
    assert w * w <= f <= w
    # variance of the stratified estimate from n*f residual draws vs plain sampling's from n draws
    if f < w:
        assert w**2 * q * (1 - q) / f <= p * (1 - p) * (1 + 1e-6)
    # inputs with no strata sample everything; fully enumerated ones nothing
    assert residual_fraction(selection, 0, 0.0, 1.0) == 1.0 and residual_fraction(selection, 0, exact_top, 0.0) == 0.0
