"""White-box evasion attacks: FGSM and PGD under Linf and L2 (Goodfellow et al. 2015; Madry et al. 2018).

PGD maximizes the cross-entropy of the true class (untargeted) or minimizes that of a target class
(targeted) over ``{delta : ||delta||_p <= eps, low <= x + delta <= high}`` by projected steps:

    Linf:  delta <- Proj(delta + a * sign(grad))             (Madry et al. 2018, Eq. 2.1)
    L2:    delta <- Proj(delta + a * grad / ||grad||_2)

with an optional uniform random start in the ball, several restarts (each example keeps its best
result), and **per-example early stopping**: an example stops moving once it is fooled, and only the
still-unfooled examples are sent through the model (this is where most of the speed comes from).
FGSM is one step of size eps from the clean input. Distances are in pixel units: a model that
expects normalized inputs either normalizes inside (:class:`robusttext_vision.models.Normalize`) or gets the
normalization here via ``normalize=(mean, std)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import validate_images

Norm = Literal["linf", "l2"]
NORMS = ("linf", "l2")
ATTACKS = ("fgsm", "pgd")


@dataclass
class AttackResult:
    """Adversarial images (same shape as the inputs), per-example success, and per-example loss.

    ``loss`` is the attacked objective at the adversarial image: cross-entropy of the true class
    (untargeted) or minus the cross-entropy of the target class (targeted).
    """

    adversarial: torch.Tensor
    success: torch.Tensor
    loss: torch.Tensor

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if self.success.numel() else 0.0


def check_attack_args(eps: float, norm: str, steps: int = 1, step_size: float | None = None, restarts: int = 1) -> None:
    """Raise a clear ``ValueError`` for unusable attack parameters."""
    if not isinstance(eps, (int, float)) or not float(eps) >= 0:  # also rejects NaN
        raise ValueError(f"eps must be >= 0 (in pixel units, e.g. 0.3 for Linf on MNIST), got {eps!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if step_size is not None and not float(step_size) > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}; omit it for the default 2.5 * eps / steps")
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")


def _flat_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


def project(delta: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    """Euclidean projection of each row of ``delta`` onto the ``norm`` ball of radius ``eps``."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _flat_norm(delta).clamp_min(1e-12)).clamp(max=1.0)


def ascent_step(grad: torch.Tensor, step_size: float, norm: Norm) -> torch.Tensor:
    """The steepest-ascent step of length ``step_size`` in ``norm`` for gradient ``grad``."""
    if norm == "linf":
        return step_size * grad.sign()
    return step_size * grad / _flat_norm(grad).clamp_min(1e-12)


def random_start(x: torch.Tensor, eps: float, norm: Norm, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random point of the ball: uniform in the Linf cube; direction uniform, radius U * eps in L2."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device="cpu").to(x)
        return (2 * u - 1) * eps
    d = torch.randn(x.shape, generator=generator, device="cpu").to(x)
    r = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device="cpu").to(x)
    return d / _flat_norm(d).clamp_min(1e-12) * r * eps


def objective(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-example loss the attack increases: CE of the true class, or -CE of the target class."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    return -ce if targeted else ce


def fooled(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-example success: prediction != true class (untargeted) or == target class (targeted)."""
    pred = logits.argmax(dim=1)
    return pred == labels if targeted else pred != labels


def _forward(model: nn.Module, normalize: tuple[Sequence[float], Sequence[float]] | None) -> Callable:
    if normalize is None:
        return model
    mean, std = normalize
    if any(float(s) <= 0 for s in std):
        raise ValueError(f"normalize std must be > 0, got {list(std)}")

    def run(x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
        s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
        return model((x - m) / s)

    return run


@dataclass(frozen=True)
class _Ball:
    """What one PGD run needs besides the images: the ball (``eps``, ``norm``), the pixel range, the
    steps and their size, the objective's direction and early stopping."""

    eps: float
    norm: Norm
    low: float
    high: float
    steps: int
    step: float
    targeted: bool
    early_stop: bool


def _clean_candidates(f: Callable, images: torch.Tensor, labels: torch.Tensor, ball: _Ball) -> tuple[torch.Tensor, torch.Tensor]:
    """Each example's best (loss, success) before any attack: the clean image's when it is a candidate
    (early stopping or ``eps = 0``: fooled ones need no attack), else (-inf, False), sparing the clean
    forward pass when every example is attacked anyway."""
    if ball.early_stop or ball.eps == 0:
        with torch.no_grad():
            logits = f(images)
            return objective(logits, labels, ball.targeted), fooled(logits, labels, ball.targeted)
    best_loss = torch.full((len(images),), float("-inf"), device=images.device, dtype=images.dtype)
    best_success = torch.zeros(len(images), dtype=torch.bool, device=images.device)
    return best_loss, best_success


def _pgd_run(f: Callable, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, ball: _Ball) -> torch.Tensor:
    """One PGD run from the start ``delta``: ``ball.steps`` projected ascent steps; with early stopping an
    example stops moving once fooled and only the still-moving ones go through the model. Returns the
    final perturbation."""
    active = torch.arange(len(x), device=x.device)  # positions (in x) still moving
    for _ in range(ball.steps):
        full = len(active) == len(x)  # no example stopped yet: work on x itself, no gathers
        xa, ya = (x, y) if full else (x[active], y[active])
        d = (delta if full else delta[active]).detach().requires_grad_(True)
        logits = f(xa + d)
        loss = objective(logits, ya, ball.targeted)
        (grad,) = torch.autograd.grad(loss.sum(), d)
        with torch.no_grad():
            if ball.early_stop:
                moving = ~fooled(logits, ya, ball.targeted)
                if not bool(moving.all()):
                    active, xa, d, grad, full = active[moving], xa[moving], d[moving], grad[moving], False
                    if len(active) == 0:
                        break
            new = (xa + project(d + ascent_step(grad, ball.step, ball.norm), ball.eps, ball.norm)).clamp(ball.low, ball.high) - xa
            if full:
                delta = new
            else:
                delta[active] = new
    return delta


def _restart(
    f: Callable, images: torch.Tensor, labels: torch.Tensor, ball: _Ball, random_init: bool,
    generator: torch.Generator | None, best: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> bool:
    """One restart on the examples still to attack (the unfooled ones with early stopping, else all),
    updating ``best = (adversarial, loss, success)`` in place; ``False`` when none was left to attack."""
    best_adv, best_loss, best_success = best
    todo = (~best_success).nonzero().flatten() if ball.early_stop else torch.arange(len(images), device=images.device)
    if len(todo) == 0:
        return False
    x, y = images[todo], labels[todo]
    delta = random_start(x, ball.eps, ball.norm, generator) if random_init else torch.zeros_like(x)
    delta = ((x + project(delta, ball.eps, ball.norm)).clamp(ball.low, ball.high) - x).detach()
    delta = _pgd_run(f, x, y, delta, ball)
    with torch.no_grad():
        adv = x + delta
        logits = f(adv)
        loss = objective(logits, y, ball.targeted)
        success = fooled(logits, y, ball.targeted)
        # keep a success over a failure, else the higher loss
        better = (success & ~best_success[todo]) | ((success == best_success[todo]) & (loss > best_loss[todo]))
        idx = todo[better]
        best_adv[idx], best_loss[idx], best_success[idx] = adv[better], loss[better], success[better]
    return True


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    norm: Norm = "linf",
    steps: int = 40,
    step_size: float | None = None,
    random_init: bool = True,
    restarts: int = 1,
    targeted: bool = False,
    early_stop: bool = True,
    clip: tuple[float, float] | None = (0.0, 1.0),
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """Projected gradient descent attack within the ``norm`` ball of radius ``eps`` (pixel units).

    Args:
        model: maps images ``(N, C, H, W)`` to logits; its train/eval mode is left as is.
        images: clean images with pixels in ``clip`` (default [0, 1]).
        labels: true classes (untargeted) or target classes (``targeted=True``).
        eps: radius >= 0; step_size: default ``2.5 * eps / steps`` (Madry et al.).
        random_init: start at a random point of the ball (else at the clean image).
        restarts: independent runs; each example keeps a successful run, else its highest loss.
        early_stop: stop moving an example once it is fooled (off: run all steps, e.g. to maximize loss).
        clip: valid pixel range ``(low, high)``; None = unconstrained.
        normalize: ``(mean, std)`` applied before ``model`` (for models normalizing outside).
        generator: CPU ``torch.Generator`` for the random starts (reproducibility).

    Returns an :class:`AttackResult`; every adversarial image is within ``eps`` of its clean image and
    inside ``clip``.
    """
    check_attack_args(eps, norm, steps, step_size, restarts)
    low, high = clip if clip is not None else (float("-inf"), float("inf"))
    validate_images(images, low=low, high=high)
    labels = torch.as_tensor(labels, device=images.device).long()
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    step = float(step_size) if step_size is not None else 2.5 * float(eps) / steps
    ball = _Ball(eps, norm, low, high, steps, step, targeted, early_stop)
    f = _forward(model, normalize)
    images = images.detach()
    best_adv = images.clone()
    best_loss, best_success = _clean_candidates(f, images, labels, ball)
    if eps == 0:
        return AttackResult(best_adv, best_success, best_loss)
    for _ in range(restarts):
        if not _restart(f, images, labels, ball, random_init, generator, (best_adv, best_loss, best_success)):
            break
    return AttackResult(best_adv.detach(), best_success, best_loss)


def fgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    norm: Norm = "linf",
    targeted: bool = False,
    clip: tuple[float, float] | None = (0.0, 1.0),
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
) -> AttackResult:
    """Fast gradient (sign) method: one step of length ``eps`` from the clean image (Goodfellow et al. 2015);
    under L2 the step follows the normalized gradient (the "fast gradient method")."""
    return pgd(model, images, labels, eps, norm, steps=1, step_size=eps if eps > 0 else None, random_init=False,
               targeted=targeted, early_stop=False, clip=clip, normalize=normalize)


def attack(name: str, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, **kwargs) -> AttackResult:
    """Run attack ``name`` (``fgsm`` or ``pgd``); ``kwargs`` go to :func:`pgd` (FGSM takes norm, targeted, clip, normalize)."""
    if name == "fgsm":
        keep = {k: v for k, v in kwargs.items() if k in ("norm", "targeted", "clip", "normalize")}
        return fgsm(model, images, labels, eps, **keep)
    if name == "pgd":
        return pgd(model, images, labels, eps, **kwargs)
    raise ValueError(f"attack must be one of {ATTACKS}, got {name!r}")


def batch_generator(seed: int, start: int) -> torch.Generator:
    """The random stream of the attack batch that starts at image ``start``: a pure function of (seed, start),
    so results do not depend on which process attacks which batch."""
    import numpy as np

    return torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(start)]).generate_state(1)[0]))


def attack_batch(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack_name: str, eps_values: Sequence[float],
    start: int, targets: torch.Tensor | None = None, device: str | torch.device = "cpu", seed: int = 0, **kwargs,
) -> dict[str, tuple[list[bool], list[bool]]]:
    """Attack one batch (images ``start``, ``start + 1``, ... of a split) at each eps; returns
    ``{f"{eps:g}": (still correct per image, attack succeeded per image)}``. PGD's random starts come from
    :func:`batch_generator` (seed, start) and the eps index."""
    f = _forward(model, kwargs.get("normalize"))
    x, y = images.to(device), labels.to(device)
    goal = y if targets is None else targets.to(device)
    out = {}
    for k, eps in enumerate(eps_values):
        extra = dict(kwargs, generator=batch_generator(seed + 7919 * k, start)) if attack_name == "pgd" else kwargs
        res = attack(attack_name, model, x, goal, eps, targeted=targets is not None, **extra)
        with torch.no_grad():
            correct = (f(res.adversarial).argmax(1) == y).tolist()
        out[f"{eps:g}"] = (correct, res.success.tolist())
    return out


def attack_dataset(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack_name: str,
    eps_values: Sequence[float],
    targets: torch.Tensor | None = None,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
    **kwargs,
) -> dict[str, dict[str, float]]:
    """Attack every image at each eps, in batches of :func:`attack_batch`; returns
    ``{f"{eps:g}": {"accuracy", "success_rate"}}``.

    ``accuracy`` is the robust accuracy: the fraction of adversarial images still classified as their
    true label (eps = 0 gives clean accuracy). ``success_rate`` is the attack's: label changed
    (untargeted) or target class reached (``targets`` given: a targeted attack).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if targets is not None and targets.shape != labels.shape:
        raise ValueError(f"targets must have the shape of labels {tuple(labels.shape)}, got {tuple(targets.shape)}")
    model = model.to(device).eval()
    tally = {f"{eps:g}": [0, 0] for eps in eps_values}
    for start in tqdm(range(0, len(images), batch_size), desc=f"{attack_name} {kwargs.get('norm', 'linf')}",
                      disable=not progress, leave=False):
        part = slice(start, start + batch_size)
        res = attack_batch(model, images[part], labels[part], attack_name, eps_values, start,
                           None if targets is None else targets[part], device, seed, **kwargs)
        for key, (correct, fooled) in res.items():
            tally[key][0] += sum(correct)
            tally[key][1] += sum(fooled)
    n = max(1, len(images))
    return {key: {"accuracy": c / n, "success_rate": s / n} for key, (c, s) in tally.items()}


def robust_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack_name: str, eps_values: Sequence[float], **kwargs
) -> dict[str, float]:
    """Untargeted robust accuracy at each eps (keys ``f"{eps:g}"``); see :func:`attack_dataset`."""
    res = attack_dataset(model, images, labels, attack_name, eps_values, **kwargs)
    return {k: v["accuracy"] for k, v in res.items()}
