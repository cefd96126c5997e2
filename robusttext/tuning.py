"""AdaptDel+ tuning: choose each length bin's deletion rate on a validation split.

AdaptDel+ (Huang, Marchant, Ohrimenko, Rubinstein, NeurIPS 2025, arXiv 2511.09316) groups inputs into
length bins and gives bin i the rate p(L) = 1 - v_i / L (:class:`robusttext.rates.BinnedRate`: the bin
keeps v_i units on average), here by default floored at p_lb = 0.9, p(L) = max(p_lb, 1 - v_i / L), so that
RS-Del's fixed rate is one of the candidates of every bin (also of bins of short texts, where 1 - v/L
alone cannot be 0.9 at every length). Each v_i is chosen to maximise the *reach* of its bin: the largest radius at
which the bin's certified accuracy on validation inputs is still at least ``threshold``. The search is a
golden-section search over log v_i per bin (:func:`bin_range`; with a floor, plus the bin's fixed-rate
end point), longest bins first (a short
bin's certificates look at neighbouring lengths, so the long bins are settled before them). Only the
split named by ``--split`` is used, and a split called ``test`` is refused: the rates are part of the
model, chosen without test data. The result is written into the model folder as ``rate_schedule.json``
(certify's default from then on) and ``tune_rates.json`` (every evaluation).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .arguments import CertifyArguments, ModelDataArguments, SmoothingArguments, TuneArguments
from .rates import BinnedRate

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


def bin_range(edges: tuple[int, ...], i: int, p_lb: float = 0.0, longest: int = 0) -> tuple[float, float]:
    """The search interval of bin i's value v (units kept on average). Without a floor: p = 1 - v/L stays
    in [0.01, 0.99] at the bin's shortest length. With a floor ``p_lb``: from p = 0.99 at the shortest
    length up to v = (1 - p_lb) * ``longest`` (the bin's longest input), where the whole bin has the fixed
    rate p_lb."""
    low = 1 if i == 0 else edges[i - 1]
    if not p_lb:
        return 0.01 * low, 0.99 * low
    return 0.01 * low, max((1.0 - p_lb) * max(longest, low), 0.02 * low)


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


def tune_rates(data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments, tune: TuneArguments) -> dict:
    """Choose AdaptDel+ bin values for ``data.model`` on ``data.split``; writes them into the model folder
    and returns ``{"schedule", "bins": [{"lengths", "inputs", "value", "reach", "evaluations"}]}``."""
    from .pipelines import load_examples, load_smoothed_classifier, validate_certify_args

    if str(data.split).lower().startswith("test"):
        raise ValueError(f"--split {data.split}: tune-rates chooses rates on a validation split, never on test data")
    if not Path(data.model).is_dir():
        raise ValueError(f"--model {data.model}: tune-rates writes rate_schedule.json into a local model folder")
    if not 0.0 < tune.threshold <= 1.0 or tune.iterations < 1 or tune.max_per_bin < 1:
        raise ValueError("--threshold must be in (0, 1], --iterations and --max-per-bin >= 1")
    edges = parse_edges(tune.edges)
    protocol = validate_certify_args(data, smooth, cert)
    clf = load_smoothed_classifier(data, smooth, cert)
    ds = load_examples(data, clf)
    probe = BinnedRate(edges, (0.5,) * (len(edges) + 1))
    lengths = [clf.num_units(t) for t in ds.texts]
    which = [probe.bin_of(n) for n in lengths]
    bins = [[i for i, w in enumerate(which) if w == b] for b in range(len(edges) + 1)]
    ranges = [bin_range(edges, b, tune.p_lb, max((lengths[i] for i in bins[b]), default=0)) for b in range(len(bins))]
    values = [float(np.clip(tune.start_k, *ranges[b])) for b in range(len(edges) + 1)]
    report = []
    for b in reversed(range(len(edges) + 1)):
        idx = bins[b][: tune.max_per_bin]
        if not idx:
            report.append({"bin": b, "inputs": 0, "value": values[b], "reach": None, "evaluations": []})
            continue

        def objective(v: float, b: int = b, idx: list = idx) -> float:
            clf.set_rate(BinnedRate(edges, tuple(v if j == b else values[j] for j in range(len(values))), tune.p_lb))
            certs = clf.certify([ds.texts[i] for i in idx], protocol, indices=idx)
            recs = [{"radius": c.radius, "correct": c.prediction == ds.labels[i]} for i, c in zip(idx, certs)]
            score = reach(recs, tune.threshold)
            logger.info("bin %d value %.3f: reach %.2f", b, v, score)
            return score

        # with a floor, the fixed rate p_lb over the whole bin (its range's upper end) is one candidate
        fixed_end = (ranges[b][1],) if tune.p_lb else ()
        values[b], evaluations = golden_section(objective, *ranges[b], tune.iterations, also=fixed_end)
        report.append({"bin": b, "inputs": len(idx), "value": values[b], "reach": dict(evaluations)[values[b]],
                       "evaluations": evaluations})
    schedule = BinnedRate(edges, tuple(values), tune.p_lb)
    schedule.save(data.model)
    result = {"schedule": schedule.to_dict(), "threshold": tune.threshold, "split": data.split,
              "bins": sorted(report, key=lambda r: r["bin"]), "describe": schedule.describe()}
    (Path(data.model) / "tune_rates.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
