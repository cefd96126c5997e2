"""The few formulas every certificate depends on.

Everything that turns Monte Carlo counts into a bound or a radius lives here, and only here:

* one-sided Clopper-Pearson bounds on a binomial proportion (Clopper & Pearson, Biometrika 1934);
* the two-sided binomial test used by PREDICT to decide whether to abstain (Cohen et al., ICML 2019,
  Alg. 1 / Hung & Fithian 2019);
* the randomized-deletion edit-distance radius (Huang et al., "RS-Del", NeurIPS 2023, Thm. 1 / Cor. 2;
  Huang et al., "CERT-ED", Findings of EMNLP 2024);
* the Gaussian-smoothing L2 radius (Cohen, Rosenfeld & Kolter, ICML 2019, Thm. 1);
* the certificate objects (:class:`EditDistanceCertificate`, :class:`GaussianL2Certificate`) that the
  engine calls to turn the counts of one input into ``(top1_lower, top2_upper, radius)``.

All probabilities are in [0, 1]; all ``alpha`` are failure probabilities in (0, 1).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
from scipy import special, stats

ABSTAIN = -1


def _check_alpha(alpha: float, name: str = "alpha") -> None:
    if not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {alpha!r}; use e.g. {name}=0.05 for 95% confidence")


def _check_counts(k: int, n: int) -> None:
    if n < 1:
        raise ValueError(f"number of samples n must be >= 1, got {n}")
    if not (0 <= k <= n):
        raise ValueError(f"count k must be in [0, n={n}], got {k}")


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on p from k successes in n Bernoulli(p) trials.

    Returns the largest L with P[Binomial(n, L) >= k] <= alpha, i.e. the alpha quantile of
    Beta(k, n - k + 1); 0 when k == 0. Guarantee: P_p[L(K) <= p] >= 1 - alpha for every p in [0, 1].
    """
    _check_alpha(alpha)
    _check_counts(k, n)
    if k == 0:
        return 0.0
    return float(special.betaincinv(k, n - k + 1, alpha))


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper bound on p from k successes in n trials.

    Returns the smallest U with P[Binomial(n, U) <= k] <= alpha, i.e. the (1 - alpha) quantile of
    Beta(k + 1, n - k); 1 when k == n. Guarantee: P_p[U(K) >= p] >= 1 - alpha.
    """
    _check_alpha(alpha)
    _check_counts(k, n)
    if k == n:
        return 1.0
    return float(special.betaincinv(k + 1, n - k, 1.0 - alpha))


def binomial_test_pvalue(k: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test p-value of H0: success probability == p, from k successes in n trials."""
    _check_counts(k, n)
    return float(stats.binomtest(int(k), int(n), p, alternative="two-sided").pvalue)


_SLACK = 1e-10
"""A pair counts as safe only with room to spare: top1_lower > threshold + _SLACK (complement rule), or
lower(A) > upper(B) + _SLACK (Bonferroni). An exact tie (e.g. a substitution at an unchanged rate with
pA = 1/2 + 1 - p) is unsafe, and rounding in the binomial sums (~1e-13) can otherwise put it on the
certified side (found by the brute-force test, tests/test_variable_rate_certificate.py)."""


def edit_distance_radius(top1_lower: float, top2_upper: float, p_del: float) -> int:
    """Certified edit-distance radius of randomized-deletion smoothing (RS-Del, Huang et al. 2023).

    With every unit (word / character / sub-token) deleted independently with probability ``p_del``,
    the smoothed classifier's top class cannot change under any ``r`` insertions, deletions and
    substitutions of units (Levenshtein distance <= r, counted in the smoothing unit) as long as

        p_del ** r > (2 + top2_upper - top1_lower) / 2            (RS-Del, Cor. 2; CERT-ED Eq. 3)

    where ``top1_lower`` lower-bounds the probability of the top class and ``top2_upper``
    upper-bounds the probability of every other class. Returns the largest such integer r >= 0,
    or -1 (abstain) when ``top1_lower <= top2_upper``. The result holds with the confidence of the
    bounds passed in. The inequality is required with room ``_SLACK`` to spare, so that rounding never
    certifies an exact tie.
    """
    for name, value in (("top1_lower", top1_lower), ("top2_upper", top2_upper)):
        if not (0.0 <= float(value) <= 1.0) or math.isnan(float(value)):
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    if not (0.0 < float(p_del) < 1.0):
        raise ValueError(f"p_del must be in (0, 1), got {p_del!r}; RS-Del uses e.g. p_del=0.9")
    if top1_lower <= top2_upper:
        return ABSTAIN
    threshold = (2.0 + top2_upper - top1_lower) / 2.0  # in [0.5, 1)
    # p**r > t  <=>  r < log t / log p  (log p < 0); start from the closed form, then fix float edges.
    r = max(0, math.ceil(math.log(threshold) / math.log(p_del)) - 1)
    threshold += _SLACK
    while r > 0 and not p_del**r > threshold:
        r -= 1
    while p_del ** (r + 1) > threshold:
        r += 1
    return int(r)


def max_edit_distance_radius(p_del: float) -> int:
    """Largest radius any input can reach at this ``p_del`` (bounds at their best, 1 and 0): ~ln 2 / -ln p_del."""
    return edit_distance_radius(1.0, 0.0, p_del)


def gaussian_l2_radius(top1_lower: float, sigma: float, top2_upper: float | None = None) -> float:
    """Certified L2 radius of Gaussian smoothing (Cohen et al. 2019, Thm. 1), in input units.

    With noise N(0, sigma^2 I) the smoothed top class is constant within L2 radius
    ``sigma / 2 * (Phi^-1(top1_lower) - Phi^-1(top2_upper))``; with the default
    ``top2_upper = 1 - top1_lower`` this is ``sigma * Phi^-1(top1_lower)`` (CERTIFY, Alg. 2).
    Returns -1.0 (abstain) when ``top1_lower <= top2_upper`` (i.e. ``top1_lower <= 0.5`` by default).
    """
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if top2_upper is None:
        top2_upper = 1.0 - top1_lower
    if top1_lower <= top2_upper:
        return float(ABSTAIN)
    return float(sigma / 2.0 * (stats.norm.ppf(top1_lower) - stats.norm.ppf(top2_upper)))


@dataclass(frozen=True)
class Bounds:
    """Certification outcome for one input: bounds at the stated confidence and the radius (-1 = abstain)."""

    top1_lower: float
    top2_upper: float
    radius: float


Top2Rule = Literal["complement", "bonferroni"]


class _Certificate:
    """Turns estimation counts into bounds and a radius.

    ``top2="complement"`` (default, valid for any number of classes): ``top2_upper = 1 - top1_lower``
    from one Clopper-Pearson bound at level ``alpha``.
    ``top2="bonferroni"`` (the CERT-ED protocol): ``top1_lower`` at ``alpha / 2`` and ``top2_upper``
    = the upper bound of the largest other count at ``alpha / (2 (C - 1))``. By a union bound over the
    C - 1 other classes every other class is below ``top2_upper`` with probability >= 1 - alpha / 2, so
    both bounds hold together with probability >= 1 - alpha for any number of classes C (for C = 2 this
    is exactly CERT-ED's alpha / 2 split).

    Stratified estimation (``exact``/``residual``): when part of the noise distribution was enumerated
    exactly, the class probabilities split as ``mu_c = exact_c + residual * q_c`` where ``exact_c`` is
    the known mass of the enumerated noisy inputs the classifier sends to c, ``residual`` the mass of
    the rest, and ``q_c`` the probability of c given a noisy input from the rest (Cochran, "Sampling
    Techniques", stratified sampling with census strata). ``counts`` then holds i.i.d. draws from the
    rest, the Clopper-Pearson bounds above bound ``q_c``, and the affine map carries them to ``mu_c``
    with the same confidence. ``residual = 0`` (everything enumerated) gives exact bounds from no draws.
    """

    top2: Top2Rule = "complement"

    def radius(self, top1_lower: float, top2_upper: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def bounds(
        self,
        counts: Sequence[int] | np.ndarray,
        top: int,
        alpha: float,
        exact: Sequence[float] | np.ndarray | None = None,
        residual: float = 1.0,
    ) -> Bounds:
        """Bounds and radius for class ``top`` from estimation ``counts`` (one entry per class).

        ``exact`` (per-class enumerated mass) and ``residual`` (the mass left to sampling, in [0, 1])
        give the stratified bounds described in the class docstring; by default everything is sampled.
        """
        counts = np.asarray(counts, dtype=np.int64)
        n = int(counts.sum())
        exact = np.zeros(counts.size) if exact is None else np.asarray(exact, dtype=float)
        if not (0.0 <= residual <= 1.0) or exact.shape != counts.shape:
            raise ValueError(f"need residual in [0, 1] and one exact mass per class, got {residual!r}, {exact!r}")
        if residual > 0.0 and n == 0:
            raise ValueError("number of samples n must be >= 1 while part of the distribution is sampled")

        def bound(c: int, level: float, one_sided: Callable[[int, int, float], float]) -> float:
            """exact_c + residual * (Clopper-Pearson bound on q_c): the affine map of the class docstring."""
            sampled = one_sided(int(counts[c]), n, level) if residual > 0.0 else 0.0
            return min(1.0, float(exact[c]) + residual * sampled)

        others = [c for c in range(counts.size) if c != top]
        if self.top2 == "complement":
            lower = bound(top, alpha, clopper_pearson_lower)
            upper = 1.0 - lower
        elif self.top2 == "bonferroni":
            lower = bound(top, alpha / 2.0, clopper_pearson_lower)
            upper = max((bound(c, alpha / (2.0 * len(others)), clopper_pearson_upper) for c in others), default=0.0)
        else:
            raise ValueError(f"top2 must be 'complement' or 'bonferroni', got {self.top2!r}")
        return Bounds(lower, upper, self.radius(lower, upper))


@dataclass(frozen=True)
class EditDistanceCertificate(_Certificate):
    """RS-Del edit-distance certificate at deletion probability ``p_del`` (radius in smoothing units)."""

    p_del: float = 0.9
    top2: Top2Rule = "complement"

    def radius(self, top1_lower: float, top2_upper: float) -> int:
        return edit_distance_radius(top1_lower, top2_upper, self.p_del)


@dataclass(frozen=True)
class GaussianL2Certificate(_Certificate):
    """Cohen et al. L2 certificate at Gaussian noise level ``sigma`` (radius in input units)."""

    sigma: float = 0.25
    top2: Top2Rule = "complement"

    def radius(self, top1_lower: float, top2_upper: float) -> float:
        return gaussian_l2_radius(top1_lower, self.sigma, top2_upper)


def split_alpha(alpha: float, looks: int) -> float:
    """Per-look level for ``looks`` sequential looks with a Bonferroni union bound.

    If each look's bound fails with probability <= alpha / K, the probability that the bound at *any*
    look fails is <= K * alpha / K = alpha (union bound), so the bound reported at whichever look a
    data-dependent stopping rule picks holds with probability >= 1 - alpha.
    """
    _check_alpha(alpha)
    if looks < 1:
        raise ValueError(f"looks must be >= 1, got {looks}")
    return alpha / looks


def split_alpha_weighted(alpha: float, weights: Sequence[float]) -> list[float]:
    """Per-look levels ``alpha * w_k / sum(w)`` for sequential looks with an unequal Bonferroni split.

    The levels sum to ``alpha``, so by the same union bound as :func:`split_alpha` all looks' bounds
    hold together with probability >= 1 - alpha, whichever look a stopping rule picks. Spending little
    on early looks (which only need to certify near-unanimous inputs) keeps the last look's bound
    almost as tight as a single look at ``alpha``.
    """
    _check_alpha(alpha)
    w = np.asarray(list(weights), dtype=float)
    if w.size < 1 or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"alpha weights must be positive numbers, one per look, got {list(weights)!r}")
    return [float(alpha * v / w.sum()) for v in w]


def plain_samples_needed(rate: float, radius: float, alpha: float, certificate: _Certificate, n_max: int) -> int | None:
    """Fewest i.i.d. samples n <= ``n_max`` with which one Clopper-Pearson bound at ``alpha`` certifies at
    least ``radius`` when the top class gets exactly its expected count, k = round(rate * n).

    ``rate`` is the top class's probability under the noise, in [0, 1]; the certificate's complement rule
    gives ``top2_upper = 1 - top1_lower``. A planning figure, not a guarantee: a real count falls below its
    expectation about half the time, and a real protocol also spends selection samples and splits alpha
    over looks, so it needs more. Returns None when ``n_max`` samples fall short.
    """
    _check_alpha(alpha)
    if certificate.top2 != "complement":
        raise ValueError(f"plain_samples_needed supports top2='complement' certificates, got {certificate.top2!r}")
    if not 0.0 <= rate <= 1.0 or n_max < 1:
        raise ValueError(f"need rate in [0, 1] and n_max >= 1, got rate={rate!r}, n_max={n_max!r}")
    ns = np.arange(1, int(n_max) + 1)
    ks = np.rint(rate * ns)
    lowers = np.where(ks > 0, special.betaincinv(np.maximum(ks, 1.0), ns - ks + 1.0, alpha), 0.0)
    reached = np.fromiter((certificate.radius(lo, 1.0 - lo) >= radius for lo in lowers), dtype=bool, count=ns.size)
    return int(ns[np.argmax(reached)]) if reached.any() else None


# ---------------------------------------------------------------------------------------------------
# Variable-rate (length-adaptive) deletion: the edit-distance certificate when p_del depends on length
# ---------------------------------------------------------------------------------------------------

DEFAULT_MAX_RADIUS = 100
"""Largest radius :func:`variable_rate_radius` searches by default (a returned radius equal to the cap
means "at least the cap"): with a schedule whose rate grows with the length, insertions can make the
certified radius unbounded in principle."""


def _check_bounds(top1_lower: float, top2_upper: float) -> None:
    for name, value in (("top1_lower", top1_lower), ("top2_upper", top2_upper)):
        if not (0.0 <= float(value) <= 1.0) or math.isnan(float(value)):
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _rate(rate: Callable[[int], float], length: int) -> float:
    p = float(rate(int(length)))
    if not 0.0 < p < 1.0:
        raise ValueError(f"the rate schedule gives p_del={p!r} at length {length}; certification needs p_del in (0, 1)")
    return p


def _binomial_window(m: np.ndarray, theta: np.ndarray) -> tuple[int, int]:
    """Kept counts j outside [lo, hi] have Binomial(m, theta) mass < 1e-13 for every (m, theta) given
    (Bernstein's inequality at a deviation of 8 sd + 20). The certificate is sound whatever the window
    (mass outside it is charged to the free items, costing at most that mass); the window keeps it fast."""
    sd = np.sqrt(m * theta * (1.0 - theta))
    lo = np.floor(m * theta - 8.0 * sd - 20.0).min()
    hi = np.ceil(m * theta + 8.0 * sd + 20.0).max()
    return int(max(0.0, lo)), int(min(m.max(), hi))


_LOG_FACTORIAL = np.zeros(1)


def _log_factorial(n: int) -> np.ndarray:
    """The table log(k!) for k = 0..n (grown on demand, shared)."""
    global _LOG_FACTORIAL
    if _LOG_FACTORIAL.size <= n:
        _LOG_FACTORIAL = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 2 * n + 2, dtype=float)))])
    return _LOG_FACTORIAL


_BLOCK = 4  # shells per cached block: [0, 4), [4, 8), ...


@dataclass(frozen=True)
class _Levels:
    """The knapsack items of every pair (a, b) with max(a, b) in one block of shells and a <= length.

    Row (a, b): with m = length - a, L' = length - a + b, p = rate(length), q = rate(L'),
    ``x[j] = p^a Binom(j; m, 1-p)`` and ``y[j] = q^b Binom(j; m, 1-q)`` over a window of kept counts j,
    each row ordered by increasing likelihood ratio y/x. Mass missing from a row of ``x`` (the x-only
    item 1 - p^a, and window tails) and from ``y`` (the x'-only item 1 - q^b, and tails) is free.
    ``shell[row] = max(a, b)``: the fewest edits of a split with that (a, b).
    """

    x: np.ndarray
    y: np.ndarray
    shell: np.ndarray
    shells: range


def _block_pairs(length: int, shells: range) -> tuple[np.ndarray, np.ndarray]:
    a: list[int] = []
    b: list[int] = []
    for t in shells:
        na = min(t, length) + 1  # pairs (a, t), a <= min(t, length)
        a += range(na)
        b += [t] * na
        if 0 < t <= length:  # pairs (t, b), b < t
            a += [t] * t
            b += range(t)
    return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)


@functools.lru_cache(maxsize=64)
def _levels(rate: Callable[[int], float], length: int, block: int) -> _Levels:
    shells = range(block * _BLOCK, (block + 1) * _BLOCK)
    a, b = _block_pairs(length, shells)
    m = length - a
    p = _rate(rate, length)
    q = np.array([_rate(rate, int(n)) for n in range(length - min(shells[-1], length), length + shells[-1] + 1)])
    q = q[m + b - (length - min(shells[-1], length))]
    lo, hi = _binomial_window(np.concatenate([m, m]).astype(float), np.concatenate([np.full(m.size, 1.0 - p), 1.0 - q]))
    j = np.arange(lo, hi + 1)[None, :]
    mm = m[:, None]
    valid = j <= mm
    lf = _log_factorial(length + shells[-1])
    log_comb = lf[mm] - lf[j] - lf[np.where(valid, mm - j, 0)]
    x = np.where(valid, np.exp(log_comb + j * math.log1p(-p) + (length - j) * math.log(p)), 0.0)
    log_y = log_comb + j * np.log1p(-q)[:, None] + ((m + b)[:, None] - j) * np.log(q)[:, None]
    y = np.where(valid, np.exp(log_y), 0.0)
    flip = q > p  # y/x is proportional to rho^j, rho = p(1-q) / (q(1-p)): increasing in j iff q < p
    x[flip] = x[flip, ::-1]
    y[flip] = y[flip, ::-1]
    for arr in (x, y):
        arr.setflags(write=False)
    return _Levels(x, y, np.maximum(a, b) - shells[0], shells)


def _crossing(cum: np.ndarray, item: np.ndarray, other_cum: np.ndarray, other_item: np.ndarray, level: np.ndarray,
              k: np.ndarray) -> np.ndarray:
    """Along each row's greedy path, the ``other`` coordinate where ``cum`` reaches ``level`` inside item
    ``k`` (linear interpolation within the item; an item of zero size contributes its whole ``other``)."""
    rows = np.arange(cum.shape[0])
    kk = np.minimum(k, cum.shape[1] - 1)
    size, other = item[rows, kk], other_item[rows, kk]
    before, other_before = cum[rows, kk] - size, other_cum[rows, kk] - other
    slope = np.divide(other, size, out=np.zeros_like(other), where=size > 0)
    return other_before + (level - before) * slope


def _lower_top1(lv: _Levels, top1_lower: float) -> np.ndarray:
    """Per row: the least x'-mass of a fractional set with x-mass >= top1_lower (free x-mass first, then
    the levels by increasing ratio)."""
    need = top1_lower - (1.0 - lv.x.sum(axis=1))
    cum_x, cum_y = np.cumsum(lv.x, axis=1), np.cumsum(lv.y, axis=1)
    k = (cum_x < need[:, None]).sum(axis=1)
    inside = _crossing(cum_x, lv.x, cum_y, lv.y, need, k)
    return np.where(need <= 0.0, 0.0, np.where(k >= lv.x.shape[1], cum_y[:, -1], inside))


def _upper_top2(lv: _Levels, top2_upper: float) -> np.ndarray:
    """Per row: the free x'-mass plus the largest x'-mass of levels with x-mass <= top2_upper (levels by
    decreasing ratio)."""
    xr, yr = lv.x[:, ::-1], lv.y[:, ::-1]
    cum_x, cum_y = np.cumsum(xr, axis=1), np.cumsum(yr, axis=1)
    k = (cum_x <= top2_upper).sum(axis=1)
    inside = _crossing(cum_x, xr, cum_y, yr, np.full(k.size, float(top2_upper)), k)
    return 1.0 - cum_y[:, -1] + np.where(k >= xr.shape[1], cum_y[:, -1], inside)


def _shell_max(lv: _Levels, values: np.ndarray) -> np.ndarray:
    """Per shell of the block: the largest value over its rows (-inf for a shell with no rows)."""
    out = np.full(len(lv.shells), -math.inf)
    np.maximum.at(out, lv.shell, values)
    return out


@functools.lru_cache(maxsize=16384)
def _complement_thresholds(rate: Callable[[int], float], length: int, block: int) -> np.ndarray:
    """Complement rule: shell t (every pair with max(a, b) = t) is safe iff top1_lower > entry t, the
    largest over its pairs of the top1_lower at which the lower bound on the top class at x' is 1/2."""
    lv = _levels.__wrapped__(rate, length, block)
    cum_x, cum_y = np.cumsum(lv.x, axis=1), np.cumsum(lv.y, axis=1)
    k = np.argmax(cum_y > 0.5, axis=1)
    h = _crossing(cum_y, lv.y, cum_x, lv.x, np.full(k.size, 0.5), k)
    tau = np.where(cum_y[:, -1] > 0.5, 1.0 - cum_x[:, -1] + h, math.inf)
    out = _shell_max(lv, tau)
    out.setflags(write=False)
    return out


def _block_unsafe(rate: Callable[[int], float], length: int, top1_lower: float, top2_upper: float,
                  block: int) -> np.ndarray:
    """Per shell of ``block``: True when some pair of the shell is unsafe (lower bound <= upper bound,
    within the rounding slack)."""
    if top2_upper == 1.0 - top1_lower:
        return ~(top1_lower > _complement_thresholds(rate, length, block) + _SLACK)
    lv = _levels(rate, length, block)
    margin = _lower_top1(lv, top1_lower) - _upper_top2(lv, top2_upper)
    return _shell_max(lv, -margin) >= -_SLACK


def _locally_constant(rate: Callable[[int], float], length: int, reach: int) -> bool:
    """True when the rate at every length within ``reach`` of ``length`` equals the rate at ``length``."""
    p = rate(length)
    return all(rate(n) == p for n in range(max(0, length - reach), length + reach + 1))


def variable_rate_radius(
    top1_lower: float,
    top2_upper: float,
    length: int,
    rate: Callable[[int], float] | float,
    max_radius: int = DEFAULT_MAX_RADIUS,
) -> int:
    """Certified edit-distance radius of randomized deletion whose rate depends on the input's length.

    Setting: the input x has ``length`` = L units; the smoothing deletes each unit independently with
    probability p = rate(L), and any other input x' with its own rate rate(|x'|) (AdaptDel, Huang,
    Marchant, Ohrimenko & Rubinstein, NeurIPS 2025, arXiv 2511.09316: p(L) = max(p_lb, 1 - k/L) and
    binned variants; see :mod:`robusttext.certificate.rates`). ``top1_lower`` (pA) lower-bounds the smoothed
    probability of the top class A at x, ``top2_upper`` (pB) upper-bounds that of every other class at x
    (both rules of :class:`_Certificate`: complement pB = 1 - pA, or Bonferroni). Returns the largest r
    such that for EVERY x' within Levenshtein distance r, every base classifier consistent with the
    bounds at x gives A a larger smoothed probability at x' than any other class; -1 (abstain) when
    pA <= pB; ``max_radius`` when every radius up to the cap is safe (the result then means ">= cap").
    Holds with the confidence of the bounds passed in; exact up to floating-point rounding, on the safe
    side: a pair is certified only with a margin above 1e-10, so ties are never certified.

    Derivation (RS-Del's proof of Thm. 1, Huang et al. NeurIPS 2023, with a second rate). Fix x' and an
    alignment with s substitutions, i insertions, d deletions; a = s + d units of x and b = s + i units
    of x' are outside the common subsequence c, which has m = L - a units; L' = L - d + i, q = rate(L').
    Let E (E') be the event that the noise deletes all a (b) edited units of x (x'): P(E) = p^a,
    P(E') = q^b. Given E the output is a subsequence z of c in which c's units were deleted at rate p;
    the law of z given E' is the same with rate q. Both laws give a z with j kept units the probability
    (number of ways c yields z) * (1-rate)^j rate^(m-j), so the likelihood ratio of the two depends on j
    only. Grouping z by j gives "levels" with masses X_j = p^a Binom(j; m, 1-p) at x and
    Y_j = q^b Binom(j; m, 1-q) at x', plus an item of mass 1 - p^a at x that is charged nothing at x'
    (not-E outputs), and an item of mass 1 - q^b at x' that is charged nothing at x (not-E' outputs,
    which only x' can be assumed to produce). Any base classifier f has mu_A(x) <= (1 - p^a) + sum_j X_j
    f_j and mu_A(x') >= sum_j Y_j f_j (f_j in [0, 1]: the share of level j sent to A), so by the
    Neyman-Pearson lemma (a fractional knapsack) the least mu_A(x') given mu_A(x) >= pA takes the free
    item first and then the levels by increasing Y_j / X_j; the largest mu_B(x') given mu_B(x) <= pB
    takes the x'-only item in full and the levels by decreasing ratio. Y_j / X_j is proportional to
    rho^j with rho = p(1-q) / (q(1-p)), so each knapsack is one pass over j in a fixed order. The split
    is safe iff lower(A) > upper(B); with pB = 1 - pA the two bounds sum to 1, so it is safe iff
    lower(A) > 1/2, i.e. iff pA exceeds a threshold that depends on (rate, L, a, b) only (cached).

    Radius. Both bounds depend on the split only through (a, b) (L' = L - a + b), and the cheapest split
    with given (a, b) costs max(a, b) edits (s = min(a, b)). So radius r is certified iff every pair with
    max(a, b) <= r and a <= L is safe; the result is (first unsafe shell max(a, b) = t) - 1, found by
    checking every shell t = 0, 1, ... in turn (no monotonicity is assumed, and the pure-deletion pairs
    (a, 0) are included). Binomial mass outside a window of kept counts (< 3e-20) is charged to the
    free items, which only lowers lower(A) and raises upper(B).

    Constant rate. When the rate is the same at every length within r0 + 1 of L, where r0 is RS-Del's
    closed form :func:`edit_distance_radius` (p^r > (2 + pB - pA) / 2, RS-Del Cor. 2), the knapsack has
    the closed forms lower = p^(b-a) max(0, pA - 1 + p^a), upper = 1 - p^b + p^(b-a) min(pB, p^a),
    substitutions (a = b = t) are the worst pair of each shell, and the result is r0 exactly (capped at
    ``max_radius``), returned without the search. (For inputs with L <= r0 the search could certify a
    little more, since a <= L excludes t substitutions; r0 stays sound there and keeps fixed-rate runs
    identical to :func:`edit_distance_radius`.)

    Cost: the complement rule looks up one cached threshold per shell (O(radius) per call after the
    first call for a (rate, L)); the Bonferroni rule evaluates the shells' cached level tables.
    """
    from .rates import as_schedule

    _check_bounds(top1_lower, top2_upper)
    length = int(length)
    if length < 0 or int(max_radius) < 0:
        raise ValueError(f"length and max_radius must be >= 0, got length={length}, max_radius={max_radius}")
    max_radius = int(max_radius)
    if isinstance(rate, (int, float)) and not isinstance(rate, bool):
        rate = as_schedule(rate)
    if top1_lower <= top2_upper:
        return ABSTAIN
    p = _rate(rate, length)
    r0 = min(edit_distance_radius(top1_lower, top2_upper, p), max_radius)
    if _locally_constant(rate, length, r0 + 1):
        return r0
    for block in range(max_radius // _BLOCK + 1):
        unsafe = _block_unsafe(rate, length, top1_lower, top2_upper, block)
        if unsafe.any():
            return min(max_radius, block * _BLOCK + int(np.argmax(unsafe)) - 1)
    return max_radius


def max_variable_rate_radius(rate: Callable[[int], float], length: int, max_radius: int = DEFAULT_MAX_RADIUS) -> int:
    """Largest radius an input of ``length`` units can reach under ``rate`` (bounds at their best, 1 and 0)."""
    return variable_rate_radius(1.0, 0.0, length, rate, max_radius)


@dataclass(frozen=True)
class VariableRateCertificate(_Certificate):
    """Edit-distance certificate of one input of ``length`` units smoothed with the schedule ``rate``
    (:func:`variable_rate_radius`; radius in smoothing units). Build one per input:
    ``VariableRateCertificate(rate=schedule, length=len(x)).bounds(counts, top, alpha)``. A radius equal
    to ``max_radius`` means "at least max_radius" (:meth:`capped`)."""

    rate: Callable[[int], float] = None  # type: ignore[assignment]
    length: int = 0
    top2: Top2Rule = "complement"
    max_radius: int = DEFAULT_MAX_RADIUS

    def __post_init__(self) -> None:
        if self.rate is None or not callable(self.rate):
            raise ValueError(f"rate must be a rate schedule (robusttext.certificate.rates), got {self.rate!r}")
        if getattr(self.rate, "certifiable", True) is False:
            raise ValueError(f"rate {self.rate!r} is training-only; certify with a fixed, adaptive or binned schedule")
        if int(self.length) < 0:
            raise ValueError(f"length must be >= 0 units, got {self.length!r}")

    def radius(self, top1_lower: float, top2_upper: float) -> int:
        return variable_rate_radius(top1_lower, top2_upper, self.length, self.rate, self.max_radius)

    def capped(self, radius: float) -> bool:
        """True when ``radius`` hit the search cap (the true radius may be larger)."""
        return radius >= self.max_radius


def edit_ball_log10_cardinality(length: int, radius: int, vocab_size: int) -> float:
    """log10 of the "certified region cardinality" of the CERT-ED / AdaptDel papers for an input of
    ``length`` units, an edit-distance ``radius`` and a vocabulary of ``vocab_size`` units:

        V(n, r, K) = sum_{i=0}^{r} (K - 1)^i  sum_{j=i-r}^{r} C(n + j, i)

    (term (i, j): strings of length n + j with i changed positions). An approximate count used to compare
    certificates, not an exact ball size (which depends on the string): compared with brute-force
    enumeration in the tests, it is never above the size of the largest ball around a length-n string
    and is exact for n <= 1. ``radius = -1`` (abstain) gives -inf; radius 0 gives 0 (the input itself).
    """
    n, r, k = int(length), int(radius), int(vocab_size)
    if n < 0 or k < 2 or r < -1:
        raise ValueError(f"need length >= 0, radius >= -1 and vocab_size >= 2, got {length!r}, {radius!r}, {vocab_size!r}")
    if r < 0:
        return -math.inf
    terms = [
        i * math.log(k - 1) + _log_comb(n + j, i) for i in range(r + 1) for j in range(i - r, r + 1) if 0 <= i <= n + j
    ]
    return float(special.logsumexp(terms) / math.log(10.0))


def _log_comb(n: int, k: int) -> float:
    return float(special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1))
