"""The formulas every certificate rests on, against independent oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from robusttext import edit_distance_radius, gaussian_l2_radius
from robusttext.certificate.stats import (
    EditDistanceCertificate,
    GaussianL2Certificate,
    binomial_test_pvalue,
    clopper_pearson_lower,
    clopper_pearson_upper,
    max_edit_distance_radius,
    plain_samples_needed,
    split_alpha,
)


@pytest.mark.parametrize("n", [1, 2, 7, 50, 1000, 4000])
@pytest.mark.parametrize("alpha", [0.001, 0.05, 0.3])
def test_clopper_pearson_matches_beta_quantiles_and_defining_equation(n, alpha):
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        lo = clopper_pearson_lower(k, n, alpha)
        hi = clopper_pearson_upper(k, n, alpha)
        # Oracle 1: the textbook beta quantiles.
        assert lo == pytest.approx(0.0 if k == 0 else sps.beta.ppf(alpha, k, n - k + 1), abs=1e-10)
        assert hi == pytest.approx(1.0 if k == n else sps.beta.ppf(1 - alpha, k + 1, n - k), abs=1e-10)
        # Oracle 2: the defining tail equations P[Bin(n, L) >= k] = alpha and P[Bin(n, U) <= k] = alpha.
        if k > 0:
            assert sps.binom.sf(k - 1, n, lo) == pytest.approx(alpha, rel=1e-6)
        if k < n:
            assert sps.binom.cdf(k, n, hi) == pytest.approx(alpha, rel=1e-6)
        assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_clopper_pearson_all_successes_closed_form():
    # k = n: the lower bound solves L^n = alpha.
    for n in (10, 100, 4000):
        assert clopper_pearson_lower(n, n, 0.05) == pytest.approx(0.05 ** (1 / n), rel=1e-9)


def test_clopper_pearson_coverage_by_simulation():
    rng = np.random.default_rng(0)
    p, n, alpha, trials = 0.83, 60, 0.1, 4000
    ks = rng.binomial(n, p, size=trials)
    misses = sum(clopper_pearson_lower(int(k), n, alpha) > p for k in ks)
    # Conservative bound: miss rate <= alpha (allow sampling noise with a one-sided binomial test).
    assert sps.binom.sf(misses - 1, trials, alpha) > 1e-3


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_bad_alpha_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="alpha"):
        clopper_pearson_lower(3, 10, bad)


def brute_force_radius(top1: float, top2: float, p: float) -> int:
    if top1 <= top2:
        return -1
    best = -1
    for r in range(0, 10_000):
        if p**r > (2 + top2 - top1) / 2:
            best = r
        else:
            break
    return best


def test_edit_distance_radius_equals_brute_force_search():
    rng = np.random.default_rng(1)
    cases = [(1.0, 0.0, 0.9), (0.99, 0.01, 0.9), (0.6, 0.4, 0.5), (0.5, 0.5, 0.9), (0.3, 0.6, 0.9)]
    for _ in range(3000):
        a, b = sorted(rng.random(2), reverse=True)
        cases.append((float(a), float(rng.random() * (1 - a)), float(rng.choice([0.5, 0.7, 0.9, 0.95, 0.99]))))
        cases.append((float(a), float(b), float(rng.random() * 0.98 + 0.01)))
    # Exact float edges: thresholds equal to a power of p.
    for r in range(1, 7):  # thresholds t = 0.9^r >= 1/2
        t = 0.9**r
        cases.append((2 - 2 * t, 0.0, 0.9))
    for a, b, p in cases:
        assert edit_distance_radius(a, b, p) == brute_force_radius(a, b, p), (a, b, p)


def test_edit_distance_radius_saturates_at_ln2():
    # With perfect bounds the condition is p^r > 1/2: r_max = ceil(ln 2 / -ln p) - 1.
    for p in (0.5, 0.8, 0.9, 0.97, 0.99):
        assert max_edit_distance_radius(p) == math.ceil(math.log(0.5) / math.log(p)) - 1
    assert max_edit_distance_radius(0.9) == 6


@pytest.mark.parametrize("args", [(1.2, 0.0, 0.9), (0.9, -0.1, 0.9), (0.9, 0.1, 0.0), (0.9, 0.1, 1.0), (float("nan"), 0, 0.9)])
def test_edit_distance_radius_rejects_bad_input(args):
    with pytest.raises(ValueError):
        edit_distance_radius(*args)


def test_gaussian_radius_closed_form():
    assert gaussian_l2_radius(0.5, 0.25) == -1.0
    assert gaussian_l2_radius(0.4, 0.25) == -1.0
    for p in (0.6, 0.9, 0.999):
        assert gaussian_l2_radius(p, 0.5) == pytest.approx(0.5 * sps.norm.ppf(p))
    # general two-bound form
    assert gaussian_l2_radius(0.7, 0.5, top2_upper=0.2) == pytest.approx(0.25 * (sps.norm.ppf(0.7) - sps.norm.ppf(0.2)))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_l2_radius(0.9, 0.0)


def test_certificates_bounds_and_bonferroni_split():
    counts = np.array([3, 190, 7])
    comp = EditDistanceCertificate(p_del=0.9).bounds(counts, 1, 0.05)
    assert comp.top1_lower == pytest.approx(sps.beta.ppf(0.05, 190, 11))
    assert comp.top2_upper == pytest.approx(1 - comp.top1_lower)
    bonf = EditDistanceCertificate(p_del=0.9, top2="bonferroni").bounds(counts, 1, 0.05)
    assert bonf.top1_lower == pytest.approx(sps.beta.ppf(0.025, 190, 11))
    # runner-up (7 of 200) bounded at alpha / (2 * (C - 1)) = 0.0125
    assert bonf.top2_upper == pytest.approx(sps.beta.ppf(1 - 0.0125, 8, 193))
    assert bonf.radius == edit_distance_radius(bonf.top1_lower, bonf.top2_upper, 0.9)
    g = GaussianL2Certificate(sigma=0.5).bounds(np.array([10, 90]), 1, 0.01)
    assert g.radius == pytest.approx(0.5 * sps.norm.ppf(sps.beta.ppf(0.01, 90, 11)))


def test_stratified_bounds_are_the_affine_image_of_the_residual_bounds():
    # mu_c = exact_c + w q_c with q bounded from draws of the residual (w = residual mass)
    counts, exact, w = np.array([3, 90, 7]), np.array([0.05, 0.5, 0.15]), 0.3
    comp = EditDistanceCertificate(p_del=0.9).bounds(counts, 1, 0.05, exact, w)
    assert comp.top1_lower == pytest.approx(0.5 + w * sps.beta.ppf(0.05, 90, 11))
    assert comp.top2_upper == pytest.approx(1 - comp.top1_lower)
    bonf = EditDistanceCertificate(p_del=0.9, top2="bonferroni").bounds(counts, 1, 0.05, exact, w)
    # runner-up: the largest of the per-class upper bounds, here class 2 (exact 0.15 beats class 0's 0.05)
    assert bonf.top2_upper == pytest.approx(0.15 + w * sps.beta.ppf(1 - 0.0125, 8, 93))
    assert bonf.top1_lower == pytest.approx(0.5 + w * sps.beta.ppf(0.025, 90, 11))
    # everything enumerated: exact bounds from no draws
    whole = EditDistanceCertificate(p_del=0.9).bounds(np.zeros(3, dtype=int), 1, 0.05, np.array([0.1, 0.8, 0.1]), 0.0)
    assert (whole.top1_lower, whole.radius) == (0.8, edit_distance_radius(0.8, 0.2, 0.9))
    with pytest.raises(ValueError, match="samples"):
        EditDistanceCertificate(p_del=0.9).bounds(np.zeros(3, dtype=int), 1, 0.05, exact, w)


def test_binomial_test_and_alpha_split():
    assert binomial_test_pvalue(50, 100) == pytest.approx(1.0)
    assert binomial_test_pvalue(90, 100) == pytest.approx(sps.binomtest(90, 100).pvalue)
    assert split_alpha(0.05, 4) == pytest.approx(0.0125)
    with pytest.raises(ValueError):
        split_alpha(0.05, 0)


@pytest.mark.parametrize("rate,radius", [(0.75, 0), (0.75, 2), (0.9, 4), (0.99, 6)])
def test_plain_samples_needed_matches_a_scan_of_clopper_pearson(rate: float, radius: int) -> None:
    # Brute force from the primitives: the first n whose expected-count lower bound reaches the radius.
    cert = EditDistanceCertificate(p_del=0.9)
    first = next((n for n in range(1, 2001)
                  if edit_distance_radius(lo := clopper_pearson_lower(round(rate * n), n, 0.05), 1 - lo, 0.9) >= radius),
                 None)
    assert first is not None
    assert plain_samples_needed(rate, radius, 0.05, cert, 2000) == first


def test_plain_samples_needed_none_when_budget_falls_short_and_rejects_bonferroni() -> None:
    cert = EditDistanceCertificate(p_del=0.9)
    assert plain_samples_needed(0.5, 0, 0.05, cert, 4000) is None  # a coin flip never certifies
    assert plain_samples_needed(0.9, 4, 0.05, cert, 10) is None
    with pytest.raises(ValueError, match="complement"):
        plain_samples_needed(0.9, 1, 0.05, EditDistanceCertificate(p_del=0.9, top2="bonferroni"), 100)
