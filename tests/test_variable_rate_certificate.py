"""Soundness of the variable-rate edit-distance certificate (:func:`robusttext.certificate.stats.variable_rate_radius`)
by brute force (issue 16).

The reference, built here from first principles and sharing no code with the certificate:

* x = (0, 1, ..., L-1) (distinct symbols) and EVERY x' within Levenshtein distance 3 of it, found by a
  breadth-first search over single edits (delete, insert, substitute) whose inserted and substituted
  symbols are symbols of x or FRESH symbols (canonicalised by order of first appearance, so x' that
  differ only in the names of fresh symbols are listed once); the distance of each x' is then recomputed
  with the Levenshtein dynamic programme.
* The exact noise distributions: x at rate p = rate(L), x' at its own rate q = rate(|x'|); every unit
  deleted independently; the outcome is the tuple of kept units.
* The exact worst-case base classifier of each pair (x, x') as a linear programme over the outcomes z:
  per z a share f_A(z) sent to the top class A and f_B(z) to a runner-up B, f_A + f_B <= 1 (the rest goes
  to further classes, each as small as we like, so every other class meets its bound at x: this is the
  worst case for any number of classes and covers every runner-up by symmetry), subject to
  mu_A(x) >= pA and mu_B(x) <= pB; minimise mu_A(x') - mu_B(x'). x' is unsafe when the minimum is <= 0:
  a tie counts as unsafe, the strict reading for the certificate (which claims A strictly wins). The
  minimum is computed in floating point; whenever it lies within TOL = 1e-11 of 0 (float errors are
  ~1e-15) it is recomputed EXACTLY in rational arithmetic from the same float inputs (pA, pB and the
  schedule's rates), so near-ties are decided exactly, never by rounding. The brute-force radius is the
  largest r <= 3 with every x' at distance <= r safe (-1 when pA <= pB).

Two exact reductions keep it fast; each is checked against the literal version on small inputs:

* Signature. An outcome of x is a subset of x's units, P_x(z) = p^(L-k) (1-p)^k (k = |z|); an outcome of
  x' that is also an outcome of x (a strictly increasing tuple of x's symbols) has P_x'(z) = c(z)
  q^(n-k) (1-q)^k, c(z) the number of ways x' yields z; every other outcome of x' (x'-only) has P_x = 0.
  Outcomes with proportional (P_x, P_x') can be merged without changing the LP (average f over them), so
  the LP depends on x' only through n = |x'| and the multiset of (k, c(z)) over the subsets z of x's
  units. All x' with the same signature are solved once (per schedule and (pA, pB)).
* Closed form of the LP. Let knapA(pA) = min mu_A(x') s.t. mu_A(x) >= pA (fractional knapsack: outcomes
  by increasing P_x'/P_x) and knapB(pB) = max mu_B(x') s.t. mu_B(x) <= pB (the x'-only mass, then by
  decreasing ratio). With pB <= 1 - pA the two greedy solutions use disjoint outcome mass, so
  f_A + f_B <= 1 does not bind and the LP equals knapA(pA) - knapB(pB); with pB >= 1 - pA the constraint
  mu_B(x) <= pB is implied by f_A + f_B <= 1 and the LP equals its value at pB = 1 - pA. So
  LP(pA, pB) = knapA(pA) - knapB(min(pB, 1 - pA)); for the complement rule (pB = 1 - pA) it is
  2 knapA(pA) - 1. ``test_reference_equals_the_literal_linear_programme`` checks this against
  scipy's linprog on the literal outcome distributions.

Set ROBUSTTEXT_SOUNDNESS_EXTENDED=1 for a bigger grid (length 7, more schedules and bounds).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from scipy.optimize import linprog

from robusttext.certificate.rates import AdaptiveRate, BinnedRate, CallableRate, FixedRate
from robusttext.certificate.stats import edit_distance_radius, variable_rate_radius

EXTENDED = os.environ.get("ROBUSTTEXT_SOUNDNESS_EXTENDED", "") not in ("", "0")
MAX_R = 3  # radii checked: every x' within edit distance MAX_R is enumerated
LENGTHS = tuple(range(1, 8 if EXTENDED else 7))
TOL = 1e-11  # float margins within TOL of 0 are recomputed exactly (fractions); unsafe iff exact margin <= 0
SLACK = 1e-10  # the re-derived certificate (like stats.py) certifies a pair only when lower(A) > upper(B) + SLACK
CAP = MAX_R + 1  # max_radius passed to the certificate: min(cert, MAX_R) is what is compared


# ------------------------------------------------------------------------------------------------
# Schedules: fixed, adaptive, binned and irregular (non-monotone) ones
# ------------------------------------------------------------------------------------------------

_MID = (0.7, 0.6, 0.8, 0.65, 0.85, 0.6, 0.8, 0.7, 0.9, 0.6, 0.75, 0.85)
_HIGH = (0.9, 0.75, 0.95, 0.8, 0.9, 0.7, 0.92, 0.85, 0.95, 0.8, 0.9, 0.85)


def _irregular_mid(n: int) -> float:
    return _MID[min(n, len(_MID) - 1)]


def _irregular_high(n: int) -> float:
    return _HIGH[min(n, len(_HIGH) - 1)]


def _steps(n: int) -> float:  # a big drop from length 3 to 2, big rise from 5 to 6
    return 0.85 if n >= 6 else (0.6 if n >= 3 else 0.3)


SCHEDULES = [
    FixedRate(0.7),
    FixedRate(0.8),
    AdaptiveRate(k=2, p_lb=0.3),  # 0.3 up to L=2, then 1/3, .5, .6, .67, ... (grows with L)
    AdaptiveRate(k=1, p_lb=0.6),  # .6, .6, .67, .75, .8, .83, ... (grows towards 1: insertions help)
    BinnedRate(edges=(2, 4, 6), values=(0.5, 1.0, 1.5, 2.0)),  # .5 .5 .5 .67 .62 .7 .67 .71 ... (non-monotone)
    BinnedRate(edges=(3, 6), values=(0.2, 0.6, 1.0)),  # .8 .8 .9 .8 .85 .88 .83 .86 ...
    CallableRate(_irregular_mid, name="irregular-mid"),
    CallableRate(_irregular_high, name="irregular-high"),
] + ([FixedRate(0.9), CallableRate(_steps, name="steps"), AdaptiveRate(k=3, p_lb=0.5)] if EXTENDED else [])

COMPLEMENT = None  # pB spec of the complement rule (pB = 1 - pA)
PB_SPECS = [COMPLEMENT, 0.01, 0.1, 0.3, 0.45] + ([0.2, 0.49] if EXTENDED else [])


# ------------------------------------------------------------------------------------------------
# Enumeration of x' and exact noise distributions (literal versions)
# ------------------------------------------------------------------------------------------------


def _canonical(seq: tuple[int, ...], length: int) -> tuple[int, ...]:
    """Fresh symbols (>= length) renamed length, length+1, ... by order of first appearance."""
    if max(seq, default=-1) < length:
        return seq
    names: dict[int, int] = {}
    return tuple(s if s < length else names.setdefault(s, length + len(names)) for s in seq)


def _single_edits(seq: tuple[int, ...], length: int) -> set[tuple[int, ...]]:
    fresh = sorted({s for s in seq if s >= length})
    symbols = [*range(length), *fresh, length + len(fresh)]  # x's symbols, the fresh ones in use, a new one
    out = set()
    for i in range(len(seq)):
        out.add(seq[:i] + seq[i + 1 :])
        out.update(seq[:i] + (s,) + seq[i + 1 :] for s in symbols if s != seq[i])
    for i in range(len(seq) + 1):
        out.update(seq[:i] + (s,) + seq[i:] for s in symbols)
    return {_canonical(t, length) for t in out}


@functools.lru_cache(maxsize=None)
def neighbourhood(length: int, depth: int = MAX_R) -> dict[tuple[int, ...], int]:
    """Every x' (fresh symbols canonical) within ``depth`` single edits of x = (0..length-1) -> BFS level."""
    x = tuple(range(length))
    level, frontier = {x: 0}, {x}
    for d in range(1, depth + 1):
        new = set()
        for s in frontier:
            for t in _single_edits(s, length):
                if t not in level:
                    level[t] = d
                    new.add(t)
        frontier = new
    return level


def levenshtein(a: tuple, b: tuple) -> int:
    prev = list(range(len(b) + 1))
    for i, u in enumerate(a, 1):
        cur = [i]
        for j, v in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (u != v)))
        prev = cur
    return prev[-1]


def noise_distribution(seq: tuple, q: float) -> dict[tuple, float]:
    """Exact law of the kept subsequence when each unit of ``seq`` is deleted independently w.p. ``q``."""
    out: dict[tuple, float] = defaultdict(float)
    n = len(seq)
    for keep in itertools.product((False, True), repeat=n):
        k = sum(keep)
        out[tuple(s for s, kept in zip(seq, keep) if kept)] += (1.0 - q) ** k * q ** (n - k)
    return dict(out)


def lp_margin(px: dict, py: dict, pA: float, pB: float, runner_up_classes: int = 1) -> float:
    """min mu_A(x') - mu_B(x') over base classifiers with mu_A(x) >= pA and mu_c(x) <= pB for every c != A.

    Variables per outcome z: f_A(z), f_B(z) (and, with ``runner_up_classes=2``, an explicit third class C
    with its own bound), sum <= 1 (the rest goes to arbitrarily many classes of negligible mass).
    """
    zs = sorted(set(px) | set(py))
    nz, nc = len(zs), 1 + runner_up_classes
    x = np.array([px.get(z, 0.0) for z in zs])
    y = np.array([py.get(z, 0.0) for z in zs])
    c = np.concatenate([y, -y] + [np.zeros(nz)] * (nc - 2))
    rows = [np.concatenate([-x] + [np.zeros(nz)] * (nc - 1))]  # -mu_A(x) <= -pA
    rhs = [-pA]
    for k in range(1, nc):  # mu_c(x) <= pB
        rows.append(np.concatenate([x if j == k else np.zeros(nz) for j in range(nc)]))
        rhs.append(pB)
    a_ub = np.vstack(rows + [np.hstack([np.eye(nz)] * nc)])  # per z: sum of shares <= 1
    res = linprog(c, A_ub=a_ub, b_ub=np.concatenate([rhs, np.ones(nz)]), bounds=(0.0, 1.0), method="highs",
                  options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    assert res.status == 0, res.message
    return float(res.fun)


# ------------------------------------------------------------------------------------------------
# Fast exact reference: signatures and the closed form of the LP
# ------------------------------------------------------------------------------------------------


def subset_counts(seqs: np.ndarray, length: int) -> np.ndarray:
    """For sequences ``seqs`` (N x n, fresh symbols >= length): out[i, code] = the number of ways seqs[i]
    yields the strictly increasing tuple of x's symbols whose set has bitmask ``code`` (exact, by
    enumerating all 2^n kept-position subsets: a subset is kept when its symbols are x's and increase)."""
    num, n = seqs.shape
    size = 1 << n
    cols = np.ascontiguousarray(seqs.T).astype(np.int16)  # n x N: one contiguous row per position
    valid = np.zeros((size, num), dtype=bool)
    code = np.zeros((size, num), dtype=np.int16)
    last = np.full((size, num), -1, dtype=np.int16)
    valid[0] = True
    bit = np.where(cols < length, np.left_shift(1, np.minimum(cols, 14)), 0).astype(np.int16)
    for mask in range(1, size):
        hb = mask.bit_length() - 1
        rest = mask ^ (1 << hb)
        sym = cols[hb]
        valid[mask] = valid[rest] & (sym < length) & (last[rest] < sym)
        code[mask] = code[rest] | bit[hb]
        last[mask] = sym
    flat = (np.arange(num, dtype=np.int64)[None, :] * (1 << length) + code)[valid]
    return np.bincount(flat, minlength=num << length).reshape(num, 1 << length)


def levenshtein_to_x(seqs: np.ndarray, length: int) -> np.ndarray:
    """Levenshtein distance of each row of ``seqs`` (N x n) to x = (0..length-1): the DP, vectorised."""
    num, n = seqs.shape
    prev = np.tile(np.arange(n + 1), (num, 1))
    for i in range(1, length + 1):
        cur = np.empty_like(prev)
        cur[:, 0] = i
        for j in range(1, n + 1):
            cur[:, j] = np.minimum(np.minimum(prev[:, j] + 1, cur[:, j - 1] + 1),
                                   prev[:, j - 1] + (seqs[:, j - 1] != i - 1))
        prev = cur
    return prev[:, n]


@dataclass
class Signature:
    n: int  # |x'|
    counts: np.ndarray  # per subset code of x's units: ways x' yields it
    distance: int  # least edit distance of an x' with this signature
    multiplicity: int  # number of x' (fresh symbols canonical) with it
    distance_no_fresh: int  # least edit distance of an x' without fresh symbols with it (MAX_R + 1 if none)


@functools.lru_cache(maxsize=None)
def signatures(length: int) -> tuple[list[Signature], int]:
    """The distinct signatures of the x' within MAX_R of x = (0..length-1), and the number of x'."""
    level = neighbourhood(length)
    by_len: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for s in level:
        by_len[len(s)].append(s)
    pc = _popcounts(length)
    out: list[Signature] = []
    for n, group in sorted(by_len.items()):
        seqs = np.array(group, dtype=np.int64).reshape(len(group), n)
        dist = levenshtein_to_x(seqs, length)
        no_fresh = seqs.max(axis=1, initial=-1) < length
        assert np.array_equal(dist, [level[s] for s in group]), "BFS level != Levenshtein distance"
        counts = np.concatenate([subset_counts(seqs[i : i + 8192], length) for i in range(0, len(seqs), 8192)])
        key = np.sort(pc[None, :] * 10_000 + counts, axis=1).astype(np.int32)  # multiset of (k, c): all the LP sees
        rows = np.ascontiguousarray(key).view(np.dtype((np.void, key.shape[1] * 4))).reshape(-1)
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        for g, i in enumerate(first):
            members = inverse == g
            plain = members & no_fresh
            out.append(Signature(n, counts[i], int(dist[members].min()), int(members.sum()),
                                 int(dist[plain].min()) if plain.any() else MAX_R + 1))
    return out, len(level)


@functools.lru_cache(maxsize=None)
def _popcounts(length: int) -> np.ndarray:
    return np.array([bin(c).count("1") for c in range(1 << length)])


@dataclass(frozen=True)
class Knapsacks:
    """The two fractional knapsacks of many signatures at once (one row per signature, one column per
    subset of x's units, sorted by increasing likelihood ratio P_x'/P_x)."""

    x: np.ndarray  # P_x of each column (sorted per row)
    y: np.ndarray  # P_x' of each column
    y_only: np.ndarray  # per row: x'-only mass

    @staticmethod
    def _fill(x: np.ndarray, y: np.ndarray, level: np.ndarray) -> np.ndarray:
        """Per row and level: the y-mass of the prefix of (sorted) items with x-mass ``level`` (the last
        item taken fractionally)."""
        before = np.cumsum(x, axis=1) - x
        share = np.clip((level[None, None, :] - before[:, :, None]) / x[:, :, None], 0.0, 1.0)
        return np.einsum("sc,scp->sp", y, share)

    def knap_a(self, pa: np.ndarray) -> np.ndarray:
        """min mu_A(x') subject to mu_A(x) >= pA: outcomes by increasing ratio."""
        return self._fill(self.x, self.y, np.atleast_1d(pa))

    def knap_b(self, pb: np.ndarray, with_y_only: bool = True) -> np.ndarray:
        """max mu_B(x') subject to mu_B(x) <= pB: the x'-only mass, then outcomes by decreasing ratio."""
        fill = self._fill(self.x[:, ::-1], self.y[:, ::-1], np.atleast_1d(pb))
        return fill + (self.y_only[:, None] if with_y_only else 0.0)

    def margin(self, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
        """The LP's minimum of mu_A(x') - mu_B(x') (closed form, see the module docstring): rows x points."""
        pa, pb = np.atleast_1d(pa), np.atleast_1d(pb)
        return self.knap_a(pa) - self.knap_b(np.minimum(pb, 1.0 - pa))


def knapsacks(length: int, sigs: list[Signature], p: float, rate) -> Knapsacks:
    """The knapsacks of signatures ``sigs`` of x = (0..length-1) at rate p = rate(length), x' at rate(|x'|)."""
    k = _popcounts(length)
    counts = np.array([s.counts for s in sigs], dtype=float)
    n = np.array([s.n for s in sigs])[:, None]
    q = np.array([rate(s.n) for s in sigs])[:, None]
    xm = np.broadcast_to(p ** (length - k) * (1.0 - p) ** k, counts.shape)
    ym = counts * q ** (n - k) * (1.0 - q) ** k
    order = np.argsort(ym / xm, axis=1, kind="stable")
    rows = np.arange(len(sigs))[:, None]
    return Knapsacks(xm[rows, order], ym[rows, order], np.maximum(0.0, 1.0 - ym.sum(axis=1)))


def exact_margin(length: int, sig: Signature, rate, pa: float, pb: float) -> Fraction:
    """The LP's minimum of mu_A(x') - mu_B(x') in exact rational arithmetic (same closed form as
    :class:`Knapsacks`, from the exact values of the float inputs)."""
    p, q, pa_, pb_ = Fraction(rate(length)), Fraction(rate(sig.n)), Fraction(pa), Fraction(pb)
    items = []
    for code, c in enumerate(sig.counts):
        k = bin(code).count("1")
        items.append((p ** (length - k) * (1 - p) ** k, int(c) * q ** (sig.n - k) * (1 - q) ** k))
    y_only = 1 - sum(y for _, y in items)
    items.sort(key=lambda it: it[1] / it[0])

    def fill(seq, level):
        got = Fraction(0)
        for x, y in seq:
            take = min(Fraction(1), max(Fraction(0), level / x))
            got, level = got + take * y, level - take * x
        return got

    return fill(items, pa_) - (y_only + fill(items[::-1], min(pb_, 1 - pa_)))


# ------------------------------------------------------------------------------------------------
# The derivation re-implemented (for the controls): levels by kept count j, with or without the x'-only item
# ------------------------------------------------------------------------------------------------


def rederived_radius(pa: float, pb: float, length: int, rate, y_only_item: bool = True, cap: int = MAX_R) -> int:
    """The certificate of the stats.py docstring, written out plainly (capped at ``cap``). With
    ``y_only_item=False`` it omits the x'-only mass 1 - q^b from the runner-up's upper bound: unsound."""
    if pa <= pb:
        return -1
    p = rate(length)
    for t in range(cap + 1):
        for a in range(min(t, length) + 1):
            for b in range(t + 1):
                if max(a, b) != t:
                    continue
                m, q = length - a, rate(length - a + b)
                j = np.arange(m + 1)
                comb = np.array([math.comb(m, int(i)) for i in j], dtype=float)
                xl = p**a * comb * (1 - p) ** j * p ** (m - j)
                yl = q**b * comb * (1 - q) ** j * q ** (m - j)
                up = np.argsort(yl / xl, kind="stable")
                # lower(A): the free x-only item (mass 1 - p^a) first, then levels by increasing ratio
                ax = np.concatenate([[0.0, 1.0 - p**a], 1.0 - p**a + np.cumsum(xl[up])])
                ay = np.concatenate([[0.0, 0.0], np.cumsum(yl[up])])
                lower = np.interp(pa, ax, ay)
                dn = up[::-1]
                upper = (1.0 - q**b if y_only_item else 0.0) + np.interp(
                    pb, np.concatenate([[0.0], np.cumsum(xl[dn])]), np.concatenate([[0.0], np.cumsum(yl[dn])])
                )
                if not lower > upper + SLACK:  # an exact tie is unsafe; rounding must not certify it
                    return t - 1
    return cap


# ------------------------------------------------------------------------------------------------
# The grid: (pA, pB) near the certificate's decision thresholds, plus a coarse grid
# ------------------------------------------------------------------------------------------------


def _cert(pa: float, pb: float, length: int, rate) -> int:
    return min(variable_rate_radius(pa, pb, length, rate, max_radius=CAP), MAX_R)


def _threshold(pb_spec, length: int, rate, r: int) -> float | None:
    """Least pA (to ~1e-13) at which the certificate reaches radius r, or None if it never does."""
    pb_of = (lambda pa: 1.0 - pa) if pb_spec is COMPLEMENT else (lambda pa: pb_spec)
    lo = 0.5 if pb_spec is COMPLEMENT else pb_spec
    hi = 1.0
    if _cert(hi, pb_of(hi), length, rate) < r:
        return None
    while hi - lo > 1e-13:
        mid = (lo + hi) / 2
        if _cert(mid, pb_of(mid), length, rate) >= r:
            hi = mid
        else:
            lo = mid
    return hi


def bound_pairs(pb_spec, length: int, rate) -> list[tuple[float, float, bool]]:
    """(pA, pB, near_threshold) to test: just above each threshold of the certificate, and a coarse grid."""
    pb_of = (lambda pa: 1.0 - pa) if pb_spec is COMPLEMENT else (lambda pa: pb_spec)
    lo = 0.5 if pb_spec is COMPLEMENT else pb_spec
    out = []
    for r in range(0, MAX_R + 1):
        t = _threshold(pb_spec, length, rate, r)
        if t is not None:
            out += [(min(1.0, t + d), pb_of(min(1.0, t + d)), True) for d in (1e-7, 1e-4)]
    grid = np.concatenate([np.linspace(lo, 1.0, 12 if EXTENDED else 7)[1:], [0.999, 0.9999]])
    out += [(float(pa), pb_of(float(pa)), False) for pa in grid if pa > lo]
    return out


@dataclass
class Outcome:
    cases: int = 0  # (x', pA, pB) cases (counting every x')
    pairs: int = 0  # (pA, pB) points
    violations: list = None  # (pA, pB, cert, brute)
    equal: int = 0  # points where the certificate equals the brute-force radius
    positive_brute: int = 0  # points with brute-force radius >= 1
    control_fixed: int = 0  # points where edit_distance_radius(pA, pB, rate(L)) > brute
    control_no_y_only: int = 0  # points where the re-derivation without the x'-only item > brute
    rederived_mismatch: int = 0  # coarse-grid points where min(library, 3) != re-derivation
    lp_evaluations: int = 0  # (signature, pA, pB) worst cases evaluated
    fresh_needed: int = 0  # points where the brute force without fresh symbols gives a larger radius
    exact_rechecks: int = 0  # near-tie margins recomputed in rational arithmetic
    brute_radii: Counter = None


@functools.lru_cache(maxsize=None)
def evaluate(length: int, rate) -> dict:
    """Every check of one (length, schedule), per pB spec: certificate vs brute force, and the controls."""
    sigs, _ = signatures(length)
    p = rate(length)
    curves = knapsacks(length, sigs, p, rate)
    dist = np.array([s.distance for s in sigs])
    dist_plain = np.array([s.distance_no_fresh for s in sigs])
    mult = np.array([s.multiplicity for s in sigs])
    results = {}
    for spec in PB_SPECS:
        pts = bound_pairs(spec, length, rate)
        pa = np.array([t[0] for t in pts])
        pb = np.array([t[1] for t in pts])
        margins = curves.margin(pa, pb)  # signatures x points
        unsafe = margins < -TOL
        near_tie = np.nonzero(np.abs(margins) <= TOL)
        for i, j in zip(*near_tie):
            unsafe[i, j] = exact_margin(length, sigs[i], rate, float(pa[j]), float(pb[j])) <= 0
        first_unsafe = np.where(unsafe, dist[:, None], MAX_R + 1).min(axis=0)
        brute = np.where(pa <= pb, -1, first_unsafe - 1)
        brute_plain = np.where(pa <= pb, -1, np.where(unsafe, dist_plain[:, None], MAX_R + 1).min(axis=0) - 1)
        out = Outcome(violations=[], brute_radii=Counter(), lp_evaluations=margins.size)
        out.fresh_needed = int((brute_plain > brute).sum())
        out.exact_rechecks = len(near_tie[0])
        for i, (a, b, near) in enumerate(pts):
            cert = _cert(a, b, length, rate)
            bru = int(brute[i])
            out.pairs += 1
            out.cases += int(mult.sum())
            out.brute_radii[bru] += 1
            out.equal += cert == bru
            out.positive_brute += bru >= 1
            if cert > bru:
                out.violations.append((a, b, cert, bru))
            out.control_fixed += min(edit_distance_radius(a, b, p), MAX_R) > bru
            out.control_no_y_only += rederived_radius(a, b, length, rate, y_only_item=False) > bru
            if not near:
                out.rederived_mismatch += rederived_radius(a, b, length, rate) != cert and not _constant_near(
                    rate, length)
        results[spec] = out
    return results


def _constant_near(rate, length: int) -> bool:
    return all(rate(n) == rate(length) for n in range(max(0, length - CAP), length + CAP + 1))


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


def test_neighbourhood_is_every_string_within_the_radius_for_tiny_inputs():
    """The BFS finds exactly the strings within distance 3 (checked by brute force over all strings of
    lengths 0..L+3 on x's symbols plus 3 fresh ones, up to renaming of the fresh symbols)."""
    for length in (1, 2):
        found = neighbourhood(length)
        alphabet = range(length + MAX_R)
        direct = {}
        for n in range(0, length + MAX_R + 1):
            for s in itertools.product(alphabet, repeat=n):
                d = levenshtein(tuple(range(length)), s)
                if d <= MAX_R:
                    direct[_canonical(s, length)] = d
        assert found == direct


def test_reference_equals_the_literal_linear_programme():
    """Signature + closed form == linprog on the literal outcome distributions (fresh symbols kept
    distinct, outcomes not merged), x' at its own rate: pB on both sides of 1 - pA, the complement rule's
    fast path 2 knapA - 1, and a third explicit runner-up class changes nothing (symmetry)."""
    rng = np.random.default_rng(16)
    checked = signs = 0
    for length, sample in ((1, None), (2, 120), (3, 60), (4, 25)):
        x = tuple(range(length))
        sigs, _ = signatures(length)
        pc = _popcounts(length)
        level = neighbourhood(length)
        seqs = sorted(level)
        picks = seqs if sample is None else [seqs[i] for i in rng.choice(len(seqs), sample, replace=False)]
        for i, xp in enumerate(picks):
            rate = SCHEDULES[(i + length) % len(SCHEDULES)]
            px, py = noise_distribution(x, rate(length)), noise_distribution(xp, rate(len(xp)))
            assert levenshtein(x, xp) == level[xp]
            counts = subset_counts(np.array([xp], dtype=np.int64).reshape(1, len(xp)), length)[0]
            key = sorted(pc * 10_000 + counts)
            (sig,) = [s for s in sigs if s.n == len(xp) and sorted(pc * 10_000 + s.counts) == key]
            assert sig.distance <= level[xp]
            curve = knapsacks(length, [sig], rate(length), rate)
            pa = float(rng.uniform(0.5, 1.0))
            for pb in (float(rng.uniform(0.0, 1.0 - pa)), float(rng.uniform(1.0 - pa, pa))):
                lp = lp_margin(px, py, pa, pb)
                assert float(curve.margin(pa, pb)[0, 0]) == pytest.approx(lp, abs=1e-9)
                signs += lp > 0
                checked += 1
            lp = lp_margin(px, py, pa, 1.0 - pa)
            assert 2.0 * float(curve.knap_a(pa)[0, 0]) - 1.0 == pytest.approx(lp, abs=1e-9)
            if i % 10 == 0:
                assert lp_margin(px, py, pa, pb, runner_up_classes=2) == pytest.approx(lp_margin(px, py, pa, pb), abs=1e-9)
    assert checked > 400 and 0 < signs < checked  # both safe and unsafe pairs were compared


def test_fresh_symbols_are_enumerated_and_needed():
    """Fresh symbols are in the neighbourhood (canonical by first appearance), and they matter: a brute
    force restricted to x's own symbols (no fresh ones) would certify MORE on part of the grid, so it
    would be a weaker test."""
    level = neighbourhood(3)
    assert level[(0, 3, 2)] == 1 and level[(3, 4, 5)] == 3 and level[(0, 3, 1, 2)] == 1
    assert (0, 3, 3) in level and (0, 4, 2) not in level and (4, 3) not in level
    needed = sum(o.fresh_needed for rate in SCHEDULES for L in LENGTHS for o in evaluate(L, rate).values())
    assert needed > 0


@pytest.mark.parametrize("rate", SCHEDULES, ids=lambda s: s.describe())
def test_certificate_never_exceeds_the_brute_force_radius(rate):
    totals = Outcome(violations=[], brute_radii=Counter())
    for length in LENGTHS:
        for spec, out in evaluate(length, rate).items():
            assert not out.violations, (
                f"UNSOUND: {rate.describe()} L={length} pB={'1-pA' if spec is None else spec}: "
                f"(pA, pB, certificate, brute force) = {out.violations[:5]}"
            )
            for name in ("cases", "pairs", "equal", "positive_brute", "rederived_mismatch"):
                setattr(totals, name, getattr(totals, name) + getattr(out, name))
            totals.brute_radii.update(out.brute_radii)
    print(f"\n{rate.describe()}: {totals.cases} (x', pA, pB) cases at {totals.pairs} (L, pA, pB) points, "
          f"0 violations; certificate == brute force at {totals.equal}/{totals.pairs}; "
          f"brute-force radii {dict(sorted(totals.brute_radii.items()))}")
    # not vacuous: positive radii occur and the certificate is often exactly the brute-force radius
    assert totals.positive_brute > 0
    assert totals.equal >= 0.5 * totals.pairs
    # the library implements the derivation of its docstring (re-derived independently here)
    assert totals.rederived_mismatch == 0


def test_whole_grid_summary():
    """The numbers the issue asks for, over the whole grid (recomputed from the cached evaluations)."""
    cases = pairs = equal = violations = lps = fresh = exact = 0
    for rate in SCHEDULES:
        for length in LENGTHS:
            for out in evaluate(length, rate).values():
                cases, pairs, equal = cases + out.cases, pairs + out.pairs, equal + out.equal
                violations += len(out.violations)
                lps += out.lp_evaluations
                fresh += out.fresh_needed
                exact += out.exact_rechecks
    xprimes = sum(signatures(L)[1] for L in LENGTHS)
    sigs = sum(len(signatures(L)[0]) for L in LENGTHS)
    print(f"\nsoundness grid: lengths {LENGTHS}, radius <= {MAX_R}, {len(SCHEDULES)} schedules, "
          f"{len(PB_SPECS)} pB rules; {xprimes} x' ({sigs} LP signatures); {pairs} (schedule, L, pA, pB) points; "
          f"{cases} (x', pA, pB, schedule) cases ({lps} distinct worst-case LPs, {exact} near ties solved exactly); "
          f"{violations} violations; "
          f"certificate == brute force at {equal}/{pairs} = {equal / pairs:.0%}; without fresh symbols the "
          f"brute force would be larger at {fresh} points")
    assert violations == 0
    assert equal >= 0.6 * pairs


def test_negative_controls_are_caught_by_the_brute_force():
    """Two unsound variants must exceed the brute-force radius somewhere on the grid: (a) RS-Del's
    fixed-rate closed form at p = rate(L) for a non-constant schedule; (b) the certificate without the
    x'-only outcome mass in the runner-up's upper bound."""
    fixed_caught: Counter = Counter()
    no_y_only_caught: Counter = Counter()
    for rate in SCHEDULES:
        for length in LENGTHS:
            for spec, out in evaluate(length, rate).items():
                fixed_caught[rate.describe()] += out.control_fixed
                no_y_only_caught["complement" if spec is COMPLEMENT else "bonferroni"] += out.control_no_y_only
    print(f"\ncontrol (a) fixed-rate formula at p(L) exceeds brute force: {dict(fixed_caught)}")
    print(f"control (b) no x'-only item exceeds brute force: {dict(no_y_only_caught)}")
    for rate in SCHEDULES:
        if rate.constant() is not None:
            assert fixed_caught[rate.describe()] == 0, rate.describe()  # RS-Del is sound at a fixed rate
    assert fixed_caught["callable irregular-high"] > 0 and fixed_caught["callable irregular-mid"] > 0
    assert no_y_only_caught["complement"] > 0 and no_y_only_caught["bonferroni"] > 0


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99])
def test_constant_rate_is_exactly_rs_del(p):
    rng = np.random.default_rng(int(p * 100))
    pas = np.concatenate([rng.uniform(0.0, 1.0, 40), [1.0, 0.5, 0.999999]])
    for pa in pas:
        for pb in (1.0 - pa, 0.0, float(rng.uniform(0.0, 1.0)), pa / 2):
            expected = edit_distance_radius(pa, pb, p)
            for length in (0, 1, 2, 5, 30, 1000):
                assert variable_rate_radius(pa, pb, length, FixedRate(p)) == expected
                assert variable_rate_radius(pa, pb, length, p) == expected


def _bump(n: int) -> float:
    return 0.75 if n == 3 else 0.8


@pytest.mark.parametrize("rate,length", [(CallableRate(_bump, name="bump"), 3), (AdaptiveRate(k=1, p_lb=0.6), 4)])
@pytest.mark.parametrize("pa,pb", [(0.75, 0.25), (0.625, 0.125)])
def test_regression_an_exact_tie_is_not_certified(rate, length, pa, pb):
    """Found by the brute force: at p = rate(L) = 0.75, substituting one unit by a fresh symbol (same
    length, same rate) has worst-case margin exactly 0 when pA = 1/2 + (1 - p) (complement) or
    pA = 2 (1 - p) + pB (Bonferroni): a tie, so radius 0. Float rounding in the binomial sums used to
    certify radius 1 (complement threshold 0.7499999999999999; Bonferroni margin +3e-16)."""
    x = tuple(range(length))
    xp = x[:-1] + (length,)  # last unit substituted by a fresh symbol
    p = rate(length)
    assert p == 0.75 and rate(len(xp)) == p
    margin = lp_margin(noise_distribution(x, p), noise_distribution(xp, p), pa, pb)
    assert margin == pytest.approx(0.0, abs=1e-12)
    pc = _popcounts(length)
    key = sorted(pc * 10_000 + subset_counts(np.array([xp]), length)[0])
    (sig,) = [s for s in signatures(length)[0] if s.n == length and sorted(pc * 10_000 + s.counts) == key]
    assert exact_margin(length, sig, rate, pa, pb) == 0  # exactly a tie
    assert variable_rate_radius(pa, pb, length, rate) == 0
    assert variable_rate_radius(pa + 1e-6, pb, length, rate) == 1  # just above the tie it is certified
