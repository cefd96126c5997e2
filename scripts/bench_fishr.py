"""Benchmark: median training-step time of Fishr vs ERM on the same model and the same batches.

Both steps run the Trainers' own ``compute_loss`` (``transformers.Trainer`` for ERM,
``robusttext.FishrTrainer`` with the penalty switched on for Fishr), then backward and an AdamW step,
on two copies of the same model. Steps alternate ERM / Fishr on identical batches so machine load
hits both alike; the script prints both medians and their ratio (target: Fishr <= 1.10x ERM).

    python scripts/bench_fishr.py                         # MiniLM-L6 (embedded), Amazon reviews if present
    python scripts/bench_fishr.py --steps 30 --batch-size 32 --max-length 128 --output runs/bench_fishr.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path


def make_batches(tokenizer, args) -> list[dict]:
    """``args.steps + args.warmup`` domain-balanced batches of real reviews (synthetic text if absent)."""
    import datasets

    from robusttext.cli.arguments import SmoothingArguments
    from robusttext.runs.data import load_text_dataset, shared_data_dir
    from robusttext.certificate.deletion import DeletionCollator
    from robusttext.training.domain_data import DomainBalancedSampler, DomainCollator

    folder = Path(args.dataset) if args.dataset else shared_data_dir() / "amazon_multidomain"
    if folder.exists():
        ds = load_text_dataset(str(folder), "all", domain_column="domain").dataset
    else:
        words = "good bad plot fine awful great dull story value broken".split()
        ds = datasets.Dataset.from_dict({
            "text": [" ".join(words[(i * j) % 10] for j in range(120)) for i in range(400)],
            "label": [i % 2 for i in range(400)], "domain": [f"d{i % 4}" for i in range(400)],
        })
    domains = sorted(set(ds["domain"]))
    ids = [domains.index(d) for d in ds["domain"]]
    order = list(DomainBalancedSampler(ids, args.batch_size, seed=0))
    smooth = SmoothingArguments(p_del=args.p_del, unit="word")
    collate = DomainCollator(DeletionCollator(tokenizer, smooth.p_del, smooth.unit, args.max_length), domains)
    n = args.steps + args.warmup
    if len(order) < n * args.batch_size:
        raise ValueError(f"not enough data for {n} batches of {args.batch_size}")
    return [collate([ds[i] for i in order[b * args.batch_size : (b + 1) * args.batch_size]]) for b in range(n)], domains


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded:minilm-l6")
    ap.add_argument("--dataset", default=None, help="folder of per-domain files (default: shared amazon_multidomain)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per algorithm")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per algorithm first")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--p-del", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--output", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()

    import torch
    from tqdm.auto import tqdm
    from transformers import Trainer, TrainingArguments

    from robusttext.training.fishr import FishrTrainer, FishrTrainingArguments
    from robusttext.certificate.models import load_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer = load_classifier(args.model, label_names=["0", "1"])
    batches, domains = make_batches(tokenizer, args)
    import datasets

    dummy = datasets.Dataset.from_dict({"text": ["x"] * len(domains) * 2, "label": [0] * len(domains) * 2, "domain": domains * 2})
    common = dict(output_dir="/tmp/bench_fishr", report_to=[], use_cpu=not torch.cuda.is_available(),
                  per_device_train_batch_size=args.batch_size)
    erm_model, fishr_model = model, copy.deepcopy(model)
    erm = Trainer(model=erm_model, args=TrainingArguments(**common))
    fishr = FishrTrainer(model=fishr_model, args=FishrTrainingArguments(**common, fishr_lambda=1000.0, fishr_anneal_steps=0),
                         train_dataset=dummy, domains=domains)
    device = erm.args.device
    runs = {"erm": (erm, torch.optim.AdamW(erm_model.parameters(), lr=2e-5)),
            "fishr": (fishr, torch.optim.AdamW(fishr_model.parameters(), lr=2e-5))}
    times: dict[str, list[float]] = {"erm": [], "fishr": []}
    for m in (erm_model, fishr_model):
        m.to(device).train()
    for i, batch in enumerate(tqdm(batches, desc="steps (ERM + Fishr each)")):
        for name in (("erm", "fishr") if i % 2 == 0 else ("fishr", "erm")):
            trainer, opt = runs[name]
            inputs = {k: v.to(device) for k, v in batch.items()}
            if name == "erm":
                inputs.pop("domain_ids")
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            loss = trainer.compute_loss(trainer.model, inputs)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    erm_med, fishr_med = statistics.median(times["erm"]), statistics.median(times["fishr"])
    out = {
        "model": args.model, "batch_size": args.batch_size, "max_length": args.max_length, "steps": args.steps,
        "device": str(device), "threads": torch.get_num_threads(), "domains": domains,
        "erm_median_s": erm_med, "fishr_median_s": fishr_med, "ratio": fishr_med / erm_med,
    }
    print(f"model={args.model} batch={args.batch_size} max_length={args.max_length} steps={args.steps} device={device}")
    print(f"median step time  ERM: {erm_med * 1000:.1f} ms   Fishr: {fishr_med * 1000:.1f} ms")
    print(f"Fishr / ERM = {out['ratio']:.3f}x  (target <= 1.10x)")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
