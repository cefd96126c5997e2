"""The Monte Carlo engine: the one place that loops over noisy samples.

Text (randomized deletion) and vision (Gaussian noise) both reduce certification to the same loop:
draw noisy copies of many inputs, classify them in large batches, count votes per class, and turn the
counts into bounds. The engine does that loop once, for any :class:`Mechanism` and any certificate
from :mod:`robusttext.certificate.stats`:

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
  (stratified sampling; the bounds are in :class:`robusttext.certificate.stats._Certificate`).
"""

from __future__ import annotations

import math
from itertools import repeat
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Protocol, Sequence, TypeVar

import numpy as np

from .batching import RowChunk, length_batches, prefetch
from .protocol import CertifyProtocol
from .stats import ABSTAIN, binomial_test_pvalue, clopper_pearson_upper

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
    #: the same draws as ``draw_residual`` as arrays (a :class:`robusttext.certificate.batching.RowChunk`), for the array path
    draw_residual_rows: Callable[[int, np.random.Generator], Any] | None = None


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
    forward passes this input needs when certified alone (its distinct noisy copies with dedup: fewer
    than ``n_samples`` when copies repeat, more when exact strata were enumerated; copies shared with
    other inputs of the call are classified once, see ``MonteCarloEngine.forward_passes``);
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
    """One input's sampling state within a call: its random stream, its draws and its forward passes."""

    x: Any
    rng: np.random.Generator
    cache: dict = field(default_factory=dict)
    seen: set = field(default_factory=set)  # keys of this input's distinct noisy copies (dedup)
    n_queries: int = 0
    n_samples: int = 0
    draw: Callable[[int, np.random.Generator], Sequence[Any]] | None = None  # None: mechanism.draw
    draw_rows: Callable[[int, np.random.Generator], Any] | None = None  # None: mechanism.draw_rows

    def charge(self, key: Hashable) -> None:
        """Count a forward pass for each distinct noisy copy of this input: what it costs certified alone,
        whichever other inputs share the call (so ``n_queries`` does not depend on grouping or sharding)."""
        if key not in self.seen:
            self.seen.add(key)
            self.n_queries += 1

class _RowPool:
    """Pending rows of the array path: each distinct key once (``where``: key -> pool row, in first-occurrence
    order; ``sources``: the chunk rows they come from) and, per pending copy group, its job, pool row and
    multiplicity."""

    def __init__(self) -> None:
        self.where: dict = {}
        self.sources: list[tuple[Any, np.ndarray]] = []
        self.job: list[np.ndarray] = []
        self.row: list[np.ndarray] = []
        self.mult: list[np.ndarray] = []
        self.waiting = 0

    def add(self, j: int, chunk: Any, miss: np.ndarray) -> None:
        where, keys = self.where, chunk.keys
        before = len(where)
        rows = [where.setdefault(keys[i], len(where)) for i in miss.tolist()]
        self.sources.append((chunk, miss[np.asarray(rows) >= before]))
        self.job.append(np.full(len(miss), j, dtype=np.int64))
        self.row.append(np.asarray(rows, dtype=np.int64))
        self.mult.append(chunk.mult[miss])
        self.waiting += len(miss)


@dataclass
class _InputState:
    """Everything CERTIFY knows about one input, phase by phase (see :meth:`MonteCarloEngine.certify`)."""

    job: _Job
    certificate: Any
    selection: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # selection votes
    strata: Strata | None = None
    exact: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per-class enumerated mass
    residual: float = 1.0  # probability mass left to sampling
    top: int = 0  # the class being certified
    candidates: list[int] = field(default_factory=list)
    plan: list[int] = field(default_factory=list)  # cumulative estimation draws at each look
    est: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # estimation votes
    drawn: int = 0
    result: Certification | None = None

    def choose_candidate(self) -> float:
        """Certify the candidate with the most estimated probability (ties: selection order); returns the
        share of the look's alpha its bound is taken at (1 with a single candidate)."""
        if len(self.candidates) <= 1:
            return 1.0
        mass = self.exact[self.candidates] + self.residual * self.est[self.candidates] / max(1, self.drawn)
        self.top = self.candidates[int(np.argmax(mass))]
        return candidate_shares(len(self.candidates))[self.candidates.index(self.top)]

    def finish(self, b: Any, looks_used: int) -> None:
        self.result = Certification(
            prediction=self.top if b.radius != ABSTAIN else ABSTAIN, radius=b.radius,
            top1_lower=b.top1_lower, top2_upper=b.top2_upper, n_samples=self.job.n_samples,
            n_queries=self.job.n_queries, looks_used=looks_used, exact_mass=1.0 - self.residual,
        )


def _share_time(results: list[Any], jobs: Sequence[_Job], elapsed: float) -> list[Any]:
    """Set each result's ``seconds`` to its share of ``elapsed``, in proportion to its forward passes."""
    total_q = max(1, sum(job.n_queries for job in jobs))
    for r, job in zip(results, jobs):
        r.seconds = elapsed * job.n_queries / total_q
    return results


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
        classify_rows: the array path (with ``dedup``, for a mechanism with ``draw_rows``, e.g.
            :class:`~robusttext.certificate.deletion.DeletionMechanism`): maps padded token ids ``(rows, width)`` int64 and
            each row's length to a class per row; it may return a device tensor (anything with ``.cpu()``),
            read only after the pool's batches are all submitted, so the device computes while the host
            builds the next batch. It must give the class ``classify`` gives the same sample. The draws, the
            dedup, the batches (stable length sort, ``batch_size`` rows) and hence the counts are those of
            the per-copy path; only the host work differs (arrays: :mod:`robusttext.certificate.batching`).
        token_budget: with ``classify_rows``, also cap each batch at this many padded tokens (rows x longest
            row); None: ``batch_size`` rows only. Changes the batches, not the counts (``classify`` is
            deterministic per sample).
        prefetch: with ``classify_rows``, draw chunks prepared ahead in a background thread (0: none);
            deterministic (one producer, in order). Useful when the model runs on an accelerator.
    """

    def __init__(
        self,
        classify: Callable[[list[S]], np.ndarray | Sequence[int]],
        num_classes: int,
        batch_size: int = 64,
        dedup: bool = True,
        pool_batches: int = 16,
        classify_rows: Callable[[np.ndarray, np.ndarray], Any] | None = None,
        token_budget: int | None = None,
        prefetch: int = 0,
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
        #: base-classifier forward passes (samples classified) so far, over all calls: with dedup across the
        #: inputs of a call this can be fewer than the sum of the inputs' ``n_queries``.
        self.forward_passes = 0
        self.classify_rows = classify_rows
        self.token_budget = None if token_budget is None else int(token_budget)
        self.prefetch = int(prefetch)
        #: tokens in the array path's batches: the samples' own and the padded total (rows x batch width)
        self.real_tokens = 0
        self.padded_tokens = 0

    @property
    def padding_share(self) -> float:
        """Share of the array path's batch tokens that were padding so far (0 before any batch)."""
        return 1.0 - self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0

    # ------------------------------------------------------------------ sampling and counting
    def _count(self, jobs: Sequence[_Job], mechanism: Mechanism, n: Sequence[int]) -> list[np.ndarray]:
        """Draw ``n[j]`` more samples of every job and return their class counts (one array per job)."""
        if self._rows_path(jobs, mechanism):
            return self._count_rows(jobs, mechanism, n)
        counts = [np.zeros(self.num_classes, dtype=np.int64) for _ in jobs]

        def vote(j: int, cls: int, mult: int) -> None:
            counts[j][cls] += mult

        # pending: list of (cost, job_id, key, sample, multiplicity) still to classify
        pending: list[tuple[int, int, Hashable, Any, int]] = []
        # blocks: (job_id, array of samples) when samples come as one array and are not deduplicated
        blocks: list[tuple[int, np.ndarray]] = []
        block_rows = 0
        for j, job, size in _draw_chunks(jobs, n):
            samples = job.draw(size, job.rng) if job.draw else mechanism.draw(job.x, size, job.rng)
            job.n_samples += size
            if not self.dedup and _is_array(samples):
                # Equal-shape samples (images): nothing to bucket, so nothing to pool; classify the
                # rows as soon as they fill a batch (less memory).
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
                    job.charge(k)
                    cls = job.cache.get(k)
                    if cls is None:
                        pending.append((mechanism.cost(s), j, k, s, mult))
                    else:
                        counts[j][cls] += mult
            else:
                pending.extend((mechanism.cost(s), j, None, s, 1) for s in samples)
            if len(pending) >= self.pool_size:
                self._flush(pending, jobs, vote)
                pending = []
        self._flush(pending, jobs, vote)
        self._flush_blocks(blocks, jobs, counts)
        return counts

    # ------------------------------------------------------------------ the array path
    def _rows_path(self, jobs: Sequence[_Job], mechanism: Mechanism) -> bool:
        return (self.dedup and self.classify_rows is not None and hasattr(mechanism, "draw_rows")
                and all(job.draw is None or job.draw_rows is not None for job in jobs))

    @staticmethod
    def _row_chunks(jobs: Sequence[_Job], mechanism: Any, n: Sequence[int]):
        """``(job, size, RowChunk)`` for each draw chunk, in the per-copy path's order (same draws from each stream)."""
        for j, job, size in _draw_chunks(jobs, n):
            rows = job.draw_rows(size, job.rng) if job.draw_rows else mechanism.draw_rows(job.x, size, job.rng)
            yield j, size, rows

    def _count_rows(self, jobs: Sequence[_Job], mechanism: Any, n: Sequence[int]) -> list[np.ndarray]:
        """:meth:`_count` on arrays: per chunk its distinct rows; cached classes vote at once, the others are
        pooled (``pool_size`` pending rows) and classified by :meth:`_flush_rows`. Same pending order, pools
        and batches as the per-copy path, so the same counts, ``n_queries`` and ``forward_passes``."""
        k = self.num_classes
        counts = np.zeros((len(jobs), k), dtype=np.int64)
        cache = jobs[0].cache if jobs else {}  # one dict shared by all jobs of the call
        pool = _RowPool()
        for j, size, chunk in prefetch(self._row_chunks(jobs, mechanism, n), self.prefetch):
            job = jobs[j]
            job.n_samples += size
            job.seen.update(chunk.keys)  # dedup: a forward pass per distinct copy of this input (``charge``)
            job.n_queries = len(job.seen)
            cls = np.fromiter(map(cache.get, chunk.keys, repeat(-1, len(chunk))), dtype=np.int64, count=len(chunk))
            hit = cls >= 0
            if hit.any():
                counts[j] += np.bincount(cls[hit], weights=chunk.mult[hit], minlength=k).astype(np.int64)
            if not hit.all():
                pool.add(j, chunk, np.nonzero(~hit)[0])
            if pool.waiting >= self.pool_size:
                self._flush_rows(pool, len(jobs), counts, cache)
                pool = _RowPool()
        self._flush_rows(pool, len(jobs), counts, cache)
        return list(counts)

    def _flush_rows(self, pool: "_RowPool", num_jobs: int, counts: np.ndarray, cache: dict) -> None:
        """Classify a pool's distinct rows (length-sorted batches), cache their classes, and add each pending
        copy's multiplicity to its input's count of its class."""
        if not pool.where:
            return
        lengths = np.concatenate([chunk.lengths[rows] for chunk, rows in pool.sources])
        ids = np.zeros((len(lengths), int(lengths.max())), dtype=np.int64)
        start = 0
        for chunk, rows in pool.sources:
            width = min(chunk.ids.shape[1], ids.shape[1])
            ids[start : start + len(rows), :width] = chunk.ids[rows, :width]
            start += len(rows)
        classes = self._classify_rows(ids, lengths)
        self.forward_passes += len(lengths)
        cache.update(zip(pool.where, classes.tolist()))
        k = self.num_classes
        job, row, mult = (np.concatenate(v) for v in (pool.job, pool.row, pool.mult))
        tally = np.bincount(job * k + classes[row], weights=mult, minlength=num_jobs * k)
        counts += tally.reshape(num_jobs, k).astype(np.int64)

    def _classify_rows(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Classes of padded rows, in length-sorted batches; every batch is submitted before any result is read."""
        order, batches = length_batches(lengths, self.batch_size, self.token_budget)
        submitted = []
        for sl in batches:
            idx = order[sl]
            width = int(lengths[idx].max())
            submitted.append((idx, self.classify_rows(ids[idx, :width], lengths[idx])))  # type: ignore[misc]
            self.padded_tokens += len(idx) * width
        self.real_tokens += int(lengths.sum())
        classes = np.empty(len(lengths), dtype=np.int64)
        for idx, out in submitted:
            classes[idx] = self._check(_host(out), len(idx))
        return classes

    def _classify(self, batch: Any, size: int) -> np.ndarray:
        return self._check(self.classify(batch), size)

    def _check(self, out: Any, size: int) -> np.ndarray:
        classes = np.asarray(out, dtype=np.int64).reshape(-1)
        if classes.shape[0] != size:
            raise RuntimeError(f"classify returned {classes.shape[0]} classes for {size} samples")
        if classes.size and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise RuntimeError(f"classify returned a class outside [0, {self.num_classes})")
        return classes

    def _flush_blocks(self, blocks: list[tuple[int, Any]], jobs: Sequence[_Job], counts: list[np.ndarray]) -> None:
        """Classify array blocks in batches of ``batch_size`` rows (each batch one slice of the rows, numpy or a
        device tensor); every batch is submitted before any class is read (see ``classify_rows``)."""
        if not blocks:
            return
        rows = _concat([b for _, b in blocks])
        owner = np.repeat(np.array([j for j, _ in blocks]), [len(b) for _, b in blocks])
        submitted = [self.classify(rows[s : s + self.batch_size]) for s in range(0, len(rows), self.batch_size)]
        classes = np.concatenate([self._check(_host(out), min(self.batch_size, len(rows) - i * self.batch_size))
                                  for i, out in enumerate(submitted)])
        self.forward_passes += len(rows)
        k = self.num_classes
        tally = np.bincount(owner * k + classes, minlength=len(jobs) * k).reshape(len(jobs), k)
        for j in np.unique(owner):
            counts[j] += tally[j]
            jobs[j].n_queries += int(tally[j].sum())

    def _flush(self, pending: list, jobs: Sequence[_Job], add: Callable[[int, int, Any], None]) -> None:
        """Classify pending ``(cost, job, key, sample, weight)`` items in length-sorted batches and call
        ``add(job, class, weight)`` for each (a vote count, or an exact probability). With dedup, a sample
        pending for several jobs (or twice for one, from two draw chunks) is classified once."""
        if not pending:
            return
        if self.dedup:
            merged: dict[Hashable, list] = {}  # key -> [cost, first job, key, sample, [(job, weight), ...]]
            for cost, j, k, s, weight in pending:
                cls = jobs[j].cache.get(k)
                if cls is not None:
                    add(j, cls, weight)
                    continue
                item = merged.get(k)
                if item is None:
                    merged[k] = [cost, j, k, s, [(j, weight)]]
                else:
                    item[4].append((j, weight))
            items = list(merged.values())
        else:
            items = [[cost, j, k, s, [(j, weight)]] for cost, j, k, s, weight in pending]
        items.sort(key=lambda t: t[0])
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            classes = self._classify([t[3] for t in batch], len(batch))
            self.forward_passes += len(batch)
            for (cost, first, k, s, owners), cls in zip(batch, classes):
                if not self.dedup:
                    jobs[first].n_queries += 1
                for j, weight in owners:
                    add(j, int(cls), weight)
                if self.dedup:
                    jobs[first].cache[k] = int(cls)  # one dict shared by all jobs of the call

    def _jobs(self, xs: Sequence[X], seed: int, indices: Sequence[int] | None) -> list[_Job]:
        if indices is None:
            indices = range(len(xs))
        if len(indices) != len(xs):
            raise ValueError(f"got {len(xs)} inputs but {len(indices)} indices")
        cache: dict = {}  # sample key -> class, shared by the inputs of this call (keys identify samples)
        return [_Job(x=x, rng=input_rng(seed, i), cache=cache) for x, i in zip(xs, indices)]

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
        out = []
        for job, c in zip(jobs, counts):
            order = np.argsort(-c, kind="stable")
            n_a = int(c[order[0]])
            n_b = int(c[order[1]]) if len(c) > 1 else 0
            pvalue = binomial_test_pvalue(n_a, n_a + n_b, 0.5) if n_a + n_b > 0 else 1.0
            pred = int(order[0]) if pvalue <= alpha else ABSTAIN
            out.append(Prediction(pred, c.tolist(), pvalue, job.n_queries))
        return _share_time(out, jobs, time.perf_counter() - start)

    def _exact_mass(self, states: Sequence["_InputState"], mechanism: Mechanism) -> None:
        """Per-class probability mass of each input's enumerated noisy copies (each distinct copy classified once).

        The masses are exactly rounded sums (``math.fsum``), so they do not depend on the order in which
        batching, pooling or deduplication happen to add the copies' probabilities."""
        terms: list[list[list[float]]] = [[[] for _ in range(self.num_classes)] for _ in states]
        jobs = [st.job for st in states]
        pending: list[tuple[int, int, Hashable, Any, float]] = []
        for j, st in enumerate(states):
            if st.strata is None:
                continue
            for sample, prob in zip(st.strata.samples, st.strata.probs):
                key = mechanism.key(sample) if self.dedup else None
                if self.dedup:
                    st.job.charge(key)
                pending.append((mechanism.cost(sample), j, key, sample, float(prob)))
                if len(pending) >= self.pool_size:
                    self._flush(pending, jobs, lambda j, c, w: terms[j][c].append(w))
                    pending = []
        self._flush(pending, jobs, lambda j, c, w: terms[j][c].append(w))
        for st, per_class in zip(states, terms):
            st.exact = np.array([math.fsum(t) for t in per_class])

    # ------------------------------------------------------------------ CERTIFY
    def certify(
        self,
        xs: Sequence[X],
        mechanism: Mechanism,
        certificate: Any,
        protocol: CertifyProtocol,
        seed: int = 0,
        indices: Sequence[int] | None = None,
        on_done: Callable[[int, Certification], None] | None = None,
    ) -> list[Certification]:
        """CERTIFY (Cohen et al. 2019, Alg. 2; RS-Del's variant) with the extensions of ``protocol``.

        Guarantee: with probability >= 1 - ``protocol.alpha`` over the Monte Carlo samples, each returned
        ``top1_lower`` / ``top2_upper`` bounds the smoothed classifier's class probabilities at the input,
        so the returned radius is certified (or the input abstains, -1).

        Phases, per input: :meth:`_select` (majority of ``n0`` votes), :meth:`_stratify` (exact strata:
        the likeliest noisy copies with exact probabilities, estimation from the rest), :meth:`_plan`
        (draws per look, candidate classes for an ambiguous selection), then for each look k
        :meth:`_estimate` (separate samples up to the look's size, the bound at ``alpha_k``) and
        :meth:`_stop` (saturation, futility, hopeless abstention).

        Why it holds (union bound): look k bounds a *fixed* number of i.i.d. samples, so its bound for
        candidate c fails with probability <= alpha_k s_c (``protocol.look_alphas()``, shares
        :func:`candidate_shares`); strata, look sizes, candidates and shares depend on the selection
        samples alone, which are independent of the estimation samples; hence P[any bound fails] <=
        sum_k sum_c alpha_k s_c = alpha, and the bound at whichever look a data-dependent stopping rule
        picks holds with probability >= 1 - alpha. Stopping rules decide cost only. Stratified bounds are
        in :class:`robusttext.certificate.stats._Certificate`.

        ``certificate`` is a :mod:`robusttext.certificate.stats` certificate (anything with ``bounds(counts, top,
        alpha, exact, residual)``) or a callable returning one for a prepared input (e.g. a rate that
        depends on the input's length). ``on_done(i, certification)`` is called as input ``xs[i]`` finishes.
        """
        start = time.perf_counter()
        looks, alphas = protocol.look_sizes(), protocol.look_alphas()
        states = [_InputState(job, certificate(job.x) if not hasattr(certificate, "bounds") else certificate)
                  for job in self._jobs(xs, seed, indices)]

        def finish(j: int, b: Any, looks_used: int) -> None:
            states[j].finish(b, looks_used)
            if on_done is not None:
                on_done(j, states[j].result)  # type: ignore[arg-type]

        self._select(states, mechanism, protocol.n0)
        self._stratify(states, mechanism, protocol.exact_budget)
        self._plan(states, looks, protocol.candidate_pvalue)
        for j, st in enumerate(states):
            if st.residual == 0.0:  # fully enumerated: exact probabilities, no sampling
                finish(j, st.certificate.bounds(st.est, st.top, protocol.alpha, st.exact, 0.0), 0)
        for k, alpha_k in enumerate(alphas):
            active = [j for j, st in enumerate(states) if st.result is None]
            if not active:
                break
            for j, bounds in self._estimate([states[j] for j in active], mechanism, k, alpha_k, alphas[-1], protocol.futility):
                finish(active[j], bounds, k + 1)
        return _share_time([st.result for st in states], [st.job for st in states], time.perf_counter() - start)

    def _select(self, states: Sequence["_InputState"], mechanism: Mechanism, n0: int) -> None:
        """Phase 1: ``n0`` selection votes per input (from each input's own stream, before any estimation)."""
        for st, votes in zip(states, self._count([st.job for st in states], mechanism, [n0] * len(states))):
            st.selection = votes
            st.est = np.zeros(self.num_classes, dtype=np.int64)
            st.exact = np.zeros(self.num_classes)

    def _stratify(self, states: Sequence["_InputState"], mechanism: Mechanism, exact_budget: int) -> None:
        """Phase 2: exact strata for inputs whose selection votes are split; their estimation draws then come
        from the residual distribution."""
        if exact_budget > 0 and hasattr(mechanism, "strata"):
            for st in states:
                if st.selection.max() < st.selection.sum():
                    st.strata = mechanism.strata(st.job.x, int(exact_budget))  # type: ignore[attr-defined]
        self._exact_mass(states, mechanism)
        for st in states:
            if st.strata is not None:
                st.residual = min(1.0, max(0.0, float(st.strata.residual_mass)))
                st.job.draw = st.strata.draw_residual
                st.job.draw_rows = st.strata.draw_residual_rows

    def _plan(self, states: Sequence["_InputState"], looks: Sequence[int], candidate_pvalue: float) -> None:
        """Phase 3: each input's top class (ties -> lowest id; fully enumerated -> the exact top), its
        estimation draws per look (scaled for stratified inputs) and its candidate classes."""
        for st in states:
            st.top = int(np.argmax(st.exact if st.residual == 0.0 else st.selection))
            fraction = residual_fraction(st.selection, st.top, float(st.exact[st.top]), st.residual)
            st.plan = [max(1, int(np.ceil(v * fraction))) for v in looks]
            st.candidates = (candidate_classes(st.selection, st.top, candidate_pvalue) if st.residual > 0.0
                             else [st.top])

    def _estimate(
        self, states: Sequence["_InputState"], mechanism: Mechanism, k: int, alpha_k: float, alpha_last: float,
        futility: float,
    ) -> list[tuple[int, Any]]:
        """Phase 4: draw every active input up to look ``k``'s size, bound it, and return ``(position, bounds)``
        for the inputs that stop here (phase 5)."""
        stopped = []
        new = self._count([st.job for st in states], mechanism, [st.plan[k] - st.drawn for st in states])
        for j, (st, votes) in enumerate(zip(states, new)):
            st.est += votes
            st.drawn = st.plan[k]
            last = k == len(st.plan) - 1
            if not last and st.plan[k + 1] == st.drawn:
                continue  # a scaled look that adds no draws: bound at the next one
            share = st.choose_candidate()
            b = st.certificate.bounds(st.est, st.top, alpha_k * share, st.exact, st.residual)
            if last or self._stop(st.certificate, st.est, st.top, b.radius, st.plan[-1], alpha_last * share,
                                  futility, st.exact, st.residual):
                stopped.append((j, b))
        return stopped

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


def _draw_chunks(jobs: Sequence[_Job], n: Sequence[int]):
    """``(job index, job, size)`` of every draw: ``n[j]`` samples of job ``j`` in pieces of at most ``DRAW_CHUNK``."""
    for j, (job, m) in enumerate(zip(jobs, n)):
        remaining = int(m)
        while remaining > 0:
            size = min(DRAW_CHUNK, remaining)
            remaining -= size
            yield j, job, size


def _is_array(samples: Any) -> bool:
    """Samples drawn as one array (numpy, or a tensor: anything with a shape that is not a list)."""
    return isinstance(samples, np.ndarray) or (hasattr(samples, "shape") and hasattr(samples, "cpu"))


def _concat(blocks: list[Any]) -> Any:
    """Concatenate array blocks along rows: numpy arrays, or tensors (on their device)."""
    if len(blocks) == 1:
        return blocks[0]
    if isinstance(blocks[0], np.ndarray):
        return np.concatenate(blocks)
    import torch  # only reached with tensor samples, so torch is there

    return torch.cat(blocks)


def _host(out: Any) -> Any:
    """A classifier's output on the host: a device tensor is read back (``.cpu()``), anything else as is."""
    return out.cpu().numpy() if hasattr(out, "cpu") else out


def _check_n(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
