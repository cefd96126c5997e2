"""Denoised smoothing (Salman, Sun, Yang, Kapoor & Kolter, NeurIPS 2020).

A denoiser ``D`` is trained in front of a *frozen* classifier ``f`` so that ``f(D(.))`` classifies
Gaussian-noisy images well; ``f(D(.))`` is then certified by the same CERTIFY as any base classifier
(:class:`robusttext_vision.smoothing.SmoothedImageClassifier` with ``denoiser=D``). Two objectives (Sec. 3):

* **MSE**: ``E ||D(x + d) - x||_2^2`` (a classifier-agnostic denoiser);
* **stability**: ``E CE(f(D(x + d)), f(x))`` - the classifier should give the noisy-denoised image the
  label it gives the clean one (Eq. 4; ``f``'s own prediction, so no labels are needed).

The denoiser is DnCNN-style (Zhang et al. 2017): conv + ReLU, ``depth - 2`` x (conv + BN + ReLU), conv,
predicting the noise residual that is subtracted from the input.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .models import load_model, save_model
from .smoothing import check_sigma
from .training import FitConfig, LossFn, fit

OBJECTIVES = ("mse", "stability")


class DnCNN(nn.Module):
    """Residual denoiser: ``D(x) = x - R(x)`` with ``R`` a ``depth``-layer 3x3 CNN of ``width`` channels."""

    def __init__(self, channels: int = 1, depth: int = 5, width: int = 32) -> None:
        super().__init__()
        if depth < 2 or width < 1:
            raise ValueError(f"DnCNN needs depth >= 2 and width >= 1, got depth={depth}, width={width}")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.residual = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.residual(x)


def denoiser_loss(objective: str, sigma: float, classifier: nn.Module | None = None) -> LossFn:
    """The training loss of the denoiser for ``objective`` (``mse`` or ``stability``, the latter needs ``classifier``)."""
    check_sigma(sigma)
    if objective not in OBJECTIVES:
        raise ValueError(f"--objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "stability":
        if classifier is None:
            raise ValueError("the stability objective needs the frozen classifier")
        classifier.eval().requires_grad_(False)

    def loss_fn(denoiser: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float):
        denoised = denoiser(x + sigma * torch.randn_like(x))
        if objective == "mse":
            return F.mse_loss(denoised, x, reduction="sum") / len(x), None
        f = classifier.to(x.device)
        with torch.no_grad():
            target = f(x).argmax(dim=1)
        logits = f(denoised)
        return F.cross_entropy(logits, target), logits

    return loss_fn


def train_denoiser(
    images: torch.Tensor, labels: torch.Tensor, classifier: nn.Module | None, objective: str, sigma: float, config: FitConfig,
    output_dir: str | Path, depth: int = 5, width: int = 32,
) -> tuple[DnCNN, list[dict]]:
    """Train a :class:`DnCNN` on ``images`` with ``objective``; saves it to ``output_dir`` (load with
    :func:`load_denoiser`). Resumes from ``output_dir/checkpoints``. ``labels`` only feed the logged
    accuracy of ``f(D(x + d))`` (the objectives use ``x`` or ``f(x)`` as targets)."""
    torch.manual_seed(config.seed)
    denoiser = DnCNN(images.shape[1], depth, width)
    history = fit(denoiser, images, labels, denoiser_loss(objective, sigma, classifier), config, output_dir,
                  desc=f"denoise-{objective}")
    cfg = {"arch": "dncnn", "channels": int(images.shape[1]), "depth": depth, "width": width,
           "objective": objective, "sigma": sigma, "history": history}
    save_model(denoiser, output_dir, cfg)
    return denoiser.eval(), history


def load_denoiser(directory: str | Path) -> nn.Module:
    """A denoiser saved by :func:`train_denoiser`, in eval mode."""
    model, config = load_model(directory, build=lambda c: DnCNN(c["channels"], c["depth"], c["width"]))
    if config.get("arch") != "dncnn":
        raise ValueError(f"--denoiser-dir {directory} holds a {config.get('arch')!r} model, not a denoiser")
    return model
