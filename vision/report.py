"""Reports of the vision sidecar: certification summaries (L2), the comparison table (Markdown + PNG)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats

from robusttext.runs.report import summarize_certification


def radius_grid(sigma: float, n: int, alpha: float, step: float = 0.25) -> list[float]:
    """Radii at which to report certified accuracy: 0, step, ... up to the largest radius CERTIFY can
    give with ``n`` samples, ``sigma * Phi^-1(alpha^(1/n))`` (all n votes for the top class)."""
    top = sigma * float(stats.norm.ppf(alpha ** (1.0 / n)))
    return [round(step * k, 6) for k in range(int(math.floor(top / step)) + 1)]


def summarize_l2(records: Sequence[dict], params: dict, sigma: float, n: int, alpha: float) -> dict[str, Any]:
    """The core's certification summary plus ``certified_count`` (correct with radius >= 0) and
    ``mean_radius_certified`` (their mean L2 radius, pixel units)."""
    summary = summarize_certification(records, params, radius_grid(sigma, n, alpha))
    radii = [r["radius"] for r in records if r["correct"] and r["radius"] >= 0]
    summary["certified_count"] = len(radii)
    summary["mean_radius_certified"] = float(np.mean(radii)) if radii else 0.0
    summary["unit"] = "l2"
    return summary


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def certification_markdown(summary: dict[str, Any], title: str = "Gaussian smoothing") -> str:
    """A Markdown section: parameters, headline numbers, certified accuracy by L2 radius."""
    p = summary["parameters"]
    radii = list(summary["certified_accuracy"])
    return "\n".join([
        f"## Certified L2 robustness ({title}, Cohen et al. 2019)",
        "",
        f"Model `{p.get('model_dir')}` on `{p.get('dataset')}` split `{p.get('split')}` ({summary['num_examples']} images); "
        f"sigma = {p.get('sigma')}, n0 = {p.get('n0')}, n = {p.get('n')}, alpha = {p.get('alpha')}, seed = {p.get('seed')}"
        + (f", denoiser `{p.get('denoiser_dir')}`" if p.get("denoiser_dir") else "") + ". Radii in pixel units (L2).",
        "",
        "| clean accuracy | smoothed accuracy | abstain rate | certified correct | mean radius of those |",
        "|---|---|---|---|---|",
        f"| {_pct(summary.get('clean_accuracy'))} | {_pct(summary['smoothed_accuracy'])} | {_pct(summary['abstain_rate'])} "
        f"| {summary['certified_count']} | {summary['mean_radius_certified']:.3f} |",
        "",
        "| L2 radius | " + " | ".join(radii) + " |",
        "|---" * (len(radii) + 1) + "|",
        "| certified accuracy | " + " | ".join(_pct(v) for v in summary["certified_accuracy"].values()) + " |",
        "",
    ])


def table_markdown(rows: dict[str, dict[str, Any]], columns: Sequence[tuple[str, str]], caption: str = "") -> str:
    """A Markdown table: one row per named entry, ``columns`` = (key, header); accuracies and errors as %."""
    lines = ([caption, ""] if caption else []) + [
        "| model | " + " | ".join(h for _, h in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, row in rows.items():
        cells = []
        for key, _ in columns:
            v = row.get(key)
            if isinstance(v, float) and (key.startswith(("fgsm", "pgd")) or "acc" in key or "error" in key):
                cells.append(_pct(v))
            elif isinstance(v, float):
                cells.append(f"{v:.3f}")
            else:
                cells.append("-" if v is None else str(v))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy_bars(rows: dict[str, dict[str, Any]], columns: Sequence[tuple[str, str]], path: str | Path,
                       title: str) -> None:
    """Grouped bars: one group per column (an accuracy), one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(columns) + 2), 3.8), dpi=120)
    width = 0.8 / max(1, len(rows))
    xs = np.arange(len(columns))
    for k, (name, row) in enumerate(rows.items()):
        ax.bar(xs + k * width, [float(row.get(c) or 0.0) for c, _ in columns], width, label=name)
    ax.set_xticks(xs + 0.4 - width / 2)
    ax.set_xticklabels([h for _, h in columns], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def attack_markdown(result: dict[str, Any]) -> str:
    """``robustness.md`` of ``vision attack``: accuracy and attack success rate at each eps."""
    p = result["parameters"]
    steps = f", {p.get('steps')} steps x {p.get('restarts')} restart(s)" if p.get("attack") == "pgd" else ""
    lines = [
        f"## Accuracy under {str(p.get('attack')).upper()} ({p.get('norm')}{steps})",
        "",
        f"Model `{p.get('model_dir')}` on `{p.get('dataset')}` split `{p.get('split')}` ({p.get('num_examples')} images); "
        "eps in pixel units" + (", targeted" if p.get("targeted") else "") + ".",
        "",
        "| eps | accuracy | attack success rate |",
        "|---|---|---|",
    ]
    lines += [f"| {eps} | {_pct(r['accuracy'])} | {_pct(r['success_rate'])} |" for eps, r in result["results"].items()]
    return "\n".join(lines) + "\n"
