"""One training loop for every image model, on ``accelerate.Accelerator`` (1 CPU, 1 GPU or N GPUs).

:func:`fit` minimizes ``loss_fn(model, images, labels, progress)`` over shuffled minibatches; what is
learned (plain, PGD adversarial training, FGSM-RS, Gaussian noise, a denoiser) is entirely in the
loss function (:mod:`robusttext_vision.adversarial`, :mod:`robusttext_vision.smoothing`, :mod:`robusttext_vision.denoise`).
After every epoch the full state (weights, optimizer, random states) is saved with
``Accelerator.save_state`` under ``output_dir/checkpoints/epoch_K``, and ``log.jsonl`` gets one line
of metrics; rerunning with the same ``output_dir`` resumes after the last finished epoch.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

#: ``loss_fn(model, images, labels, progress) -> (scalar loss, logits or None)``; ``progress`` is the
#: fractional epoch in [0, epochs) (for schedules such as an eps warm-up).
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, "torch.Tensor | None"]]


@dataclass
class FitConfig:
    """Optimisation settings shared by every training method."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    keep_checkpoints: int = 1

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "keep_checkpoints"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")


class EpochShuffle(torch.utils.data.Sampler):
    """A random order of ``range(n)`` that is a function of ``(seed, epoch)`` only, so a run resumed
    after epoch K sees exactly the batches of an uninterrupted run (and every process the same order)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())


def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in (output_dir / "checkpoints").glob("epoch_*"):
        m = re.fullmatch(r"epoch_(\d+)", p.name)
        if m and (p / "done").exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _resume(accelerator, output_dir: Path, desc: str) -> tuple[int, list[dict]]:
    """The epochs already done and their log, after loading the last finished checkpoint's full state
    (``(0, [])`` for a fresh run)."""
    log_path = output_dir / "log.jsonl"
    done = _checkpoints(output_dir)
    if not done:
        return 0, []
    start, path = done[-1]
    accelerator.load_state(str(path))
    history = [json.loads(l) for l in log_path.read_text().splitlines() if l.strip()][:start] if log_path.exists() else []
    accelerator.print(f"{desc}: resuming after epoch {start} from {path}")
    return start, history


def _train_epoch(accelerator, model: nn.Module, optimizer, loader, loss_fn: LossFn, epoch: int, epochs: int, desc: str) -> dict:
    """One pass over ``loader``; the epoch's log line (loss and accuracy summed over every process)."""
    from tqdm.auto import tqdm

    model.train()
    total = correct = 0
    loss_sum = 0.0
    bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{epochs}", disable=not accelerator.is_local_main_process,
               leave=False)
    for step, (x, y) in enumerate(bar):
        loss, logits = loss_fn(model, x, y, epoch + step / max(1, len(loader)))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        loss_sum += float(loss.detach()) * len(y)
        total += len(y)
        if logits is not None:
            correct += int((logits.detach().argmax(1) == y).sum())
        bar.set_postfix(loss=f"{loss_sum / total:.4f}")
    stats = torch.tensor([loss_sum, correct, total], dtype=torch.float64, device=accelerator.device)
    loss_sum, correct, total = accelerator.reduce(stats, reduction="sum").tolist()
    return {"epoch": epoch + 1, "loss": loss_sum / max(1, total), "accuracy": correct / max(1, total)}


def _save_epoch(accelerator, output_dir: Path, epoch: int, history: list[dict], keep_checkpoints: int) -> None:
    """Checkpoint the full state after ``epoch`` (marked ``done`` once every process saved), rewrite
    ``log.jsonl`` and drop all but the last ``keep_checkpoints`` checkpoints."""
    ckpt = output_dir / "checkpoints" / f"epoch_{epoch + 1}"
    accelerator.save_state(str(ckpt))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (ckpt / "done").write_text("ok\n")
        with open(output_dir / "log.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in history)
        for _, old in _checkpoints(output_dir)[: -keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: LossFn,
    config: FitConfig,
    output_dir: str | Path,
    desc: str = "train",
) -> list[dict]:
    """Train ``model`` in place; returns the per-epoch log (``epoch``, ``loss``, ``accuracy`` on the
    training batches as the loss saw them). Resumes from ``output_dir/checkpoints`` when present."""
    from robusttext.runs.distributed import accelerator as make_accelerator
    from accelerate.utils import set_seed

    config.validate()
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels")
    output_dir = Path(output_dir)
    accelerator = make_accelerator()
    set_seed(config.seed)
    sampler = EpochShuffle(len(images), config.seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=config.batch_size, sampler=sampler,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    start, history = _resume(accelerator, output_dir, desc)
    for epoch in range(start, config.epochs):
        sampler.epoch = epoch
        record = _train_epoch(accelerator, model, optimizer, loader, loss_fn, epoch, config.epochs, desc)
        history.append(record)
        _save_epoch(accelerator, output_dir, epoch, history, config.keep_checkpoints)
        accelerator.print(f"{desc} epoch {epoch + 1}: loss={record['loss']:.4f} accuracy={record['accuracy']:.4f}")
    accelerator.wait_for_everyone()
    return history


def config_dict(config: FitConfig) -> dict:
    """The settings as a JSON-able dict (for the saved model's record)."""
    return asdict(config)
