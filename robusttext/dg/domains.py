"""Leave-one-domain-out sweeps (DomainBed protocol): ``robusttext dg``.

:func:`leave_one_domain_out` trains on all domains but one and tests on the held-out one, for every
held-out domain, algorithm, hyper-parameter trial and seed; it writes one line per finished run to
``dg_runs.jsonl`` (a rerun resumes), then ``dg_results.json`` and ``dg_report.md`` with both
model-selection rules (:mod:`robusttext.dg.dg_tables`). What it runs is a :class:`SweepConfig`:

* ``hparam_trials=N``: besides the run's own hyper-parameters (trial 0), N random draws from
  :mod:`robusttext.training.hparams_registry`;
* ``certify=CertifyProtocol(...)`` (with a training rate > 0): each run's model certifies the held-out
  domain (:func:`certify_heldout`), certified accuracy per edit-distance radius side by side;
  ``update_model_card`` also writes those results into the run's model folder card.

The data is a :class:`~robusttext.runs.data.DataSpec` with a domain column, or ready variants (the
constructed spurious-marker benchmark of ``experiments/dg_spurious.py`` passes its environments and a
marker-free copy, trained as an extra ERM row).

ERM and Fishr are trained identically (same domain-balanced batches, budget and evaluation schedule)
except for the penalty: ERM is the Fishr trainer with ``fishr_lambda = 0`` and no warm-up (its recorded
hyper-parameters say 0; Fishr's switch after ``fishr_anneal_steps`` re-initialises the optimizer, which plain
ERM never does, and the trainer takes no switch at ``fishr_lambda = 0``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from tqdm.auto import tqdm

from ..certificate.protocol import CertifyProtocol
from ..certificate.rates import RateSchedule
from ..certificate.smoothing import SmoothedTextClassifier
from ..compat import overwrite_requested
from ..hub.model_card import write_model_card
from ..runs.certify import certification_rate, certify_dataset
from ..runs.data import DataSpec
from ..runs.distributed import process_state
from ..runs.fingerprint import examples_fingerprint
from ..runs.results import ResultsStore, versions, write_json
from ..training.domain_data import check_heldout, safe_name, split_domains, training_domains
from ..training.hparams_registry import parse_algorithms, random_hparams
from ..training.trainer import TrainingRecipe, accuracy_metric, build_trainer
from .dg_tables import dg_markdown, dg_summary, markdown_table, mean_se

logger = logging.getLogger("robusttext")

#: Training arguments a hyper-parameter trial may set.
_TRIAL_FIELDS = ("learning_rate", "weight_decay", "fishr_lambda", "fishr_ema", "fishr_anneal_steps")


@dataclass(frozen=True)
class SweepConfig:
    """What a leave-one-domain-out sweep runs (checked here, once).

    Args:
        algorithms: registered algorithms (``"erm,fishr"`` or a sequence; :mod:`~robusttext.training.hparams_registry`).
        test_domains: held-out domains to run (None: every domain, one at a time).
        seeds: seeds per (algorithm, held-out domain, trial), >= 1: ``args.seed``, ``args.seed + 1``, ...
        val_fraction: share of each training domain kept for model selection, in (0, 1) (DomainBed: 0.2).
        max_per_domain: at most this many examples of each training domain (None: all).
        max_test_examples: at most this many rows of the held-out domain, oracle and test (None: all).
        hparam_trials: random trials per cell besides trial 0 (the given values), >= 0.
        certify: certify the held-out test rows with each run's model under this protocol (None: off;
            needs a training rate > 0).
        update_model_card: with ``certify``, write each run's certified results into its model folder's card.
    """

    algorithms: str | Sequence[str] = "erm,fishr"
    test_domains: Optional[Sequence[str]] = None
    seeds: int = 1
    val_fraction: float = 0.2
    max_per_domain: Optional[int] = None
    max_test_examples: Optional[int] = None
    hparam_trials: int = 0
    certify: Optional[CertifyProtocol] = None
    update_model_card: bool = False

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.hparam_trials < 0:
            raise ValueError(f"hparam_trials must be >= 0, got {self.hparam_trials}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.update_model_card and self.certify is None:
            raise ValueError("update_model_card needs certify: the card holds the certified results")
        object.__setattr__(self, "algorithms", tuple(parse_algorithms(self.algorithms)))

    def record(self) -> dict[str, Any]:
        """The fields as a sweep records them (the certify protocol as its budget)."""
        c = self.certify
        return {"val_fraction": self.val_fraction, "max_per_domain": self.max_per_domain,
                "max_test_examples": self.max_test_examples, "hparam_trials": self.hparam_trials,
                "certify": c is not None, "certify_n": c and c.n, "certify_alpha": c and c.alpha}


def run_name(algorithm: str, heldout: str, hparams_seed: int, seed: int) -> str:
    """The folder of one run (held-out domain sanitised: it cannot leave ``output_dir/runs``)."""
    return f"{safe_name(algorithm)}-{safe_name(heldout)}-h{int(hparams_seed)}-s{int(seed)}"


def trial_hparams(algorithm: str, hparams_seed: int, args: Any) -> dict:
    """Trial 0: the run's own arguments; trial k > 0: the registry's k-th random draw."""
    algo = "erm" if algorithm not in ("erm", "fishr") else algorithm  # an extra variant row (an oracle) is ERM
    if hparams_seed == 0:
        h = {k: getattr(args, k) for k in _TRIAL_FIELDS}
    else:
        h = {**{k: getattr(args, k) for k in _TRIAL_FIELDS}, **random_hparams(algo, hparams_seed)}
    if algo == "erm":  # no penalty and no warm-up (ERM has none; its Adam state is never re-initialised)
        h["fishr_lambda"] = 0.0
        h["fishr_anneal_steps"] = 0
    return h


def _load(data: DataSpec | Mapping[str, Any], sweep: SweepConfig, domain_column: str) -> tuple[dict[str, Any], list[str], dict]:
    """The data variants (``{"": data, extra row name: data, ...}``), the held-out domains and the data's
    record (its spec, or the variants' content fingerprints)."""
    if isinstance(data, DataSpec):
        variants = {"": data.load(domain_column=domain_column)}
        record = data.record()
    else:
        variants = dict(data)
        if "" not in variants:
            raise ValueError("data: a mapping of variants needs the main one under the key ''")
        record = {"variants": {k: examples_fingerprint(v.texts, v.labels) for k, v in variants.items()}}
    domains = training_domains(variants[""].dataset, "domain")
    return variants, check_heldout(domains, list(sweep.test_domains) if sweep.test_domains else None), record


def _params(model: str, record: dict, recipe: TrainingRecipe, sweep: SweepConfig, args: Any, heldout: list,
            algorithms: list, seeds: list) -> dict:
    rate = recipe.rate if isinstance(recipe.rate, float) else recipe.rate.describe()
    params = {
        "model": model, **record, "max_length": recipe.max_length, "p_del": rate, "unit": recipe.unit,
        "algorithms": algorithms, "heldout": heldout, "seeds": seeds, **sweep.record(),
        "freeze_encoder": recipe.freeze_encoder, "eval_steps": args.eval_steps,
        **{k: getattr(args, k) for k in _TRIAL_FIELDS}, "num_train_epochs": args.num_train_epochs,
        "max_steps": args.max_steps, "per_device_train_batch_size": args.per_device_train_batch_size,
    }
    if args.fishr_anneal_steps > 0 and any(a != "fishr" for a in algorithms):
        # ERM runs without Fishr's warm-up (trial_hparams); a folder without this key holds ERM runs that took
        # its switch (Adam re-initialised), so resuming it is refused
        params["erm_anneal_steps"] = 0
    return params


def leave_one_domain_out(model: str, data: DataSpec | Mapping[str, Any], args: Any, sweep: SweepConfig = SweepConfig(),
                         recipe: TrainingRecipe = TrainingRecipe(rate=0.0)) -> dict:
    """Run the sweep; returns the summary (see :func:`robusttext.dg.dg_tables.dg_summary`).

    Args:
        model: Hub id or folder of the classifier each run fine-tunes.
        data: a :class:`~robusttext.runs.data.DataSpec` whose split holds every domain (in ``args.domain_column``),
            or a mapping of loaded ``TextData`` with a ``domain`` column: ``""`` the main data, any other key an
            extra row trained as ERM on that data (same environments, e.g. a marker-free oracle).
        args: :class:`~robusttext.training.fishr.FishrTrainingArguments`; each run trains in
            ``output_dir/runs/<run_name>`` without checkpoints.
        sweep: what to run (:class:`SweepConfig`).
        recipe: the training noise (rate 0: none), unit, ``max_length`` and ``freeze_encoder``; the algorithm is the run's.
    """
    started = time.time()
    if sweep.certify is not None and not (isinstance(recipe.rate, RateSchedule) or recipe.rate > 0):
        raise ValueError("certify needs training under deletion noise: a rate in (0, 1), e.g. p_del 0.9")
    variants, heldout, record = _load(data, sweep, args.domain_column)
    algorithms = list(sweep.algorithms) + [k for k in variants if k]
    parts = split_domains(variants[""].dataset, sweep.val_fraction, sweep.max_per_domain)
    seeds = [args.seed + i for i in range(sweep.seeds)]
    # seed-major: a stopped sweep has whole seeds (every algorithm and domain) done first
    grid = [(d, a, h, s) for s in seeds for d in heldout for a in algorithms for h in range(sweep.hparam_trials + 1)]
    params = _params(model, record, recipe, sweep, args, heldout, algorithms, seeds)
    out = Path(args.output_dir)
    store = ResultsStore(out, params, rank=args.process_index, name="dg_runs")
    if overwrite_requested(args) and args.should_save:
        store.clear()
    store.check_params(write=args.should_save)
    done = store.finished()
    for index, (d, algo, h, seed) in enumerate(tqdm(grid, desc="leave-one-domain-out", disable=not args.should_save)):
        if index in done:
            continue
        start = time.time()
        run = train_heldout(model, variants.get(algo, variants[""]), parts, (d, algo, h, seed), recipe, sweep, args)
        run.update(index=index, seconds=round(time.time() - start, 1))
        if args.should_save:
            store.append([run])
        logger.info("%s held out %s trial %d seed %d: final test accuracy %.4f", algo, d, h, seed, run["final_test_accuracy"])
    records = store.finalize() if args.should_save else list(store.finished().values())
    summary = dg_summary(records, heldout, algorithms)
    if sweep.certify is not None:
        summary["certified"] = certified_table(records, heldout, algorithms)
    summary.update(parameters=params, runs=records, versions=versions(), wall_seconds=round(time.time() - started, 1))
    if args.should_save:
        write_json(out / "dg_results.json", summary)
        (out / "dg_report.md").write_text(report_markdown(summary), encoding="utf-8")
    return summary


def report_markdown(summary: dict) -> str:
    """The sweep's report: the DomainBed tables, and the certified table when there is one."""
    text = dg_markdown(summary, summary["parameters"], name=lambda a: a if "-" in a else a.upper())
    text += "\n" + penalty_markdown(summary["runs"], summary["algorithms"])
    if summary.get("certified"):
        text += "\n" + certified_markdown(summary["certified"])
    train = sum(float(r.get("seconds", 0.0)) for r in summary["runs"])
    text += f"\nTraining and evaluation time, all runs: {train / 60:.1f} min"
    if summary.get("wall_seconds") is not None:
        text += f"; wall time of this command: {summary['wall_seconds'] / 60:.1f} min"
    return text + "\n"


def penalty_markdown(records: list[dict], algorithms: list[str]) -> str:
    """Fishr's penalty (the core's units: mean over head-gradient coordinates and domains, EMA-smoothed)
    at the first and last training log, mean over runs; ERM's is the penalty it would have had."""
    rows = []
    for a in algorithms:
        traces = [[t["fishr_penalty"] for t in r.get("loss_trace", []) if "fishr_penalty" in t]
                  for r in records if r["algorithm"] == a]
        traces = [t for t in traces if t]
        if traces:
            first, last = (sum(t[i] for t in traces) / len(traces) for i in (0, -1))
            rows.append(f"| {a} | {first:.3g} | {last:.3g} |")
    if not rows:
        return ""
    return "\n".join(["### Fishr penalty on the training domains", "", "| Algorithm | first log | last log |", "|---|---|---|", *rows, ""])


def _split_heldout(parts: dict, heldout: str, sweep: SweepConfig) -> tuple[list[int], list[int]]:
    """Rows of the held-out domain: (oracle validation rows, test rows), disjoint; the oracle part is
    the first ``val_fraction`` share of the first ``max_test_examples`` rows."""
    rows = parts[heldout]["all"][: sweep.max_test_examples or None]
    n_oracle = max(1, int(round(sweep.val_fraction * len(rows))))
    return rows[:n_oracle], rows[n_oracle:]


def train_heldout(model: str, full: Any, parts: dict, cell: tuple[str, str, int, int], recipe: TrainingRecipe,
                  sweep: SweepConfig, args: Any) -> dict:
    """One run of the sweep, ``cell = (held-out domain, algorithm, trial, seed)``: train on every domain but the
    held-out one with the trial's hyper-parameters, evaluate training-domain validation, held-out oracle and
    held-out test rows every ``args.eval_steps`` steps (else every epoch) and at the end; returns the record
    with the trace."""
    heldout, algorithm, hparams_seed, seed = cell
    train_domains = [d for d in parts if d != heldout]
    ds = full.dataset
    oracle_rows, test_rows = _split_heldout(parts, heldout, sweep)
    sets = {
        "val": ds.select([i for d in train_domains for i in parts[d]["val"]]),
        "oracle": ds.select(oracle_rows), "test": ds.select(test_rows),
    }
    train_ds = ds.select([i for d in train_domains for i in parts[d]["train"]])
    hp = trial_hparams(algorithm, hparams_seed, args)
    steps = dict(eval_strategy="steps", eval_steps=args.eval_steps) if args.eval_steps else dict(eval_strategy="epoch")
    run_dir = Path(args.output_dir) / "runs" / run_name(algorithm, heldout, hparams_seed, seed)
    run_args = replace(
        args, output_dir=str(run_dir), seed=seed, save_strategy="no", load_best_model_at_end=False, report_to=[],
        **hp, **steps,
    )
    trainer = build_trainer(model, train_ds, full.label_names, run_args, replace(recipe, algorithm="fishr"),
                            eval_dataset=sets, compute_metrics=accuracy_metric(), domains=train_domains)
    trainer.train()
    if not any(h.get("step") == trainer.state.global_step and "eval_val_accuracy" in h for h in trainer.state.log_history):
        trainer.evaluate()
    trace = _trace(trainer.state.log_history)
    record = {
        "algorithm": algorithm, "heldout": heldout, "seed": seed, "hparams_seed": hparams_seed, "hparams": hp,
        "train_domains": train_domains, "n_train": len(train_ds), **{f"n_{k}": len(v) for k, v in sets.items()},
        "final_test_accuracy": trace[-1]["test_accuracy"], "trace": trace,
        "loss_trace": _loss_trace(trainer.state.log_history),
    }
    if sweep.certify is not None:
        record["certified_accuracy"] = certify_heldout(trainer, sets["test"], run_dir, recipe, sweep, seed)
    return record


def _trace(history: list[dict]) -> list[dict]:
    """``[{step, val_accuracy, oracle_accuracy, test_accuracy}]`` from a Trainer's log history."""
    trace: dict[int, dict] = {}
    for h in history:
        for key in ("val", "oracle", "test"):
            if f"eval_{key}_accuracy" in h:
                trace.setdefault(int(h["step"]), {"step": int(h["step"])})[f"{key}_accuracy"] = float(h[f"eval_{key}_accuracy"])
    return [t for _, t in sorted(trace.items()) if all(f"{k}_accuracy" in t for k in ("val", "oracle", "test"))]


def _loss_trace(history: list[dict]) -> list[dict]:
    """``[{step, loss, fishr_penalty, fishr_weight}]`` from the training logs (every ``logging_steps``):
    the training loss (cross-entropy plus weighted penalty, averaged since the last log), and Fishr's
    unweighted penalty (the core's units, averaged likewise) with the weight in force; ERM logs the
    penalty it would have had (weight 0), so the two are comparable."""
    keys = ("loss", "fishr_penalty", "fishr_weight")
    return [{"step": int(h["step"]), **{k: float(h[k]) for k in keys if k in h}} for h in history if "loss" in h and "step" in h]


# --------------------------------------------------------------------------- certified and domain-robust
def certify_heldout(trainer: Any, test_ds: Any, run_dir: Path, recipe: TrainingRecipe, sweep: SweepConfig,
                    seed: int) -> dict:
    """Certify the held-out domain's test rows with the run's model: the one adapter to the core's
    certification (:func:`robusttext.runs.certify.certify_dataset`, under ``sweep.certify``).

    Saves the model to ``run_dir/model`` and the rows to ``run_dir/heldout.jsonl``, certifies them into
    ``run_dir/certify`` (resumable there) at the training rate (a fixed rate, or the schedule) and, with
    ``sweep.update_model_card``, merges the results into ``run_dir/model/README.md``
    (:func:`robusttext.hub.model_card.write_model_card`, the code path of ``certify --update-model-card``).
    Returns the certified accuracy per radius (``{"0": acc, "1": acc, ...}``, radius in deletion units as strings)."""
    model_dir = run_dir / "model"
    trainer.save_model(str(model_dir))
    path = run_dir / "heldout.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": int(y)}) + "\n" for t, y in zip(test_ds["text"], test_ds["label"])))
    protocol = replace(sweep.certify, n0=min(sweep.certify.n0, sweep.certify.n))
    fixed = isinstance(recipe.rate, float)
    rate = certification_rate(str(model_dir), recipe.rate if fixed else None, None if fixed else recipe.rate)
    clf = SmoothedTextClassifier.from_pretrained(str(model_dir), p_del=rate, unit=recipe.unit, max_length=recipe.max_length,
                                                 seed=seed, autocast_dtype="fp32", device=process_state().device)
    summary = certify_dataset(clf, DataSpec(str(path), "test"), run_dir / "certify", protocol)
    if sweep.update_model_card and process_state().is_main_process:
        write_model_card(run_dir / "certify", model_dir)
    return {str(k): float(v) for k, v in summary["certified_accuracy"].items()}


def certified_table(records: list[dict], heldout: list[str], algorithms: list[str]) -> dict:
    """Certified accuracy per radius on each held-out domain, mean over seeds (trial 0 runs only)."""
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    for a in algorithms:
        for d in heldout:
            runs = [r for r in records if r["algorithm"] == a and r["heldout"] == d and r.get("hparams_seed", 0) == 0]
            curves = [r["certified_accuracy"] for r in runs if r.get("certified_accuracy")]
            if curves:
                radii = sorted(curves[0], key=float)
                table.setdefault(d, {})[a] = {k: list(mean_se([c[k] for c in curves])) for k in radii}
    return table


def certified_markdown(table: dict) -> str:
    """Per held-out domain: rows = algorithms, columns = radius, cells = certified accuracy (%)."""
    out = ["## Certified accuracy on the held-out domain (%)", ""]
    for d, algos in table.items():
        radii = sorted(next(iter(algos.values())), key=float)
        rows = [[a.upper()] + [f"{100 * algos[a][k][0]:.1f}" for k in radii] for a in algos]
        out += [f"### held out: {d}", "", markdown_table(["Algorithm", *[f"r={k}" for k in radii]], rows), ""]
    return "\n".join(out)
