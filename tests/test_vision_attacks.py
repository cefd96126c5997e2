"""Attacks against exact oracles: for a 2-class linear model the worst case is closed form.

With logits ``W x + b`` and true class y, the cross-entropy is ``softplus(-m(x))`` with margin
``m(x) = d . x + c``, ``d = W_y - W_other``. It is maximized over ``||delta||_inf <= eps`` at
``delta = -eps sign(d)`` (margin drops by ``eps ||d||_1``) and over ``||delta||_2 <= eps`` at
``delta = -eps d / ||d||_2`` (margin drops by ``eps ||d||_2``); with a pixel box the Linf problem
stays separable: each coordinate moves as far as the box allows in direction ``-sign(d_i)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robusttext_vision.attacks import fgsm, pgd, robust_accuracy
from robusttext_vision.models import Normalize


def linear_model(dim: int = 16, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    lin = nn.Linear(dim, 2)
    return nn.Sequential(nn.Flatten(), lin).double()


def closed_form(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, scale: float = 1.0):
    """Worst-case loss and perturbation (no pixel box); ``scale`` = input std when normalizing outside."""
    W, b = model[1].weight.detach(), model[1].bias.detach()
    d = (W[y] - W[1 - y]) / scale  # (N, D), the margin's gradient in pixel space
    flat = x.flatten(1)
    margin = ((W[y] - W[1 - y]) * ((flat - 0.5) / scale if scale != 1.0 else flat)).sum(1) + b[y] - b[1 - y]
    if norm == "linf":
        delta = -eps * d.sign()
        worst = margin - eps * d.abs().sum(1)
    else:
        delta = -eps * d / d.norm(dim=1, keepdim=True)
        worst = margin - eps * d.norm(dim=1)
    return F.softplus(-worst), delta.view_as(x), margin


@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand((32, 1, 4, 4), generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (32,), generator=g)
    return x, y


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_init", [False, True])
def test_pgd_reaches_closed_form_worst_case(batch, norm, random_init):
    x, y = batch
    model = linear_model()
    eps = 0.3 if norm == "linf" else 1.0
    want, delta, _ = closed_form(model, x, y, eps, norm)
    step = eps / 8 if not random_init or norm == "linf" else eps  # big L2 steps wash out the random start
    res = pgd(model, x, y, eps, norm, steps=60, step_size=step, random_init=random_init, early_stop=False,
              clip=None, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(res.loss, want, atol=1e-4, rtol=0)
    assert torch.allclose(res.adversarial - x, delta, atol=1e-3)


def test_pgd_linf_with_pixel_box_matches_separable_optimum(batch):
    x, y = batch
    model = linear_model()
    eps = 0.3
    W = model[1].weight.detach()
    d = (W[y] - W[1 - y]).view_as(x)
    target = (x - eps * d.sign()).clamp(0, 1)  # each pixel as far as allowed against the margin
    want = F.cross_entropy(model(target), y, reduction="none")
    res = pgd(model, x, y, eps, "linf", steps=40, early_stop=False)
    assert torch.allclose(res.loss, want, atol=1e-4, rtol=0)
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
    assert (res.adversarial - x).abs().max() <= eps + 1e-12


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_is_exact_on_linear_model(batch, norm):
    x, y = batch
    model = linear_model()
    want, _, _ = closed_form(model, x, y, 0.2, norm)
    res = fgsm(model, x, y, 0.2, norm, clip=None)
    assert torch.allclose(res.loss, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_at_eps_zero_returns_the_clean_images(batch, norm):
    x, y = batch
    model = linear_model()
    res = fgsm(model, x, y, 0.0, norm)
    assert torch.equal(res.adversarial, x)
    assert torch.equal(res.success, model(x).argmax(1) != y)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_success_and_robust_accuracy_match_exact_margin(batch, norm):
    x, y = batch
    model = linear_model()
    eps = 0.15 if norm == "linf" else 0.5
    want, _, margin = closed_form(model, x, y, eps, norm)
    worst_margin = -torch.log(torch.expm1(want))  # invert softplus(-m)
    exact_fooled = worst_margin < 0
    assert 0 < int(exact_fooled.sum()) < len(y)  # the oracle discriminates
    res = pgd(model, x, y, eps, norm, steps=30, clip=None, early_stop=True)
    assert torch.equal(res.success, exact_fooled)
    # targeted at the other class succeeds on exactly the same examples
    tgt = pgd(model, x, 1 - y, eps, norm, steps=30, clip=None, targeted=True)
    assert torch.equal(tgt.success, exact_fooled)
    assert (tgt.adversarial.flatten(1) @ model[1].weight.T.detach() + model[1].bias.detach()).argmax(1)[tgt.success].eq(
        (1 - y)[tgt.success]).all()
    acc = robust_accuracy(model, x, y, "pgd", [0.0, eps], norm=norm, steps=30, clip=None, progress=False)
    assert acc["0"] == pytest.approx(float((margin > 0).double().mean()))
    assert acc[f"{eps:g}"] == pytest.approx(float((~exact_fooled).double().mean()))


def test_early_stop_keeps_fooled_examples_and_restarts_keep_best(batch):
    x, y = batch
    model = linear_model()
    res = pgd(model, x, y, 0.3, "linf", steps=10, restarts=3, generator=torch.Generator().manual_seed(0))
    logits = model(res.adversarial)
    assert torch.equal(logits.argmax(1) != y, res.success)
    assert (res.adversarial - x).abs().max() <= 0.3 + 1e-12


def test_normalization_outside_equals_inside(batch):
    x, y = batch
    model = linear_model()
    mean, std = [0.5], [0.25]
    want, _, _ = closed_form(model, x, y, 0.1, "linf", scale=0.25)
    outside = pgd(model, x, y, 0.1, "linf", steps=20, early_stop=False, clip=None, random_init=False,
                  normalize=(mean, std))
    inside = pgd(Normalize(model, mean, std).double(), x, y, 0.1, "linf", steps=20, early_stop=False, clip=None,
                 random_init=False)
    assert torch.allclose(outside.loss, want, atol=1e-4, rtol=0)
    assert torch.allclose(inside.adversarial, outside.adversarial, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(eps=-0.1), "eps must be >= 0"),
        (dict(eps=float("nan")), "eps must be >= 0"),
        (dict(eps=0.1, norm="l1"), "norm must be one of"),
        (dict(eps=0.1, steps=0), "steps must be"),
        (dict(eps=0.1, restarts=0), "restarts must be"),
    ],
)
def test_bad_attack_arguments(batch, kwargs, match):
    x, y = batch
    with pytest.raises(ValueError, match=match):
        pgd(linear_model(), x, y, **kwargs)


def test_bad_images(batch):
    x, y = batch
    model = linear_model()
    with pytest.raises(ValueError, match=r"pixel values in \[0.0, 1.0\]"):
        pgd(model, x * 255, y, 0.1)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        pgd(model, bad, y, 0.1)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        pgd(model, x[0], y, 0.1)
    with pytest.raises(ValueError, match="labels must have shape"):
        pgd(model, x, y[:3], 0.1)
