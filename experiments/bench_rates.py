"""Fixed-rate RS-Del vs length-adaptive deletion (AdaptDel, AdaptDel+) on the same data, in one run.

Each arm trains its own model from the same base on the same budget under its own schedule, then certifies
the same test inputs with the same protocol:

* ``fixed``    - train and certify at p_del = 0.9 (RS-Del / CERT-ED);
* ``adaptive`` - AdaptDel, p(L) = max(p_lb, 1 - k/L) (default k = 13, p_lb = 0.9) for training and certification;
* ``adaptive_plus`` - AdaptDel+: train with p drawn uniformly from [0.7, 0.99] per example (or another training
  recipe, ``--plus_training``, e.g. ``uniform_keep:low=5,high=25,p_lb=0.9``), choose per-bin values on a
  validation slice of the training split (``robusttext.evaluation.tuning.tune_rates``), certify with them.

Prints, per arm: clean accuracy, certified accuracy at several radii, mean and median certified radius
(wrong or abstained = -1), the median log10 size of the certified region, forward passes and seconds per
input, and ratios against ``fixed``. Resumable: a finished model or certification is reused.

    python experiments/bench_rates.py --output_dir runs/bench_rates_bbc                       # BBC News, quickstart budget
    python experiments/bench_rates.py --dataset ../shared/data/amazon_multidomain --train_split all --holdout 0.2 \\
        --certify_examples 500 --edges 50|100|200 --output_dir runs/bench_rates_amazon
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from transformers import HfArgumentParser, TrainingArguments


@dataclass
class BenchRatesArguments:
    model: str = field(default="embedded:minilm-l6", metadata={"help": "Base model every arm fine-tunes."})
    dataset: str = field(default="embedded:bbc-news", metadata={"help": "Dataset with train and test splits."})
    train_split: str = field(default="train")
    test_split: str = field(default="test")
    max_train: int = field(default=0, metadata={"help": "Training examples, validation included (0: all)."})
    val_fraction: float = field(default=0.15, metadata={"help": "Share of the training split kept for tuning (AdaptDel+)."})
    holdout: float = field(default=0.0, metadata={
        "help": "When > 0, the test set is this share of each domain (or of the whole training split when there is "
                "no domain column), cut after a seeded shuffle, instead of --test_split (for data without splits, "
                "e.g. Amazon multi-domain: --train_split all --holdout 0.2)."})
    certify_examples: int = field(default=60)
    epochs: float = field(default=1.0)
    learning_rate: float = field(default=5e-5, metadata={"help": "Every arm's learning rate (robusttext train's default)."})
    max_steps: int = field(default=-1)
    max_length: int = field(default=128)
    n0: int = field(default=50)
    n: int = field(default=1000)
    alpha: float = field(default=0.05)
    top2: str = field(default="complement", metadata={
        "help": "Runner-up bound of every arm's certificate and of AdaptDel+'s tuning (robusttext certify --top2).",
        "choices": ["complement", "bonferroni"]})
    k: float = field(default=13.0)
    p_lb: float = field(default=0.9)
    edges: str = field(default="100|200|400")
    tune_per_bin: int = field(default=12)
    tune_iterations: int = field(default=4)
    tune_n: int = field(default=300)
    threshold: float = field(default=0.5)
    objective: str = field(default="reach", metadata={"help": "AdaptDel+ tuning objective: reach or mean-radius."})
    max_drop: Optional[float] = field(default=None, metadata={
        "help": "AdaptDel+ guard: refuse bin values losing more than this certified accuracy at radius 0 against the "
                "fixed rate on validation inputs (TuneConfig.max_drop); default: no guard."})
    guard: str = field(default="per-bin", metadata={
        "help": "Where --max_drop applies: per-bin or pooled over the validation split (TuneConfig.guard).",
        "choices": ["per-bin", "pooled"]})
    guard_metric: str = field(default="accuracy", metadata={
        "help": "What --max_drop bounds: accuracy or balanced (mean over classes; TuneConfig.guard_metric).",
        "choices": ["accuracy", "balanced"]})
    arms: str = field(default="fixed,adaptive,adaptive_plus")
    plus_training: str = field(default="uniform:0.7,0.99", metadata={
        "help": "The adaptive_plus arm's training schedule (a --rate-schedule spec), e.g. uniform_keep:low=5,high=25,p_lb=0.9."})
    noise_copies: int = field(default=1, metadata={"help": "Every arm's consistency training (TrainingRecipe.noise_copies)."})
    consistency_weight: float = field(default=0.0, metadata={"help": "TrainingRecipe.consistency_weight."})
    entropy_weight: float = field(default=0.0, metadata={"help": "TrainingRecipe.entropy_weight."})
    seed: int = field(default=0)
    output_dir: str = field(default="runs/bench_rates")


SCHEDULES = {"fixed": "fixed:{p}", "adaptive": "adaptive:k={k},p_lb={p_lb}", "adaptive_plus": "{plus_training}"}


def write_splits(args: BenchRatesArguments, out: Path) -> tuple[str, str, str, str]:
    """Training, validation (the last ``val_fraction`` of the training rows, for AdaptDel+'s tuning) and test
    files: returns (train file, validation file, test source, test split). With ``holdout`` the test rows are
    cut from each domain after a shuffle seeded by ``seed``; otherwise the test set is ``test_split``."""
    import random

    from robusttext.runs.data import load_text_dataset
    from robusttext.errors import UserError

    train_file, val_file, test_file = out / "train.jsonl", out / "validation.jsonl", out / "test.jsonl"
    if not train_file.exists():
        cap = None if args.holdout > 0 else args.max_train or None  # with a holdout, the cap applies to what is left
        try:  # a folder of per-domain files has a domain column; cut the holdout from each domain
            data = load_text_dataset(args.dataset, args.train_split, domain_column="domain", max_examples=cap)
        except UserError:
            data = load_text_dataset(args.dataset, args.train_split, max_examples=cap)
        domains = data.dataset["domain"] if "domain" in data.dataset.column_names else [""] * len(data.texts)
        rows = [{"text": t, "label": data.label_names[y], **({"domain": d} if d else {})}
                for t, y, d in zip(data.texts, data.labels, domains)]
        test_rows: list[dict] = []
        if args.holdout > 0:
            random.Random(args.seed).shuffle(rows)
            train_rows = []
            for domain in dict.fromkeys(domains):
                part = [r for r in rows if r.get("domain", "") == domain]
                cut = int(round(len(part) * args.holdout))
                test_rows, train_rows = test_rows + part[:cut], train_rows + part[cut:]
            random.Random(args.seed + 2).shuffle(train_rows)
            rows = train_rows[: args.max_train or None]
            random.Random(args.seed + 1).shuffle(test_rows)  # certify_examples takes the first rows: every domain
        cut = int(len(rows) * (1.0 - args.val_fraction))
        for path, part in ((val_file, rows[cut:]), (test_file, test_rows), (train_file, rows[:cut])):
            if path == test_file and not test_rows:
                continue
            path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    if args.holdout > 0:
        return str(train_file), str(val_file), str(test_file), "test"
    return str(train_file), str(val_file), args.dataset, args.test_split


@contextmanager
def certificate_timer():
    """Seconds spent turning counts into bounds and a radius (``_Certificate.bounds``: Clopper-Pearson and
    the radius, fixed-rate closed form or the variable-rate search) while the block runs, as ``[seconds]``."""
    from robusttext.certificate import stats

    total, original = [0.0], stats._Certificate.bounds

    def timed(self, *a, **kw):
        start = time.perf_counter()
        try:
            return original(self, *a, **kw)
        finally:
            total[0] += time.perf_counter() - start

    stats._Certificate.bounds = timed
    try:
        yield total
    finally:
        stats._Certificate.bounds = original


def run_arm(arm: str, args: BenchRatesArguments, out: Path, splits: tuple[str, str, str, str]) -> dict:
    from robusttext.cli import training_defaults
    from robusttext import CertifyProtocol, SmoothedTextClassifier
    from robusttext.runs.certify import certify_dataset
    from robusttext.runs.data import DataSpec
    from robusttext.certificate.rates import parse_rate_schedule
    from robusttext.training.trainer import TrainingRecipe, train_classifier
    from robusttext.evaluation.tuning import TuneConfig, tune_rates

    train_file, val_file, test_source, test_split = splits
    model_dir, timings_file = out / arm / "model", out / arm / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}  # of the steps a resumed run skips
    schedule = SCHEDULES[arm].format(p=args.p_lb, k=args.k, p_lb=args.p_lb, plus_training=args.plus_training)
    record = model_dir / "robusttext_training.json"
    wanted = (parse_rate_schedule(schedule).to_dict(), args.noise_copies, args.consistency_weight, args.entropy_weight)
    trained_under = None
    if record.exists():  # folders written before consistency training have none of its keys: plain training
        info = json.loads(record.read_text())
        trained_under = (info["rate_schedule"], info.get("noise_copies", 1), info.get("consistency_weight", 0.0),
                         info.get("entropy_weight", 0.0))
    if trained_under is not None and trained_under != wanted:
        def recipe(schedule: object, copies: int, consistency: float, entropy: float) -> str:
            plain = copies == 1 and consistency == 0 and entropy == 0
            return f"{schedule}" + ("" if plain else f" with {copies} noise copies, consistency weight {consistency}, "
                                                     f"entropy weight {entropy}")

        print(f"bench_rates: {model_dir} was trained under {recipe(*trained_under)}, not {recipe(schedule, *wanted[1:])}; "
              "use another --output_dir", file=sys.stderr)
        raise SystemExit(2)
    if trained_under is None:
        start = time.perf_counter()
        targs = TrainingArguments(**{**training_defaults(str(model_dir)), "num_train_epochs": args.epochs,
                                     "learning_rate": args.learning_rate, "max_steps": args.max_steps, "seed": args.seed, "save_strategy": "no"})
        recipe = TrainingRecipe(rate=schedule, max_length=args.max_length, noise_copies=args.noise_copies,
                                consistency_weight=args.consistency_weight, entropy_weight=args.entropy_weight)
        train_classifier(args.model, DataSpec(train_file, "train"), targs, recipe)
        timings["train_seconds"] = time.perf_counter() - start
    if arm == "adaptive_plus" and not (model_dir / "tune_rates.json").exists():
        start = time.perf_counter()
        clf = SmoothedTextClassifier.from_pretrained(str(model_dir), p_del=parse_rate_schedule(f"adaptive:k={args.k},p_lb={args.p_lb}"),
                                                     max_length=args.max_length, seed=args.seed)
        tune_rates(clf, DataSpec(val_file, "validation"),
                   CertifyProtocol(n0=args.n0, n=args.tune_n, alpha=args.alpha, top2=args.top2),
                   TuneConfig(edges=args.edges, threshold=args.threshold, iterations=args.tune_iterations,
                              max_per_bin=args.tune_per_bin, start_k=args.k, objective=args.objective,
                              max_drop=args.max_drop, guard=args.guard, guard_metric=args.guard_metric))
        timings["tune_seconds"] = time.perf_counter() - start
    finished = (out / arm / "certify" / "summary.json").exists()
    start = time.perf_counter()
    with certificate_timer() as cert_seconds:
        clf = SmoothedTextClassifier.from_pretrained(str(model_dir), max_length=args.max_length, seed=args.seed)  # the folder's schedule
        summary = certify_dataset(clf, DataSpec(test_source, test_split, max_examples=args.certify_examples),
                                  out / arm / "certify", CertifyProtocol(n0=args.n0, n=args.n, alpha=args.alpha, top2=args.top2))
    if not finished:
        timings.update(certify_seconds=time.perf_counter() - start, certificate_seconds=cert_seconds[0])
    timings_file.write_text(json.dumps(timings, indent=2) + "\n")
    records = [json.loads(line) for line in (out / arm / "certify" / "results.jsonl").read_text().splitlines()]
    return {"summary": summary, "records": records, "timings": timings}


def row(arm: str, res: dict, radii: list[int]) -> str:
    s, recs = res["summary"], res["records"]
    acc = s["certified_accuracy"]
    card = s.get("median_log10_cardinality")
    return (f"{arm:<14} clean {s['clean_accuracy']:.3f} | cert acc " +
            " ".join(f"r{r}={acc.get(str(r), 0.0):.3f}" for r in radii) +
            f" | radius mean {s['mean_certified_radius']:.2f} median {s['median_certified_radius']:g}"
            f" | log10 card {'-' if card is None else format(card, '.1f')}"
            f" | fwd/input {sum(r['n_queries'] for r in recs) / len(recs):.0f}"
            f" | s/input {sum(r['seconds'] for r in recs) / len(recs):.2f}"
            + (f" | certificate {100 * t['certificate_seconds'] / t['certify_seconds']:.2f}% of certify wall"
               if (t := res["timings"]).get("certify_seconds") else ""))


def main() -> None:
    (args,) = HfArgumentParser(BenchRatesArguments).parse_args_into_dataclasses()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = write_splits(args, out)
    results = {arm: run_arm(arm, args, out, splits) for arm in args.arms.split(",")}
    radii = [0, 1, 2, 5, 10, 20, 50]
    for arm, res in results.items():
        print(row(arm, res, radii))
        print(f"{'':<14} {res['summary']['parameters']['rate_schedule']}  timings {res['timings']}")
    base = results.get("fixed")
    if base is not None:
        b = base["summary"]
        for arm, res in results.items():
            if arm == "fixed":
                continue
            s = res["summary"]
            ratio = lambda x, y: float("nan") if y <= 0 else x / y  # noqa: E731
            print(f"{arm} vs fixed: median radius {ratio(s['median_certified_radius'], b['median_certified_radius']):.2f}x, "
                  f"mean radius {ratio(s['mean_certified_radius'], b['mean_certified_radius']):.2f}x, "
                  f"certified accuracy at r=0 {100 * (s['certified_accuracy']['0'] - b['certified_accuracy']['0']):+.1f} points")
    (out / "bench_rates.json").write_text(json.dumps({a: {"summary": r["summary"], "timings": r["timings"]}
                                                      for a, r in results.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
