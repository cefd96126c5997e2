"""Colored MNIST: the environments' counted rates, the Fishr penalty against a per-sample autograd
oracle in the paper's units, reproducible tables, resume, and clear errors (synthetic IDX digits, so
no shared data is needed)."""

from __future__ import annotations

import gzip
import json
import math
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _experiments import load_experiment
from robusttext_vision.coloredmnist import (
    MLP,
    ColoredMNISTConfig,
    check_args,
    make_environments,
    paper_penalty,
    run_coloredmnist,
)


def _within(count: int, n: int, p: float, z: float = 4.5) -> bool:
    """``count / n`` within ``z`` binomial standard errors of ``p``."""
    return abs(count / n - p) <= z * math.sqrt(p * (1 - p) / n)


def _digits(n: int = 10000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_environments_have_the_stated_rates_and_channels():
    digits, targets = _digits()
    args = ColoredMNISTConfig(env_sizes="4000,4000,2000", color_flip="0.2,0.1,0.9")
    envs = make_environments(digits, targets, args, seed=3)
    assert [len(e.labels) for e in envs] == [4000, 4000, 2000, 2000]
    for env, agree in zip(envs[:3], (0.8, 0.9, 0.1)):
        n = len(env.labels)
        assert _within(int((env.colors == env.labels.long()).sum()), n, agree)  # colour agrees w.p. 1 - e
        c = env.colors
        assert torch.all(env.images[torch.arange(n), 1 - c] == 0)  # the other channel is blank
        assert env.images.shape[1:] == (2, 14, 14)
    # label noise: counted against the digit's own binary label, over the three environments
    order = torch.from_numpy(np.random.default_rng(3).permutation(10000))
    clean = (targets[order] < 5).float()
    noisy = torch.cat([e.labels for e in envs[:3]])
    assert _within(int((noisy != clean).sum()), 10000, 0.25)
    # the digit itself, subsampled 2x, sits in the coloured channel; gray test holds it in both
    first = envs[0]
    assert torch.equal(first.images[0, int(first.colors[0])], digits[order[0]][::2, ::2])
    gray, test = envs[3], envs[2]
    assert torch.equal(gray.images[:, 0], gray.images[:, 1]) and torch.equal(gray.labels, test.labels)
    assert torch.equal(gray.images[:, 0], test.images.sum(1))


def test_environments_depend_only_on_the_seed():
    digits, targets = _digits()
    args = ColoredMNISTConfig()
    a, b, c = (make_environments(digits, targets, args, s) for s in (1, 1, 2))
    assert all(torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels) for x, y in zip(a, b))
    assert not torch.equal(a[0].labels, c[0].labels)


def test_four_views_are_the_four_subsampling_offsets_with_one_label_and_colour():
    # pixel (r, c) of digit i holds i * 784 + 28 r + c, so every view pixel names where it came from
    n = 50
    digits = (torch.arange(n * 784, dtype=torch.float64).reshape(n, 28, 28))
    targets = torch.arange(n) % 10
    one = make_environments(digits, targets, ColoredMNISTConfig(env_sizes="20,20,10"), seed=4)
    four = make_environments(digits, targets, ColoredMNISTConfig(env_sizes="20,20,10", subsample_views=4), seed=4)
    order = np.random.default_rng(4).permutation(n)
    rows, cols = np.arange(14)[:, None], np.arange(14)[None, :]
    for k in (0, 1):
        env, base = four[k], one[k]
        assert len(env.labels) == 4 * 20
        for v, (dr, dc) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            for j in range(20):
                pixels = env.images[v * 20 + j].sum(0).numpy()
                want = order[k * 20 + j] * 784 + 28 * (2 * rows + dr) + (2 * cols + dc)
                assert np.array_equal(pixels, want)
            assert torch.equal(env.labels[v * 20 : (v + 1) * 20], base.labels)  # the digit's one noisy label
            assert torch.equal(env.colors[v * 20 : (v + 1) * 20], base.colors)  # and its one colour
        assert torch.equal(env.images[:20], base.images)  # view 0 is IRM's subsampling
    for k in (2, 3):  # test environments: one view, unchanged
        assert torch.equal(four[k].images, one[k].images) and torch.equal(four[k].labels, one[k].labels)
    with pytest.raises(ValueError, match="--subsample-views"):
        check_args(ColoredMNISTConfig(subsample_views=2))


def _naive_paper_penalty(features, logit_layer, labels, domains):
    """Fishr's Colored MNIST penalty from per-sample autograd gradients of the BCE w.r.t. the head:
    per environment, the centred variance of each coordinate; sum over coordinates and environments of
    the squared distance to the mean over environments."""
    variances = []
    for k in (0, 1):
        grads = []
        for i in torch.nonzero(domains == k).flatten().tolist():
            z = logit_layer(features[i : i + 1]).squeeze()
            loss = F.binary_cross_entropy_with_logits(z, labels[i])
            gw, gb = torch.autograd.grad(loss, [logit_layer.weight, logit_layer.bias])
            grads.append(torch.cat([gw.flatten(), gb.flatten()]))
        g = torch.stack(grads).double()
        variances.append(((g - g.mean(0)) ** 2).mean(0))
    v = torch.stack(variances)
    return float(((v - v.mean(0)) ** 2).sum())


def test_paper_penalty_matches_per_sample_autograd():
    torch.manual_seed(0)
    head = torch.nn.Linear(5, 1)
    feats = torch.randn(23, 5)
    labels = torch.randint(0, 2, (23,)).float()
    domains = torch.tensor([0] * 11 + [1] * 12)
    got = paper_penalty(feats, head(feats).squeeze(-1), labels, domains, 2)
    want = _naive_paper_penalty(feats, head, labels, domains)
    assert want > 1e-6 and got.item() == pytest.approx(want, rel=1e-5)


def _write_idx(folder, n: int = 300, seed: int = 0, prefix: str = "t10k", digits: np.ndarray | None = None) -> None:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8) if digits is None else digits.astype(np.uint8)
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">II", 2049, n) + labels.tobytes())


def _tiny(tmp_path, **kw) -> ColoredMNISTConfig:
    base = dict(env_sizes="100,100,80", steps=4, hidden_dim=8, seeds=2, penalty_anneal_iters=2,
                data_root=str(tmp_path / "mnist"))
    return ColoredMNISTConfig(**{**base, **kw})


def _run(tmp_path, out: str, **kw) -> dict:
    """The tiny study with ``kw`` changed, run into ``tmp_path / out``."""
    return run_coloredmnist(_tiny(tmp_path, **kw), tmp_path / out)


def test_seeds_give_identical_tables_and_reruns_resume(tmp_path):
    (tmp_path / "mnist").mkdir()
    _write_idx(tmp_path / "mnist")
    one = _run(tmp_path, "a")
    two = _run(tmp_path, "b")
    strip = lambda runs: [{k: v for k, v in r.items() if k not in ("seconds_per_step", "seconds")} for r in runs]  # noqa: E731
    assert strip(one["runs"]) == strip(two["runs"]) and len(one["runs"]) == 6
    assert {(r["algorithm"], r["seed"]) for r in one["runs"]} == {(a, s) for a in ("erm", "fishr", "gray") for s in (0, 1)}
    lines = (tmp_path / "a" / "runs.jsonl").read_text().splitlines()
    again = _run(tmp_path, "a")  # resumes: nothing retrained, same records
    assert (tmp_path / "a" / "runs.jsonl").read_text().splitlines() == lines
    assert again["runs"] == one["runs"]
    with pytest.raises(ValueError, match="subsample_views"):  # other training images: never mixed in
        _run(tmp_path, "a", subsample_views=4)
    md = (tmp_path / "a" / "report.md").read_text()
    assert "| Fishr |" in md and "Gray test acc." in md and "Fishr / ERM step time" in md and "wall time" in md
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["table"]["erm"]["test_accuracy"][0] == pytest.approx(
        np.mean([r["test_accuracy"] for r in one["runs"] if r["algorithm"] == "erm"])
    )


def test_mnist_split_chooses_the_idx_files(tmp_path):
    # the test files hold only the digit 0 (label 1 before noise), the train files only 9 (label 0): with no
    # label noise every environment's labels say which files it was cut from
    (tmp_path / "mnist").mkdir()
    _write_idx(tmp_path / "mnist", n=300, prefix="t10k", digits=np.zeros(300))
    _write_idx(tmp_path / "mnist", n=400, prefix="train", digits=np.full(400, 9))
    for split in ("test", "train"):
        res = _run(tmp_path, split, seeds=1, algorithm="erm", mnist_split=split, env_sizes="120,120,60")
        assert res["parameters"]["mnist_split"] == split
        assert f"MNIST {split} split" in (tmp_path / split / "report.md").read_text()
    from robusttext_vision.data import load_images

    for split, n, label in (("test", 300, 1), ("train", 400, 0)):
        mnist = load_images("mnist", split, root=str(tmp_path / "mnist"))
        envs = make_environments(mnist.images[:, 0], mnist.labels, _tiny(tmp_path, label_noise=0.0), 0)
        assert len(mnist.labels) == n and all(bool((e.labels == label).all()) for e in envs)
    with pytest.raises(ValueError, match="--mnist-split"):
        check_args(ColoredMNISTConfig(mnist_split="validation"))
    # 350 > 300 test digits, but the train split has 400
    with pytest.raises(ValueError, match="add up to more"):
        _run(tmp_path, "big", env_sizes="150,150,50")
    _run(tmp_path, "big_train", seeds=1, algorithm="erm", env_sizes="150,150,50", mnist_split="train")


def test_fishr_differs_from_erm_only_through_the_penalty(tmp_path):
    (tmp_path / "mnist").mkdir()
    _write_idx(tmp_path / "mnist")
    res0 = _run(tmp_path, "d", seeds=1, algorithm="erm,fishr", penalty_weight=0.0, penalty_anneal_iters=0)
    e0, f0 = res0["runs"]
    # with weight 0 Fishr's loss is ERM's: identical accuracies
    assert {k: e0[k] for k in ("train_accuracy", "test_accuracy")} == {k: f0[k] for k in ("train_accuracy", "test_accuracy")}


def test_l2_default_keeps_irms_prior_for_the_training_images():
    from robusttext_vision.coloredmnist import IRM_L2, l2_weight

    # IRM: 50,000 training images at 0.00110794568; 8,000 images -> 6.25x; an explicit value is kept
    assert l2_weight(ColoredMNISTConfig(env_sizes="25000,25000,10000")) == pytest.approx(IRM_L2)
    assert l2_weight(ColoredMNISTConfig(env_sizes="4000,4000,2000")) == pytest.approx(6.25 * IRM_L2)
    assert l2_weight(ColoredMNISTConfig(l2_regularizer_weight=0.5)) == 0.5


def test_mlp_shapes():
    x = torch.rand(3, 2, 14, 14)
    h, z = MLP(7)(x)
    assert h.shape == (3, 7) and z.shape == (3,)
    assert MLP(7, grayscale=True)(x)[1].shape == (3,)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(algorithm="irm"), "--algorithm"),
        (dict(env_sizes="10,10"), "--env-sizes"),
        (dict(color_flip="0.2,0.1,1.5"), "--color-flip"),
        (dict(label_noise=0.5), "--label-noise"),
        (dict(seeds=0), "--seeds"),
    ],
)
def test_bad_arguments_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        check_args(ColoredMNISTConfig(**kw))


def test_cli_prints_the_table(tmp_path, capsys):
    from robusttext_vision.cli import main

    (tmp_path / "mnist").mkdir()
    _write_idx(tmp_path / "mnist", n=10000)  # the paper's construction: 4,000 + 4,000 + 2,000 digits
    rc = main(["coloredmnist", "--algorithm", "erm", "--seeds", "1", "--steps", "2", "--hparams", '{"hidden_dim": 4}',
               "--data-root", str(tmp_path / "mnist"), "--output-dir", str(tmp_path / "o")])
    out = capsys.readouterr()
    assert rc == 0 and "| ERM |" in out.out and "Test acc." in out.out and "MLP width 4" in out.out
    assert "sizes 4000,4000,2000, colour flip 0.2,0.1,0.9, label noise 0.25" in out.out
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["parameters"]["hidden_dim"] == 4
    # --hparams is checked against the registry: one line naming the key and the valid keys
    assert main(["coloredmnist", "--hparams", '{"hidden": 4}', "--output-dir", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert ("--hparams: unknown key 'hidden'; valid keys: hidden_dim, l2_regularizer_weight, penalty_anneal_iters, "
            "penalty_weight") in err and len(err.strip().splitlines()) == 1
    assert main(["coloredmnist", "--hparams", '{"hidden_dim": 0.5}', "--output-dir", str(tmp_path / "p")]) == 2
    assert "--hparams: hidden_dim must be an int, got 0.5" in capsys.readouterr().err
    assert main(["coloredmnist", "--hparams", '{"penalty_weight": -1}', "--output-dir", str(tmp_path / "p")]) == 2
    assert "--hparams: penalty_weight must be >= 0" in capsys.readouterr().err


def test_experiment_varies_the_construction(tmp_path, capsys):
    # experiments/coloredmnist.py: the environments' construction changed (here smaller), through the library
    main = load_experiment("coloredmnist").main
    (tmp_path / "mnist").mkdir()
    _write_idx(tmp_path / "mnist")
    rc = main(["--algorithm", "erm", "--seeds", "1", "--steps", "2", "--hparams", '{"hidden_dim": 4}',
               "--env-sizes", "50,50,40", "--subsample-views", "4", "--data-root", str(tmp_path / "mnist"),
               "--output-dir", str(tmp_path / "o")])
    out = capsys.readouterr()
    assert rc == 0 and "| ERM |" in out.out and "sizes 50,50,40" in out.out and "4 subsampling views" in out.out
    want = _run(tmp_path, "lib", algorithm="erm", seeds=1, steps=2, hidden_dim=4, env_sizes="50,50,40",
                subsample_views=4, penalty_anneal_iters=ColoredMNISTConfig.penalty_anneal_iters)
    got = json.loads((tmp_path / "o" / "summary.json").read_text())
    strip = lambda runs: [{k: v for k, v in r.items() if k not in ("seconds_per_step", "seconds")} for r in runs]  # noqa: E731
    assert strip(got["runs"]) == strip(want["runs"])  # the script is the library call
    assert main(["--env-sizes", "9000,9000,9000", "--data-root", str(tmp_path / "mnist"),
                 "--output-dir", str(tmp_path / "p")]) == 2
    assert "--env-sizes" in capsys.readouterr().err
