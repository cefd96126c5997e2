"""A Trainer with a CertifiedEvalCallback on a tiny model: train (optional) and evaluate, write each rank's metrics.

    python tests/_certify_eval_job.py MODEL_DIR DATA_DIR OUT_DIR [--steps K] [--examples N]

(also under ``accelerate launch`` / ``torchrun``; every rank writes ``OUT_DIR/rank{r}.json``: rank, world size, the
inputs it certified and the metrics of ``trainer.evaluate()``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def make_data(folder: Path, n_train: int = 48, n_val: int = 40) -> Path:
    """``train.jsonl`` / ``validation.jsonl`` of a two-class task a word decides (folder returned)."""
    folder.mkdir(parents=True, exist_ok=True)
    words = {1: "good great fine lovely", 0: "bad awful dull boring"}
    for name, size in (("train", n_train), ("validation", n_val)):
        rows = [{"text": f"{words[i % 2]} " * (1 + i % 5) + f"film number {i}", "label": i % 2} for i in range(size)]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def build(model_dir: str, data_dir: Path, out: Path, examples: int, attach: bool = True, **args):
    """(trainer, callback): a Trainer under word deletion at 0.9 with a CertifiedEvalCallback."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from robusttext import CertifiedEvalCallback, CertifyProtocol, DeletionCollator

    files = {"train": str(data_dir / "train.jsonl"), "validation": str(data_dir / "validation.jsonl")}
    ds = load_dataset("json", data_files=files)
    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    defaults = dict(output_dir=str(out), report_to="none", use_cpu=True, per_device_train_batch_size=8,
                    per_device_eval_batch_size=16, learning_rate=1e-3, remove_unused_columns=False, seed=0,
                    save_strategy="no", dataloader_pin_memory=False)
    callback = CertifiedEvalCallback(num_examples=examples, protocol=CertifyProtocol(n0=16, n=64), chunk_size=8)
    trainer = Trainer(model=model, args=TrainingArguments(**{**defaults, **args}), train_dataset=ds["train"],
                      eval_dataset=ds["validation"], data_collator=DeletionCollator(tok, 0.9, "word", seed=0),
                      processing_class=tok, callbacks=None if attach else [callback])
    if attach:
        callback.attach(trainer)
    return trainer, callback


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--examples", type=int, default=20)
    opts = parser.parse_args(argv)
    trainer, callback = build(opts.model_dir, opts.data_dir, opts.out, opts.examples)
    metrics = trainer.evaluate()
    import torch.distributed as dist

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / f"rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "world_size": world, "shares": callback.shares,
         "metrics": {k: v for k, v in metrics.items() if "runtime" not in k and "per_second" not in k}}))
    from robusttext.runs.distributed import end_process_group

    end_process_group()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))
