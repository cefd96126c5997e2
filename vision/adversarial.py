"""Adversarial training: Madry PGD-AT and "fast" FGSM with random start, as losses for :func:`robusttext_vision.training.fit`.

* **PGD-AT** (Madry et al., ICLR 2018, Eq. 2.1): minimize ``E max_{||delta|| <= eps} CE(f(x + delta), y)``,
  the inner max approximated by ``steps`` PGD steps from a random start.
* **FGSM-RS** (Wong, Rice & Kolter, "Fast is better than free", ICLR 2020, Alg. 3): one FGSM step of
  size ``1.25 eps`` from a uniform random start in the ball, projected back: about the cost of
  standard training.

Both ramp eps linearly from 0 over ``warmup_epochs`` (helps PGD-AT on MNIST leave the trivial
solution early in training). The attacks are :func:`robusttext_vision.attacks.pgd`, so perturbed training
images stay in the valid pixel range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import check_attack_args, pgd
from .training import FitConfig, LossFn, fit

METHODS = ("standard", "pgd", "fgsm_rs", "gaussian")


def standard_loss() -> LossFn:
    """Plain cross-entropy on clean images."""

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float):
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    return loss_fn


def adversarial_loss(
    method: str, eps: float, norm: str = "linf", steps: int = 10, step_size: float | None = None,
    warmup_epochs: float = 0.0,
) -> LossFn:
    """Cross-entropy at a PGD (``method="pgd"``) or FGSM-RS (``"fgsm_rs"``) perturbation of each batch."""
    check_attack_args(eps, norm, steps, step_size)
    if method not in ("pgd", "fgsm_rs"):
        raise ValueError(f"adversarial method must be 'pgd' or 'fgsm_rs', got {method!r}")
    if warmup_epochs < 0:
        raise ValueError(f"--warmup-epochs must be >= 0, got {warmup_epochs}")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float):
        scale = min(1.0, progress / warmup_epochs) if warmup_epochs > 0 else 1.0
        e = eps * scale
        if e > 0:
            model.eval()
            if method == "pgd":
                size = step_size * scale if step_size else None
                res = pgd(model, x, y, e, norm, steps=steps, step_size=size, random_init=True, early_stop=False)
            else:  # Wong et al. 2020: random start, one step of 1.25 eps, projection
                res = pgd(model, x, y, e, norm, steps=1, step_size=1.25 * e, random_init=True, early_stop=False)
            x = res.adversarial
            model.train()
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    return loss_fn


def training_loss(method: str, eps: float = 0.3, norm: str = "linf", steps: int = 10, step_size: float | None = None,
                  warmup_epochs: float = 0.0, sigma: float = 0.5) -> LossFn:
    """The loss of training ``method`` (one of :data:`METHODS`)."""
    if method == "standard":
        return standard_loss()
    if method == "gaussian":
        from .smoothing import gaussian_noise_loss

        return gaussian_noise_loss(sigma)
    if method in ("pgd", "fgsm_rs"):
        return adversarial_loss(method, eps, norm, steps, step_size, warmup_epochs)
    raise ValueError(f"--method must be one of {METHODS}, got {method!r}")


def train_classifier(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, method: str, config: FitConfig,
    output_dir: str | Path, **loss_kwargs: Any,
) -> list[dict]:
    """Train ``model`` in place with ``method`` (see :func:`training_loss`); checkpoints and resume in ``output_dir``."""
    return fit(model, images, labels, training_loss(method, **loss_kwargs), config, output_dir, desc=method)
