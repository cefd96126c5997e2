"""Leave-one-domain-out sweeps (DomainBed protocol): ``robusttext dg``.

:func:`leave_one_domain_out` trains on all domains but one and tests on the held-out one, for every
held-out domain, algorithm, hyper-parameter trial and seed; it writes one line per finished run to
``dg_runs.jsonl`` (a rerun resumes), then ``dg_results.json`` and ``dg_report.md`` with both
model-selection rules (:mod:`robusttext.dg.dg_tables`). Options:

* ``--hparam-trials N``: besides the run's own hyper-parameters (trial 0), N random draws from
  :mod:`robusttext.training.hparams_registry`;
* ``--spurious A,B``: the constructed marker benchmark of :mod:`robusttext.dg.spurious` (its last
  environment is held out) with a marker-free ERM oracle row;
* ``--p-del P --certify``: training under deletion noise, then each run's model certifies the held-out
  domain (:func:`certify_heldout`), certified accuracy per edit-distance radius side by side.

ERM and Fishr are trained identically (same domain-balanced batches, budget and evaluation schedule)
except for the penalty: ERM is the Fishr trainer with ``fishr_lambda = 0`` and no warm-up (its recorded
hyper-parameters say 0; Fishr's switch after ``fishr_anneal_steps`` re-initialises the optimizer, which plain
ERM never does, and the trainer takes no switch at ``fishr_lambda = 0``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .dg_tables import dg_markdown, dg_summary
from ..training.domain_data import check_heldout, safe_name, split_domains, training_domains
from ..training.hparams_registry import parse_algorithms, random_hparams

logger = logging.getLogger("robusttext")

#: Training arguments a hyper-parameter trial may set.
_TRIAL_FIELDS = ("learning_rate", "weight_decay", "fishr_lambda", "fishr_ema", "fishr_anneal_steps")


def run_name(algorithm: str, heldout: str, hparams_seed: int, seed: int) -> str:
    """The folder of one run (held-out domain sanitised: it cannot leave ``output_dir/runs``)."""
    return f"{safe_name(algorithm)}-{safe_name(heldout)}-h{int(hparams_seed)}-s{int(seed)}"


def trial_hparams(algorithm: str, hparams_seed: int, args: Any) -> dict:
    """Trial 0: the run's own arguments; trial k > 0: the registry's k-th random draw."""
    algo = "erm" if algorithm not in ("erm", "fishr") else algorithm  # the marker-free oracle is ERM
    if hparams_seed == 0:
        h = {k: getattr(args, k) for k in _TRIAL_FIELDS}
    else:
        h = {**{k: getattr(args, k) for k in _TRIAL_FIELDS}, **random_hparams(algo, hparams_seed)}
    if algo == "erm":  # no penalty and no warm-up (ERM has none; its Adam state is never re-initialised)
        h["fishr_lambda"] = 0.0
        h["fishr_anneal_steps"] = 0
    return h


def _load(data: Any, dg: Any, args: Any) -> tuple[dict[str, Any], list[str], list[str]]:
    """The data variants (``{"": data}`` or marker / marker-free), the held-out domains and algorithms."""
    from ..runs.data import load_text_dataset

    algorithms = parse_algorithms(dg.algorithms)
    full = load_text_dataset(
        data.dataset, data.split, data.dataset_config, data.text_column, data.label_column,
        domain_column=None if dg.spurious else args.domain_column, max_examples=data.max_examples,
    )
    if not dg.spurious:
        return {"": full}, check_heldout(training_domains(full.dataset, "domain"), dg.test_domains), algorithms
    from .spurious import ORACLE, parse_spec, spurious_text_data

    spec = parse_spec(dg.spurious, dg.spurious_agreements, dg.spurious_label_noise, dg.spurious_seed)
    variants = {"": spurious_text_data(full, spec, True), ORACLE: spurious_text_data(full, spec, False)}
    return variants, [spec.names()[-1]], algorithms + [ORACLE]


def _params(data: Any, smooth: Any, dg: Any, args: Any, heldout: list, algorithms: list, seeds: list) -> dict:
    keys = ("val_fraction", "max_per_domain", "max_test_examples", "hparam_trials", "freeze_encoder", "spurious", "spurious_agreements",
            "spurious_label_noise", "spurious_seed", "certify", "certify_n", "certify_alpha", "certify_max_examples")
    params = {
        "model": data.model, "dataset": data.dataset, "split": data.split, "max_length": data.max_length,
        "max_examples": data.max_examples, "p_del": smooth.p_del, "unit": smooth.unit, "algorithms": algorithms,
        "heldout": heldout, "seeds": seeds, **{k: getattr(dg, k) for k in keys}, "eval_steps": args.eval_steps,
        **{k: getattr(args, k) for k in _TRIAL_FIELDS}, "num_train_epochs": args.num_train_epochs,
        "max_steps": args.max_steps, "per_device_train_batch_size": args.per_device_train_batch_size,
    }
    if args.fishr_anneal_steps > 0 and any(a != "fishr" for a in algorithms):
        # ERM runs without Fishr's warm-up (trial_hparams); a folder without this key holds ERM runs that took
        # its switch (Adam re-initialised), so resuming it is refused
        params["erm_anneal_steps"] = 0
    return params


def leave_one_domain_out(data: Any, smooth: Any, dg: Any, args: Any) -> dict:
    """Run the sweep; returns the summary (see :func:`robusttext.dg.dg_tables.dg_summary`).

    Args:
        data: :class:`~robusttext.cli.arguments.ModelDataArguments` (``split`` holds all domains).
        smooth: :class:`~robusttext.cli.arguments.SmoothingArguments` (``p_del=0`` trains without noise).
        dg: :class:`~robusttext.cli.arguments.DGArguments`.
        args: :class:`~robusttext.training.fishr.FishrTrainingArguments`; each run trains in
            ``output_dir/runs/<run_name>`` without checkpoints.
    """
    from tqdm.auto import tqdm

    from ..certificate.deletion import check_deletion_args
    from ..compat import overwrite_requested
    from ..runs.results import ResultsStore, write_json

    started = time.time()

    check_dg_args(dg, smooth)
    check_deletion_args(smooth.p_del, smooth.unit, allow_zero=True)
    variants, heldout, algorithms = _load(data, dg, args)
    parts = split_domains(variants[""].dataset, dg.val_fraction, dg.max_per_domain)
    seeds = [args.seed + i for i in range(dg.seeds)]
    # seed-major: a stopped sweep has whole seeds (every algorithm and domain) done first
    grid = [(d, a, h, s) for s in seeds for d in heldout for a in algorithms for h in range(dg.hparam_trials + 1)]
    params = _params(data, smooth, dg, args, heldout, algorithms, seeds)
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
        full = variants.get(algo, variants[""])
        record = train_heldout(full, parts, d, algo, h, seed, data, smooth, dg, args)
        record.update(index=index, seconds=round(time.time() - start, 1))
        if args.should_save:
            store.append([record])
        logger.info("%s held out %s trial %d seed %d: final test accuracy %.4f", algo, d, h, seed, record["final_test_accuracy"])
    records = store.finalize() if args.should_save else list(store.finished().values())
    summary = dg_summary(records, heldout, algorithms)
    if dg.certify:
        summary["certified"] = certified_table(records, heldout, algorithms)
    summary.update(parameters=params, runs=records, versions=_versions(), wall_seconds=round(time.time() - started, 1))
    if args.should_save:
        write_json(out / "dg_results.json", summary)
        (out / "dg_report.md").write_text(report_markdown(summary), encoding="utf-8")
    return summary


def _versions() -> dict:
    from ..runs.results import versions

    return versions()


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


def check_dg_args(dg: Any, smooth: Any) -> None:
    """Clear errors for sweep options that cannot be used."""
    if dg.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {dg.seeds}")
    if dg.hparam_trials < 0:
        raise ValueError(f"--hparam-trials must be >= 0, got {dg.hparam_trials}")
    if dg.certify and not smooth.p_del > 0:
        raise ValueError("--certify needs training under deletion noise: pass --p-del in (0, 1), e.g. --p-del 0.9")
    if dg.certify and dg.certify_n < 10:
        raise ValueError(f"--certify-n must be >= 10, got {dg.certify_n}")


def _split_heldout(parts: dict, heldout: str, dg: Any) -> tuple[list[int], list[int]]:
    """Rows of the held-out domain: (oracle validation rows, test rows), disjoint; the oracle part is
    the first ``val_fraction`` share of the first ``max_test_examples`` rows."""
    rows = parts[heldout]["all"][: dg.max_test_examples or None]
    n_oracle = max(1, int(round(dg.val_fraction * len(rows))))
    return rows[:n_oracle], rows[n_oracle:]


def train_heldout(
    full: Any, parts: dict, heldout: str, algorithm: str, hparams_seed: int, seed: int, data: Any, smooth: Any,
    dg: Any, args: Any,
) -> dict:
    """One run of the sweep: train on every domain but ``heldout`` with trial ``hparams_seed``'s
    hyper-parameters, evaluate training-domain validation, held-out oracle and held-out test rows every
    ``args.eval_steps`` steps (else every epoch) and at the end; returns the record with the trace."""
    from ..training.trainer import TrainingRecipe, accuracy_metric, build_trainer

    train_domains = [d for d in parts if d != heldout]
    ds = full.dataset
    oracle_rows, test_rows = _split_heldout(parts, heldout, dg)
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
    recipe = TrainingRecipe(rate=smooth.training_rate(), unit=smooth.unit, max_length=data.max_length,
                            algorithm="fishr", freeze_encoder=dg.freeze_encoder)
    trainer = build_trainer(data.model, train_ds, full.label_names, run_args, recipe, eval_dataset=sets,
                            compute_metrics=accuracy_metric(), domains=train_domains)
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
    if dg.certify:
        record["certified_accuracy"] = certify_heldout(trainer, sets["test"], run_dir, data, smooth, dg, seed)
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
def certify_heldout(trainer: Any, test_ds: Any, run_dir: Path, data: Any, smooth: Any, dg: Any, seed: int) -> dict:
    """Certify the held-out domain's test rows with the run's model: the one adapter to the core's
    certification (:func:`robusttext.runs.certify.certify_dataset`, whose protocol and defaults apply).

    Saves the model to ``run_dir/model`` and the rows to ``run_dir/heldout.jsonl``, certifies the first
    ``dg.certify_max_examples`` of them with ``n = dg.certify_n`` samples at ``alpha = dg.certify_alpha``
    into ``run_dir/certify`` (resumable there), and returns the certified accuracy per radius
    (``{"0": acc, "1": acc, ...}``, radius in deletion units as strings)."""
    from ..certificate.protocol import CertifyProtocol
    from ..certificate.smoothing import SmoothedTextClassifier
    from ..runs.certify import certification_rate, certify_dataset
    from ..runs.data import DataSpec
    from ..runs.distributed import process_state

    model_dir = run_dir / "model"
    trainer.save_model(str(model_dir))
    rows = test_ds.select(range(min(len(test_ds), dg.certify_max_examples or len(test_ds))))
    path = run_dir / "heldout.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": int(y)}) + "\n" for t, y in zip(rows["text"], rows["label"])))
    protocol = CertifyProtocol(n0=min(CertifyProtocol().n0, dg.certify_n), n=dg.certify_n, alpha=dg.certify_alpha)
    rate = certification_rate(str(model_dir), smooth.p_del, smooth.rate_schedule)
    clf = SmoothedTextClassifier.from_pretrained(str(model_dir), p_del=rate, unit=smooth.unit, max_length=data.max_length,
                                                 seed=seed, autocast_dtype="fp32", device=process_state().device)
    summary = certify_dataset(clf, DataSpec(str(path), "test"), run_dir / "certify", protocol)
    return {str(k): float(v) for k, v in summary["certified_accuracy"].items()}


def certified_table(records: list[dict], heldout: list[str], algorithms: list[str]) -> dict:
    """Certified accuracy per radius on each held-out domain, mean over seeds (trial 0 runs only)."""
    from .dg_tables import mean_se

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
    from .dg_tables import markdown_table

    out = ["## Certified accuracy on the held-out domain (%)", ""]
    for d, algos in table.items():
        radii = sorted(next(iter(algos.values())), key=float)
        rows = [[a.upper()] + [f"{100 * algos[a][k][0]:.1f}" for k in radii] for a in algos]
        out += [f"### held out: {d}", "", markdown_table(["Algorithm", *[f"r={k}" for k in radii]], rows), ""]
    return "\n".join(out)
