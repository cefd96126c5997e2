"""Exactly robust binary linear classifiers (e.g. MNIST 0 vs 1), hinge loss.

For ``f(x) = w . x + b`` and labels ``y in {-1, +1}`` the inner maximisation of adversarial training is
solved in closed form (Hölder's inequality; Kolter & Madry, "Adversarial robustness" tutorial, ch. 2):

    min_{||delta|| <= eps} y (w . (x + delta) + b) = y (w . x + b) - eps ||w||_*

with the dual norm ``||w||_* = ||w||_1`` for Linf and ``||w||_2`` for L2, attained at

    Linf: delta* = -eps y sign(w)          L2: delta* = -eps y w / ||w||_2.

So the worst-case hinge loss is ``max(0, 1 - (y f(x) - eps ||w||_*))``: robust training minimizes it
directly, and the robust error (fraction with worst-case margin <= 0) is exact, not an attack's
estimate. Perturbations are in pixel units with no pixel-range box (the classic formulation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .attacks import check_attack_args


def binary_task(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened images of two classes and labels ``-1`` (first class) / ``+1`` (second class)."""
    if len(classes) != 2 or classes[0] == classes[1]:
        raise ValueError(f"--classes must name two different classes, got {list(classes)}")
    keep = (labels == classes[0]) | (labels == classes[1])
    if not keep.any():
        raise ValueError(f"no images of classes {list(classes)} in this split")
    x = images[keep].flatten(1).double()
    y = torch.where(labels[keep] == classes[1], 1.0, -1.0).double()
    return x, y


def dual_norm(w: torch.Tensor, norm: str) -> torch.Tensor:
    """``||w||_1`` (for Linf perturbations) or ``||w||_2`` (for L2)."""
    return w.abs().sum() if norm == "linf" else w.norm()


def margins(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y (w . x + b)`` per example (> 0 = correct)."""
    return y * (x @ w + b)


def robust_margins(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """Worst-case margin over the eps-ball: ``y (w . x + b) - eps ||w||_*`` (exact)."""
    check_attack_args(eps, norm)
    return margins(w, b, x, y) - eps * dual_norm(w, norm)


def worst_case_perturbation(w: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """The perturbations ``delta*`` (one row per example) attaining the worst-case margin."""
    check_attack_args(eps, norm)
    direction = w.sign() if norm == "linf" else w / w.norm().clamp_min(1e-300)
    return -eps * y[:, None] * direction[None, :]


def hinge_loss(m: torch.Tensor) -> torch.Tensor:
    """Mean hinge loss ``max(0, 1 - m)`` of margins ``m``."""
    return torch.clamp(1.0 - m, min=0).mean()


def robust_hinge_loss(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """Mean worst-case hinge loss over the eps-ball (= hinge loss at :func:`worst_case_perturbation`)."""
    return hinge_loss(robust_margins(w, b, x, y, eps, norm))


def train_linear(
    x: torch.Tensor, y: torch.Tensor, eps: float = 0.0, norm: str = "linf", epochs: int = 10, lr: float = 0.1,
    batch_size: int = 100, seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Minimize the (robust, if ``eps > 0``) hinge loss by minibatch SGD; returns ``(w, b, loss per epoch)``."""
    check_attack_args(eps, norm)
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=lr)
    history = []
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = perm[start : start + batch_size]
            loss = robust_hinge_loss(w, b, x[idx], y[idx], eps, norm)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(x))
    return w.detach(), b.detach(), history


def errors(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf") -> dict[str, float]:
    """Clean error and exact robust error (worst-case margin <= 0) at ``eps``."""
    return {
        "clean_error": float((margins(w, b, x, y) <= 0).double().mean()),
        "robust_error": float((robust_margins(w, b, x, y, eps, norm) <= 0).double().mean()),
    }


def plot_weights(weights: dict[str, torch.Tensor], shape: tuple[int, int], path: str | Path) -> None:
    """Weight pictures: each ``w`` as a ``shape`` image (red positive, blue negative), side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(weights), figsize=(2.8 * len(weights), 3.0), dpi=120, squeeze=False)
    for ax, (name, w) in zip(axes[0], weights.items()):
        img = w.detach().double().view(*shape).numpy()
        lim = max(1e-12, float(abs(img).max()))
        ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
