#!/usr/bin/env python
"""Certification speed: the published RS-Del/CERT-ED protocol vs robusttext's defaults, in one run.

Arms (each runs in its own spawned process, so its peak resident memory is its own):

* ``published`` - the protocol of the papers, written plainly: one input at a time; n0 = 1000
  selection and n = 4000 estimation samples; every batch of 32 noisy *strings* is tokenized and
  padded on its own; no deduplication, no early stop; one Clopper-Pearson bound at ``alpha``.
* ``robusttext`` - ``SmoothedTextClassifier`` with its default settings (``certify(texts)``).
* ``full`` - ``robusttext`` on the whole split (the "certify the whole test set" figure).
* lever ablations (``--levers``): ``robusttext`` with one lever changed at a time.

Both compared arms certify the same inputs with the same model and the same certificate rule
(``top2="complement"``) at the same ``alpha``; only the protocol differs. Printed for each arm: wall
time, forward passes (samples through the model), peak RSS, certified accuracy at each radius,
median certified radius; then the ratios published / robusttext, and the plain-sampling floor: the
samples per input that would reach the published radii if each input's top-class rate were known (from
the published arm's counts), i.e. the largest forward-pass ratio any protocol can reach without exact
deduplication or exact strata.

Per-input records are written to ``--output-dir/ARM/results.jsonl`` as they finish and a rerun with
the same parameters resumes (wall time = sum of the per-input seconds).

    OMP_NUM_THREADS=1 python scripts/bench_certify.py --model /work/runs/sst2_minilm_pdel0.9 \
        --dataset /work/shared/data/sst2 --compare-examples 40 --output-dir runs/bench_sst2
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class BenchArguments:
    model: str = field(default="/work/runs/sst2_minilm_pdel0.9", metadata={"help": "Trained classifier folder."})
    dataset: str = field(default="/work/shared/data/sst2", metadata={"help": "Dataset folder or file."})
    split: str = field(default="test", metadata={"help": "Split to certify."})
    compare_examples: int = field(default=40, metadata={"help": "First N inputs certified by both protocols."})
    full: bool = field(default=True, metadata={"help": "Also certify the whole split with robusttext's defaults."})
    full_examples: Optional[int] = field(default=None, metadata={"help": "Cap on the 'full' arm (default: all)."})
    levers: bool = field(default=False, metadata={"help": "Also run the one-lever-at-a-time ablations."})
    arms: str = field(default="published,robusttext", metadata={"help": "Comma-separated arms to compare."})
    p_del: float = field(default=0.9, metadata={"help": "Deletion probability."})
    unit: str = field(default="word", metadata={"help": "Deletion unit (the published baseline supports word)."})
    alpha: float = field(default=0.05, metadata={"help": "Failure probability of each certificate."})
    seed: int = field(default=0, metadata={"help": "Seed of every input's random stream."})
    threads: int = field(default=0, metadata={"help": "torch intra-op threads (0: robusttext's default)."})
    output_dir: str = field(default="runs/bench_certify", metadata={"help": "Per-arm results (resumable)."})


#: lever name -> (SmoothedTextClassifier overrides, certify overrides, threads override or None)
LEVERS: dict[str, tuple[dict, dict, Optional[int]]] = {
    "robusttext": ({}, {}, None),
    "no_sequential_looks": ({}, {"looks": None}, None),
    "no_dedup": ({"dedup": False}, {}, None),
    "no_futility": ({}, {"futility": 0.0}, None),
    "no_candidates": ({}, {"candidate_pvalue": 0.0}, None),
    "no_exact": ({}, {"exact_budget": 0}, None),
    "one_input_at_a_time": ({}, {"_per_input": True}, None),
    "batch_32": ({"batch_size": 32}, {}, None),
    "batch_64": ({"batch_size": 64}, {}, None),
    "fp32": ({"autocast_dtype": None}, {}, None),
    "n0_1000": ({}, {"n0": 1000}, None),
    "threads_2": ({}, {}, 2),
}


# --------------------------------------------------------------------------- the arms
def _published(texts: list[str], indices: list[int], model: Any, tok: Any, args: BenchArguments, store: Any) -> None:
    """CERT-ED's protocol, plainly: per input, n0=1000 then n=4000 samples in padded batches of 32."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from robusttext.certificate.deletion import keep_masks, model_max_length, split_units
    from robusttext.certificate.engine import input_rng
    from robusttext.certificate.stats import EditDistanceCertificate

    n0, n, batch = 1000, 4000, 32
    cert = EditDistanceCertificate(p_del=args.p_del)
    max_length = model_max_length(tok, model.config)
    num_classes = model.config.num_labels
    done = store.finished()

    def counts_of(words: list[str], m: int, rng: np.random.Generator) -> np.ndarray:
        counts = np.zeros(num_classes, dtype=np.int64)
        for start in range(0, m, batch):
            size = min(batch, m - start)
            masks = keep_masks(rng, size, len(words), args.p_del)
            noisy = [" ".join(w for w, k in zip(words, row) if k) for row in masks]
            enc = tok(noisy, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            with torch.no_grad():
                pred = model(**enc).logits.argmax(-1).numpy()
            counts += np.bincount(pred, minlength=num_classes)
        return counts

    for text, i in tqdm(list(zip(texts, indices)), desc="published", mininterval=5):
        if i in done:
            continue
        start, cpu = time.perf_counter(), time.process_time()
        words = split_units(text, "word")
        rng = input_rng(args.seed, i)
        top = int(np.argmax(counts_of(words, n0, rng)))
        counts = counts_of(words, n, rng)
        b = cert.bounds(counts, top, args.alpha)
        store.append([{
            "index": i, "prediction": top if b.radius >= 0 else -1, "radius": b.radius,
            "selected": top, "counts": counts.tolist(),
            "top1_lower": b.top1_lower, "n_queries": n0 + n, "n_samples": n0 + n,
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
        }])


def _robusttext(
    texts: list[str], indices: list[int], model: Any, tok: Any, args: BenchArguments, store: Any, lever: str
) -> None:
    """``SmoothedTextClassifier`` defaults (with one lever changed), in chunks written as they finish."""
    from tqdm.auto import tqdm

    from robusttext import SmoothedTextClassifier

    clf_kw, cert_kw, _ = LEVERS[lever]
    cert_kw = dict(cert_kw)
    per_input = cert_kw.pop("_per_input", False)
    clf = SmoothedTextClassifier(model, tok, p_del=args.p_del, unit=args.unit, seed=args.seed, **clf_kw)
    done = store.finished()
    todo = [(t, i) for t, i in zip(texts, indices) if i not in done]
    chunk = 1 if per_input else 64
    bar = tqdm(total=len(todo), desc=lever, mininterval=5)
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        t0, cpu = time.perf_counter(), time.process_time()
        out = clf.certify([t for t, _ in part], alpha=args.alpha, indices=[i for _, i in part], **cert_kw)
        spent, spent_cpu = time.perf_counter() - t0, time.process_time() - cpu
        queries = max(1, sum(c.n_queries for c in out))
        store.append([{
            "index": i, "prediction": c.prediction, "radius": c.radius, "top1_lower": c.top1_lower,
            "n_queries": c.n_queries, "n_samples": c.n_samples, "looks_used": c.looks_used,
            "seconds": spent * c.n_queries / queries, "cpu_seconds": spent_cpu * c.n_queries / queries,
        } for (_, i), c in zip(part, out)])
        bar.update(len(part))
    bar.close()


def run_arm(arm: str, args_dict: dict) -> dict:
    """Run one arm in this (fresh) process; returns its records and peak resident memory."""
    import torch

    from robusttext.runs.data import load_text_dataset
    from robusttext.certificate.models import load_classifier
    from robusttext.runs.certify import model_label_names
    from robusttext.runs.results import ResultsStore

    args = BenchArguments(**args_dict)
    lever = "robusttext" if arm in ("robusttext", "full") else arm
    threads = LEVERS.get(lever, ({}, {}, None))[2] or args.threads
    if threads:
        torch.set_num_threads(threads)
    model, tok = load_classifier(args.model)
    model.eval()
    data = load_text_dataset(args.dataset, args.split, label_names=model_label_names(model.config))
    count = (args.full_examples or len(data)) if arm == "full" else args.compare_examples
    count = min(count, len(data))
    texts, labels = data.texts[:count], data.labels[:count]
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    params = {k: v for k, v in asdict(args).items() if k not in ("output_dir", "full", "levers", "arms")}
    params.update(arm=arm, count=count, torch_threads=torch.get_num_threads())
    store = ResultsStore(Path(args.output_dir) / arm, params)
    store.check_params(write=True)
    if arm == "published":
        _published(texts, list(range(count)), model, tok, args, store)
    else:
        _robusttext(texts, list(range(count)), model, tok, args, store, lever)
    records = store.finalize()
    for rec in records:
        rec["label"] = labels[rec["index"]]
        rec["correct"] = rec["prediction"] == rec["label"]
    return {
        "arm": arm, "records": records, "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_load_mb": rss_loaded / 1024,
    }


# --------------------------------------------------------------------------- reporting
def plain_oracle_samples(records: list[dict], p_del: float, alpha: float) -> int | None:
    """Samples that plain sampling needs at the least to certify the published arm's radii: per input, the
    fewest that reach its radius with its top class at the rate its estimation counts show, in one look at
    the full ``alpha`` (``robusttext.certificate.stats.plain_samples_needed``; abstained inputs count 0). Only exact
    deduplication and exact strata bring forward passes below it. None without the arm's counts."""
    from robusttext.certificate.stats import EditDistanceCertificate, plain_samples_needed

    if not records or any("counts" not in r for r in records):
        return None
    cert = EditDistanceCertificate(p_del=p_del)
    total = 0
    for r in records:
        if r["radius"] >= 0:
            n = sum(r["counts"])
            total += plain_samples_needed(r["counts"][r["prediction"]] / n, r["radius"], alpha, cert, n) or n
    return total


def summarize(res: dict, p_del: float, alpha: float) -> dict:
    from robusttext.runs.report import summarize_certification
    from robusttext.certificate.stats import max_edit_distance_radius

    recs = res["records"]
    s = summarize_certification(recs, {}, range(0, max_edit_distance_radius(p_del) + 1))
    oracle = plain_oracle_samples(recs, p_del, alpha) if res["arm"] == "published" else None
    return {
        "arm": res["arm"], "inputs": len(recs), "wall_s": sum(r["seconds"] for r in recs),
        "cpu_s": sum(r["cpu_seconds"] for r in recs),
        "forward_passes": sum(r["n_queries"] for r in recs), "samples": sum(r["n_samples"] for r in recs),
        "peak_rss_mb": res["peak_rss_mb"], "rss_after_load_mb": res["rss_after_load_mb"],
        "threads": res["threads"], "certified_accuracy": s["certified_accuracy"],
        "median_certified_radius": s["median_certified_radius"], "abstain_rate": s["abstain_rate"],
        **({"plain_oracle_samples": oracle} if oracle is not None else {}),
    }


def show(s: dict) -> str:
    curve = " ".join(f"{100 * v:5.1f}" for v in s["certified_accuracy"].values())
    return (
        f"{s['arm']:<22} n={s['inputs']:<4} wall={s['wall_s']:8.1f}s ({s['wall_s'] / max(1, s['inputs']):.3f} s/input) "
        f"cpu={s['cpu_s']:8.1f}s "
        f"fwd={s['forward_passes']:>8} ({s['forward_passes'] / max(1, s['inputs']):.0f}/input) "
        f"peakRSS={s['peak_rss_mb']:.0f}MB (+{s['peak_rss_mb'] - s['rss_after_load_mb']:.0f} after load) "
        f"median_r={s['median_certified_radius']:g} certacc%[r=0..]={curve}"
    )


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(args=argv)
    if args.unit != "word":
        raise ValueError(f"--unit: the published baseline is written for word deletion, got {args.unit!r}")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if args.levers:
        arms += [lv for lv in LEVERS if lv not in arms]
    if args.full:
        arms.append("full")
    ctx = mp.get_context("spawn")
    summaries = {}
    for arm in arms:
        with ctx.Pool(1) as pool:  # a fresh process per arm: its peak RSS is its own
            res = pool.apply(run_arm, (arm, asdict(args)))
        summaries[arm] = summarize(res, args.p_del, args.alpha)
        print(show(summaries[arm]), flush=True)
    print()
    for s in summaries.values():
        print(show(s))
    if "published" in summaries and "robusttext" in summaries:
        a, b = summaries["published"], summaries["robusttext"]
        gaps = {r: round(100 * (b["certified_accuracy"][r] - a["certified_accuracy"][r]), 1) for r in a["certified_accuracy"]}
        print(
            f"\nratios published/robusttext on the same {a['inputs']} inputs: "
            f"wall time {a['wall_s'] / b['wall_s']:.1f}x, CPU time {a['cpu_s'] / b['cpu_s']:.1f}x, forward passes {a['forward_passes'] / b['forward_passes']:.1f}x, "
            f"peak RSS {a['peak_rss_mb'] / b['peak_rss_mb']:.2f}x\n"
            f"certified accuracy robusttext - published (points) by radius: {gaps}\n"
            f"median certified radius: published {a['median_certified_radius']:g}, robusttext {b['median_certified_radius']:g}"
        )
        if "plain_oracle_samples" in a:
            print(f"plain-sampling floor: {a['plain_oracle_samples'] / a['inputs']:.0f} samples/input reach the published radii "
                  f"(each input's rate known, one look, no selection): {a['forward_passes'] / a['plain_oracle_samples']:.1f}x "
                  "fewer than published is the most any protocol without dedup or exact strata can save")
    if "full" in summaries:
        f = summaries["full"]
        print(f"all {f['inputs']} inputs with robusttext defaults: {f['wall_s'] / 60:.2f} min")
    for lever in LEVERS:
        if lever in summaries and lever != "robusttext" and "robusttext" in summaries:
            s, b = summaries[lever], summaries["robusttext"]
            print(f"lever {lever:<22} wall x{s['wall_s'] / b['wall_s']:.2f} fwd x{s['forward_passes'] / b['forward_passes']:.2f} "
                  f"median_r {s['median_certified_radius']:g} vs {b['median_certified_radius']:g}")
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "bench_summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
