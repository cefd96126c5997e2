"""AdaptDel+ tuning: choose each length bin's deletion rate on a validation split.

AdaptDel+ (Huang, Marchant, Ohrimenko, Rubinstein, NeurIPS 2025, arXiv 2511.09316) groups inputs into
length bins and gives bin i the rate p(L) = 1 - v_i / L (:class:`robusttext.certificate.rates.BinnedRate`: the bin
keeps v_i units on average), here by default floored at p_lb = 0.9, p(L) = max(p_lb, 1 - v_i / L), so that
RS-Del's fixed rate is one of the candidates of every bin (also of bins of short texts, where 1 - v/L
alone cannot be 0.9 at every length).

Each v_i maximises an objective on the bin's validation inputs: the paper's *reach* (the largest radius
at which the bin's certified accuracy is still at least ``threshold``) or the *mean certified radius*
(a wrong or abstained input counts -1, so the mean is the area under the certified-accuracy curve minus
1). Either can be *guarded* (``max_drop``): a value whose certified accuracy at radius 0 is more than
``max_drop`` below that of the bin's fixed rate p_lb is refused (scored below every admissible value),
so no bin buys radius with more accuracy than that; the fixed rate itself is always admissible. Without
the guard, reach at threshold 0.5 on a balanced two-class task is maximised by near-total deletion (a
constant prediction is certified at every radius on half the inputs). The *pooled* guard (``guard =
"pooled"``, mean-radius only) bounds the drop of the whole validation split instead, each bin weighted by
its share w_b of the validation inputs: bin b is searched under the per-bin guard max_drop / w_b (no value
losing more fits the budget), then one evaluated value per bin is chosen to maximise sum_b w_b * mean
radius_b subject to sum_b w_b * (drop of bin b) <= max_drop (:func:`pooled_choice`, exact). A per-bin
guard on a few dozen inputs moves in steps of one input and leaves most of its allowance unspent; the
pooled one spends it where it buys the most radius. Either guard can compare *balanced* accuracy
(``guard_metric = "balanced"``: the mean over classes of each class's certified accuracy at radius 0): a
bin whose fixed-rate model is near chance loses almost no plain accuracy by predicting its majority class
for every input, and gains the radius of a constant prediction (unbounded, and worthless); balanced
accuracy charges that at 1 / (number of classes).

The search is a golden-section search over log v_i per bin (:func:`bin_range`; with a floor, plus the
bin's fixed-rate end point), longest bins first (a short bin's certificates look at neighbouring lengths,
so the long bins are settled before them). Only the split named by ``--split`` is used, and a split
called ``test`` is refused: the rates are part of the model, chosen without test data. The result is
written into the model folder as ``rate_schedule.json`` (certify's default from then on) and
``tune_rates.json`` (every evaluation).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tqdm.auto import tqdm

from ..certificate.protocol import CertifyProtocol
from ..certificate.rates import DEFAULT_P_DEL, BinnedRate
from ..certificate.smoothing import SmoothedTextClassifier
from ..runs.certify import load_examples
from ..runs.data import DataSpec, TextData
from ..runs.report import certified_accuracy_curve, certified_radii

logger = logging.getLogger("robusttext")

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def parse_edges(text: str) -> tuple[int, ...]:
    """``"20|50|100"`` -> (20, 50, 100): bin edges in units, strictly increasing integers >= 1."""
    try:
        edges = tuple(int(v) for v in str(text).replace(",", "|").split("|") if v.strip())
    except ValueError:
        raise ValueError(f"--edges must be integers separated by '|', e.g. 20|50|100, got {text!r}") from None
    BinnedRate(edges, tuple(0.5 for _ in range(len(edges) + 1)))  # validates the edges
    return edges


def bin_range(edges: tuple[int, ...], i: int, p_lb: float = 0.0, longest: int = 0, shortest: int = 0) -> tuple[float, float]:
    """The search interval of bin i's value v (units kept on average). Without a floor: p = 1 - v/L stays
    in [0.01, 0.99] at the bin's shortest length. With a floor ``p_lb``: from p = 0.99 at the bin's shortest
    input (``shortest``, else its lower edge) up to v = (1 - p_lb) * ``longest`` (the bin's longest input),
    where the whole bin has the fixed rate p_lb. (Starting at the lower edge wastes the search on values
    no input sees: for a first bin of 100-250-word articles the edge is 1, and v = 0.01 keeps nothing.)"""
    low = 1 if i == 0 else edges[i - 1]
    if not p_lb:
        return 0.01 * low, 0.99 * low
    top = max((1.0 - p_lb) * max(longest, low), 0.02 * low)
    return min(0.01 * max(shortest, low), top / 2.0), top


def reach(records: list[dict], threshold: float) -> float:
    """The largest radius at which the certified accuracy of ``records`` is >= ``threshold`` (-1 if none),
    plus that accuracy / 2 as a tie-break (a step objective needs one for the search)."""
    n = max(1, len(records))
    best = -1.0
    for r in range(0, max([int(x["radius"]) for x in records] + [0]) + 1):
        acc = sum(1 for x in records if x["correct"] and x["radius"] >= r) / n
        if acc >= threshold:
            best = r + acc / 2.0
    return best


OBJECTIVES = ("reach", "mean-radius")
GUARDS = ("per-bin", "pooled")
GUARD_METRICS = ("accuracy", "balanced")


def accuracy_at_zero(records: list[dict], balanced: bool = False) -> float:
    """Certified accuracy at radius 0 of ``records``: the share correct and not abstained. ``balanced``: the
    mean over the labels present of each label's share (records carry ``label``), so that predicting one
    class for every input scores 1 / (number of labels) whatever the class balance."""
    if not balanced:
        return certified_accuracy_curve(records, [0])["0"]
    labels = sorted({rec["label"] for rec in records})
    return float(np.mean([accuracy_at_zero([rec for rec in records if rec["label"] == y]) for y in labels])) if labels else 0.0


def one_class(records: list[dict]) -> bool:
    """Whether every non-abstained input of ``records`` gets the same class (``prediction``) while their labels
    hold several: a smoothed classifier that is constant on these inputs, whose radii say nothing about them."""
    predicted = {rec["prediction"] for rec in records if rec["radius"] >= 0}
    return len(predicted) == 1 and len({rec["label"] for rec in records}) > 1


def refuses_one_class(records: list[dict], fixed_records: list[dict]) -> bool:
    """The balanced guard's outright refusal of one value in a bin: its ``records`` are :func:`one_class` and
    the fixed rate's (``fixed_records``) are not."""
    return one_class(records) and not one_class(fixed_records)


def refused_one_class(runs: dict[float, list[dict]], fixed_value: float | None) -> set[float]:
    """The values (keys of ``runs``, value -> records) of one bin that :func:`refuses_one_class` refuses."""
    if fixed_value is None:
        return set()
    return {v for v, recs in runs.items() if refuses_one_class(recs, runs[fixed_value])}


def mean_radius(records: list[dict]) -> float:
    """Mean certified radius of ``records``, a wrong or abstained input counting -1 (as in ``summary.json``)."""
    return float(np.mean(certified_radii(records))) if records else -1.0


def bin_score(records: list[dict], objective: str, threshold: float, floor: float | None = None,
              balanced: bool = False) -> float:
    """One bin's objective (``reach`` or ``mean-radius``, both >= -1), or, when its certified accuracy at
    radius 0 (``balanced``: over classes, :func:`accuracy_at_zero`) is below ``floor``, ``-2 - shortfall``:
    below every admissible value, and less bad the smaller the shortfall (so the search still moves towards
    admissible values)."""
    acc0 = accuracy_at_zero(records, balanced)
    if floor is not None and acc0 < floor - 1e-12:
        return -2.0 - (floor - acc0)
    return reach(records, threshold) if objective == "reach" else mean_radius(records)


def pooled_choice(
    candidates: list[list[tuple[float, float, float]]], budget: float
) -> tuple[tuple[float, ...], float, float]:
    """One candidate per bin maximising the summed gain with the summed loss <= ``budget``.

    ``candidates[b]`` lists bin b's ``(value, loss, gain)``; at least one candidate of every bin must have
    loss <= 0 (the fixed rate: loss 0) so that a choice exists. Exact: the bins are merged one at a time
    and only the Pareto front of (summed loss, summed gain) is kept (a partial choice with more loss and no
    more gain than another can never complete to a better one). Returns (values, loss, gain); ties go to
    the smaller loss."""
    front: list[tuple[float, float, tuple[float, ...]]] = [(0.0, 0.0, ())]
    # the most the bins after b can give back (a value may gain accuracy: a negative loss)
    rest = [sum(min(0.0, *(dl for _, dl, _ in options)) for options in candidates[b + 1:]) for b in range(len(candidates))]
    for b, options in enumerate(candidates):
        merged = sorted(((loss + dl, gain + dg, chosen + (v,)) for loss, gain, chosen in front for v, dl, dg in options
                         if loss + dl + rest[b] <= budget + 1e-12), key=lambda m: (m[0], -m[1]))
        front = []
        for m in merged:
            if not front or m[1] > front[-1][1] + 1e-12:
                front.append(m)
        if not front:
            raise ValueError("no choice within the budget: every bin needs a candidate of loss <= 0 (its fixed rate)")
    loss, gain, values = max((m for m in front if m[0] <= budget + 1e-12), key=lambda m: (m[1], -m[0]))
    return values, loss, gain


def golden_section(
    f: Callable[[float], float], lo: float, hi: float, iterations: int, also: tuple[float, ...] = ()
) -> tuple[float, list[tuple]]:
    """Maximise ``f`` over [lo, hi] (log scale) with ``iterations`` golden-section steps, also evaluating the
    points ``also``; returns the best point evaluated (ties: the smallest) and every (x, f(x))."""
    seen: dict[float, float] = {float(x): f(float(x)) for x in also}

    def g(u: float) -> float:
        x = float(math.exp(u))
        if x not in seen:
            seen[x] = f(x)
        return seen[x]

    a, b = math.log(lo), math.log(hi)
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    for _ in range(max(1, iterations)):
        if g(c) >= g(d):
            b, d = d, c
            c = b - GOLDEN * (b - a)
        else:
            a, c = c, d
            d = a + GOLDEN * (b - a)
    best = max(seen, key=lambda x: (seen[x], -x))
    return best, sorted(seen.items())


@dataclass(frozen=True)
class TuneConfig:
    """How AdaptDel+ chooses the bins' values (see the module docstring); checked here, once.

    Args:
        edges: length bin edges in units, e.g. ``"20|50|100|200"`` or ``(20, 50, 100, 200)``.
        threshold: in (0, 1]; *reach* is the largest radius whose certified accuracy stays >= this.
        iterations: golden-section steps per bin (>= 1).
        max_per_bin: validation inputs certified per bin and step (>= 1).
        start_k: initial value of every bin (clipped to its range).
        p_lb: floor of every bin's rate, ``p(L) = max(p_lb, 1 - v/L)``; 0: the paper's unfloored ``1 - v/L``.
        objective: ``"reach"`` (the paper's) or ``"mean-radius"``.
        max_drop: guard in [0, 1): refuse a value whose certified accuracy at radius 0 is more than this below the
            bin's fixed rate p_lb (needs ``p_lb > 0``); None: no guard.
        guard: ``"per-bin"`` or ``"pooled"`` (the whole split, bins weighted by their share; needs ``max_drop``
            and ``objective="mean-radius"``).
        guard_metric: ``"accuracy"`` or ``"balanced"`` (mean over classes; refuses one-class bins).
    """

    edges: Any = "20|50|100|200"
    threshold: float = 0.5
    iterations: int = 6
    max_per_bin: int = 40
    start_k: float = 13.0
    p_lb: float = DEFAULT_P_DEL
    objective: str = "reach"
    max_drop: float | None = None
    guard: str = "per-bin"
    guard_metric: str = "accuracy"

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", parse_edges(self.edges) if isinstance(self.edges, str)
                           else tuple(int(e) for e in self.edges))
        if not 0.0 < self.threshold <= 1.0 or self.iterations < 1 or self.max_per_bin < 1:
            raise ValueError("--threshold must be in (0, 1], --iterations and --max-per-bin >= 1")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.max_drop is not None and not (0.0 <= self.max_drop < 1.0 and self.p_lb > 0):
            raise ValueError(f"--max-drop must be in [0, 1) and needs --p-lb > 0 (the guard compares each value with "
                             f"the bin's fixed rate p_lb), got --max-drop {self.max_drop} --p-lb {self.p_lb}")
        if self.guard not in GUARDS or self.guard_metric not in GUARD_METRICS:
            raise ValueError(f"--guard must be one of {', '.join(GUARDS)} and --guard-metric one of "
                             f"{', '.join(GUARD_METRICS)}, got {self.guard!r} and {self.guard_metric!r}")
        if self.guard == "pooled" and (self.max_drop is None or self.objective != "mean-radius"):
            raise ValueError("--guard pooled needs --max-drop (the validation split's allowed drop) and --objective "
                             f"mean-radius (a sum over bins), got --max-drop {self.max_drop} --objective {self.objective}")


def tune_rates(
    classifier: SmoothedTextClassifier, data: Any, protocol: CertifyProtocol | None = None,
    config: TuneConfig = TuneConfig(), *, model_dir: str | None = None,
) -> dict:
    """Choose AdaptDel+ bin values for ``classifier`` on the validation ``data`` (a
    :class:`~robusttext.runs.data.DataSpec`, :class:`~robusttext.runs.data.TextData`, ``datasets.Dataset`` or
    ``(texts, labels)``; a split named ``test`` is refused), certifying under ``protocol``; writes
    ``rate_schedule.json`` and ``tune_rates.json`` into ``model_dir`` (default: the classifier's folder) and returns
    ``{"schedule", "objective", "threshold", "max_drop", "guard", "guard_metric", "split", "describe",
    "bins": [{"bin", "inputs", "value", "score", "accuracy_at_0", "fixed_rate_accuracy_at_0", "evaluations"}]}``
    (the two accuracies in the guard's metric), plus ``"pooled_drop"`` and ``"weights"`` with the pooled guard.
    The classifier's rate is changed while tuning and left at the chosen schedule."""
    tune, clf = config, classifier
    model_dir = str(model_dir if model_dir is not None else clf.name_or_path)
    split = data.split if isinstance(data, (DataSpec, TextData)) else None
    check_tune_target(model_dir, split)
    protocol = protocol if protocol is not None else CertifyProtocol()
    pooled = tune.guard == "pooled"
    edges = tune.edges
    ds = load_examples(data, clf)
    probe = BinnedRate(edges, (0.5,) * (len(edges) + 1))
    lengths = [clf.num_units(t) for t in ds.texts]
    which = [probe.bin_of(n) for n in lengths]
    bins = [[i for i, w in enumerate(which) if w == b] for b in range(len(edges) + 1)]
    ranges = [bin_range(edges, b, tune.p_lb, max((lengths[i] for i in bins[b]), default=0),
                         min((lengths[i] for i in bins[b]), default=0)) for b in range(len(bins))]
    values = [float(np.clip(tune.start_k, *ranges[b])) for b in range(len(edges) + 1)]
    report, runs = [], {}
    # at most max(1, iterations) + 2 values per bin: the fixed rate, golden section's first two points, one per further step
    per_value = sum(min(len(x), tune.max_per_bin) for x in bins)
    bar = tqdm(total=per_value * (max(1, tune.iterations) + 2), desc="tune-rates", unit="input")
    for b in reversed(range(len(edges) + 1)):
        idx = bins[b][: tune.max_per_bin]
        if not idx:
            report.append({"bin": b, "inputs": 0, "value": values[b], "score": None, "accuracy_at_0": None,
                           "fixed_rate_accuracy_at_0": None, "evaluations": []})
            continue
        # pooled: no value losing more than max_drop / w_b in bin b fits the budget, so the search stays inside that
        allowed = tune.max_drop if not pooled else tune.max_drop * len(ds.texts) / len(bins[b])
        values[b], entry, runs[b] = _tune_bin(clf, ds, protocol, edges, values, b, idx, ranges[b], tune, allowed, bar)
        report.append(entry)
    bar.total = bar.n  # values the search met twice were certified once
    bar.close()
    weights = {b: len(bins[b]) / len(ds.texts) for b in runs}
    extra = _choose_pooled(report, runs, weights, values, tune.max_drop, tune.guard_metric == "balanced") if pooled else {}
    schedule = BinnedRate(edges, tuple(values), tune.p_lb)
    schedule.save(model_dir)
    result = {"schedule": schedule.to_dict(), "objective": tune.objective, "threshold": tune.threshold,
              "max_drop": tune.max_drop, "guard": tune.guard,
              "guard_metric": tune.guard_metric, **extra, "split": ds.split,
              "bins": sorted(report, key=lambda r: r["bin"]), "describe": schedule.describe()}
    (Path(model_dir) / "tune_rates.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def check_tune_target(model_dir: str, split: str | None) -> None:
    """A ``ValueError`` for a test split (rates are part of the model, chosen without test data) or a model that is
    no local folder (the schedule is written into it)."""
    if split is not None and str(split).lower().startswith("test"):
        raise ValueError(f"--split {split}: tune-rates chooses rates on a validation split, never on test data")
    if not Path(model_dir).is_dir():
        raise ValueError(f"--model {model_dir}: tune-rates writes rate_schedule.json into a local model folder")


def _choose_pooled(report: list[dict], runs: dict[int, dict], weights: dict[int, float], values: list[float],
                   max_drop: float, balanced: bool) -> dict:
    """The pooled guard's choice: one evaluated value per bin (``runs[b]``: value -> records), bins weighted by
    ``weights``, the weighted drop against each bin's fixed rate <= ``max_drop``; updates ``values`` and the
    bins' ``report`` entries in place and returns ``{"pooled_drop", "weights"}``."""
    entries = {e["bin"]: e for e in report}
    order = sorted(runs)
    refused = {b: refused_one_class(runs[b], entries[b].get("fixed_value")) if balanced else set() for b in order}
    options = [[(v, weights[b] * (entries[b]["fixed_rate_accuracy_at_0"] - accuracy_at_zero(recs, balanced)),
                 weights[b] * mean_radius(recs)) for v, recs in runs[b].items() if v not in refused[b]] for b in order]
    chosen, drop, _ = pooled_choice(options, max_drop)
    for b, v in zip(order, chosen):
        values[b] = v
        entries[b].update(value=v, score=mean_radius(runs[b][v]), accuracy_at_0=accuracy_at_zero(runs[b][v], balanced))
    return {"pooled_drop": drop, "weights": {str(b): weights[b] for b in order}}


def _tune_bin(clf, ds, protocol, edges: tuple[int, ...], values: list[float], b: int, idx: list[int],
              value_range: tuple[float, float], tune: TuneConfig, max_drop: float | None, bar: Any) -> tuple[float, dict, dict]:
    """Bin ``b``'s value, the other bins held at ``values``, certified on validation inputs ``idx``, refusing
    values that lose more than ``max_drop`` (None: no guard) of certified accuracy at radius 0 against the
    bin's fixed rate; returns it, the bin's report entry and the records of every value evaluated. ``bar``
    (a progress bar) moves by one per certified input."""
    runs: dict[float, list[dict]] = {}

    def records_at(v: float) -> list[dict]:
        if v not in runs:
            clf.set_rate(BinnedRate(edges, tuple(v if j == b else values[j] for j in range(len(values))), tune.p_lb))
            bar.set_postfix(bin=b, value=f"{v:.3g}")
            certs = clf.certify([ds.texts[i] for i in idx], protocol, indices=idx, on_done=lambda i, c: bar.update(1))
            runs[v] = [{"radius": c.radius, "correct": c.prediction == ds.labels[i], "label": ds.labels[i],
                        "prediction": c.prediction} for i, c in zip(idx, certs)]
        return runs[v]

    # with a floor, the fixed rate p_lb over the whole bin (its range's upper end) is one candidate
    fixed_end = (value_range[1],) if tune.p_lb else ()
    balanced = tune.guard_metric == "balanced"
    floor = None if max_drop is None else accuracy_at_zero(records_at(fixed_end[0]), balanced) - max_drop

    def objective(v: float) -> float:
        if balanced and fixed_end and refuses_one_class(records_at(v), records_at(fixed_end[0])):
            logger.info("bin %d value %.3f: one class for every input, refused", b, v)
            return -4.0  # below every admissible value and every shortfall (bin_score's -2 - shortfall >= -3)
        score = bin_score(records_at(v), tune.objective, tune.threshold, floor, balanced)
        logger.info("bin %d value %.3f: %s %.2f", b, v, tune.objective, score)
        return score

    best, evaluations = golden_section(objective, *value_range, tune.iterations, also=fixed_end)
    return best, {"bin": b, "inputs": len(idx), "value": best, "score": dict(evaluations)[best],
                  "fixed_value": fixed_end[0] if fixed_end else None,
                  "accuracy_at_0": accuracy_at_zero(runs[best], balanced),
                  "fixed_rate_accuracy_at_0": accuracy_at_zero(runs[fixed_end[0]], balanced) if fixed_end else None,
                  "evaluations": evaluations}, runs
