"""The image loaders: IDX parsing against bytes written here, the real MNIST files, splits, errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from robusttext_vision.data import FASHION_ROOT, load_images, parse_split, read_idx, validate_images


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_idx_round_trip_and_loader_on_synthetic_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    data = load_images("mnist", "test[2:6]", root=tmp_path)
    assert data.images.shape == (4, 1, 5, 4) and data.images.dtype == torch.float32
    assert torch.equal(data.images[:, 0], torch.tensor(images[2:6] / 255.0, dtype=torch.float32))
    assert data.labels.tolist() == labels[2:6].tolist()
    with pytest.raises(FileNotFoundError, match=r"test\[:8000\]"):
        load_images("mnist", "train", root=tmp_path)


def test_parse_split():
    assert parse_split("test[:8000]") == ("test", slice(None, 8000))
    assert parse_split("test[8000:]") == ("test", slice(8000, None))
    assert parse_split("train") == ("train", slice(None))
    with pytest.raises(ValueError, match="split must look like"):
        parse_split("test[a:b]")


def test_real_mnist_test_split(data_dir):
    full = load_images("mnist", "test")
    assert full.images.shape == (10000, 1, 28, 28) and len(full) == 10000
    assert 0.0 <= full.images.min() and full.images.max() <= 1.0
    assert torch.bincount(full.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    head, tail = load_images("mnist", "test[:8000]"), load_images("mnist", "test[8000:]")
    assert len(head) == 8000 and len(tail) == 2000
    assert torch.equal(tail.images, full.images[8000:])


@pytest.mark.skipif(not FASHION_ROOT.exists(), reason="apt-get install -y dataset-fashion-mnist")
def test_fashion_mnist_from_debian_package():
    data = load_images("fashion-mnist", "test", max_examples=100)
    assert data.images.shape == (100, 1, 28, 28) and data.classes[9] == "Ankle boot"
    assert len(load_images("fashion-mnist", "train[59990:]")) == 10  # the full 60k training split


def test_digits_splits():
    train, test, everything = (load_images("digits", s) for s in ("train", "test", "all"))
    assert len(train) + len(test) == len(everything) == 1797
    assert train.shape == (1, 8, 8) and everything.images.max() == 1.0


def test_bad_dataset_and_images():
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_images("imagenet")
    with pytest.raises(ValueError, match="splits 'train', 'test' and 'all'"):
        load_images("digits", "validation")
    with pytest.raises(ValueError, match="floating point"):
        validate_images(torch.zeros((1, 1, 2, 2), dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"per-image shape"):
        validate_images(torch.zeros((1, 3, 2, 2)), shape=(1, 2, 2))
