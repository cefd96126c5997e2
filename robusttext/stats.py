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


def edit_distance_radius(top1_lower: float, top2_upper: float, p_del: float) -> int:
    """Certified edit-distance radius of randomized-deletion smoothing (RS-Del, Huang et al. 2023).

    With every unit (word / character / sub-token) deleted independently with probability ``p_del``,
    the smoothed classifier's top class cannot change under any ``r`` insertions, deletions and
    substitutions of units (Levenshtein distance <= r, counted in the smoothing unit) as long as

        p_del ** r > (2 + top2_upper - top1_lower) / 2            (RS-Del, Cor. 2; CERT-ED Eq. 3)

    where ``top1_lower`` lower-bounds the probability of the top class and ``top2_upper``
    upper-bounds the probability of every other class. Returns the largest such integer r >= 0,
    or -1 (abstain) when ``top1_lower <= top2_upper``. The result holds with the confidence of the
    bounds passed in.
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
