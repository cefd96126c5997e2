"""The vision jobs, each one call on objects a user has (a model folder, an :class:`~robusttext_vision.data.ImageData`,
a configuration dataclass defined here beside its code, an output folder); ``robusttext vision`` converts its
options into these once (:mod:`robusttext_vision.cli`).

* :func:`train_and_save` (:class:`TrainConfig`) - ``train``: a classifier trained plain / PGD-AT / FGSM-RS / under
  Gaussian noise;
* :func:`run_attack` (:class:`AttackConfig`) - ``attack``: robust accuracy (and attack success rate) at each eps;
* :func:`certify_images` / :func:`run_certify` (:class:`ImageCertifyConfig`) - ``certify``: Gaussian (or denoised)
  smoothing of a split, sharded over processes like :func:`robusttext.runs.certify.certify_dataset` (inputs dealt
  out by index, per-image random streams, one part file per process, merged by the main process), resumable;
* :func:`run_denoise` (:class:`DenoiseConfig`) - ``denoise``: train a denoiser, certify ``f`` with and without it;
* :func:`run_linear` (:class:`LinearConfig`) - ``linear``: regular vs exactly robust binary linear classifier.

Every configuration is checked where it is built (its ``__post_init__``); distances are in pixel units (pixels in [0, 1]).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from robusttext.certificate.protocol import CertifyProtocol
from robusttext.runs.distributed import process_state
from robusttext.runs.fingerprint import examples_fingerprint, folder_fingerprint
from robusttext.runs.report import plot_certified_accuracy
from robusttext.runs.results import Run, versions, write_json

from .adversarial import train_classifier, training_loss
from .attacks import attack_batch, check_attack_args
from .data import ImageData
from .denoise import load_denoiser, train_denoiser
from .figures import (
    FIGURE_EXAMPLES, FIGURE_IMAGES, GRID_IMAGES, attack_command_figures, certify_figure_set, check_figure_args,
    figures_markdown, linear_figure_set,
)
from .linear import binary_task, errors, plot_weights, train_linear
from .models import build_model, load_model, save_model
from .report import attack_markdown, certification_markdown, summarize_l2, table_markdown
from .smoothing import ImageBatchClassifier, SmoothedImageClassifier, check_budget, check_sigma
from .training import FitConfig

logger = logging.getLogger("robusttext.vision")

#: The files of a saved vision model (weights and the config that rebuilds it) that decide its outputs.
MODEL_FILES = ("*.pt", "*.json")
#: eps of the accuracy-under-attack figures (pixel units): Linf up to 0.4, L2 up to 5 (MNIST).
CURVE_LINF_EPS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
CURVE_L2_EPS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`train_and_save` trains: ``method`` standard, pgd, fgsm_rs or gaussian; ``arch`` cnn or linear;
    Adam's ``epochs``, ``batch_size`` (images per step and process), ``lr``, ``weight_decay``; adversarial
    training's radius ``eps`` and ``norm`` (linf or l2), PGD's ``steps`` and ``step_size`` (None: 2.5 eps / steps),
    ``warmup_epochs`` (eps ramped from 0); the Gaussian noise std ``sigma``; the ``seed``."""

    method: str = "standard"
    arch: str = "cnn"
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    eps: float = 0.3
    norm: str = "linf"
    steps: int = 10
    step_size: Optional[float] = None
    warmup_epochs: float = 0.0
    sigma: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        training_loss(self.method, eps=self.eps, norm=self.norm, steps=self.steps, step_size=self.step_size,
                      warmup_epochs=self.warmup_epochs, sigma=self.sigma)  # refuses what training would


@dataclass(frozen=True)
class AttackConfig:
    """How :func:`run_attack` attacks: ``attack`` fgsm or pgd, ``norm`` linf or l2, the radii ``eps``; PGD's ``steps``,
    ``step_size`` (None: 2.5 eps / steps), ``restarts`` and ``random_init``; ``targeted`` towards ``target_class``
    (None: (label + 1) mod C); ``batch_size`` images per batch; the ``seed`` of the random starts. Figures: the
    accuracy-vs-eps radii ``curve_linf_eps`` / ``curve_l2_eps``, on the first ``figure_examples`` images (0: no
    figures), and ``grid_images`` images in the grid of adversarial examples."""

    attack: str = "pgd"
    norm: str = "linf"
    eps: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    steps: int = 40
    step_size: Optional[float] = None
    restarts: int = 1
    random_init: bool = True
    targeted: bool = False
    target_class: Optional[int] = None
    batch_size: int = 500
    seed: int = 0
    curve_linf_eps: tuple[float, ...] = CURVE_LINF_EPS
    curve_l2_eps: tuple[float, ...] = CURVE_L2_EPS
    figure_examples: int = FIGURE_EXAMPLES
    grid_images: int = GRID_IMAGES

    def __post_init__(self) -> None:
        check_figure_args(self)
        pgd = ({"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts}
               if self.attack == "pgd" else {})
        for eps in self.eps:
            check_attack_args(eps, self.norm, **pgd)

    def kwargs(self) -> dict[str, Any]:
        """The attack's keyword arguments: the norm, and PGD's steps, step size, restarts, random start."""
        if self.attack != "pgd":
            return {"norm": self.norm}
        return {"norm": self.norm, "steps": self.steps, "step_size": self.step_size, "restarts": self.restarts,
                "random_init": self.random_init}


@dataclass(frozen=True)
class ImageCertifyConfig:
    """Gaussian smoothing's CERTIFY (Cohen et al.): noise std ``sigma`` (pixel units, > 0), ``n0`` selection and ``n``
    estimation samples per image (1 <= n0 <= n), failure probability ``alpha`` in (0, 1); ``batch_size`` noisy images
    per forward pass (None: 200 on CPUs, 1000 on GPUs), ``chunk_size`` images certified and written together, the
    ``seed`` of every image's stream; figure: ``figure_images`` images (0: none) with ``noisy_copies`` copies each."""

    sigma: float = 0.5
    n0: int = 100
    n: int = 10000
    alpha: float = 0.001
    batch_size: Optional[int] = None
    chunk_size: int = 50
    seed: int = 0
    figure_images: int = FIGURE_IMAGES
    noisy_copies: int = 6

    def __post_init__(self) -> None:
        check_figure_args(self)
        check_sigma(self.sigma)
        check_budget(self.n0, self.n, self.alpha)
        for name in ("batch_size", "chunk_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class DenoiseConfig:
    """:func:`run_denoise`: a DnCNN (``depth`` conv layers of ``width`` channels) trained with ``objective`` mse or
    stability to remove noise of std ``sigma`` (``epochs``, ``batch_size``, Adam ``lr``, ``seed``), then CERTIFY
    (``n0``, ``n``, ``alpha``, ``certify_batch_size`` noisy images per pass) with and without it."""

    objective: str = "stability"
    sigma: float = 0.5
    depth: int = 5
    width: int = 32
    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    certify_batch_size: Optional[int] = None

    def certify_config(self) -> ImageCertifyConfig:
        """The CERTIFY both arms run."""
        return ImageCertifyConfig(sigma=self.sigma, n0=self.n0, n=self.n, alpha=self.alpha,
                                  batch_size=self.certify_batch_size, seed=self.seed)


@dataclass(frozen=True)
class LinearConfig:
    """:func:`run_linear`: the two ``classes`` (first = -1), the robust radius ``eps`` under ``norm`` (linf or l2),
    SGD's ``epochs``, ``lr``, ``batch_size``, ``seed``; figures: exact-attack radii ``curve_eps`` and the
    ``boundary_digits`` misclassified digits nearest the boundary per model."""

    classes: tuple[int, int] = (0, 1)
    eps: float = 0.2
    norm: str = "linf"
    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 100
    seed: int = 0
    curve_eps: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    boundary_digits: int = 8

    def __post_init__(self) -> None:
        check_figure_args(self)


def _plain(config: Any) -> dict[str, Any]:
    """A configuration's fields as a run records them (JSON types: tuples as lists)."""
    return json.loads(json.dumps(asdict(config)))


def clean_accuracy(model: nn.Module, data: ImageData, batch_size: int = 1000) -> float:
    """Accuracy of ``model`` on ``data`` without perturbation."""
    preds = ImageBatchClassifier(model).predict_clean(data.images, batch_size)
    return float((torch.as_tensor(preds) == data.labels).double().mean())


# --------------------------------------------------------------------------- train
def train_and_save(data: ImageData, output_dir: str | Path, config: TrainConfig = TrainConfig(),
                   eval_data: ImageData | None = None) -> dict[str, Any]:
    """Train a classifier on ``data`` as ``config`` says and save it to ``output_dir`` (load with
    :func:`robusttext_vision.models.load_model`); with ``eval_data``, its clean accuracy there. Returns and writes
    ``metrics.json``. Resumable (checkpoints in ``output_dir``)."""
    c, h, _ = data.shape
    model_cfg = {"arch": config.arch, "in_channels": c, "num_classes": data.num_classes, "image_size": h,
                 "mean": None, "std": None, "classes": data.classes}
    torch.manual_seed(config.seed)
    model = build_model(config.arch, c, data.num_classes, h)
    fit_cfg = FitConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                        weight_decay=config.weight_decay, seed=config.seed)
    history = train_classifier(
        model, data.images, data.labels, config.method, fit_cfg, output_dir, eps=config.eps, norm=config.norm,
        steps=config.steps, step_size=config.step_size, warmup_epochs=config.warmup_epochs, sigma=config.sigma,
    )
    model = getattr(model, "module", model).eval()
    metrics: dict[str, Any] = {"train": history[-1] if history else {}, "num_train": len(data)}
    if eval_data is not None:
        metrics["eval_split"] = eval_data.split
        metrics["clean_accuracy"] = clean_accuracy(model, eval_data)
    state = process_state()
    if state.is_main_process:
        training = {**_plain(config), "eval_split": None if eval_data is None else eval_data.split,
                    "output_dir": str(output_dir)}
        record = {**model_cfg, "dataset": data.name, "split": data.split, "training": training, "history": history}
        save_model(model, output_dir, record)
        write_json(Path(output_dir) / "metrics.json", metrics)
    state.wait_for_everyone()
    return metrics


# --------------------------------------------------------------------------- attack
def attack_targets(config: AttackConfig, data: ImageData) -> torch.Tensor | None:
    """The target class of each image for a targeted attack (``config.target_class``, else the label's successor
    modulo the number of classes); ``None`` for an untargeted attack."""
    if not config.targeted:
        return None
    if config.target_class is not None:
        if not 0 <= config.target_class < data.num_classes:
            raise ValueError(f"--target-class must be in [0, {data.num_classes}), got {config.target_class}")
        return torch.full_like(data.labels, config.target_class)
    return (data.labels + 1) % data.num_classes


def write_robustness(records: list[dict], params: dict[str, Any], model: nn.Module, name: str, data: ImageData,
                     config: AttackConfig, out_dir: Path) -> None:
    """``robustness.json`` (accuracy and success rate per eps over the per-image ``records``),
    ``robustness.md`` and the attack figures in ``out_dir``."""
    n = max(1, len(records))
    results = {f"{eps:g}": {"accuracy": sum(r[f"{eps:g}"][0] for r in records) / n,
                            "success_rate": sum(r[f"{eps:g}"][1] for r in records) / n} for eps in config.eps}
    out = {"parameters": params, "results": results}
    write_json(out_dir / "robustness.json", out)
    figures = attack_command_figures(model, name, data, config, out_dir)
    (out_dir / "robustness.md").write_text(attack_markdown(out) + figures_markdown(figures), encoding="utf-8")


def run_attack(model_dir: str | Path, data: ImageData, output_dir: str | Path, config: AttackConfig = AttackConfig(),
               overwrite: bool = False) -> dict[str, Any]:
    """Attack the model saved in ``model_dir`` on ``data`` at every ``config.eps``; writes ``robustness.json``,
    ``robustness.md`` and the figures of :func:`robusttext_vision.figures.attack_command_figures` in ``output_dir``.

    Runs on the core's run skeleton: batches of ``config.batch_size`` images (one random stream each,
    :func:`robusttext_vision.attacks.batch_generator`) dealt out over the processes of ``accelerate launch``/``torchrun``,
    per-image records in ``results.jsonl`` written as they finish, resumable (``overwrite``: start afresh); N
    processes give the numbers of one."""
    model, _ = load_model(model_dir)
    targets = attack_targets(config, data)
    state = process_state()
    params = {**_plain(config), "model_dir": str(model_dir), "dataset": data.name, "split": data.split,
              "num_examples": len(data), "task": "vision-attack",
              "model_fingerprint": folder_fingerprint(model_dir, MODEL_FILES),
              "data_fingerprint": examples_fingerprint(data.images, data.labels.tolist())}
    run = Run(output_dir, params, overwrite=overwrite, state=state)
    model = model.to(state.device).eval()
    kwargs = config.kwargs()

    def attack_chunk(idx: list[int], tick: Any) -> list[dict]:
        res = attack_batch(model, data.images[idx], data.labels[idx], config.attack, list(config.eps), idx[0],
                           None if targets is None else targets[idx], state.device, config.seed, **kwargs)
        return [{"index": i, "label": int(data.labels[i]), **{eps: [bool(c[j]), bool(f[j])] for eps, (c, f) in res.items()}}
                for j, i in enumerate(idx)]

    records = run.execute(len(data), attack_chunk, config.batch_size, desc=f"{config.attack} {config.norm}",
                          unit="images", fixed_chunks=True)

    def write() -> None:
        assert records is not None
        write_robustness(records, params, model, Path(model_dir).name, data, config, Path(output_dir))

    run.finish(write)
    return run.read_json("robustness.json")


# --------------------------------------------------------------------------- certify
def certify_images(
    model: nn.Module, data: ImageData, output_dir: str | Path, config: ImageCertifyConfig = ImageCertifyConfig(),
    params: dict[str, Any] | None = None, denoiser: nn.Module | None = None, name: str = "model", overwrite: bool = False,
) -> dict[str, Any]:
    """CERTIFY every image of ``data`` with Gaussian smoothing of ``model`` (``f(D(.))`` with a ``denoiser``).

    Runs on the core's run skeleton (:class:`robusttext.runs.results.Run`: sharded, resumable, content-checked,
    ``params`` recorded beside the configuration; each image draws from its own seeded stream, so N processes give
    the numbers of one). Writes ``results.jsonl`` (index, label, prediction, radius, top1_lower, top2_upper,
    correct, clean_prediction, n_samples, n_queries, seconds), ``summary.json``, ``certified_accuracy.png``,
    ``report.md``, ``run_config.json`` and the figures of :func:`robusttext_vision.figures.certify_figure_set` in
    ``output_dir``; returns the summary (radii in pixel units, L2)."""
    state = process_state()
    protocol = CertifyProtocol.fixed_sample(config.n0, config.n, config.alpha)
    params = {**(params or {}), "sigma": config.sigma, "seed": config.seed, "protocol": protocol.record(),
              "num_examples": len(data), "data_fingerprint": examples_fingerprint(data.images, data.labels.tolist())}
    run = Run(output_dir, params, overwrite=overwrite, state=state)
    clf = SmoothedImageClassifier(model, data.num_classes, config.sigma, batch_size=config.batch_size, seed=config.seed,
                                  device=state.device, denoiser=denoiser)

    def certify_chunk(idx: list[int], tick: Any) -> list[dict]:
        images, labels = data.images[idx], data.labels[idx].tolist()
        certs = clf.certify(images, indices=idx, protocol=protocol, on_done=lambda _i, _c: tick())
        clean = clf.base.predict_clean(images)
        return [
            {
                "index": i, "label": y, "prediction": c.prediction, "radius": c.radius,
                "top1_lower": c.top1_lower, "top2_upper": c.top2_upper, "correct": bool(c.prediction == y),
                "clean_prediction": int(cp), "n_samples": c.n_samples, "n_queries": c.n_queries,
                "seconds": round(c.seconds, 4),
            }
            for i, y, c, cp in zip(idx, labels, certs, clean)
        ]

    records = run.execute(len(data), certify_chunk, config.chunk_size, desc=f"certify {name}", unit="images")
    out = Path(output_dir)

    def write() -> None:
        summary = summarize_l2(records, params, config.sigma, config.n, config.alpha)
        summary["versions"] = versions()
        write_json(out / "summary.json", summary)
        plot_certified_accuracy({name: summary["certified_accuracy"]}, out / "certified_accuracy.png",
                                xlabel="L2 radius (pixel units)")
        figures = certify_figure_set(records, data.images, data.classes, config.sigma, config.seed, out, name,
                                     config.figure_images, config.noisy_copies,
                                     base=lambda x: torch.as_tensor(clf.base(x.float().numpy())))
        (out / "report.md").write_text(certification_markdown(summary) + figures_markdown(figures), encoding="utf-8")

    run.finish(write)
    return run.read_json("summary.json")


def run_certify(model_dir: str | Path, data: ImageData, output_dir: str | Path,
                config: ImageCertifyConfig = ImageCertifyConfig(), denoiser_dir: str | Path | None = None,
                overwrite: bool = False) -> dict[str, Any]:
    """Certify ``data`` with the model saved in ``model_dir`` (and the denoiser in ``denoiser_dir``), recording
    both folders' fingerprints (see :func:`certify_images`)."""
    model, _ = load_model(model_dir)
    denoiser = load_denoiser(denoiser_dir) if denoiser_dir else None
    params = {"task": "vision-certify", "model_dir": str(model_dir), "dataset": data.name, "split": data.split,
              "denoiser_dir": None if denoiser_dir is None else str(denoiser_dir),
              "model_fingerprint": folder_fingerprint(model_dir, MODEL_FILES),
              "denoiser_fingerprint": folder_fingerprint(denoiser_dir, MODEL_FILES) if denoiser_dir else None}
    return certify_images(model, data, output_dir, config, params, denoiser, name=Path(model_dir).name,
                          overwrite=overwrite)


# --------------------------------------------------------------------------- denoise
def run_denoise(classifier_dir: str | Path, data: ImageData, output_dir: str | Path, config: DenoiseConfig = DenoiseConfig(),
                eval_data: ImageData | None = None) -> dict[str, Any]:
    """Train a denoiser on ``data`` in front of the frozen classifier saved in ``classifier_dir``, then (with
    ``eval_data``) certify ``f`` and ``f(D(.))`` on it with the same CERTIFY; writes ``denoise.json`` and
    ``denoise.md`` in ``output_dir``."""
    classifier, _ = load_model(classifier_dir)
    out = Path(output_dir)
    cfg = FitConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed)
    denoiser, history = train_denoiser(data.images, data.labels, classifier, config.objective, config.sigma, cfg,
                                       out / "denoiser", config.depth, config.width)
    params = {**_plain(config), "classifier_dir": str(classifier_dir), "dataset": data.name, "split": data.split,
              "eval_split": None if eval_data is None else eval_data.split}
    result: dict[str, Any] = {"parameters": params, "history": history, "rows": {}}
    if eval_data is not None:
        curves = {}
        for label, d in (("f (no denoiser)", None), (f"f(D) {config.objective}", denoiser)):
            run_params = {"task": "vision-certify", "model_dir": str(classifier_dir), "dataset": eval_data.name,
                          "split": eval_data.split, "denoiser_dir": str(out / "denoiser") if d is not None else None}
            s = certify_images(classifier, eval_data, out / ("certify_denoised" if d is not None else "certify_plain"),
                               config.certify_config(), run_params, d, name=label)
            curves[label] = s["certified_accuracy"]
            result["rows"][label] = {k: s.get(k) for k in ("clean_accuracy", "smoothed_accuracy", "certified_count",
                                                           "mean_radius_certified")}
        plot_certified_accuracy(curves, out / "denoise_certified_accuracy.png", xlabel="L2 radius (pixel units)",
                                title=f"Denoised smoothing, sigma={config.sigma}")
        cols = [("clean_accuracy", "clean acc. of f"), ("smoothed_accuracy", "smoothed acc."),
                ("certified_count", "certified correct"), ("mean_radius_certified", "mean radius")]
        (out / "denoise.md").write_text(table_markdown(result["rows"], cols, f"Denoised smoothing at sigma = {config.sigma}"))
    write_json(out / "denoise.json", result)
    return result


# --------------------------------------------------------------------------- linear
def run_linear(train: ImageData, test: ImageData, output_dir: str | Path, config: LinearConfig = LinearConfig()) -> dict[str, Any]:
    """Regular vs exactly robust hinge-loss training of a binary linear classifier on ``train``; exact errors on
    ``test``; ``linear.json``, ``linear.md``, ``weights.png`` and the figures of
    :func:`robusttext_vision.figures.linear_figure_set` in ``output_dir``."""
    x, y = binary_task(train.images, train.labels, list(config.classes))
    xt, yt = binary_task(test.images, test.labels, list(config.classes))
    rows, weights, models = {}, {}, {}
    for name, eps in (("regular", 0.0), (f"robust eps={config.eps:g}", config.eps)):
        w, b, hist = train_linear(x, y, eps, config.norm, config.epochs, config.lr, config.batch_size, config.seed)
        rows[name] = {**errors(w, b, xt, yt, config.eps, config.norm), "final_train_loss": hist[-1]}
        weights[name], models[name] = w, (w, b)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_weights(weights, tuple(train.shape[1:]), out / "weights.png")
    params = {**_plain(config), "dataset": train.name, "split": train.split, "eval_split": test.split,
              "num_train": len(x), "num_test": len(xt)}
    result = {"parameters": params, "rows": rows}
    write_json(out / "linear.json", result)
    cols = [("clean_error", "clean error"), ("robust_error", f"exact robust error ({config.norm}, eps={config.eps:g})")]
    figures = [("weights.png", "the weights w as images (red positive, blue negative)", None)] + linear_figure_set(
        models, test.images, test.labels, list(config.classes), list(config.curve_eps), config.norm,
        config.boundary_digits, out, config.eps)
    (out / "linear.md").write_text(table_markdown(rows, cols, f"Binary linear classifier, classes {list(config.classes)}")
                                   + figures_markdown(figures))
    return result
