"""Summaries and reports of certification results: ``summary.json``, a PNG curve, a Markdown table."""

from __future__ import annotations

import math
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
        f"({summary['num_examples']} examples). Deletion probability p_del = {p.get('p_del')}, unit = {unit}; "
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
    return "\n".join(lines)
