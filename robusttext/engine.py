"""The Monte Carlo engine: the one place that loops over noisy samples.

Text (randomized deletion) and vision (Gaussian noise) both reduce certification to the same loop:
draw noisy copies of many inputs, classify them in large batches, count votes per class, and turn the
counts into bounds. The engine does that loop once, for any :class:`Mechanism` and any certificate
from :mod:`robusttext.stats`:

* **per-input random streams**: input ``i`` always draws from ``numpy.random.default_rng([seed, i])``,
  so results do not depend on batch size, on which other inputs share a batch, or on how inputs are
  sharded over processes;
* **batching across inputs with length bucketing**: pending samples of many inputs are pooled, sorted
  by the mechanism's ``cost`` (e.g. token count) and cut into batches, so padding stays small;
* **exact deduplication**: identical noisy samples (frequent at high deletion rates) are classified
  once and counted with their multiplicity, within one input and across the inputs of one call (the
  empty text, or a lone common word, is a sample of every input); the base classifier is
  deterministic, so the counts are exactly those of classifying every sample;
* **sequential certification** (:meth:`MonteCarloEngine.certify`): estimation samples are drawn in
  looks ``n_1 < ... < n_K = n``; look k's bound is taken at ``alpha_k`` with ``sum alpha_k = alpha``
  (Bonferroni), so the bound at whichever look the engine stops is valid with probability >= 1 - alpha
  (union bound). The engine stops an input once its radius cannot grow by the last look (or cannot
  plausibly grow: futility stopping), or abstains once even the best case abstains; when the
  selection votes leave the top class ambiguous, the estimation votes choose among the candidate
  classes, with alpha split over them (``candidate_pvalue``);
* **exact strata** (``exact_budget``): a mechanism that can list its most likely noisy copies with
  their exact probabilities (:meth:`Mechanism.strata`) has them classified once; only the remaining
  probability mass is estimated by sampling, which shrinks the Monte Carlo error by that mass
  (stratified sampling; the bounds are in :class:`robusttext.stats._Certificate`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Protocol, Sequence, TypeVar

import numpy as np

from .stats import ABSTAIN, binomial_test_pvalue, clopper_pearson_upper, split_alpha_weighted

X = TypeVar("X")
S = TypeVar("S")

#: Samples of one input are drawn in pieces of this size (fixed, so the random stream of an input is
#: the same whatever the batch size, pool size or number of processes).
DRAW_CHUNK = 1000

#: Extra precision asked of a stratified input's estimate over plain sampling's (see :func:`residual_fraction`):
#: covers the last look's share of alpha (0.8 alpha: z grows 6% at alpha = 0.05, 13% in variance) and
#: the rough estimate of the rates from the selection votes.
RESIDUAL_SAFETY = 1.5


def residual_fraction(selection: np.ndarray, top: int, exact_top: float, w: float, safety: float = RESIDUAL_SAFETY) -> float:
    """Draws per look, as a fraction of the look, that an input with exact strata makes from its residual.

    With ``n`` plain draws the estimate of p = P[f = top] has variance p(1-p)/n; with the exact mass
    ``exact_top`` enumerated and ``m`` draws from the residual of mass ``w`` it is ``exact_top + w q`` with
    variance w^2 q(1-q)/m (q: top's rate within the residual). Equal precision needs
    m/n = w^2 q(1-q) / (p(1-p)). p and q come from the ``selection`` votes (p: top's share; q: its
    implied residual rate), taken at their least favourable values within two standard errors, times
    ``safety``, and the fraction is clipped to [w^2, w] (w: the draws plain sampling would make on the
    residual). The selection votes and the strata are independent of the estimation samples, so the
    look sizes this picks are fixed before those are drawn and the guarantee of ``certify`` holds.
    """
    if not 0.0 < w < 1.0:
        return min(1.0, max(0.0, w))
    n0 = max(1, int(selection.sum()))
    p = float(selection[top]) / n0
    half = 2.0 * np.sqrt(max(p * (1.0 - p), 1.0 / n0) / n0)
    p_lo, p_hi = max(0.0, p - half), min(1.0, p + half)
    q_lo, q_hi = (min(1.0, max(0.0, (v - exact_top) / w)) for v in (p_lo, p_hi))
    var_q = 0.25 if q_lo <= 0.5 <= q_hi else max(q_lo * (1.0 - q_lo), q_hi * (1.0 - q_hi))
    var_p = min(p_lo * (1.0 - p_lo), p_hi * (1.0 - p_hi))
    if var_p <= 0.0:
        return w
    return float(min(w, max(w * w, safety * w * w * var_q / var_p)))


def candidate_classes(selection: np.ndarray, top: int, pvalue: float) -> list[int]:
    """The classes that stay candidates for the top class after selection, ``top`` first.

    A class stays a candidate when a two-sided binomial test of its selection votes against ``top``'s
    does not reject equality at level ``pvalue`` (``pvalue = 0``: only ``top``). With few selection
    votes an input whose smoothed top class is barely above 1/2 is often selected wrong (at n0 = 50
    and P[top] = 0.53, about one time in three; at n0 = 100, one in four), and then abstains; keeping both classes and choosing
    between them with the (more numerous) estimation votes avoids that, at the price of splitting each
    look's alpha over the candidates (see ``MonteCarloEngine.certify``).
    """
    if pvalue <= 0.0:
        return [top]
    order = [int(c) for c in np.argsort(-selection, kind="stable") if int(c) != top]
    n_top = int(selection[top])
    return [top] + [c for c in order if binomial_test_pvalue(n_top, n_top + int(selection[c]), 0.5) > pvalue]


#: Share of each look's alpha left to the candidates other than the selection majority (see
#: :func:`candidate_shares`): the majority, usually right, keeps a bound almost as tight as without them.
CANDIDATE_ALPHA_SHARE = 0.2


def candidate_shares(m: int) -> list[float]:
    """Fractions of a look's alpha given to ``m`` candidate classes (the selection majority first); they sum to 1."""
    if m <= 1:
        return [1.0]
    return [1.0 - CANDIDATE_ALPHA_SHARE] + [CANDIDATE_ALPHA_SHARE / (m - 1)] * (m - 1)


class Mechanism(Protocol[X, S]):
    """A noise distribution: draws noisy copies of a prepared input."""

    def draw(self, x: X, n: int, rng: np.random.Generator) -> Sequence[S]:
        """Return ``n`` independent noisy copies of ``x`` drawn from ``rng``."""

    def key(self, sample: S) -> Hashable | None:
        """A hashable identity of the sample itself for exact deduplication (equal keys mean equal
        samples, whichever input they were drawn from), or None to classify every copy."""

    def cost(self, sample: S) -> int:
        """A size used to bucket samples of similar cost into one batch (e.g. its token count)."""

    # Optional: ``strata(x, max_exact) -> Strata | None`` enables exact strata (see :class:`Strata`).


@dataclass
class Strata:
    """A split of an input's noise distribution into enumerated noisy copies and a sampled rest.

    ``samples[i]`` occurs with probability exactly ``probs[i]``; the copies not listed have total
    probability ``residual_mass`` (= 1 - sum(probs), in [0, 1]) and ``draw_residual(n, rng)`` draws
    ``n`` i.i.d. copies from the noise distribution conditioned on that rest.
    """

    samples: Sequence[Any]
    probs: np.ndarray
    residual_mass: float
    draw_residual: Callable[[int, np.random.Generator], Sequence[Any]]


@dataclass
class Prediction:
    """PREDICT outcome for one input: the class (-1 = abstain), its vote counts and the test's p-value."""

    prediction: int
    counts: list[int]
    pvalue: float
    n_queries: int
    seconds: float = 0.0


@dataclass
class Certification:
    """CERTIFY outcome for one input.

    ``prediction`` is the selected top class, or -1 when abstaining; ``radius`` the certified radius
    in the certificate's unit (-1 = abstain); ``top1_lower``/``top2_upper`` the bounds that gave it;
    ``n_samples`` the noisy samples drawn (selection + estimation), ``n_queries`` the base-classifier
    forward passes spent (fewer than ``n_samples`` when identical samples were deduplicated, more
    when exact strata were enumerated; a sample shared by several inputs is charged to the first);
    ``exact_mass`` the probability mass that was enumerated exactly instead of sampled (0 without
    exact strata; ``looks_used`` is 0 when it is 1).
    """

    prediction: int
    radius: float
    top1_lower: float
    top2_upper: float
    n_samples: int
    n_queries: int
    looks_used: int
    seconds: float = 0.0
    exact_mass: float = 0.0


@dataclass
class _Job:
    x: Any
    rng: np.random.Generator
    num_classes: int
    cache: dict = field(default_factory=dict)
    n_queries: int = 0
    n_samples: int = 0
    done: bool = False
    draw: Callable[[int, np.random.Generator], Sequence[Any]] | None = None  # None: mechanism.draw


class _Sum:
    """Collects the terms added to it (``+=``) for an exactly rounded ``math.fsum``."""

    def __init__(self) -> None:
        self.terms: list[float] = []

    def __iadd__(self, value: float) -> "_Sum":
        self.terms.append(float(value))
        return self


def input_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of input ``index`` under ``seed`` (independent of sharding and batching)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])


class MonteCarloEngine(Generic[X, S]):
    """Draws, deduplicates, batches and classifies noisy samples; counts votes; certifies.

    Args:
        classify: maps a batch of noisy samples to an integer class per sample (a deterministic
            function: same sample, same class). The batch is a list of samples, or, when ``dedup``
            is off and the mechanism draws one array per call (rows = samples, e.g. images), a
            slice of such arrays, classified in draw order (equal shapes: nothing to bucket).
        num_classes: number of classes of the base classifier.
        batch_size: samples per ``classify`` call.
        dedup: classify identical noisy samples of an input once (exact; see module docstring).
        pool_batches: how many batches of pending samples are pooled and length-sorted at once.
    """

    def __init__(
        self,
        classify: Callable[[list[S]], np.ndarray | Sequence[int]],
        num_classes: int,
        batch_size: int = 64,
        dedup: bool = True,
        pool_batches: int = 16,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.classify = classify
        self.num_classes = int(num_classes)
        self.batch_size = int(batch_size)
        self.dedup = dedup
        self.pool_size = int(batch_size) * max(1, int(pool_batches))

    # ------------------------------------------------------------------ sampling and counting
    def _count(self, jobs: Sequence[_Job], mechanism: Mechanism, n: Sequence[int]) -> list[np.ndarray]:
        """Draw ``n[j]`` more samples of every job and return their class counts (one array per job)."""
        counts = [np.zeros(self.num_classes, dtype=np.int64) for _ in jobs]
        # pending: list of (cost, job_id, key, sample, multiplicity) still to classify
        pending: list[tuple[int, int, Hashable, Any, int]] = []
        # blocks: (job_id, array of samples) when samples come as one array and are not deduplicated
        blocks: list[tuple[int, np.ndarray]] = []
        block_rows = 0
        for j, (job, m) in enumerate(zip(jobs, n)):
            remaining = int(m)
            while remaining > 0:
                size = min(DRAW_CHUNK, remaining)
                remaining -= size
                samples = job.draw(size, job.rng) if job.draw else mechanism.draw(job.x, size, job.rng)
                job.n_samples += size
                if not self.dedup and isinstance(samples, np.ndarray):
                    # Equal-shape samples (images): nothing to bucket, so nothing to pool; classify the
                    # rows as soon as they fill a batch (less memory; speed on MNIST within noise).
                    blocks.append((j, samples))
                    block_rows += len(samples)
                    if block_rows >= self.batch_size:
                        self._flush_blocks(blocks, jobs, counts)
                        blocks, block_rows = [], 0
                elif self.dedup:
                    groups: dict[Hashable, list] = {}
                    for s in samples:
                        k = mechanism.key(s)
                        if k is None:
                            raise ValueError("dedup=True needs a mechanism whose key() is not None")
                        g = groups.get(k)
                        if g is None:
                            groups[k] = [s, 1]
                        else:
                            g[1] += 1
                    for k, (s, mult) in groups.items():
                        cls = job.cache.get(k)
                        if cls is None:
                            pending.append((mechanism.cost(s), j, k, s, mult))
                        else:
                            counts[j][cls] += mult
                else:
                    pending.extend((mechanism.cost(s), j, None, s, 1) for s in samples)
                if len(pending) >= self.pool_size:
                    self._flush(pending, jobs, counts)
                    pending = []
        self._flush(pending, jobs, counts)
        self._flush_blocks(blocks, jobs, counts)
        return counts

    def _classify(self, batch: Any, size: int) -> np.ndarray:
        classes = np.asarray(self.classify(batch), dtype=np.int64).reshape(-1)
        if classes.shape[0] != size:
            raise RuntimeError(f"classify returned {classes.shape[0]} classes for {size} samples")
        if classes.size and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise RuntimeError(f"classify returned a class outside [0, {self.num_classes})")
        return classes

    def _flush_blocks(self, blocks: list[tuple[int, np.ndarray]], jobs: Sequence[_Job], counts: list[np.ndarray]) -> None:
        """Classify array blocks in batches of ``batch_size`` rows (each batch one array slice)."""
        if not blocks:
            return
        rows = np.concatenate([b for _, b in blocks]) if len(blocks) > 1 else blocks[0][1]
        owner = np.repeat(np.array([j for j, _ in blocks]), [len(b) for _, b in blocks])
        batches = [rows[s : s + self.batch_size] for s in range(0, len(rows), self.batch_size)]
        classes = np.concatenate([self._classify(b, len(b)) for b in batches])
        k = self.num_classes
        tally = np.bincount(owner * k + classes, minlength=len(jobs) * k).reshape(len(jobs), k)
        for j in np.unique(owner):
            counts[j] += tally[j]
            jobs[j].n_queries += int(tally[j].sum())

    def _flush(self, pending: list, jobs: Sequence[_Job], counts: list[np.ndarray]) -> None:
        """Classify pending ``(cost, job, key, sample, weight)`` items in length-sorted batches and add each
        weight to its job's count of the class. With dedup, a sample pending for several jobs (or twice
        for one, from two draw chunks) is classified once, charged to the first job that drew it."""
        if not pending:
            return
        if self.dedup:
            merged: dict[Hashable, list] = {}  # key -> [cost, first job, key, sample, {job: weight}]
            for cost, j, k, s, mult in pending:
                cls = jobs[j].cache.get(k)
                if cls is not None:
                    counts[j][cls] += mult
                    continue
                item = merged.get(k)
                if item is None:
                    merged[k] = [cost, j, k, s, {j: mult}]
                else:
                    item[4][j] = item[4].get(j, 0) + mult
            items = list(merged.values())
        else:
            items = [[cost, j, k, s, {j: mult}] for cost, j, k, s, mult in pending]
        items.sort(key=lambda t: t[0])
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            classes = self._classify([t[3] for t in batch], len(batch))
            for (cost, first, k, s, owners), cls in zip(batch, classes):
                jobs[first].n_queries += 1
                for j, mult in owners.items():
                    counts[j][cls] += mult
                if self.dedup:
                    jobs[first].cache[k] = int(cls)  # one dict shared by all jobs of the call

    def _jobs(self, xs: Sequence[X], seed: int, indices: Sequence[int] | None) -> list[_Job]:
        if indices is None:
            indices = range(len(xs))
        if len(indices) != len(xs):
            raise ValueError(f"got {len(xs)} inputs but {len(indices)} indices")
        cache: dict = {}  # sample key -> class, shared by the inputs of this call (keys identify samples)
        return [_Job(x=x, rng=input_rng(seed, i), num_classes=self.num_classes, cache=cache)
                for x, i in zip(xs, indices)]

    def count(
        self, xs: Sequence[X], mechanism: Mechanism, n: int, seed: int = 0, indices: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """Class counts of ``n`` noisy samples per input: the raw Monte Carlo estimate."""
        _check_n("n", n)
        jobs = self._jobs(xs, seed, indices)
        return self._count(jobs, mechanism, [n] * len(jobs))

    # ------------------------------------------------------------------ PREDICT
    def predict(
        self,
        xs: Sequence[X],
        mechanism: Mechanism,
        n: int,
        alpha: float,
        seed: int = 0,
        indices: Sequence[int] | None = None,
    ) -> list[Prediction]:
        """Cohen et al. PREDICT: majority vote over ``n`` noisy samples; abstain (-1) unless a two-sided
        binomial test of top-1 vs top-2 counts rejects equality at level ``alpha``. Guarantee: the
        returned class differs from the smoothed classifier's with probability <= alpha."""
        _check_n("n", n)
        start = time.perf_counter()
        jobs = self._jobs(xs, seed, indices)
        counts = self._count(jobs, mechanism, [n] * len(jobs))
        elapsed = time.perf_counter() - start
        total_q = max(1, sum(j.n_queries for j in jobs))
        out = []
        for job, c in zip(jobs, counts):
            order = np.argsort(-c, kind="stable")
            n_a = int(c[order[0]])
            n_b = int(c[order[1]]) if len(c) > 1 else 0
            pvalue = binomial_test_pvalue(n_a, n_a + n_b, 0.5) if n_a + n_b > 0 else 1.0
            pred = int(order[0]) if pvalue <= alpha else ABSTAIN
            out.append(Prediction(pred, c.tolist(), pvalue, job.n_queries, elapsed * job.n_queries / total_q))
        return out

    def _exact_mass(self, jobs: Sequence[_Job], mechanism: Mechanism, strata: Sequence[Strata | None]) -> list[np.ndarray]:
        """Per-class probability mass of each job's enumerated noisy copies (each distinct copy classified once).

        The masses are exactly rounded sums (``math.fsum``), so they do not depend on the order in which
        batching, pooling or deduplication happen to add the copies' probabilities."""
        parts = [[_Sum() for _ in range(self.num_classes)] for _ in jobs]
        pending: list[tuple[int, int, Hashable, Any, float]] = []
        for j, st in enumerate(strata):
            if st is None:
                continue
            for sample, prob in zip(st.samples, st.probs):
                key = mechanism.key(sample) if self.dedup else None
                pending.append((mechanism.cost(sample), j, key, sample, float(prob)))
                if len(pending) >= self.pool_size:
                    self._flush(pending, jobs, parts)  # type: ignore[arg-type]
                    pending = []
        self._flush(pending, jobs, parts)  # type: ignore[arg-type]
        return [np.array([math.fsum(c.terms) for c in job_parts]) for job_parts in parts]

    # ------------------------------------------------------------------ CERTIFY
    def certify(
        self,
        xs: Sequence[X],
        mechanism: Mechanism,
        certificate: Any,
        n0: int,
        n: int,
        alpha: float,
        looks: Sequence[int] | None = None,
        seed: int = 0,
        indices: Sequence[int] | None = None,
        alpha_weights: Sequence[float] | None = None,
        futility: float = 0.0,
        exact_budget: int = 0,
        candidate_pvalue: float = 0.0,
    ) -> list[Certification]:
        """CERTIFY (Cohen et al. 2019, Alg. 2; RS-Del's variant) with optional sequential looks.

        Selection: the top class is the majority over ``n0`` samples. Estimation: *separate* samples,
        drawn up to the cumulative sizes ``looks`` (default ``[n]``, the fixed-sample protocol; the
        last look must be ``n``). Look k's bound is taken at ``alpha_k = alpha * w_k / sum(w)``
        (``alpha_weights``; default equal, ``alpha / K``).

        Guarantee (union bound): let E_k be the event that look k's bound fails; each has probability
        <= alpha_k because look k bounds a *fixed* number ``looks[k]`` of i.i.d. samples. Then
        P[some look fails] <= sum_k P[E_k] <= sum_k alpha_k = alpha, so with probability >= 1 - alpha
        every look's bound holds at once, and in particular the bound at whichever look a
        data-dependent stopping rule picks. Any stopping rule is therefore valid; the rules below only
        decide cost:

        * *saturation*: stop when the radius equals the radius the input would get if every remaining
          sample voted for the top class (no later look can do better);
        * *futility* (``futility`` = gamma > 0): stop when the radius would not grow even if the
          top class's remaining votes came at its optimistic rate, the one-sided (1 - gamma)
          Clopper-Pearson upper bound of the rate seen so far. Larger gamma stops more inputs early;
          gamma only trades cost for the chance of a smaller radius, never validity;
        * abstain early when even the best case abstains.

        Exact strata (``exact_budget`` > 0, mechanisms with ``strata``): for an input whose selection
        votes were not unanimous, its at most ``exact_budget`` most likely noisy copies are classified
        and weighted by their exact probabilities, and the estimation samples are drawn from the rest
        of the distribution only, every look scaled to the draws that match plain sampling's precision
        (:func:`residual_fraction`). These choices depend on the selection samples alone, which are
        independent of the estimation samples, so the guarantee above is unchanged; an input whose
        copies are all enumerated gets exact probabilities (``looks_used = 0``, no estimation samples).

        Ambiguous selection (``candidate_pvalue`` > 0): when the selection votes do not separate the
        majority from another class (:func:`candidate_classes`), the input keeps its m candidate
        classes and, at every look, certifies the candidate with the most estimated probability; look
        k's bound for candidate c is taken at ``alpha_k * s_c`` with shares s_c summing to 1
        (:func:`candidate_shares`: 80% for the selection majority). Guarantee: the candidate set and
        shares depend on the selection samples only, and the events "candidate c's bound fails at look
        k" have total probability <= sum_k sum_c alpha_k s_c = alpha, so the bound of whichever
        candidate is reported holds with probability >= 1 - alpha. With one candidate this is the rule above.

        ``certificate`` is a :mod:`robusttext.stats` certificate (anything with ``bounds(counts, top, alpha)``).
        """
        _check_n("n0", n0)
        _check_n("n", n)
        looks = sorted(set(int(v) for v in (looks or [n])))
        if looks[-1] != n or looks[0] < 1:
            raise ValueError(f"looks must be increasing sample sizes in [1, n] ending at n={n}, got {looks}")
        if alpha_weights is None:
            alpha_weights = [1.0] * len(looks)
        if len(alpha_weights) != len(looks):
            raise ValueError(f"alpha_weights needs one weight per look ({len(looks)}), got {list(alpha_weights)}")
        if not (0.0 <= futility < 1.0):
            raise ValueError(f"futility must be in [0, 1), got {futility!r}; 0 disables futility stopping")
        if int(exact_budget) != exact_budget or exact_budget < 0:
            raise ValueError(f"exact_budget must be an integer >= 0 (0 disables exact strata), got {exact_budget!r}")
        if not (0.0 <= candidate_pvalue < 1.0):
            raise ValueError(f"candidate_pvalue must be in [0, 1), got {candidate_pvalue!r}; 0 keeps only the selected class")
        alphas = split_alpha_weighted(alpha, alpha_weights)
        start = time.perf_counter()
        jobs = self._jobs(xs, seed, indices)
        selection = self._count(jobs, mechanism, [n0] * len(jobs))
        strata: list[Strata | None] = [None] * len(jobs)
        if exact_budget > 0 and hasattr(mechanism, "strata"):
            strata = [mechanism.strata(job.x, int(exact_budget)) if c.max() < c.sum() else None  # type: ignore[attr-defined]
                      for job, c in zip(jobs, selection)]
        exact = self._exact_mass(jobs, mechanism, strata)
        residual = [1.0 if st is None else min(1.0, max(0.0, float(st.residual_mass))) for st in strata]
        for job, st in zip(jobs, strata):
            if st is not None:
                job.draw = st.draw_residual
        # ties -> lowest class id; an input whose distribution is fully enumerated takes the exact top class
        tops = [int(np.argmax(e if w == 0.0 else c)) for c, e, w in zip(selection, exact, residual)]
        # estimation draws per look, scaled for stratified inputs
        fractions = [residual_fraction(c, t, float(e[t]), w) for c, t, e, w in zip(selection, tops, exact, residual)]
        plans = [[max(1, int(np.ceil(v * f))) for v in looks] for f in fractions]
        cands = [candidate_classes(c, t, candidate_pvalue) if w > 0.0 else [t]
                 for c, t, w in zip(selection, tops, residual)]
        est = [np.zeros(self.num_classes, dtype=np.int64) for _ in jobs]
        drawn = [0] * len(jobs)
        results: list[Certification | None] = [None] * len(jobs)

        def finish(j: int, b: Any, look_no: int) -> None:
            results[j] = Certification(
                prediction=tops[j] if b.radius != ABSTAIN else ABSTAIN, radius=b.radius,
                top1_lower=b.top1_lower, top2_upper=b.top2_upper, n_samples=jobs[j].n_samples,
                n_queries=jobs[j].n_queries, looks_used=look_no, exact_mass=1.0 - residual[j],
            )

        for j, w in enumerate(residual):
            if w == 0.0:
                finish(j, certificate.bounds(est[j], tops[j], alpha, exact[j], 0.0), 0)
        for k, alpha_k in enumerate(alphas):
            active = [j for j, r in enumerate(results) if r is None]
            if not active:
                break
            new = self._count([jobs[j] for j in active], mechanism, [plans[j][k] - drawn[j] for j in active])
            for j, c in zip(active, new):
                est[j] += c
                drawn[j] = plans[j][k]
                last = k == len(looks) - 1
                if not last and plans[j][k + 1] == drawn[j]:
                    continue  # a scaled look that adds no draws: bound at the next one
                share = 1.0
                if len(cands[j]) > 1:  # the candidate with the most estimated probability (ties: selection order)
                    mass = exact[j][cands[j]] + residual[j] * est[j][cands[j]] / max(1, drawn[j])
                    tops[j] = cands[j][int(np.argmax(mass))]
                    share = candidate_shares(len(cands[j]))[cands[j].index(tops[j])]
                b = certificate.bounds(est[j], tops[j], alpha_k * share, exact[j], residual[j])
                if last or self._stop(certificate, est[j], tops[j], b.radius, plans[j][-1], alphas[-1] * share,
                                      futility, exact[j], residual[j]):
                    finish(j, b, k + 1)
        elapsed = time.perf_counter() - start
        total_q = max(1, sum(j.n_queries for j in jobs))
        for job, r in zip(jobs, results):
            assert r is not None
            r.seconds = elapsed * job.n_queries / total_q
        return results  # type: ignore[return-value]

    @staticmethod
    def _stop(
        certificate: Any, est: np.ndarray, top: int, radius: float, n: int, alpha_last: float, futility: float,
        exact: np.ndarray | None = None, residual: float = 1.0,
    ) -> bool:
        """Whether an input can stop before its last look: its radius cannot (plausibly) still grow.

        Projects the last look's counts: the top class gets its remaining ``n - m`` votes at rate 1
        (saturation) or at the (1 - futility) Clopper-Pearson upper bound of its rate so far (futility);
        the rest go to the runner-up. Stops if the projected radius is not larger than ``radius`` (this
        includes abstaining early when even the projection abstains).
        """
        m = int(est.sum())
        rate = 1.0 if futility <= 0.0 else clopper_pearson_upper(int(est[top]), m, futility)
        remaining = n - m
        proj = est.copy()
        gained = int(np.ceil(rate * remaining))
        proj[top] += gained
        if remaining - gained > 0 and proj.size > 1:
            others = np.delete(np.arange(proj.size), top)
            proj[others[np.argmax(proj[others])]] += remaining - gained
        projected = certificate.bounds(proj, top, alpha_last, exact, residual).radius
        return radius >= projected or projected == ABSTAIN


def _check_n(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
