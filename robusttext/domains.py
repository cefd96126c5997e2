"""Training across domains: domain-balanced batches, and leave-one-domain-out sweeps (DomainBed protocol).

* :class:`DomainBalancedSampler` orders a dataset so every batch holds every training domain in fixed,
  equal shares (the setting of Fishr and DomainBed: one minibatch per domain, concatenated).
* :class:`DomainCollator` wraps any data collator and adds the batch's domain ids (``domain_ids``).
* :func:`leave_one_domain_out` trains on all domains but one and tests on the held-out one, for every
  domain, algorithm and seed, with training-domain validation model selection (Gulrajani & Lopez-Paz,
  ICLR 2021, Sec. 3: select the evaluation step with the best accuracy on held-out data of the
  *training* domains), and writes ``dg_results.json`` and ``dg_report.md``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

logger = logging.getLogger("robusttext")

#: Key of the domain-id tensor a :class:`DomainCollator` adds to each batch.
DOMAIN_KEY = "domain_ids"
ALGORITHMS = ("erm", "fishr")


def training_domains(dataset: Any, column: str = "domain") -> list[str]:
    """The sorted distinct domains of ``dataset[column]``; a clear error when the column is missing."""
    names = getattr(dataset, "column_names", None)
    if names is not None and column not in names:
        raise ValueError(
            f"the training data has no domain column {column!r} (columns: {names}); "
            "pass --domain-column NAME naming the column that says which domain each example comes from"
        )
    return sorted({str(d) for d in dataset[column]})


class DomainBalancedSampler:
    """Indices in batches of ``batch_size`` that each hold every domain in fixed shares.

    Domain ``k`` (in id order) contributes ``batch_size // K`` samples to every batch, the
    first ``batch_size % K`` domains one more. An epoch has ``max_k ceil(n_k / share_k)`` batches, so
    every sample of the largest domain is drawn once per epoch and smaller domains are cycled, each
    pass in a fresh random order. Samples with a negative domain id are never drawn. The order depends
    only on ``seed`` and the epoch (``set_epoch``, called by the Trainer/accelerate), so a run on N
    processes (which deal out whole batches) sees the same global batches and resumes exactly.
    """

    def __init__(self, domain_ids: Sequence[int], batch_size: int, seed: int = 0) -> None:
        ids = np.asarray(domain_ids, dtype=np.int64)
        self.groups = [np.flatnonzero(ids == k) for k in sorted(set(ids[ids >= 0].tolist()))]
        k = len(self.groups)
        if k == 0:
            raise ValueError("DomainBalancedSampler: no example has a known domain")
        if batch_size < k:
            raise ValueError(f"batch size {batch_size} is smaller than the number of domains {k}")
        self.batch_size = int(batch_size)
        self.shares = [batch_size // k + (1 if i < batch_size % k else 0) for i in range(k)]
        self.num_batches = max(math.ceil(len(g) / s) for g, s in zip(self.groups, self.shares))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        streams = []
        for group, share in zip(self.groups, self.shares):
            need = self.num_batches * share
            passes = [rng.permutation(group) for _ in range(math.ceil(need / len(group)))]
            streams.append(np.concatenate(passes)[:need])
        for b in range(self.num_batches):
            for stream, share in zip(streams, self.shares):
                yield from (int(i) for i in stream[b * share : (b + 1) * share])


class DomainCollator:
    """Wrap a data collator: drop the domain column from the features, add ``domain_ids`` (long, (N,)).

    Domains are numbered by their position in ``domains``; a domain not in the list (e.g. a held-out
    test domain) gets id -1, which the Fishr penalty ignores.
    """

    def __init__(self, collator: Callable[[list[dict]], dict], domains: Sequence[str], column: str = "domain") -> None:
        self.collator = collator.collator if isinstance(collator, DomainCollator) else collator
        self.domains = [str(d) for d in domains]
        self.lookup = {d: i for i, d in enumerate(self.domains)}
        self.column = column

    def __call__(self, features: list[dict]) -> dict:
        import torch

        if any(self.column not in f for f in features):
            raise KeyError(
                f"DomainCollator: a feature has no domain column {self.column!r} (has {sorted(features[0])}); "
                "pass --domain-column NAME and keep the column (remove_unused_columns=False or FishrTrainer)"
            )
        ids = [self.lookup.get(str(f[self.column]), -1) for f in features]
        batch = dict(self.collator([{k: v for k, v in f.items() if k != self.column} for f in features]))
        batch[DOMAIN_KEY] = torch.tensor(ids, dtype=torch.long)
        return batch


# --------------------------------------------------------------------------- leave-one-domain-out
def parse_algorithms(value: str | Sequence[str]) -> list[str]:
    """``"erm,fishr"`` -> ``["erm", "fishr"]``, checked."""
    items = value.split(",") if isinstance(value, str) else list(value)
    algos = [a.strip().lower() for a in items if a.strip()]
    bad = [a for a in algos if a not in ALGORITHMS]
    if not algos or bad:
        raise ValueError(f"--algorithms must be a comma-separated subset of {','.join(ALGORITHMS)}, got {value!r}")
    return algos


def check_heldout(domains: Sequence[str], heldout: Sequence[str] | None, min_train: int = 2) -> list[str]:
    """The held-out domains to test (default: all), checked against the data's domains."""
    domains = [str(d) for d in domains]
    chosen = [str(d) for d in heldout] if heldout else list(domains)
    unknown = [d for d in chosen if d not in domains]
    if unknown:
        raise ValueError(f"--test-domains {unknown} are not domains of the data; choose from {domains}")
    if len(domains) - 1 < min_train:
        raise ValueError(
            f"the data has {len(domains)} domain(s) {domains}; holding one out leaves fewer than {min_train} "
            "training domains. Leave-one-domain-out needs at least 3 domains"
        )
    return chosen


def split_domains(
    dataset: Any, val_fraction: float, max_per_domain: int | None = None, seed: int = 0
) -> dict[str, dict[str, list[int]]]:
    """Per domain, row indices of a training part and a validation part (DomainBed's in/out split).

    Each domain's rows are shuffled with ``seed`` (data seed, fixed across runs); ``all`` is that
    whole order (a held-out domain is tested on its first rows), ``val`` and ``train`` split the
    first ``max_per_domain`` rows: the first ``round(val_fraction * n)`` become validation.
    """
    if not (0.0 < val_fraction < 1.0):
        raise ValueError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    if max_per_domain is not None and max_per_domain < 2:
        raise ValueError(f"--max-per-domain must be >= 2, got {max_per_domain}")
    rng = np.random.default_rng(seed)
    col = np.asarray([str(d) for d in dataset["domain"]])
    out = {}
    for d in sorted(set(col.tolist())):
        order = rng.permutation(np.flatnonzero(col == d))
        rows = order[: max_per_domain or None]
        n_val = max(1, int(round(val_fraction * len(rows))))
        out[d] = {"val": rows[:n_val].tolist(), "train": rows[n_val:].tolist(), "all": order.tolist()}
    return out


def select_step(trace: Sequence[dict]) -> dict:
    """The evaluation with the best training-domain validation accuracy (the earliest on ties)."""
    if not trace:
        raise ValueError("no evaluation was recorded; set --eval-steps or evaluate at least once per run")
    return max(trace, key=lambda t: (t["val_accuracy"], -t["step"]))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def dg_summary(records: Sequence[dict], heldout: Sequence[str], algorithms: Sequence[str]) -> dict:
    """Test accuracy (selected by training-domain validation) per algorithm x held-out domain, mean and
    std over seeds, plus the average over held-out domains (mean and std over seeds of per-seed averages)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for algo in algorithms:
        rows = [r for r in records if r["algorithm"] == algo]
        cells: dict[str, dict[str, float]] = {}
        for d in heldout:
            accs = [r["test_accuracy"] for r in rows if r["heldout"] == d]
            if accs:
                m, s = _mean_std(accs)
                cells[d] = {"mean": m, "std": s, "n": len(accs)}
        seeds = sorted({r["seed"] for r in rows})
        per_seed = []
        for s in seeds:
            accs = {r["heldout"]: r["test_accuracy"] for r in rows if r["seed"] == s}
            if all(d in accs for d in heldout):
                per_seed.append(float(np.mean([accs[d] for d in heldout])))
        if per_seed:
            m, s = _mean_std(per_seed)
            cells["avg"] = {"mean": m, "std": s, "n": len(per_seed)}
        table[algo] = cells
    return {"selection": "training-domain validation", "heldout": list(heldout), "table": table}


def dg_markdown(summary: dict, params: dict) -> str:
    """A DomainBed-style Markdown table: rows = algorithms, columns = held-out domain + average."""
    heldout = summary["heldout"]

    def cell(c: dict | None) -> str:
        if not c:
            return "-"
        text = f"{100 * c['mean']:.1f}"
        return text + (f" ± {100 * c['std']:.1f}" if c["n"] > 1 else "")

    lines = [
        "## Leave-one-domain-out accuracy (%)",
        "",
        f"Model `{params.get('model')}` on `{params.get('dataset')}`; each column is a held-out test domain "
        f"(trained on all other domains). Model selection: {summary['selection']} "
        f"(val fraction {params.get('val_fraction')}). Seeds: {params.get('seeds')}; "
        f"cells are mean ± std over seeds when there are several.",
        "",
        "| algorithm | " + " | ".join(heldout) + " | avg |",
        "|---" * (len(heldout) + 2) + "|",
    ]
    for algo, cells in summary["table"].items():
        lines.append(f"| {algo.upper()} | " + " | ".join(cell(cells.get(d)) for d in heldout) + f" | {cell(cells.get('avg'))} |")
    lines.append("")
    return "\n".join(lines)


def leave_one_domain_out(data: Any, smooth: Any, dg: Any, args: Any) -> dict:
    """Run the leave-one-domain-out sweep; returns the summary (see :func:`dg_summary`).

    Args:
        data: :class:`~robusttext.arguments.ModelDataArguments` (model, dataset, columns, max_length;
            ``split`` is the split holding all domains, ``all`` for a folder of per-domain files).
        smooth: :class:`~robusttext.arguments.SmoothingArguments` (``p_del=0`` trains without noise).
        dg: :class:`~robusttext.arguments.DGArguments` (algorithms, held-out domains, seeds, budget).
        args: :class:`~robusttext.fishr.FishrTrainingArguments`; ``output_dir`` receives
            ``dg_runs.jsonl`` (one line per finished run: resumable), ``dg_results.json`` and
            ``dg_report.md``; each run trains in ``output_dir/runs/ALGO-DOMAIN-sSEED`` without checkpoints.

    ERM and Fishr are trained identically (same domain-balanced batches, same budget and evaluation
    schedule) except for the penalty: ERM is the Fishr trainer with ``fishr_lambda = 0``.
    """
    from tqdm.auto import tqdm

    from .data import load_text_dataset
    from .deletion import check_deletion_args
    from .fishr import check_fishr_args
    from .pipelines import versions
    from .results import ResultsStore, write_json

    algorithms = parse_algorithms(dg.algorithms)
    check_deletion_args(smooth.p_del, smooth.unit, allow_zero=True)
    check_fishr_args(args.fishr_lambda, args.fishr_ema, args.fishr_anneal_steps)
    if dg.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {dg.seeds}")
    full = load_text_dataset(
        data.dataset, data.split, data.dataset_config, data.text_column, data.label_column,
        domain_column=args.domain_column, max_examples=data.max_examples,
    )
    domains = training_domains(full.dataset, "domain")
    heldout = check_heldout(domains, dg.test_domains)
    parts = split_domains(full.dataset, dg.val_fraction, dg.max_per_domain)
    seeds = [args.seed + i for i in range(dg.seeds)]
    grid = [(d, a, s) for d in heldout for a in algorithms for s in seeds]
    params = {
        "model": data.model, "dataset": data.dataset, "split": data.split, "max_length": data.max_length,
        "p_del": smooth.p_del, "unit": smooth.unit, "algorithms": algorithms, "heldout": heldout,
        "seeds": seeds, "val_fraction": dg.val_fraction, "max_per_domain": dg.max_per_domain,
        "max_test_examples": dg.max_test_examples, "eval_steps": args.eval_steps,
        "fishr_lambda": args.fishr_lambda, "fishr_ema": args.fishr_ema, "fishr_anneal_steps": args.fishr_anneal_steps,
        "learning_rate": args.learning_rate, "num_train_epochs": args.num_train_epochs, "max_steps": args.max_steps,
        "per_device_train_batch_size": args.per_device_train_batch_size,
    }
    out = Path(args.output_dir)
    store = ResultsStore(out, params, rank=args.process_index, name="dg_runs")
    if args.overwrite_output_dir and args.should_save:
        store.clear()
    store.check_params(write=args.should_save)
    done = store.finished()
    for index, (d, algo, seed) in enumerate(tqdm(grid, desc="leave-one-domain-out", disable=not args.should_save)):
        if index in done:
            continue
        start = time.time()
        record = train_heldout(full, parts, d, algo, seed, data, smooth, dg, args)
        record.update(index=index, seconds=round(time.time() - start, 1))
        if args.should_save:
            store.append([record])
        logger.info("%s held out %s seed %d: test accuracy %.4f", algo, d, seed, record["test_accuracy"])
    records = store.finalize() if args.should_save else list(store.finished().values())
    summary = dg_summary(records, heldout, algorithms)
    summary.update(parameters=params, runs=records, versions=versions())
    if args.should_save:
        write_json(out / "dg_results.json", summary)
        (out / "dg_report.md").write_text(dg_markdown(summary, params), encoding="utf-8")
    return summary


def train_heldout(
    full: Any, parts: dict, heldout: str, algorithm: str, seed: int, data: Any, smooth: Any, dg: Any, args: Any
) -> dict:
    """One run of the sweep: train on every domain but ``heldout``, evaluate on training-domain
    validation data and the held-out domain every ``args.eval_steps`` steps (else every epoch), and
    return the trace and the test accuracy at the step selected by validation accuracy."""
    from .training import accuracy_metric, build_trainer

    train_domains = [d for d in parts if d != heldout]
    ds = full.dataset
    train_ds = ds.select([i for d in train_domains for i in parts[d]["train"]])
    val_ds = ds.select([i for d in train_domains for i in parts[d]["val"]])
    test_ds = ds.select(parts[heldout]["all"][: dg.max_test_examples or None])
    steps = dict(eval_strategy="steps", eval_steps=args.eval_steps) if args.eval_steps else dict(eval_strategy="epoch")
    run_args = replace(
        args, output_dir=str(Path(args.output_dir) / "runs" / f"{algorithm}-{heldout}-s{seed}"), seed=seed,
        fishr_lambda=args.fishr_lambda if algorithm == "fishr" else 0.0, save_strategy="no",
        load_best_model_at_end=False, report_to=[], **steps,
    )
    trainer = build_trainer(
        data.model, train_ds, full.label_names, smooth, run_args, algorithm="fishr",
        eval_dataset={"val": val_ds, "test": test_ds}, max_length=data.max_length,
        compute_metrics=accuracy_metric(), domains=train_domains,
    )
    trainer.train()
    history = trainer.state.log_history
    if not any(h.get("step") == trainer.state.global_step and "eval_val_accuracy" in h for h in history):
        trainer.evaluate()
    trace: dict[int, dict] = {}
    for h in trainer.state.log_history:
        for key in ("val", "test"):
            if f"eval_{key}_accuracy" in h:
                trace.setdefault(int(h["step"]), {"step": int(h["step"])})[f"{key}_accuracy"] = float(h[f"eval_{key}_accuracy"])
    trace_list = [t for _, t in sorted(trace.items()) if "val_accuracy" in t and "test_accuracy" in t]
    best = select_step(trace_list)
    return {
        "algorithm": algorithm, "heldout": heldout, "seed": seed, "train_domains": train_domains,
        "n_train": len(train_ds), "n_val": len(val_ds), "n_test": len(test_ds),
        "selected_step": best["step"], "val_accuracy": best["val_accuracy"], "test_accuracy": best["test_accuracy"],
        "final_test_accuracy": trace_list[-1]["test_accuracy"], "trace": trace_list,
    }
