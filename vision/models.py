"""Small image classifiers (a CNN and a linear model), input normalization, saving and loading.

Every model takes images in pixel space ``[0, 1]``; a model that expects normalized inputs is
wrapped in :class:`Normalize` so attacks and certificates are always stated in pixel units.
A saved model is a folder with ``vision_model.json`` (architecture and shapes) and ``model.pt``
(the state dict).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

ARCHITECTURES = ("cnn", "linear")
CONFIG_NAME = "vision_model.json"
WEIGHTS_NAME = "model.pt"


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel in front of ``model`` (normalization *inside* the model)."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if any(float(s) <= 0 for s in std):
            raise ValueError(f"normalization std must be > 0, got {list(std)}")
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (16, 32 channels, each + ReLU + 2x2 max-pool) and a 100-unit hidden layer.

    About 0.17M parameters on 28x28 inputs: small enough to train, attack and certify on 2 CPU cores.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * side * side, 100), nn.ReLU(), nn.Linear(100, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LinearClassifier(nn.Module):
    """Logits ``W x + b`` of the flattened image (a multinomial logistic-regression model)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels * image_size * image_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def build_model(
    arch: str, in_channels: int, num_classes: int, image_size: int,
    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
) -> nn.Module:
    """A fresh model of architecture ``arch`` (``cnn`` or ``linear``), with normalization when given."""
    if arch == "cnn":
        if image_size % 4:
            raise ValueError(f"the cnn needs an image size divisible by 4, got {image_size}; use --arch linear")
        model: nn.Module = SmallCNN(in_channels, num_classes, image_size)
    elif arch == "linear":
        model = LinearClassifier(in_channels, num_classes, image_size)
    else:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    if mean is not None or std is not None:
        model = Normalize(model, mean or [0.0] * in_channels, std or [1.0] * in_channels)
    return model


def save_model(model: nn.Module, directory: str | Path, config: dict[str, Any]) -> None:
    """Write ``model``'s weights and the ``config`` that rebuilds it (keys of :func:`build_model`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    torch.save(model.state_dict(), directory / WEIGHTS_NAME)
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _build_from_config(config: dict[str, Any]) -> nn.Module:
    keys = ("arch", "in_channels", "num_classes", "image_size", "mean", "std")
    return build_model(**{k: config.get(k) for k in keys})


def load_model(
    directory: str | Path, map_location: str | torch.device = "cpu",
    build: Callable[[dict[str, Any]], nn.Module] = _build_from_config,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model` (``build`` makes the empty module from the saved
    config; default: a classifier); returns ``(model in eval mode, config)``."""
    directory = Path(directory)
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.exists():
        raise FileNotFoundError(f"{directory}: no {CONFIG_NAME}; train one with `robusttext vision train` (or `denoise`)")
    config = json.loads(cfg_path.read_text())
    model = build(config)
    model.load_state_dict(torch.load(directory / WEIGHTS_NAME, map_location=map_location, weights_only=True))
    return model.eval(), config
