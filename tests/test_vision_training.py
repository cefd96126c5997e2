"""Training loops (plain, adversarial, denoiser): resume, what the losses see, denoised certification."""

from __future__ import annotations

import json

import pytest
import torch

from robusttext_vision.adversarial import adversarial_loss, train_classifier, training_loss
from robusttext_vision.data import load_images
from robusttext_vision.denoise import DnCNN, denoiser_loss, load_denoiser, train_denoiser
from robusttext_vision.models import build_model
from robusttext_vision.smoothing import SmoothedImageClassifier
from robusttext_vision.training import FitConfig


@pytest.fixture(scope="module")
def digits():
    d = load_images("digits", "train")
    return d.images[:256], d.labels[:256]


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_resume_continues_after_last_epoch_and_matches_uninterrupted_run(digits, tmp_path):
    x, y = digits
    torch.manual_seed(0)
    full = build_model("linear", 1, 10, 8)
    torch.manual_seed(0)
    parts = build_model("linear", 1, 10, 8)
    train_classifier(full, x, y, "standard", FitConfig(epochs=3, batch_size=64), tmp_path / "full")
    train_classifier(parts, x, y, "standard", FitConfig(epochs=2, batch_size=64), tmp_path / "parts")
    torch.manual_seed(0)
    resumed = build_model("linear", 1, 10, 8)
    hist = train_classifier(resumed, x, y, "standard", FitConfig(epochs=3, batch_size=64), tmp_path / "parts")
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "parts" / "checkpoints").iterdir()) == ["epoch_3"]
    assert len((tmp_path / "parts" / "log.jsonl").read_text().splitlines()) == 3
    assert torch.allclose(params(resumed), params(full), atol=1e-6)


def test_pgd_training_loss_trains_on_points_of_the_ball(digits):
    x, y = digits
    seen = []
    model = build_model("linear", 1, 10, 8)

    class Spy(torch.nn.Module):
        def forward(self, z):
            seen.append(z.detach().clone())
            return model(z)

    spy = Spy()

    loss, _ = adversarial_loss("pgd", 0.1, "linf", steps=3)(spy, x[:16], y[:16], 5.0)
    adv = seen[-1]
    assert (adv - x[:16]).abs().max() <= 0.1 + 1e-6 and (adv - x[:16]).abs().max() > 0.05
    assert adv.min() >= 0 and adv.max() <= 1
    # warm-up: at progress 0.5 of 1 warm-up epoch the radius is half
    adversarial_loss("fgsm_rs", 0.1, "linf", warmup_epochs=1.0)(spy, x[:16], y[:16], 0.5)
    assert (seen[-1] - x[:16]).abs().max() <= 0.05 + 1e-6
    with pytest.raises(ValueError, match="--method must be one of"):
        training_loss("trades")


def test_identity_denoiser_certifies_exactly_like_no_denoiser(digits):
    x, _ = digits
    torch.manual_seed(0)
    model = build_model("linear", 1, 10, 8)

    class Identity(torch.nn.Module):
        def forward(self, z):
            return z

    a = SmoothedImageClassifier(model, 10, 0.25, seed=4).certify(x[:5], n0=20, n=200, alpha=0.01)
    b = SmoothedImageClassifier(model, 10, 0.25, seed=4, denoiser=Identity()).certify(x[:5], n0=20, n=200, alpha=0.01)
    assert [(r.prediction, r.radius) for r in a] == [(r.prediction, r.radius) for r in b]


def test_mse_denoiser_beats_the_noisy_input_and_reloads(digits, tmp_path):
    x, y = digits
    sigma = 0.5
    den, hist = train_denoiser(x, y, None, "mse", sigma, FitConfig(epochs=8, batch_size=32, lr=3e-3), tmp_path, depth=3, width=16)
    noisy_mse = sigma**2 * x[0].numel()  # E ||d||^2 of the identity "denoiser", per image
    assert hist[-1]["loss"] < 0.5 * noisy_mse
    again = load_denoiser(tmp_path)
    z = torch.rand(2, 1, 8, 8)
    assert torch.allclose(again(z), den(z), atol=1e-6)
    assert json.loads((tmp_path / "vision_model.json").read_text())["objective"] == "mse"


def test_stability_objective_targets_the_classifier_on_clean_images():
    torch.manual_seed(0)
    clf = build_model("linear", 1, 3, 4)
    x = torch.rand(64, 1, 4, 4)
    target = clf(x).argmax(1)
    identity = DnCNN(1, depth=2, width=1)
    torch.nn.init.zeros_(identity.residual[0].weight), torch.nn.init.zeros_(identity.residual[0].bias)
    torch.nn.init.zeros_(identity.residual[2].weight), torch.nn.init.zeros_(identity.residual[2].bias)
    labels = torch.zeros(64, dtype=torch.long)  # deliberately wrong: the objective must not use them
    torch.manual_seed(1)
    loss, logits = denoiser_loss("stability", 1e-6, clf)(identity, x, labels, 0.0)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(clf(x), target).item(), rel=1e-4)
    with pytest.raises(ValueError, match="needs the frozen classifier"):
        denoiser_loss("stability", 0.5, None)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        denoiser_loss("mse", 0.0)
