"""Summaries and reports of certification results: ``summary.json``, a PNG curve, a Markdown table."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

UNIT_NAMES = {"word": "words", "char": "characters", "token": "tokens", "l2": "L2 norm"}


def certified_accuracy_curve(records: Sequence[dict], radii: Sequence[float], need_correct: bool = True) -> dict[str, float]:
    """Fraction of inputs predicted correctly (``need_correct=False``: at all, for unlabelled data) with
    radius >= r, for each r in ``radii``."""
    total = max(1, len(records))
    out = {}
    for r in radii:
        hits = sum(1 for rec in records if (rec["correct"] or not need_correct) and rec["radius"] >= max(r, 0))
        key = str(int(r)) if float(r).is_integer() else f"{r:g}"
        out[key] = hits / total
    return out


def certified_radii(records: Sequence[dict], need_correct: bool = True) -> list[float]:
    """Per-input certified radius, counting abstained (and, with ``need_correct``, wrong) predictions as -1."""
    return [float(rec["radius"]) if (rec["correct"] or not need_correct) and rec["radius"] >= 0 else -1.0
            for rec in records]


def is_labelled(records: Sequence[dict]) -> bool:
    """Whether every record has a label (an unlabelled run reports radii without accuracy)."""
    return all(rec.get("label") is not None for rec in records)


def summarize_certification(records: Sequence[dict], params: dict, radii: Sequence[float]) -> dict[str, Any]:
    """The ``summary.json`` of a certification run.

    ``clean_accuracy`` (base model, no noise; needs a ``clean_prediction`` per record),
    ``smoothed_accuracy`` (abstain counts as wrong), ``abstain_rate``, ``certified_accuracy``
    (radius -> fraction correct with at least that radius), ``certified_fraction`` (the same without
    asking for correctness), ``median_certified_radius`` and ``mean_certified_radius`` (wrong or
    abstained = -1), ``mean_queries`` and the run's parameters. Unlabelled records (label None) get
    ``labelled: False`` and None for every accuracy; their radii count whatever the prediction.
    """
    n = len(records)
    total = max(1, n)
    labelled = is_labelled(records)
    radii_all = certified_radii(records, need_correct=labelled)
    summary: dict[str, Any] = {
        "num_examples": n,
        "labelled": labelled,
        "smoothed_accuracy": sum(1 for r in records if r["correct"]) / total if labelled else None,
        "abstain_rate": sum(1 for r in records if r["prediction"] == -1) / total,
        "certified_accuracy": certified_accuracy_curve(records, radii) if labelled else None,
        "certified_fraction": certified_accuracy_curve(records, radii, need_correct=False),
        "median_certified_radius": float(np.median(radii_all)) if n else -1.0,
        "mean_certified_radius": float(np.mean(radii_all)) if n else -1.0,
        "mean_queries": float(np.mean([r["n_queries"] for r in records])) if n else 0.0,
        "parameters": dict(params),
    }
    if records and "clean_prediction" in records[0] and labelled:
        summary["clean_accuracy"] = sum(1 for r in records if r["clean_prediction"] == r["label"]) / total
    return summary


def plot_certified_accuracy(
    curves: dict[str, dict[str, float]], path: str | Path, xlabel: str, title: str = "Certified accuracy",
    ylabel: str = "certified accuracy",
) -> None:
    """Step plot of certified accuracy vs radius, one line per named curve, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for name, curve in curves.items():
        xs = [float(k) for k in curve]
        ax.step(xs, list(curve.values()), where="post", marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _rate_text(params: dict[str, Any]) -> str:
    """The deletion rate of a run's parameters, as text."""
    if params.get("p_del") is not None:
        return f"p_del = {params['p_del']}"
    sched = params.get("rate_schedule") or {}
    return ", ".join(f"{k}={v}" for k, v in sched.items()) or "?"


def certification_markdown(summary: dict[str, Any], unit: str) -> str:
    """A Markdown section a model card can take: parameters, headline numbers, certified-accuracy table."""
    p = summary["parameters"]
    unit_name = UNIT_NAMES.get(unit, unit)
    labelled = summary.get("certified_accuracy") is not None
    curve = summary["certified_accuracy"] if labelled else summary["certified_fraction"]
    radii = list(curve)
    lines = [
        "## Certified robustness (randomized deletion, RS-Del / CERT-ED)",
        "",
        f"Model `{p.get('model')}` on `{p.get('dataset')}` split `{p.get('split')}` "
        f"({summary['num_examples']} examples). Deletion rate {_rate_text(p)}, unit = {unit}; "
        f"radii are edit distances (insertions, deletions, substitutions) counted in **{unit_name}**. "
        f"Clopper-Pearson bounds at alpha = {p.get('alpha')}, n0 = {p.get('n0')}, n = {p.get('n')}, "
        f"looks = {p.get('looks')}, seed = {p.get('seed')}.",
        "",
        "| clean accuracy | smoothed accuracy | abstain rate | median certified radius |",
        "|---|---|---|---|",
        f"| {_pct(summary.get('clean_accuracy'))} | {_pct(summary.get('smoothed_accuracy'))} | "
        f"{_pct(summary['abstain_rate'])} | {summary['median_certified_radius']:g} |",
        "",
        "| radius (" + unit_name + ") | " + " | ".join(radii) + " |",
        "|---" * (len(radii) + 1) + "|",
        f"| certified {'accuracy' if labelled else 'fraction (no labels)'} | "
        + " | ".join(_pct(v) for v in curve.values()) + " |",
        "",
    ]
    if summary.get("radius_by_length"):
        card = summary.get("median_log10_cardinality")
        lines += [
            f"Mean certified radius {summary['mean_certified_radius']:.2f} {unit_name} (wrong or abstained = -1); "
            f"median certified-region size 10^{card:.1f} strings" if card is not None else
            f"Mean certified radius {summary['mean_certified_radius']:.2f} {unit_name} (wrong or abstained = -1)",
            f"(CERT-ED / AdaptDel count, vocabulary K = {summary['cardinality_vocab_size']}). "
            "Radius by input length (`radius_by_length.png`):",
            "",
            f"| length ({unit_name}) | inputs | mean radius | median radius | certified (r >= 0) | most frequent class |",
            "|---|---|---|---|---|---|",
            *(f"| {b['lengths']} | {b['inputs']} | {b['mean_radius']:.2f} | {b['median_radius']:g} | "
              f"{_pct(b['certified_at_0'])} | {_pct(b.get('top_class_share'))} |" for b in summary["radius_by_length"]),
            "",
        ]
    return "\n".join(lines)


#: Length bins (in smoothing units) of the radius-by-length table: [0, 10), [10, 20), ..., [500, inf).
LENGTH_EDGES = (10, 20, 50, 100, 200, 500)
#: Alphabet size K of the certified-region cardinality for character units (7-bit ASCII); words and tokens
#: use the model tokenizer's vocabulary size.
CHAR_VOCAB = 128


def summarize_lengths(records: Sequence[dict], unit: str, vocab_size: int | None = None) -> dict[str, Any]:
    """Radius per input length and the certified region's size, for a run whose records carry ``length``.

    ``radius_by_length``: for each length bin (:data:`LENGTH_EDGES`), the inputs, their mean and median
    certified radius (wrong or abstained = -1), their certified accuracy at radius 0, and ``top_class_share``,
    the share of the bin's non-abstained inputs given its most frequent class (None if all abstained): 100%
    with several classes in the data flags a constant prediction, whose radius says nothing about the text
    (near-total deletion certifies the majority class at any radius).
    ``median_log10_cardinality``: the median over inputs of log10 V(n, r, K), the number of strings the
    certificate covers as the CERT-ED / AdaptDel papers count it (:func:`robusttext.certificate.stats.edit_ball_log10_cardinality`:
    V = sum_{i<=r} (K-1)^i sum_{j=i-r}^{r} C(n+j, i), n = the input's length, r = its certified radius),
    with K = ``cardinality_vocab_size`` (the tokenizer's vocabulary for words and tokens, 128 for
    characters); None when more than half of the inputs have no certificate (wrong or abstained).
    """
    from ..certificate.stats import edit_ball_log10_cardinality

    if not records or "length" not in records[0]:
        return {}
    labelled = is_labelled(records)
    radii = certified_radii(records, need_correct=labelled)
    lengths = [int(r["length"]) for r in records]
    k = CHAR_VOCAB if unit == "char" else int(vocab_size or 30522)
    logs = [edit_ball_log10_cardinality(n, int(r), k) if r >= 0 else -math.inf for n, r in zip(lengths, radii)]
    median = float(np.median(logs))
    bins = []
    edges = (0, *LENGTH_EDGES, None)
    for lo, hi in zip(edges[:-1], edges[1:]):
        idx = [i for i, n in enumerate(lengths) if n >= lo and (hi is None or n < hi)]
        if not idx:
            continue
        rs = [radii[i] for i in idx]
        bins.append({"lengths": f"{lo}-{hi - 1}" if hi is not None else f">={lo}", "inputs": len(idx),
                     "mean_radius": float(np.mean(rs)), "median_radius": float(np.median(rs)),
                     "certified_at_0": sum(r >= 0 for r in rs) / len(idx), "top_class_share": _top_class_share(
                         [records[i]["prediction"] for i in idx if records[i]["radius"] >= 0])})
    return {"radius_by_length": bins, "median_log10_cardinality": median if math.isfinite(median) else None,
            "cardinality_vocab_size": k, "median_length": float(np.median(lengths))}


def _top_class_share(predictions: Sequence[int]) -> float | None:
    """The share of ``predictions`` equal to the most frequent one (None when there are none)."""
    return max(Counter(predictions).values()) / len(predictions) if predictions else None


def plot_radius_by_length(records: Sequence[dict], path: str | Path, unit: str) -> None:
    """Scatter of each input's certified radius (wrong or abstained = -1) against its length, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records or "length" not in records[0]:
        return
    radii = certified_radii(records, need_correct=is_labelled(records))
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    ax.scatter([r["length"] for r in records], radii, s=10, alpha=0.6)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel(f"input length ({UNIT_NAMES.get(unit, unit)})")
    ax.set_ylabel(f"certified radius ({UNIT_NAMES.get(unit, unit)})")
    ax.grid(alpha=0.3)
    ax.set_title("Certified radius by input length (wrong / abstained = -1)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
