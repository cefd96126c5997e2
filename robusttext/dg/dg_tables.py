"""Model selection and DomainBed-style tables for domain-generalization sweeps (Gulrajani & Lopez-Paz,
ICLR 2021, Sec. 3 and App. B).

A run record holds ``algorithm``, ``heldout``, ``seed``, ``hparams_seed`` and ``trace``: one entry per
evaluation ``{step, val_accuracy, oracle_accuracy, test_accuracy}`` with accuracies in [0, 1] on
the training domains' validation rows (``val``), a validation part of the held-out domain
(``oracle``) and the rest of the held-out domain (``test``). Two selection rules, as DomainBed's:

* **training-domain validation**: among every run of (algorithm, held-out domain, seed), i.e. every
  hyper-parameter trial, and every evaluated step, the one with the best ``val_accuracy``;
* **test-domain validation (oracle)**: among the trials, the one whose *last* step has the best
  ``oracle_accuracy`` (no early stopping, as DomainBed's oracle).

Ties go to the earliest step, then the lowest ``hparams_seed``. The selected ``test_accuracy`` is
averaged over seeds: cells are mean +- standard error (sample std / sqrt(n), n = seeds).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

SELECTIONS = {"training-domain validation": "val", "test-domain validation (oracle)": "oracle"}


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, standard error of the mean)``; the error is 0 for a single value."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_se of no values")
    m = math.fsum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    var = math.fsum((v - m) ** 2 for v in vals) / (len(vals) - 1)
    return m, math.sqrt(var / len(vals))


def select_step(trace: Sequence[dict], key: str = "val") -> dict:
    """The evaluation with the best ``{key}_accuracy`` (the earliest on ties)."""
    if not trace:
        raise ValueError("no evaluation was recorded; set --eval-steps or evaluate at least once per run")
    return max(trace, key=lambda t: (t[f"{key}_accuracy"], -t["step"]))


def select_run(runs: Sequence[dict], rule: str) -> dict:
    """The selected evaluation ``{step, ..., hparams_seed}`` among the runs of one (algorithm, held-out
    domain, seed) under ``rule`` (``"val"`` or ``"oracle"``, see the module docstring)."""
    if rule not in ("val", "oracle"):
        raise ValueError(f"selection rule must be 'val' or 'oracle', got {rule!r}")
    best: tuple | None = None
    for run in sorted(runs, key=lambda r: r.get("hparams_seed", 0)):
        step = select_step(run["trace"], "val") if rule == "val" else run["trace"][-1]
        score = (step[f"{rule}_accuracy"], -step["step"])
        if best is None or score > best[0]:
            best = (score, {**step, "hparams_seed": run.get("hparams_seed", 0)})
    if best is None:
        raise ValueError("select_run: no runs")
    return best[1]


def _cells(rows: Sequence[dict], heldout: Sequence[str], rule: str) -> dict[str, dict[str, float]]:
    chosen: dict[tuple[str, int], float] = {}
    for d in heldout:
        for seed in sorted({r["seed"] for r in rows if r["heldout"] == d}):
            runs = [r for r in rows if r["heldout"] == d and r["seed"] == seed]
            chosen[(d, seed)] = select_run(runs, rule)["test_accuracy"]
    cells: dict[str, dict[str, float]] = {}
    for d in heldout:
        accs = [a for (dd, _), a in sorted(chosen.items()) if dd == d]
        if accs:
            m, se = mean_se(accs)
            cells[d] = {"mean": m, "se": se, "n": len(accs)}
    seeds = sorted({s for (_, s) in chosen})
    per_seed = [math.fsum(chosen[(d, s)] for d in heldout) / len(heldout) for s in seeds if all((d, s) in chosen for d in heldout)]
    if per_seed:
        m, se = mean_se(per_seed)
        cells["avg"] = {"mean": m, "se": se, "n": len(per_seed)}
    return cells


def dg_summary(records: Sequence[dict], heldout: Sequence[str], algorithms: Sequence[str]) -> dict:
    """Per selection rule, per algorithm: held-out domain -> ``{mean, se, n}`` of the selected test
    accuracy over seeds, plus ``avg`` (mean and s.e. over seeds of the per-seed average over domains)."""
    tables = {}
    for title, rule in SELECTIONS.items():
        tables[title] = {a: _cells([r for r in records if r["algorithm"] == a], heldout, rule) for a in algorithms}
    return {"heldout": list(heldout), "algorithms": list(algorithms), "tables": tables}


def _cell(c: dict | None, scale: float = 100.0) -> str:
    if not c:
        return "-"
    text = f"{scale * c['mean']:.1f}"
    return text + (f" ± {scale * c['se']:.1f}" if c["n"] > 1 else "")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def dg_markdown(summary: dict, params: dict, name: Callable[[str], str] = str.upper) -> str:
    """DomainBed's layout: one table per selection rule; rows = algorithms, columns = held-out domains + Avg."""
    heldout = summary["heldout"]
    out = [
        "## Leave-one-domain-out accuracy (%)",
        "",
        f"Model `{params.get('model')}` on `{params.get('dataset')}`; each column is a held-out test domain "
        f"(trained on all other domains). Seeds: {params.get('seeds')}; hyper-parameter trials per cell: "
        f"{1 + int(params.get('hparam_trials') or 0)}. Cells: mean ± standard error over seeds.",
    ]
    for title, table in summary["tables"].items():
        rows = [[name(a)] + [_cell(cells.get(d)) for d in heldout] + [_cell(cells.get("avg"))] for a, cells in table.items()]
        out += ["", f"### Model selection: {title}", "", markdown_table(["Algorithm", *heldout, "Avg"], rows)]
    return "\n".join(out) + "\n"
