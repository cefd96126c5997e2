"""Colored MNIST (Arjovsky, Bottou, Gulrajani, Lopez-Paz 2019, Sec. 5.2) with ERM, Fishr and the grayscale
oracle, in the IRM protocol, the setting of Fishr's Table 2 (Rame, Dancette, Cord, ICML 2022).

Environments, built by default from the MNIST **test** split (the only split offline, 10,000 digits): for
each seed, the images are shuffled with that seed and cut into 4,000 / 4,000 / 2,000 (the IRM repository's
25,000 / 25,000 / 10,000 of the train split, scaled to what is here; ``mnist_split="train",
env_sizes="25000,25000,10000"``, i.e. ``experiments/coloredmnist.py --mnist-split train --env-sizes
25000,25000,10000``, is IRM's own cut where the train split is at hand). Then, per image
(IRM recipe): 2x subsampling to 14x14; binary label ``digit < 5``, flipped with probability 0.25;
colour ``c = label XOR Bernoulli(e)`` with ``e = 0.2, 0.1`` in the two training environments and
``e = 0.9`` in the test one (colour agrees with the label 80% / 90% / 10% of the time); the image goes
in channel ``c`` of a 2x14x14 input, the other channel is zero. "Gray test" is the test environment
with the digit in both channels (no colour information).

Model and training (IRM's ``reproduce_paper_results.sh`` values, which Fishr's code keeps for every
method): MLP 392 -> H -> H -> 1 with ReLU, Xavier-uniform weights and zero biases; full batch,
Adam (lr 4.898e-4), 501 steps; loss = mean over the training environments of the binary cross-entropy
+ l2 * sum of squared parameters + w * penalty, with w = 1 for the first 190 steps and 91257.19 after,
the whole loss divided by w whenever w > 1. ERM has no penalty; the grayscale oracle is ERM on 14x14
inputs (the two channels summed), trained exactly like ERM.

Protocol adaptation to the smaller data (one rule, the same for ERM, Fishr and the oracle): **the same
prior on the weights as IRM's**. IRM's loss is a mean over its N0 = 50,000 training images plus
``0.00110794568 * ||theta||^2``, i.e. MAP with a Gaussian prior of precision ``2 * 0.0011 * N0``; keeping
that prior with N training images makes the coefficient of the mean loss ``0.00110794568 * N0 / N``
(x 6.25 for 8,000). Every other value is IRM's; the mean cross-entropy and the penalty are per-image
averages, so they need no rescaling. The width H defaults to 128 instead of IRM's 390, for compute
only (4x cheaper per step on a CPU; ``--hparams '{"hidden_dim": 390}'`` for the original; the two widths are compared
in ``docs/benchmarks.md``). ``subsample_views=4`` (not IRM's; ``experiments/coloredmnist.py --subsample-views 4``) puts each training digit in 4 times, subsampled
at the four row/column offsets of the 2x grid, with its one noisy label and colour (N above counts digits,
not views); the test environments keep IRM's offset.

The Fishr penalty is the core's :class:`robusttext.training.fishr.FishrPenalty` (EMA off: full batch) on the
two-logit view ``[0, z]`` of the single logit, whose softmax cross-entropy is the binary one. Its
gradient-variance coordinates are those of the single logit, each twice, and it averages over
coordinates and environments where the paper's code sums, so the paper's penalty is exactly
``K * (D + 1)`` times the core's (K = 2 environments, D = H features): :func:`paper_penalty`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robusttext.training.hparams_registry import ALGORITHMS as REGISTERED, BENCHMARKS, benchmark_hparams, check_hparams

#: The registry's algorithms, then the benchmark's oracle "gray" (ERM on the images without their colour).
ALGORITHMS = (*REGISTERED, "gray")
#: IRM's l2 coefficient and the number of training images it was set for (MNIST train[:50000]).
IRM_L2, IRM_TRAIN_IMAGES = 0.00110794568, 50000
COLUMNS = ("train_accuracy", "test_accuracy", "gray_test_accuracy")


_HP = benchmark_hparams("coloredmnist")


@dataclass(frozen=True)
class ColoredMNISTConfig:
    """One Colored MNIST study in the IRM protocol (defaults: the paper's construction; the model's
    hyper-parameters from :mod:`robusttext.training.hparams_registry`). Checked by :func:`check_args`.

    Args:
        algorithm: comma-separated subset of erm, fishr, gray (the grayscale oracle).
        seeds: restarts, >= 1: ``seed``, ``seed + 1``, ... (paper: 10). seed: the first (environments, initialisation).
        env_sizes: images in training env 1, env 2 and the test env (integers >= 2; sum at most the split's digits).
        color_flip: colour flip probability e per environment, in [0, 1] (IRM: 0.2, 0.1, 0.9).
        label_noise: label flip probability, in [0, 0.5).
        hidden_dim: MLP width, >= 1 (IRM: 390; 128 for compute, see the module docstring).
        l2_regularizer_weight: weight of the squared parameter norm, >= 0 (None: IRM's 0.00110794568 x 50000 /
            training images, IRM's prior on the weights).
        lr: Adam learning rate, > 0. steps: full-batch Adam steps, >= 1.
        penalty_anneal_iters: steps with penalty weight 1 before the full weight, >= 0.
        penalty_weight: penalty weight in the paper's units (summed coordinates), >= 0.
        subsample_views: views of each training image: 1 (IRM: subsampled at row/column offset 0,0) or 4 (the
            four offsets, same label and colour); the test environments keep 1.
        data_root: folder of the MNIST IDX files (None: the shared data).
        mnist_split: the MNIST split the environments are cut from: test (10,000 digits, the one offline here)
            or train (60,000: IRM's protocol is ``mnist_split="train", env_sizes="25000,25000,10000"``).
    """

    algorithm: str = "erm,fishr,gray"
    seeds: int = 10
    seed: int = 0
    env_sizes: str = "4000,4000,2000"
    color_flip: str = "0.2,0.1,0.9"
    label_noise: float = 0.25
    hidden_dim: int = _HP["hidden_dim"]
    l2_regularizer_weight: Optional[float] = _HP["l2_regularizer_weight"]
    lr: float = 0.0004898536566546834
    penalty_anneal_iters: int = _HP["penalty_anneal_iters"]
    penalty_weight: float = _HP["penalty_weight"]
    steps: int = 501
    subsample_views: int = 1
    data_root: Optional[str] = None
    mnist_split: str = "test"

    def __post_init__(self) -> None:
        check_args(self)

    @property
    def algorithms(self) -> list[str]:
        """The algorithms to run, in the given order."""
        return [a.strip().lower() for a in str(self.algorithm).split(",") if a.strip()]

    def with_hparams(self, hparams: str | dict | None) -> "ColoredMNISTConfig":
        """This study with the registry's Colored MNIST hyper-parameters set from ``hparams`` (a JSON object or a
        mapping; an unknown key or a value of another type: ``ValueError`` naming it and the valid keys)."""
        return replace(self, **check_hparams(hparams, BENCHMARKS["coloredmnist"]))


def _floats(text: str, name: str, n: int) -> list[float]:
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"--{name} must be {n} comma-separated numbers, got {text!r}") from err
    if len(vals) != n:
        raise ValueError(f"--{name} must be {n} comma-separated numbers, got {text!r}")
    return vals


def check_args(args: ColoredMNISTConfig) -> list[str]:
    """The algorithms to run; a ``ValueError`` naming the field for anything unusable (the options of
    ``robusttext vision coloredmnist`` and ``experiments/coloredmnist.py`` as flags, the ``--hparams`` keys as is)."""
    algos = args.algorithms
    if not algos or any(a not in ALGORITHMS for a in algos):
        raise ValueError(f"--algorithm must be a comma-separated subset of {','.join(ALGORITHMS)}, got {args.algorithm!r}")
    if args.mnist_split not in ("train", "test"):
        raise ValueError(f"--mnist-split must be train or test, got {args.mnist_split!r}")
    sizes = _floats(args.env_sizes, "env-sizes", 3)
    if any(s < 2 or s != int(s) for s in sizes):
        raise ValueError(f"--env-sizes must be integers >= 2, got {args.env_sizes!r}")
    if any(not (0.0 <= e <= 1.0) for e in _floats(args.color_flip, "color-flip", 3)):
        raise ValueError(f"--color-flip must be probabilities in [0, 1], got {args.color_flip!r}")
    if not (0.0 <= args.label_noise < 0.5):
        raise ValueError(f"--label-noise must be in [0, 0.5), got {args.label_noise}")
    if args.subsample_views not in (1, 4):
        raise ValueError(f"--subsample-views must be 1 or 4, got {args.subsample_views}")
    for name in ("seeds", "steps"):
        if int(getattr(args, name)) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.hidden_dim < 1:
        raise ValueError(f"hidden_dim must be >= 1, got {args.hidden_dim}")
    if args.lr <= 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    for name in ("penalty_weight", "l2_regularizer_weight", "penalty_anneal_iters"):
        if (getattr(args, name) or 0) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(args, name)}")
    return algos


def l2_weight(args: ColoredMNISTConfig) -> float:
    """The l2 coefficient used: ``args.l2_regularizer_weight`` when given, else IRM's prior for this
    many training images, ``IRM_L2 * 50000 / (env 1 + env 2 images)`` (0.0069 for 4,000 + 4,000)."""
    if args.l2_regularizer_weight is not None:
        return float(args.l2_regularizer_weight)
    sizes = _floats(args.env_sizes, "env-sizes", 3)
    return IRM_L2 * IRM_TRAIN_IMAGES / (sizes[0] + sizes[1])


# --------------------------------------------------------------------------- environments
@dataclass
class Environment:
    """Images ``(N, 2, 14, 14)`` in [0, 1], noisy binary labels ``(N,)`` (float 0/1), colours ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor
    colors: torch.Tensor


#: Row/column offsets of the 2x subsampling, view by view (IRM's is the first).
VIEW_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


def make_environment(digits: torch.Tensor, targets: torch.Tensor, e: float, label_noise: float,
                     rng: np.random.Generator, grayscale: bool = False, views: int = 1) -> Environment:
    """One environment from 28x28 ``digits`` in [0, 1] and their digit ``targets`` (IRM recipe, see
    the module docstring); ``grayscale``: the digit in both channels, colours drawn all the same.
    ``views`` > 1: each digit enters ``views`` times, subsampled at the first ``views`` of
    :data:`VIEW_OFFSETS`, with the digit's one noisy label and one colour (view-major order)."""
    n = len(targets)
    labels = (targets < 5).long() ^ torch.from_numpy(rng.random(n) < label_noise).long()
    colors = labels ^ torch.from_numpy(rng.random(n) < e).long()
    square = digits.reshape(n, 28, 28)
    small = torch.cat([square[:, r::2, c::2] for r, c in VIEW_OFFSETS[:views]])
    labels, colors = labels.repeat(views), colors.repeat(views)
    images = torch.stack([small, small], dim=1).float()
    if not grayscale:
        images[torch.arange(len(labels)), 1 - colors] = 0.0
    return Environment(images, labels.float(), colors)


def make_environments(digits: torch.Tensor, targets: torch.Tensor, args: ColoredMNISTConfig, seed: int) -> list[Environment]:
    """``[train env 1, train env 2, test env, gray test env]`` for one seed (the gray one shares the
    test environment's images and labels)."""
    sizes = [int(s) for s in _floats(args.env_sizes, "env-sizes", 3)]
    flips = _floats(args.color_flip, "color-flip", 3)
    if sum(sizes) > len(targets):
        raise ValueError(f"--env-sizes {args.env_sizes} add up to more than the {len(targets)} images available")
    rng = np.random.default_rng(seed)
    order = torch.from_numpy(rng.permutation(len(targets)))
    bounds = np.cumsum([0, *sizes])
    envs = []
    for k in range(3):
        idx = order[bounds[k] : bounds[k + 1]]
        views = args.subsample_views if k < 2 else 1
        envs.append(make_environment(digits[idx], targets[idx], flips[k], args.label_noise, rng, views=views))
    test = envs[2]
    gray = test.images.sum(dim=1, keepdim=True).expand(-1, 2, -1, -1).clone()
    envs.append(Environment(gray, test.labels, test.colors))
    return envs


# --------------------------------------------------------------------------- model, penalty
class MLP(nn.Module):
    """IRM's MLP: (2 or 1) x 196 -> hidden -> hidden -> 1 logit; ``grayscale`` sums the two channels."""

    def __init__(self, hidden_dim: int = 390, grayscale: bool = False) -> None:
        super().__init__()
        self.grayscale = grayscale
        lin1 = nn.Linear(196 if grayscale else 392, hidden_dim)
        lin2 = nn.Linear(hidden_dim, hidden_dim)
        self.classifier = nn.Linear(hidden_dim, 1)
        for lin in (lin1, lin2, self.classifier):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.body = nn.Sequential(lin1, nn.ReLU(), lin2, nn.ReLU())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (N, hidden), logit (N,))``."""
        flat = x.reshape(len(x), 2, 196).sum(1) if self.grayscale else x.reshape(len(x), 392)
        h = self.body(flat)
        return h, self.classifier(h).squeeze(-1)


def paper_penalty(features: torch.Tensor, logit: torch.Tensor, labels: torch.Tensor, domain_ids: torch.Tensor,
                  num_domains: int) -> torch.Tensor:
    """Fishr's Colored MNIST penalty, ``sum_e ||v_e - mean_e v_e||^2`` over the head's gradient-variance
    coordinates, through the core's :class:`~robusttext.training.fishr.FishrPenalty` (EMA off) times ``K (D + 1)``."""
    from robusttext.training.fishr import FishrPenalty

    two = torch.stack([torch.zeros_like(logit), logit], dim=1)
    core = FishrPenalty(num_domains, ema=0.0, sync=False)(features, two, labels.long(), domain_ids)
    return core * num_domains * (features.shape[1] + 1)


def accuracy(logit: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``logit > 0`` equal to the 0/1 ``labels``."""
    return float(((logit > 0).float() == labels).float().mean())


def train_one(envs: list[Environment], algorithm: str, args: ColoredMNISTConfig, seed: int) -> dict[str, Any]:
    """One restart: returns train / test / gray-test accuracy of the final model and seconds per step."""
    torch.manual_seed(seed)
    l2 = l2_weight(args)
    model = MLP(args.hidden_dim, grayscale=algorithm == "gray")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    x = torch.cat([envs[0].images, envs[1].images])
    y = torch.cat([envs[0].labels, envs[1].labels])
    dom = torch.cat([torch.zeros(len(envs[0].labels)), torch.ones(len(envs[1].labels))]).long()
    start = time.perf_counter()
    for step in range(args.steps):
        h, z = model(x)
        nll = torch.stack([F.binary_cross_entropy_with_logits(z[dom == k], y[dom == k]) for k in (0, 1)]).mean()
        loss = nll + l2 * sum(p.pow(2).sum() for p in model.parameters())
        if algorithm == "fishr":
            w = args.penalty_weight if step >= args.penalty_anneal_iters else 1.0
            loss = loss + w * paper_penalty(h, z, y, dom, 2)
            if w > 1.0:
                loss = loss / w
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accs = [accuracy(model(e.images)[1], e.labels) for e in envs]
    return {"algorithm": algorithm, "seed": seed, "train_accuracy": (accs[0] + accs[1]) / 2, "test_accuracy": accs[2],
            "gray_test_accuracy": accs[3], "seconds_per_step": seconds / args.steps, "seconds": round(seconds, 2)}


# --------------------------------------------------------------------------- the table
def summarize(records: list[dict], algorithms: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per algorithm and column: ``[mean, standard error]`` over seeds (accuracies in [0, 1])."""
    from robusttext.dg.dg_tables import mean_se

    return {a: {c: list(mean_se([r[c] for r in records if r["algorithm"] == a])) for c in (*COLUMNS, "seconds_per_step")}
            for a in algorithms if any(r["algorithm"] == a for r in records)}


def table_markdown(summary: dict, args: ColoredMNISTConfig, n_seeds: int, train_seconds: float = 0.0,
                   wall_seconds: float | None = None) -> str:
    """The paper's Table 2 layout: train / test / gray-test accuracy (%), mean ± s.e. over seeds, then the
    training time summed over runs (seconds, from the records: the same after a resume) and this
    command's wall time (seconds, when given)."""
    from robusttext.dg.dg_tables import markdown_table

    names = {"erm": "ERM", "fishr": "Fishr", "gray": "ERM, grayscale (oracle)"}
    rows = [[names[a]] + [f"{100 * s[c][0]:.1f} ± {100 * s[c][1]:.1f}" for c in COLUMNS] + [f"{1000 * s['seconds_per_step'][0]:.1f}"]
            for a, s in summary.items()]
    views = f", {args.subsample_views} subsampling views per training image" if args.subsample_views > 1 else ""
    head = (f"## Colored MNIST (IRM protocol), {n_seeds} seeds\n\nEnvironments from the MNIST {args.mnist_split} split, "
            f"sizes {args.env_sizes}, colour flip {args.color_flip}, label noise {args.label_noise}; MLP width "
            f"{args.hidden_dim}, l2 {l2_weight(args):.6g}, {args.steps} full-batch steps{views}. Accuracy (%), mean ± "
            f"standard error over seeds.\n\n")
    table = markdown_table(["Algorithm", "Train acc.", "Test acc.", "Gray test acc.", "ms / step"], rows)
    ratio = "\n"
    if "erm" in summary and "fishr" in summary:
        ratio = f"\n\nFishr / ERM step time: {summary['fishr']['seconds_per_step'][0] / summary['erm']['seconds_per_step'][0]:.2f}x\n"
    times = f"\nTraining time, all runs: {train_seconds:.0f} s"
    times += f"; wall time of this command: {wall_seconds:.0f} s\n" if wall_seconds is not None else "\n"
    return head + table + ratio + times


def run_coloredmnist(args: ColoredMNISTConfig, output_dir: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Every (algorithm, seed) run of the study ``args``, one line each in ``output_dir/runs.jsonl`` (resumable;
    ``overwrite``: delete earlier runs first), then ``summary.json`` and ``report.md``; returns the summary
    (with the report as ``markdown``)."""
    from robusttext.runs.results import ResultsStore, write_json

    from .data import load_images

    start = time.perf_counter()
    algos = args.algorithms
    seeds = [args.seed + i for i in range(args.seeds)]
    mnist = load_images("mnist", args.mnist_split, root=args.data_root)
    params = {k: v for k, v in asdict(args).items() if k not in ("algorithm", "seeds")}
    if args.subsample_views == 1:  # IRM's one view: folders written before the option resume
        del params["subsample_views"]
    store = ResultsStore(output_dir, params, name="runs")
    if overwrite:
        store.clear()
    store.check_params(write=True)
    done = {(r["algorithm"], r["seed"]) for r in store.finished().values()}
    for seed in seeds:
        envs = make_environments(mnist.images[:, 0], mnist.labels, args, seed)
        for algo in algos:
            if (algo, seed) in done:
                continue
            index = seed * len(ALGORITHMS) + ALGORITHMS.index(algo)  # stable across reruns
            store.append([{**train_one(envs, algo, args, seed), "index": index}])
    records = [r for r in store.finalize() if r["algorithm"] in algos and r["seed"] in seeds]
    summary = summarize(records, algos)
    out = {"table": summary, "parameters": {**params, "algorithms": algos, "seeds": seeds}, "runs": records}
    write_json(Path(output_dir) / "summary.json", out)
    train_seconds = sum(r.get("seconds", r["seconds_per_step"] * args.steps) for r in records)
    md = table_markdown(summary, args, len(seeds), train_seconds, time.perf_counter() - start)
    (Path(output_dir) / "report.md").write_text(md, encoding="utf-8")
    out["markdown"] = md
    return out
