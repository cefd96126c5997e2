"""Gaussian smoothing against exact oracles.

For a 2-class linear base classifier ``f(x) = 1[w . x + b > 0]`` the score under noise is
``w . (x + d) + b ~ N(w . x + b, sigma^2 ||w||^2)``, so the smoothed probability of class 1 is exactly
``Phi((w . x + b) / (sigma ||w||_2))``. CERTIFY's Clopper-Pearson lower bound must sit below it with
probability >= 1 - alpha, and PREDICT must abstain on a coin flip (p = 1/2) except with probability alpha.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from robusttext_vision.smoothing import SmoothedImageClassifier, gaussian_noise_loss

SIGMA = 0.5


class Halfspace(nn.Module):
    """Logits (0, w . x + b): class 1 iff w . x + b > 0."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w.flatten(), float(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


def setup(z: float) -> tuple[Halfspace, torch.Tensor]:
    """A model and one 1x4x4 image whose score is ``z`` noise standard deviations: p1 = Phi(z)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g)
    x = torch.full((1, 1, 4, 4), 0.5)
    b = z * SIGMA * float(w.norm()) - float(x.flatten() @ w)
    return Halfspace(w, b), x


def test_noisy_votes_follow_the_normal_cdf():
    model, x = setup(0.7)
    clf = SmoothedImageClassifier(model, 2, SIGMA, batch_size=4096, seed=3)
    n = 40000
    counts = clf.engine.count(list(x.numpy()), clf.mechanism, n, seed=3)[0]
    p = stats.norm.cdf(0.7)
    assert abs(counts[1] - n * p) < 4.5 * np.sqrt(n * p * (1 - p))


def test_certify_lower_bound_covers_exact_probability_at_stated_rate():
    z, alpha, trials = 1.2816, 0.1, 400  # p1 = 0.9
    model, x = setup(z)
    p1 = stats.norm.cdf(z)
    clf = SmoothedImageClassifier(model, 2, SIGMA, batch_size=2000, seed=11)
    certs = clf.certify(x.repeat(trials, 1, 1, 1), n0=20, n=100, alpha=alpha)
    exact = np.array([p1 if c.prediction in (1, -1) else 1 - p1 for c in certs])
    lower = np.array([c.top1_lower for c in certs])
    failures = int((lower > exact).sum())
    assert failures <= stats.binom.ppf(1 - 1e-4, trials, alpha)
    assert lower.mean() > p1 - 0.1  # not vacuous: the bounds are close to the truth
    for c in certs:
        if c.radius >= 0:
            assert c.radius == pytest.approx(SIGMA * stats.norm.ppf(c.top1_lower), rel=1e-9)


def test_predict_abstains_on_a_coin_flip_and_answers_a_clear_case():
    model, x = setup(0.0)
    clf = SmoothedImageClassifier(model, 2, SIGMA, batch_size=2000, seed=5)
    out = clf.predict(x.repeat(200, 1, 1, 1), n=200, alpha=0.05)
    answered = sum(p.prediction != -1 for p in out)
    assert answered <= stats.binom.ppf(1 - 1e-4, 200, 0.05)
    model, x = setup(2.0)  # p1 = 0.977
    out = SmoothedImageClassifier(model, 2, SIGMA, seed=5).predict(x.repeat(20, 1, 1, 1), n=200, alpha=0.05)
    assert all(p.prediction == 1 for p in out)


def test_results_do_not_depend_on_batching_or_sharding():
    g = torch.Generator().manual_seed(2)
    model = Halfspace(torch.randn(16, generator=g), 0.0)
    images = torch.rand((6, 1, 4, 4), generator=g)
    a = SmoothedImageClassifier(model, 2, SIGMA, batch_size=7, seed=1).certify(images, n0=30, n=300, alpha=0.01)
    b = SmoothedImageClassifier(model, 2, SIGMA, batch_size=1000, seed=1).certify(images, n0=30, n=300, alpha=0.01)
    c = SmoothedImageClassifier(model, 2, SIGMA, batch_size=64, seed=1).certify(
        images[[4, 1]], n0=30, n=300, alpha=0.01, indices=[4, 1]
    )
    assert [r.radius for r in a] == [r.radius for r in b]
    assert [c[0].radius, c[1].radius] == [a[4].radius, a[1].radius]
    d = SmoothedImageClassifier(model, 2, SIGMA, batch_size=7, seed=2).certify(images, n0=30, n=300, alpha=0.01)
    assert [r.top1_lower for r in d] != [r.top1_lower for r in a]


def test_gaussian_training_loss_sees_noise_of_the_stated_scale():
    seen = []

    def probe(x):
        seen.append(x)
        return torch.zeros(len(x), 2, requires_grad=True)

    x = torch.full((2000, 1, 2, 2), 0.5)
    loss, _ = gaussian_noise_loss(0.3)(probe, x, torch.zeros(2000, dtype=torch.long), 0.0)
    assert loss.item() == pytest.approx(np.log(2))
    assert (seen[0] - x).std().item() == pytest.approx(0.3, rel=0.03)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n0=200, n=100), "n0 .* must be <= n"),
        (dict(n0=10, n=100, alpha=0.0), "alpha must be in"),
        (dict(n0=0, n=100), "n0 must be an integer"),
    ],
)
def test_bad_budget(kwargs, match):
    model, x = setup(1.0)
    with pytest.raises(ValueError, match=match):
        SmoothedImageClassifier(model, 2, SIGMA).certify(x, **kwargs)


def test_bad_sigma_and_images():
    model, x = setup(1.0)
    for sigma in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma must be > 0"):
            SmoothedImageClassifier(model, 2, sigma)
    clf = SmoothedImageClassifier(model, 2, SIGMA)
    with pytest.raises(ValueError, match="NaN"):
        clf.certify(x * float("nan"), n0=10, n=20)
    with pytest.raises(ValueError, match="pixel values"):
        clf.certify(x + 2, n0=10, n=20)
    with pytest.raises(ValueError, match="shape"):
        clf.predict(x[0], n=20)


class _InputDependent(nn.Module):
    """A conv net whose forward branches on its input: a trace would record only one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.head = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if h.mean() > 0:
            h = -h
        return self.head(h.flatten(1))


def test_frozen_cpu_classifier_matches_the_eager_model():
    from robusttext_vision.models import build_model
    from robusttext_vision.smoothing import ImageBatchClassifier

    torch.manual_seed(0)
    model = build_model("cnn", 1, 10, 28).eval()
    x = torch.rand(37, 1, 28, 28) * 1.6 - 0.3  # noisy images leave [0, 1]
    with torch.no_grad():
        eager = model(x)
    fast = ImageBatchClassifier(model)
    assert np.array_equal(fast(x.numpy()), eager.argmax(1).numpy())
    assert fast._frozen is not None  # the frozen copy classified, not the eager fallback
    with torch.inference_mode():
        other = torch.rand(5, 1, 28, 28)  # another batch size than the traced one
        assert torch.allclose(fast.logits(other), model(other), atol=1e-5)
    # the model itself was left as it was (no in-place conversion when optimizing)
    assert next(model.parameters()).is_contiguous()


def test_input_dependent_model_falls_back_to_eager_with_a_warning():
    from robusttext_vision.smoothing import ImageBatchClassifier

    torch.manual_seed(0)
    model = _InputDependent().eval()
    clf = ImageBatchClassifier(model)
    x = torch.rand(4, 1, 8, 8)
    with pytest.warns(UserWarning, match="control flow depends on its input"):
        classes = clf(x.numpy())
    assert clf._frozen is None
    with torch.no_grad():
        assert np.array_equal(classes, model(x).argmax(1).numpy())
        flipped = -x  # takes the other branch: the eager model is the one classifying
        assert np.array_equal(clf(flipped.numpy()), model(flipped).argmax(1).numpy())


def test_noise_drawn_on_the_models_device_equals_the_numpy_draws_on_cpu():
    """Device-side noise (a tensor that stays on the device) is, on the CPU, the same numbers as numpy-side noise,
    so certificates do not change; the batches handed to the model are tensors."""
    from robusttext_vision.smoothing import GaussianMechanism

    x = np.random.default_rng(0).random((3, 5, 5), dtype=np.float32)
    on_host = GaussianMechanism(SIGMA).draw(x, 300, np.random.default_rng(7))
    on_device = GaussianMechanism(SIGMA, device="cpu").draw(torch.from_numpy(x), 300, np.random.default_rng(7))
    assert isinstance(on_host, np.ndarray) and isinstance(on_device, torch.Tensor)
    assert np.array_equal(on_host, on_device.numpy())

    model, img = setup(0.3)
    seen = []
    device_side = SmoothedImageClassifier(model, 2, SIGMA, batch_size=64, seed=5)
    host_side = SmoothedImageClassifier(model, 2, SIGMA, batch_size=64, seed=5)
    host_side.mechanism = GaussianMechanism(SIGMA)  # numpy draws, as before
    forward = device_side.base.logits
    device_side.base.logits = lambda batch: (seen.append(type(batch)), forward(batch))[1]  # type: ignore[method-assign]
    a = device_side.certify(img.repeat(3, 1, 1, 1), n0=30, n=500, alpha=0.01)
    b = host_side.certify(img.repeat(3, 1, 1, 1), n0=30, n=500, alpha=0.01)
    assert [(c.prediction, c.radius, c.top1_lower, c.n_queries) for c in a] == [
        (c.prediction, c.radius, c.top1_lower, c.n_queries) for c in b]
    assert seen and all(t is torch.Tensor for t in seen)
