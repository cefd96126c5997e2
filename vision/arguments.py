"""Command-line arguments of ``robusttext vision ...`` as dataclasses for ``transformers.HfArgumentParser``; the
command line turns them once into the library's configurations (:mod:`robusttext_vision.pipelines`).

Every option is ``--snake_case`` on the command line, a key of a YAML file given with
``--config configs/vision_*.yaml`` (command-line options win), or a keyword in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .pipelines import CURVE_L2_EPS, CURVE_LINF_EPS


@dataclass
class ImageDataArguments:
    """Which images."""

    dataset: str = field(default="mnist", metadata={"help": "mnist, fashion-mnist, digits or cifar10."})
    split: str = field(default="test[8000:]", metadata={"help": "Split, optionally sliced: train, test, test[:8000]."})
    data_root: Optional[str] = field(default=None, metadata={"help": "Folder with the dataset files (default: the shared data)."})
    max_examples: Optional[int] = field(default=None, metadata={"help": "Use only the first N images of the split."})
    download: bool = field(default=False, metadata={"help": "Let torchvision download missing MNIST/CIFAR-10 files."})


@dataclass
class TrainImageArguments:
    """Training a classifier: plain, adversarial (PGD-AT, FGSM-RS) or under Gaussian noise."""

    method: str = field(default="standard", metadata={"help": "standard, pgd, fgsm_rs or gaussian.",
                                                       "choices": ["standard", "pgd", "fgsm_rs", "gaussian"]})
    arch: str = field(default="cnn", metadata={"help": "cnn or linear.", "choices": ["cnn", "linear"]})
    epochs: int = field(default=5, metadata={"help": "Training epochs."})
    batch_size: int = field(default=128, metadata={"help": "Images per step (per process)."})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay."})
    eps: float = field(default=0.3, metadata={"help": "Adversarial training radius (pixel units)."})
    norm: str = field(default="linf", metadata={"help": "linf or l2.", "choices": ["linf", "l2"]})
    steps: int = field(default=10, metadata={"help": "PGD steps per batch (pgd)."})
    step_size: Optional[float] = field(default=None, metadata={"help": "PGD step (default 2.5 * eps / steps)."})
    warmup_epochs: float = field(default=0.0, metadata={"help": "Ramp eps linearly from 0 over this many epochs."})
    sigma: float = field(default=0.5, metadata={"help": "Gaussian noise std (gaussian)."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, shuffling and noise."})
    eval_split: Optional[str] = field(default="test[8000:]", metadata={"help": "Split for the final clean accuracy (or none)."})
    output_dir: str = field(default="runs/vision/train", metadata={"help": "Model, checkpoints and log go here."})


@dataclass
class AttackArguments:
    """Attacking a trained model."""

    model_dir: str = field(default="runs/vision/train", metadata={"help": "Folder of a model from `robusttext vision train`."})
    attack: str = field(default="pgd", metadata={"help": "fgsm or pgd.", "choices": ["fgsm", "pgd"]})
    norm: str = field(default="linf", metadata={"help": "linf or l2.", "choices": ["linf", "l2"]})
    eps: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3], metadata={"help": "Radii (pixel units)."})
    steps: int = field(default=40, metadata={"help": "PGD steps."})
    step_size: Optional[float] = field(default=None, metadata={"help": "PGD step (default 2.5 * eps / steps)."})
    restarts: int = field(default=1, metadata={"help": "PGD random restarts."})
    random_init: bool = field(default=True, metadata={"help": "PGD random start."})
    targeted: bool = field(default=False, metadata={"help": "Targeted attack towards --target-class."})
    target_class: Optional[int] = field(default=None, metadata={"help": "Target class (targeted); default (label + 1) mod C."})
    batch_size: int = field(default=500, metadata={"help": "Images per attack batch."})
    seed: int = field(default=0, metadata={"help": "Seed of the random starts."})
    output_dir: str = field(default="runs/vision/attack", metadata={"help": "robustness.json, robustness.md and the figures go here."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Delete earlier results first."})
    curve_linf_eps: list[float] = field(default_factory=lambda: list(CURVE_LINF_EPS), metadata={"help": "Linf radii of the accuracy-vs-eps figure (pixel units)."})
    curve_l2_eps: list[float] = field(default_factory=lambda: list(CURVE_L2_EPS), metadata={"help": "L2 radii of the accuracy-vs-eps figure (pixel units)."})


@dataclass
class CertifyImageArguments:
    """Gaussian smoothing: PREDICT / CERTIFY budget and outputs."""

    model_dir: str = field(default="runs/vision/train", metadata={"help": "Folder of the base classifier."})
    denoiser_dir: Optional[str] = field(default=None, metadata={"help": "Folder of a denoiser to put in front (denoised smoothing)."})
    sigma: float = field(default=0.5, metadata={"help": "Noise std (pixel units)."})
    n0: int = field(default=100, metadata={"help": "Selection samples per image."})
    n: int = field(default=10000, metadata={"help": "Estimation samples per image."})
    alpha: float = field(default=0.001, metadata={"help": "Failure probability of each certificate."})
    batch_size: Optional[int] = field(default=None, metadata={"help": "Noisy images per forward pass (pooled across images; default: 200 on CPUs, 1000 on GPUs)."})
    chunk_size: int = field(default=50, metadata={"help": "Images certified (and written) together."})
    seed: int = field(default=0, metadata={"help": "Seed of every image's random stream."})
    output_dir: str = field(default="runs/vision/certify", metadata={"help": "results.jsonl, summary.json, report.md, PNG."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Delete earlier results first."})
    noisy_copies: int = field(default=6, metadata={"help": "Noisy copies per image in noisy_examples.png."})


@dataclass
class DenoiseArguments:
    """Training a denoiser in front of a frozen classifier (Salman et al. 2020)."""

    classifier_dir: str = field(default="runs/vision/train", metadata={"help": "Folder of the frozen classifier f."})
    objective: str = field(default="stability", metadata={"help": "mse or stability.", "choices": ["mse", "stability"]})
    sigma: float = field(default=0.5, metadata={"help": "Noise std the denoiser removes."})
    depth: int = field(default=5, metadata={"help": "Conv layers of the DnCNN."})
    width: int = field(default=32, metadata={"help": "Channels of the DnCNN."})
    epochs: int = field(default=3, metadata={"help": "Training epochs."})
    batch_size: int = field(default=128, metadata={"help": "Images per step."})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    seed: int = field(default=0, metadata={"help": "Seed."})
    eval_split: str = field(default="test[8000:]", metadata={"help": "Split certified with and without the denoiser."})
    certify_examples: int = field(default=100, metadata={"help": "Images certified for the comparison (0 = skip)."})
    n0: int = field(default=100, metadata={"help": "Selection samples per image."})
    n: int = field(default=1000, metadata={"help": "Estimation samples per image."})
    alpha: float = field(default=0.001, metadata={"help": "Failure probability of each certificate."})
    certify_batch_size: Optional[int] = field(default=None, metadata={"help": "Noisy images per forward pass (default: 200 on CPUs, 1000 on GPUs)."})
    output_dir: str = field(default="runs/vision/denoise", metadata={"help": "Denoiser, checkpoints and comparison go here."})


@dataclass
class LinearArguments:
    """Exactly robust binary linear classification (hinge loss, closed-form inner maximisation)."""

    classes: list[int] = field(default_factory=lambda: [0, 1], metadata={"help": "The two classes (first = -1)."})
    eval_split: str = field(default="test[8000:]", metadata={"help": "Split for the errors."})
    eps: float = field(default=0.2, metadata={"help": "Robust training and evaluation radius."})
    norm: str = field(default="linf", metadata={"help": "linf or l2.", "choices": ["linf", "l2"]})
    epochs: int = field(default=10, metadata={"help": "SGD epochs."})
    lr: float = field(default=0.1, metadata={"help": "SGD learning rate."})
    batch_size: int = field(default=100, metadata={"help": "Images per step."})
    seed: int = field(default=0, metadata={"help": "Seed of the shuffling."})
    output_dir: str = field(default="runs/vision/linear", metadata={"help": "linear.json, linear.md, weights.png and the figures go here."})
    curve_eps: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3], metadata={"help": "Radii of the exact-attack accuracy figure."})
    boundary_digits: int = field(default=8, metadata={"help": "Misclassified digits nearest the boundary shown per model."})


@dataclass
class ColoredMNISTArguments:
    """``robusttext vision coloredmnist``: Colored MNIST in the IRM protocol (the benchmark's construction is the
    paper's, robusttext_vision.coloredmnist.ColoredMNISTConfig; variations: experiments/coloredmnist.py)."""

    algorithm: str = field(default="erm,fishr,gray", metadata={"help": "Comma-separated: erm, fishr, gray (grayscale oracle)."})
    seeds: int = field(default=10, metadata={"help": "Restarts: seeds seed, seed+1, ... (paper: 10)."})
    seed: int = field(default=0, metadata={"help": "First seed (environments and initialisation)."})
    lr: float = field(default=0.0004898536566546834, metadata={"help": "Adam learning rate."})
    steps: int = field(default=501, metadata={"help": "Full-batch Adam steps."})
    hparams: Optional[str] = field(default=None, metadata={
        "help": "Model hyper-parameters as a JSON object, e.g. '{\"hidden_dim\": 390, \"penalty_anneal_iters\": 150}' (keys: "
                "hidden_dim, the MLP width; l2_regularizer_weight, of the squared parameter norm, default IRM's prior for the "
                "training-set size; penalty_anneal_iters, steps at penalty weight 1; penalty_weight, in the paper's units; "
                "defaults: robusttext.training.hparams_registry)."})
    data_root: Optional[str] = field(default=None, metadata={"help": "Folder of the MNIST IDX files (default: shared data)."})
    output_dir: str = field(default="runs/vision/coloredmnist", metadata={"help": "Where runs.jsonl, summary.json, report.md go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Delete earlier runs in output_dir first."})
