"""Exact robust linear classification: closed forms checked by brute force and by PGD."""

from __future__ import annotations

import itertools

import pytest
import torch

from robusttext_vision.data import load_images
from robusttext_vision.linear import (
    binary_task,
    errors,
    hinge_loss,
    margins,
    robust_hinge_loss,
    robust_margins,
    train_linear,
    worst_case_perturbation,
)


def small_problem(d: int = 5, n: int = 12):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    b = torch.randn((), generator=g, dtype=torch.float64)
    x = torch.rand((n, d), generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()
    return w, b, x, y


def test_robust_loss_equals_loss_at_closed_form_worst_case():
    w, b, x, y = small_problem()
    for norm, eps in (("linf", 0.1), ("l2", 0.4)):
        delta = worst_case_perturbation(w, y, eps, norm)
        per_example = torch.clamp(1 - margins(w, b, x + delta, y), min=0)
        assert robust_hinge_loss(w, b, x, y, eps, norm).item() == pytest.approx(per_example.mean().item(), abs=1e-12)
        assert torch.allclose(margins(w, b, x + delta, y), robust_margins(w, b, x, y, eps, norm), atol=1e-12)


def test_linf_worst_case_matches_brute_force_over_cube_vertices():
    # The margin is linear in delta, so its minimum over the cube is at a vertex: enumerate all 2^d.
    w, b, x, y = small_problem(d=5)
    eps = 0.15
    vertices = torch.tensor(list(itertools.product([-eps, eps], repeat=5)), dtype=torch.float64)
    brute = torch.stack([margins(w, b, x + v, y) for v in vertices]).min(0).values
    assert torch.allclose(brute, robust_margins(w, b, x, y, eps, "linf"), atol=1e-12)


def test_l2_worst_case_is_not_beaten_by_sphere_samples():
    w, b, x, y = small_problem(d=3)
    eps = 0.5
    g = torch.Generator().manual_seed(1)
    d = torch.randn((20000, 3), generator=g, dtype=torch.float64)
    d = eps * d / d.norm(dim=1, keepdim=True)
    sampled = torch.stack([margins(w, b, x + v, y) for v in d]).min(0).values
    exact = robust_margins(w, b, x, y, eps, "l2")
    assert (sampled >= exact - 1e-12).all()
    assert torch.allclose(sampled, exact, atol=2e-3)  # the samples come close: the bound is tight


def test_pgd_on_the_hinge_reaches_the_closed_form():
    from robusttext_vision.attacks import pgd

    w, b, x, y = small_problem()

    class Lin(torch.nn.Module):  # two logits (0, f) so cross-entropy is monotone in the margin
        def forward(self, z):
            s = z.flatten(1) @ w + b
            return torch.stack([torch.zeros_like(s), s], 1)

    labels = (y > 0).long()
    res = pgd(Lin(), x[:, None, None, :], labels, 0.1, "linf", steps=20, early_stop=False, clip=None)
    found = margins(w, b, res.adversarial.flatten(1), y)
    assert torch.allclose(found, robust_margins(w, b, x, y, 0.1, "linf"), atol=1e-9)


def test_robust_training_lowers_exact_robust_error_on_digits():
    data = load_images("digits", "all")
    x, y = binary_task(data.images, data.labels, (0, 1))
    eps = 0.2
    w0, b0, _ = train_linear(x, y, eps=0.0, epochs=20, lr=0.05)
    w1, b1, hist = train_linear(x, y, eps=eps, epochs=20, lr=0.05)
    regular, robust = errors(w0, b0, x, y, eps), errors(w1, b1, x, y, eps)
    assert regular["clean_error"] < 0.02 and robust["clean_error"] < 0.05
    assert robust["robust_error"] < regular["robust_error"]
    assert hist[-1] == pytest.approx(robust_hinge_loss(w1, b1, x, y, eps).item(), abs=0.1)
    assert hinge_loss(margins(w1, b1, x, y)) <= robust_hinge_loss(w1, b1, x, y, eps)


def test_bad_linear_input():
    w, b, x, y = small_problem()
    with pytest.raises(ValueError, match="eps must be >= 0"):
        robust_margins(w, b, x, y, -0.1)
    with pytest.raises(ValueError, match="two different classes"):
        binary_task(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), (3, 3))
