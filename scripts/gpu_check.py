#!/usr/bin/env python
"""One prepared GPU check: certification throughput, precision agreement, a training step, vision CERTIFY.

Run on a machine with a GPU (sized to finish well under 8 minutes; nothing is downloaded, ``datasets`` is
not needed, the model is built from its config with random weights)::

    python scripts/gpu_check.py --json_out gpu_check.json

It prints, with the card's name (``torch.cuda.get_device_name``):

* text certification of 200 SST-2 sentences and 200 Amazon reviews (RS-Del, word deletion at p = 0.9,
  Cohen et al.'s fixed-sample protocol ``n0 = 50, n = 2000`` so every input costs the same) with MiniLM-L6's
  architecture, in fp32 and bf16 on the engine's array path, in bf16 without the background prefetch, and
  in bf16 on the per-copy path (how the loop ran before the array pipeline): noisy copies per second,
  distinct rows (forward passes) per second, the share of wall time the device is busy (CUDA events around
  every forward), the padding share of the batches;
* the share of votes that agree between fp32 and bf16: the same draws (each input's stream) classified in
  both precisions, weighted by how often each copy was drawn;
* one training step's time (AdamW, a batch of 32 noisy SST-2 sentences from ``DeletionCollator``) in fp32
  and in bf16 autocast;
* vision CERTIFY (Gaussian noise drawn on the device) of 3x32x32 images through the small CNN at batch 1000.

Random weights are enough for speed; the agreement figure is for a random model (its logits are close, so
bf16 flips more votes than a trained model's would). ``--tiny`` runs every part at toy size on the CPU in
seconds (the tests run it). The data travel with the repository in ``experiments/gpu_check_data``
(about 700 KB: 200 SST-2 test sentences, 200 Amazon reviews, MiniLM-L6's tokenizer and config), made by::

    python scripts/gpu_check.py --make_data --shared_data /work/shared/data
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "experiments" / "gpu_check_data"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")


@dataclass
class GpuCheckArguments:
    tiny: bool = field(default=False, metadata={"help": "Toy sizes on the CPU (seconds): the tests run this."})
    device: Optional[str] = field(default=None, metadata={"help": "Device (default: cuda if available, else cpu; --tiny: cpu)."})
    data_dir: str = field(default=str(DATA), metadata={"help": "The shipped data folder."})
    inputs: int = field(default=200, metadata={"help": "Inputs per dataset."})
    n0: int = field(default=50, metadata={"help": "Selection samples per input."})
    n: int = field(default=2000, metadata={"help": "Estimation samples per input."})
    batch_size: int = field(default=1024, metadata={"help": "Rows per forward pass of the text model."})
    vision_images: int = field(default=20, metadata={"help": "Images for vision CERTIFY."})
    vision_n: int = field(default=10000, metadata={"help": "Estimation samples per image (n0 = 100)."})
    vision_batch: int = field(default=1000, metadata={"help": "Noisy images per forward pass."})
    json_out: Optional[str] = field(default=None, metadata={"help": "Also write every figure as JSON here."})
    make_data: bool = field(default=False, metadata={"help": "Write --data_dir from --shared_data and the embedded MiniLM tokenizer, then stop."})
    shared_data: Optional[str] = field(default=None, metadata={"help": "With --make_data: the shared data folder."})

    def shrink(self) -> None:
        """--tiny: toy sizes."""
        self.device = self.device or "cpu"
        self.inputs, self.n0, self.n, self.batch_size = 4, 10, 100, 64
        self.vision_images, self.vision_n, self.vision_batch = 2, 200, 100


# --------------------------------------------------------------------------- data
def make_data(shared: Path, out: Path) -> None:
    """The shipped folder: the first 200 SST-2 test sentences, 200 Amazon reviews (every 40th of each domain's file,
    round robin: 50 per domain, both labels), MiniLM-L6's tokenizer and config."""
    from robusttext.certificate.models import EMBEDDED_MINILM, resolve_model_path

    out.mkdir(parents=True, exist_ok=True)
    lines = (shared / "sst2" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:201]
    sst2 = [{"text": t, "label": int(y)} for t, y in (line.rsplit("\t", 1) for line in lines)]
    domains = [[json.loads(x) for x in (shared / "amazon_multidomain" / f"{d}.jsonl").open(encoding="utf-8")]
               for d in ("books", "dvd", "electronics", "kitchen")]
    amazon = [{"text": r["text"], "label": int(r["label"])} for r in (domains[i % 4][(i // 4) * 40] for i in range(200))]
    for name, rows in (("sst2", sst2), ("amazon", amazon)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    source = Path(resolve_model_path(EMBEDDED_MINILM))
    (out / "tokenizer").mkdir(exist_ok=True)
    for name in TOKENIZER_FILES:
        (out / "tokenizer" / name).write_bytes((source / name).read_bytes())
    print(f"wrote {out}")


def read_jsonl(path: Path, count: int) -> tuple[list[str], list[int]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:count]]
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


def text_model(data: Path, tiny: bool, device: Any) -> tuple[Any, Any]:
    """MiniLM-L6's architecture (or a 2-layer toy) with random weights, and MiniLM-L6's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(data / "tokenizer"))
    cfg = BertConfig.from_pretrained(str(data / "tokenizer"), num_labels=2)
    if tiny:
        cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size = 32, 2, 2, 64
    torch.manual_seed(0)
    return BertForSequenceClassification(cfg).to(device).eval(), tok


# --------------------------------------------------------------------------- timing the device
class BusyTimer:
    """Time the device spends in the model's forward passes: CUDA events around each (on the CPU, the forward's
    own wall time). ``busy()`` is the sum, in seconds (it synchronises)."""

    def __init__(self, model: Any, device: Any) -> None:
        import torch

        self.model, self.cuda, self.spans = model, torch.device(device).type == "cuda", []
        self._forward = model.forward
        model.forward = self._timed  # the instance attribute shadows the class's forward

    def _timed(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = self._forward(*args, **kwargs)
            end.record()
            self.spans.append((start, end))
            return out
        t0 = time.perf_counter()
        out = self._forward(*args, **kwargs)
        self.spans.append(time.perf_counter() - t0)
        return out

    def busy(self) -> float:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            return sum(s.elapsed_time(e) for s, e in self.spans) / 1000.0
        return float(sum(self.spans))

    def reset(self) -> None:
        self.spans = []


def sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- the parts
def certify_arm(texts: list[str], model: Any, tok: Any, dtype: Any, args: GpuCheckArguments, path: str = "arrays",
                prefetch: Optional[int] = None) -> dict:
    """One timed certify run: copies/s, distinct rows/s, device-busy share, padding share."""
    from robusttext import SmoothedTextClassifier
    from robusttext.certificate.protocol import CertifyProtocol

    clf = SmoothedTextClassifier(model, tok, p_del=0.9, batch_size=args.batch_size, autocast_dtype=dtype)
    if path == "per-copy":
        clf.engine.classify_rows = None
    if prefetch is not None:
        clf.engine.prefetch = prefetch
    timer = BusyTimer(model, clf.device)
    protocol = CertifyProtocol.fixed_sample(args.n0, args.n, 0.05)
    clf.certify(texts[:2], protocol=protocol, indices=[10**6, 10**6 + 1])  # warm-up (other streams)
    sync(clf.device)
    timer.reset()
    clf.engine.forward_passes = clf.engine.real_tokens = clf.engine.padded_tokens = 0
    start = time.perf_counter()
    out = clf.certify(texts, protocol=protocol)
    sync(clf.device)
    wall = time.perf_counter() - start
    busy = timer.busy()
    del model.forward  # the class's forward again
    copies = sum(c.n_samples for c in out)
    return {"seconds": wall, "copies_per_s": copies / wall, "rows_per_s": clf.engine.forward_passes / wall,
            "device_busy": busy / wall, "padding_share": clf.engine.padding_share, "copies": copies,
            "rows": clf.engine.forward_passes, "radii": [c.radius for c in out]}


def vote_agreement(texts: list[str], model: Any, tok: Any, args: GpuCheckArguments, copies: int) -> float:
    """Share of votes (``copies`` noisy copies per input, each input's own stream) on which fp32 and bf16 agree."""
    import numpy as np
    import torch

    from robusttext import SmoothedTextClassifier
    from robusttext.certificate.engine import input_rng

    clfs = [SmoothedTextClassifier(model, tok, p_del=0.9, autocast_dtype=d) for d in (None, torch.bfloat16)]
    agree = total = 0
    for i, text in enumerate(texts):
        x = clfs[0].mechanism.prepare(text)
        chunk = clfs[0].mechanism.draw_rows(x, copies, input_rng(0, i))
        classes = []
        for clf in clfs:
            got = [clf.classify_rows(chunk.ids[s : s + args.batch_size], chunk.lengths[s : s + args.batch_size])
                   for s in range(0, len(chunk), args.batch_size)]
            classes.append(torch.cat(got).cpu().numpy())
        agree += int(chunk.mult[classes[0] == classes[1]].sum())
        total += int(np.sum(chunk.mult))
    return agree / total


def train_step(texts: list[str], labels: list[int], model: Any, tok: Any, dtype: Any, device: Any, steps: int) -> float:
    """Median seconds of one AdamW step on a batch of 32 noisy sentences (after 2 warm-up steps)."""
    import contextlib

    import torch

    from robusttext.certificate.deletion import DeletionCollator

    collator = DeletionCollator(tok, p_del=0.9, seed=0)
    batch = collator([{"text": t, "label": y} for t, y in zip(texts[:32], labels[:32])])
    batch = {k: v.to(device) for k, v in batch.items()}
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times = []
    for _ in range(steps + 2):
        sync(device)
        t0 = time.perf_counter()
        cast = torch.autocast(torch.device(device).type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with cast:
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - t0)
    model.eval()
    return statistics.median(times[2:])


def vision_package() -> None:
    """Make ``robusttext_vision`` importable from an uninstalled checkout (the GPU machine runs this script with
    ``PYTHONPATH=.``): the sidecar's folder is ``vision/``, which an install maps to that name."""
    import importlib.util

    if importlib.util.find_spec("robusttext_vision") is not None:
        return
    folder = Path(__file__).resolve().parents[1] / "vision"
    spec = importlib.util.spec_from_file_location("robusttext_vision", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["robusttext_vision"] = module
    spec.loader.exec_module(module)


def vision_certify(args: GpuCheckArguments, device: Any) -> dict:
    """Vision CERTIFY (sigma 0.25, n0 = 100) of random 3x32x32 images through the small CNN, noise drawn on the device."""
    import torch

    vision_package()
    from robusttext_vision.models import SmallCNN
    from robusttext_vision.smoothing import SmoothedImageClassifier

    torch.manual_seed(0)
    clf = SmoothedImageClassifier(SmallCNN(3, 10, 32), 10, 0.25, batch_size=args.vision_batch, device=device)
    images = torch.rand((args.vision_images, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    clf.certify(images[:1], n0=100, n=args.vision_batch, alpha=0.001, indices=[10**6])  # warm-up
    sync(device)
    start = time.perf_counter()
    out = clf.certify(images, n0=100, n=args.vision_n, alpha=0.001)
    sync(device)
    wall = time.perf_counter() - start
    copies = sum(c.n_samples for c in out)
    return {"seconds": wall, "images": len(out), "noisy_images_per_s": copies / wall, "seconds_per_image": wall / len(out)}


# --------------------------------------------------------------------------- main
def text_part(args: GpuCheckArguments, device: Any, report: dict) -> None:
    import torch

    data = Path(args.data_dir)
    model, tok = text_model(data, args.tiny, device)
    arms = (("fp32", None, "arrays", None), ("bf16", torch.bfloat16, "arrays", None),
            ("bf16 no prefetch", torch.bfloat16, "arrays", 0), ("bf16 per-copy", torch.bfloat16, "per-copy", None))
    for name in ("sst2", "amazon"):
        texts, labels = read_jsonl(data / f"{name}.jsonl", args.inputs)
        for arm, dtype, path, ahead in arms:
            r = certify_arm(texts, model, tok, dtype, args, path, ahead)
            report["certify"][f"{name} {arm}"] = r
            print(f"certify {name:<7} {arm:<17} {len(texts)} inputs {r['seconds']:7.2f}s {r['copies_per_s']:>11,.0f} copies/s "
                  f"{r['rows_per_s']:>10,.0f} rows/s device busy {100 * r['device_busy']:5.1f}% "
                  + (f"padding {100 * r['padding_share']:4.1f}%" if path == "arrays" else "padding n/a"), flush=True)
        share = vote_agreement(texts, model, tok, args, args.n0 + args.n)
        report["agreement"][name] = share
        print(f"agreement {name:<7} fp32 vs bf16: {100 * share:.2f}% of votes", flush=True)
    texts, labels = read_jsonl(data / "sst2.jsonl", 32)
    for arm, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        seconds = train_step(texts, labels, model, tok, dtype, device, 3 if args.tiny else 10)
        report["train_step_s"][arm] = seconds
        print(f"train step {arm}: {1000 * seconds:.1f} ms (batch 32, AdamW, noisy SST-2)", flush=True)


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(GpuCheckArguments).parse_args_into_dataclasses(args=argv)
    if args.make_data:
        if not args.shared_data:
            print("gpu_check: --make_data needs --shared_data (the shared data folder)", file=sys.stderr)
            return 2
        make_data(Path(args.shared_data), Path(args.data_dir))
        return 0
    if not (Path(args.data_dir) / "sst2.jsonl").is_file():
        print(f"gpu_check: --data_dir {args.data_dir} has no sst2.jsonl; make it with --make_data --shared_data DIR",
              file=sys.stderr)
        return 2
    import torch

    if args.tiny:
        args.shrink()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (no GPU)"
    print(f"device: {card}; torch {torch.__version__}; transformers {__import__('transformers').__version__}", flush=True)
    report: dict = {"device": card, "args": asdict(args), "certify": {}, "agreement": {}, "train_step_s": {}}
    start = time.perf_counter()
    text_part(args, device, report)
    report["vision"] = vision_certify(args, device)
    v = report["vision"]
    print(f"vision certify: {v['images']} images at batch {args.vision_batch}: {v['seconds']:.2f}s, "
          f"{v['noisy_images_per_s']:,.0f} noisy images/s, {v['seconds_per_image']:.3f} s/image", flush=True)
    report["total_s"] = time.perf_counter() - start
    print(f"total {report['total_s']:.1f}s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
