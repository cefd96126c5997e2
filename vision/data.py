"""One loader API for image classification data: MNIST, Fashion-MNIST, scikit-learn digits, CIFAR-10.

:func:`load_images` returns an :class:`ImageData`: float32 images ``(N, C, H, W)`` with pixel values
in [0, 1], int64 labels, and the class names. Sources (all offline except CIFAR-10):

* ``mnist``: the original IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``) in
  ``root`` (default ``$ROBUSTTEXT_DATA/mnist``, i.e. ``../shared/data/mnist``, which holds the 10k test
  split only); with ``download=True`` torchvision fetches the rest on a connected machine;
* ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` (full 60k/10k IDX files in
  ``/usr/share/datasets/fashion-mnist``);
* ``digits``: scikit-learn's bundled 1,797 8x8 digits (pixels 0..16 scaled to [0, 1]); split
  ``train`` = first 1,437, ``test`` = last 360, ``all`` = everything;
* ``cifar10``: torchvision's CIFAR-10 (``download=True`` where the network allows).

A split may carry a slice, as in ``datasets``: ``test[:8000]``, ``test[8000:]``, ``train[100:200]``.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from robusttext.errors import MissingPathError, UserError

DATASETS = ("mnist", "fashion-mnist", "digits", "cifar10")
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGITS_TRAIN = 1437
_SPLIT = re.compile(r"^\s*(\w+)\s*(?:\[\s*((?:-?\d+)?)\s*:\s*((?:-?\d+)?)\s*\])?\s*$")


@dataclass
class ImageData:
    """Images ``(N, C, H, W)`` float32 in [0, 1], labels ``(N,)`` int64, class names in id order."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    split: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def validate_images(
    images: torch.Tensor, shape: Sequence[int] | None = None, low: float = 0.0, high: float = 1.0, name: str = "images"
) -> None:
    """Raise a clear ``ValueError`` unless ``images`` is a finite ``(N, C, H, W)`` batch in [low, high].

    ``shape`` is the expected ``(C, H, W)`` of one image (None: any).
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(
            f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}; add a batch dimension with x[None]"
        )
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} must have per-image shape (C, H, W) = {tuple(shape)}, got {tuple(images.shape[1:])}")
    if not torch.is_floating_point(images):
        raise ValueError(f"{name} must be floating point with pixels in [{low}, {high}], got dtype {images.dtype}; divide uint8 by 255")
    if torch.isnan(images).any() or torch.isinf(images).any():
        raise ValueError(f"{name} contain NaN or inf values; clean the input before attacking or certifying")
    if images.numel() and (images.min() < low or images.max() > high):
        raise ValueError(
            f"{name} must have pixel values in [{low}, {high}], got [{images.min().item():.4g}, {images.max().item():.4g}]; "
            "scale to [0, 1] and pass normalization to the model or attack instead of normalizing the inputs"
        )


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format of MNIST and Fashion-MNIST (LeCun et al.)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    dtype, ndim = data[2], data[3]
    if dtype not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{dtype:02x}")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=dtypes[dtype], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {dims} elements, file holds {arr.size}")
    return arr.reshape(dims)


def parse_split(split: str) -> tuple[str, slice]:
    """``"test[:8000]"`` -> ``("test", slice(None, 8000))``; ``"train"`` -> ``("train", slice(None))``."""
    m = _SPLIT.match(str(split))
    if not m:
        raise ValueError(f"split must look like 'train', 'test' or 'test[:8000]', got {split!r}")
    base, start, stop = m.group(1), m.group(2), m.group(3)
    return base, slice(int(start) if start else None, int(stop) if stop else None)


def _find(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem, root / stem.replace("-idx", ".idx")):
        if candidate.exists():
            return candidate
    return None


def missing_folder_error(what: str, folder: Path, root_given: bool) -> MissingPathError:
    """The one-line error for a data folder that does not exist, naming it and how to point elsewhere."""
    if root_given:
        return MissingPathError(f"{what}: data folder {folder} does not exist; check --data-root")
    env = os.environ.get("ROBUSTTEXT_DATA")
    source = f"ROBUSTTEXT_DATA={env}" if env else "ROBUSTTEXT_DATA unset: default ../shared/data beside the checkout"
    return MissingPathError(
        f"{what}: data folder {folder} does not exist ({source}); set ROBUSTTEXT_DATA to the folder that holds "
        f"{folder.name}/, or pass --data-root"
    )


def _load_idx_pair(root: Path, base: str, what: str, download_hint: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = {"train": "train", "test": "t10k"}.get(base)
    if prefix is None:
        raise UserError(f"{what} has splits 'train' and 'test', got {base!r}")
    images = _find(root, f"{prefix}-images-idx3-ubyte")
    labels = _find(root, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        raise MissingPathError(
            f"{what} split {base!r}: no {prefix}-images-idx3-ubyte[.gz] / {prefix}-labels-idx1-ubyte[.gz] in {root}."
            + (f" {download_hint}" if download_hint else "")
        )
    return read_idx(images), read_idx(labels)


def _torchvision(name: str, base: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray]:
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    if base not in ("train", "test"):
        raise ValueError(f"{name} has splits 'train' and 'test', got {base!r}")
    try:
        ds = cls(str(root), train=base == "train", download=download)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"{name} split {base!r} not found in {root} ({err}); pass download=True (--download) on a connected machine"
        ) from err
    data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
    return data, np.asarray(ds.targets)


def _mnist(base: str, root: str | Path | None, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """MNIST split ``base`` from ``root`` (default: the shared data's ``mnist/``), downloading if allowed."""
    from robusttext.runs.data import shared_data_dir

    folder = Path(root) if root else shared_data_dir() / "mnist"
    if not folder.is_dir() and not download:
        raise missing_folder_error("mnist", folder, root is not None)
    hint = ("The shared data holds the test split only: use it (--split 'test[:8000]'; experiments/coloredmnist.py: --mnist-split test)."
            if base == "train" else "")
    try:
        return _load_idx_pair(folder, base, "mnist", hint)
    except FileNotFoundError:
        if not download:
            raise
        return _torchvision("mnist", base, folder, True)


def load_images(
    name: str, split: str = "test", root: str | Path | None = None, max_examples: int | None = None, download: bool = False
) -> ImageData:
    """Load split ``split`` of dataset ``name`` (one of :data:`DATASETS`) as an :class:`ImageData`.

    ``split`` may carry a slice (``"test[:8000]"``); ``max_examples`` then keeps the first N of it.
    ``root`` overrides the folder holding the files; ``download`` lets torchvision fetch missing
    MNIST/CIFAR-10 files (never used by tests).
    """
    from robusttext.runs.data import shared_data_dir

    key = str(name).lower().replace("_", "-")
    base, part = parse_split(split)
    if key == "mnist":
        x, y = _mnist(base, root, download)
        classes = MNIST_CLASSES
    elif key == "fashion-mnist":
        folder = Path(root) if root else FASHION_ROOT
        if not folder.is_dir():
            raise MissingPathError(
                f"fashion-mnist: data folder {folder} does not exist; apt-get install -y dataset-fashion-mnist, or pass --data-root"
            )
        x, y = _load_idx_pair(folder, base, "fashion-mnist", "Install it with: apt-get install -y dataset-fashion-mnist")
        classes = FASHION_CLASSES
    elif key == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.images / 16.0, d.target
        if base == "train":
            x, y = x[:DIGITS_TRAIN], y[:DIGITS_TRAIN]
        elif base == "test":
            x, y = x[DIGITS_TRAIN:], y[DIGITS_TRAIN:]
        elif base != "all":
            raise ValueError(f"digits has splits 'train', 'test' and 'all', got {base!r}")
        classes = MNIST_CLASSES
    elif key == "cifar10":
        folder = Path(root) if root else shared_data_dir() / "cifar10"
        x, y = _torchvision("cifar10", base, folder, download)
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    else:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    x, y = x[part], np.asarray(y)[part]
    if max_examples is not None:
        if max_examples < 1:
            raise ValueError(f"max_examples must be >= 1, got {max_examples}")
        x, y = x[:max_examples], y[:max_examples]
    images = torch.tensor(np.asarray(x, dtype=np.float32))
    if x.dtype == np.uint8:
        images = images / 255.0
    if images.dim() == 3:
        images = images[:, None]
    if len(images) == 0:
        raise ValueError(f"{name} split {split!r} is empty")
    return ImageData(images.contiguous(), torch.tensor(np.asarray(y), dtype=torch.int64), list(classes), key, str(split))
