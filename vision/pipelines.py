"""What each ``robusttext vision`` subcommand runs: load, call the library, write results.

* :func:`train_and_save` - ``train``: a classifier trained plain / PGD-AT / FGSM-RS / under Gaussian noise;
* :func:`run_attack` - ``attack``: robust accuracy (and attack success rate) at each eps;
* :func:`certify_images` / :func:`run_certify` - ``certify``: Gaussian (or denoised) smoothing of a split,
  sharded over processes like :func:`robusttext.runs.certify.certify_dataset` (inputs dealt out by index,
  per-image random streams, one part file per process, merged by the main process), resumable;
* :func:`run_denoise` - ``denoise``: train a denoiser, certify ``f`` with and without it;
* :func:`run_linear` - ``linear``: regular vs exactly robust binary linear classifier, weight pictures.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robusttext.runs.distributed import process_state
from robusttext.runs.results import Run, versions, write_json

from .arguments import (
    AttackArguments,
    CertifyImageArguments,
    DenoiseArguments,
    ImageDataArguments,
    LinearArguments,
    TrainImageArguments,
)
from .data import ImageData, load_images

logger = logging.getLogger("robusttext.vision")

#: The files of a saved vision model (weights and the config that rebuilds it) that decide its outputs.
MODEL_FILES = ("*.pt", "*.json")


def load_data(data: ImageDataArguments, split: str | None = None, max_examples: int | None = None) -> ImageData:
    """The images named by ``data`` (``split`` overrides ``data.split``)."""
    return load_images(data.dataset, split or data.split, data.data_root, max_examples or data.max_examples, data.download)


def clean_accuracy(model: nn.Module, data: ImageData, batch_size: int = 1000) -> float:
    """Accuracy of ``model`` on ``data`` without perturbation."""
    from .smoothing import ImageBatchClassifier

    preds = ImageBatchClassifier(model).predict_clean(data.images, batch_size)
    return float((torch.as_tensor(preds) == data.labels).double().mean())


# --------------------------------------------------------------------------- train
def train_and_save(data_args: ImageDataArguments, train: TrainImageArguments) -> dict[str, Any]:
    """Train a classifier with ``train.method`` on ``data_args``'s split and save it to ``train.output_dir``
    (load with :func:`robusttext_vision.models.load_model`); returns and writes ``metrics.json``. Resumable."""
    from .adversarial import train_classifier
    from .models import build_model, save_model
    from .training import FitConfig

    data = load_data(data_args)
    c, h, _ = data.shape
    model_cfg = {"arch": train.arch, "in_channels": c, "num_classes": data.num_classes, "image_size": h,
                 "mean": None, "std": None, "classes": data.classes}
    torch.manual_seed(train.seed)
    model = build_model(train.arch, c, data.num_classes, h)
    fit_cfg = FitConfig(epochs=train.epochs, batch_size=train.batch_size, lr=train.lr,
                        weight_decay=train.weight_decay, seed=train.seed)
    history = train_classifier(
        model, data.images, data.labels, train.method, fit_cfg, train.output_dir, eps=train.eps, norm=train.norm,
        steps=train.steps, step_size=train.step_size, warmup_epochs=train.warmup_epochs, sigma=train.sigma,
    )
    model = getattr(model, "module", model).eval()
    metrics: dict[str, Any] = {"train": history[-1] if history else {}, "num_train": len(data)}
    if train.eval_split and str(train.eval_split).lower() != "none":
        metrics["eval_split"] = train.eval_split
        metrics["clean_accuracy"] = clean_accuracy(model, load_data(data_args, train.eval_split))
    state = process_state()
    if state.is_main_process:
        record = {**model_cfg, "dataset": data.name, "split": data.split, "training": asdict(train), "history": history}
        save_model(model, train.output_dir, record)
        write_json(Path(train.output_dir) / "metrics.json", metrics)
    state.wait_for_everyone()
    return metrics


# --------------------------------------------------------------------------- attack
def attack_targets(args: AttackArguments, data: ImageData) -> torch.Tensor | None:
    """The target class of each image for ``--targeted`` (``--target-class``, else the label's successor
    modulo the number of classes); ``None`` for an untargeted attack."""
    if not args.targeted:
        return None
    if args.target_class is not None:
        if not 0 <= args.target_class < data.num_classes:
            raise ValueError(f"--target-class must be in [0, {data.num_classes}), got {args.target_class}")
        return torch.full_like(data.labels, args.target_class)
    return (data.labels + 1) % data.num_classes


def attack_kwargs(args: AttackArguments) -> dict[str, Any]:
    """The attack's keyword arguments (norm; PGD's steps, step size, restarts, random start), checked at
    every ``args.eps``."""
    from .attacks import check_attack_args

    kwargs: dict[str, Any] = {"norm": args.norm}
    if args.attack == "pgd":
        kwargs.update(steps=args.steps, step_size=args.step_size, restarts=args.restarts, random_init=args.random_init)
    for eps in args.eps:
        check_attack_args(eps, args.norm, **({k: kwargs[k] for k in ("steps", "step_size", "restarts")} if args.attack == "pgd" else {}))
    return kwargs


def write_robustness(
    records: list[dict], params: dict[str, Any], model: nn.Module, data: ImageData, args: AttackArguments
) -> None:
    """``robustness.json`` (accuracy and success rate per eps over the per-image ``records``),
    ``robustness.md`` and the attack figures in ``args.output_dir``."""
    from .figures import attack_command_figures, figures_markdown
    from .report import attack_markdown

    out_dir = Path(args.output_dir)
    n = max(1, len(records))
    results = {f"{eps:g}": {"accuracy": sum(r[f"{eps:g}"][0] for r in records) / n,
                            "success_rate": sum(r[f"{eps:g}"][1] for r in records) / n} for eps in args.eps}
    out = {"parameters": params, "results": results}
    write_json(out_dir / "robustness.json", out)
    figures = attack_command_figures(model, Path(args.model_dir).name, data, args, out_dir)
    (out_dir / "robustness.md").write_text(attack_markdown(out) + figures_markdown(figures), encoding="utf-8")


def run_attack(data_args: ImageDataArguments, args: AttackArguments) -> dict[str, Any]:
    """Attack a saved model on a split at every ``args.eps``; writes ``robustness.json``, ``robustness.md`` and
    the figures of :func:`robusttext_vision.figures.attack_command_figures` in ``args.output_dir``.

    Runs on the core's run skeleton: batches of ``args.batch_size`` images (one random stream each,
    :func:`robusttext_vision.attacks.batch_generator`) dealt out over the processes of ``accelerate launch``/``torchrun``,
    per-image records in ``results.jsonl`` written as they finish, resumable; N processes give the numbers
    of one."""
    from robusttext.runs.fingerprint import examples_fingerprint, folder_fingerprint

    from .attacks import attack_batch
    from .figures import check_figure_args
    from .models import load_model

    check_figure_args(args)
    model, cfg = load_model(args.model_dir)
    data = load_data(data_args)
    targets = attack_targets(args, data)
    kwargs = attack_kwargs(args)
    state = process_state()
    params = {**asdict(args), **asdict(data_args), "num_examples": len(data), "task": "vision-attack",
              "model_fingerprint": folder_fingerprint(args.model_dir, MODEL_FILES),
              "data_fingerprint": examples_fingerprint(data.images, data.labels.tolist())}
    params.pop("overwrite_output_dir", None)
    run = Run(args.output_dir, params, overwrite=args.overwrite_output_dir, state=state)
    model = model.to(state.device).eval()

    def attack_chunk(idx: list[int], tick: Any) -> list[dict]:
        res = attack_batch(model, data.images[idx], data.labels[idx], args.attack, args.eps, idx[0],
                           None if targets is None else targets[idx], state.device, args.seed, **kwargs)
        return [{"index": i, "label": int(data.labels[i]), **{eps: [bool(c[j]), bool(f[j])] for eps, (c, f) in res.items()}}
                for j, i in enumerate(idx)]

    records = run.execute(len(data), attack_chunk, args.batch_size, desc=f"{args.attack} {args.norm}",
                          unit="images", fixed_chunks=True)

    def write() -> None:
        assert records is not None
        write_robustness(records, params, model, data, args)

    run.finish(write)
    return run.read_json("robustness.json")


# --------------------------------------------------------------------------- certify
def validate_certify_args(cert: CertifyImageArguments) -> None:
    """Reject unusable parameters before anything is loaded."""
    from .figures import check_figure_args
    from .smoothing import check_budget, check_sigma

    check_figure_args(cert)
    check_sigma(cert.sigma)
    check_budget(cert.n0, cert.n, cert.alpha)
    for name in ("batch_size", "chunk_size"):
        if getattr(cert, name) is not None and getattr(cert, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cert, name)}")


def certify_images(
    model: nn.Module, data: ImageData, cert: CertifyImageArguments, params: dict[str, Any],
    denoiser: nn.Module | None = None, name: str = "model",
) -> dict[str, Any]:
    """CERTIFY every image of ``data`` with Gaussian smoothing of ``model`` (``f(D(.))`` with a denoiser).

    Runs on the core's run skeleton (:class:`robusttext.runs.results.Run`: sharded, resumable, content-checked;
    each image draws from its own seeded stream, so N processes give the numbers of one). Writes
    ``results.jsonl`` (index, label, prediction, radius, top1_lower, top2_upper, correct,
    clean_prediction, n_samples, n_queries, seconds), ``summary.json``, ``certified_accuracy.png``,
    ``report.md``, ``run_config.json`` and the figures of :func:`robusttext_vision.figures.certify_figure_set` in
    ``cert.output_dir``; returns the summary.
    """
    from robusttext.runs.fingerprint import examples_fingerprint
    from robusttext.certificate.protocol import CertifyProtocol
    from robusttext.runs.report import plot_certified_accuracy

    from .figures import certify_figure_set, figures_markdown
    from .report import certification_markdown, summarize_l2
    from .smoothing import SmoothedImageClassifier

    validate_certify_args(cert)
    state = process_state()
    protocol = CertifyProtocol.fixed_sample(cert.n0, cert.n, cert.alpha)
    params = {**params, **{k: getattr(cert, k) for k in ("sigma", "seed", "denoiser_dir")}, "protocol": protocol.record(),
              "num_examples": len(data), "data_fingerprint": examples_fingerprint(data.images, data.labels.tolist())}
    run = Run(cert.output_dir, params, overwrite=cert.overwrite_output_dir, state=state)
    clf = SmoothedImageClassifier(model, data.num_classes, cert.sigma, batch_size=cert.batch_size, seed=cert.seed,
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

    records = run.execute(len(data), certify_chunk, cert.chunk_size, desc=f"certify {name}", unit="images")
    out = Path(cert.output_dir)

    def write() -> None:
        summary = summarize_l2(records, params, cert.sigma, cert.n, cert.alpha)
        summary["versions"] = versions()
        write_json(out / "summary.json", summary)
        plot_certified_accuracy({name: summary["certified_accuracy"]}, out / "certified_accuracy.png",
                                xlabel="L2 radius (pixel units)")
        figures = certify_figure_set(records, data.images, data.classes, cert.sigma, cert.seed, out, name,
                                     cert.figure_images, cert.noisy_copies,
                                     base=lambda x: torch.as_tensor(clf.base(x.float().numpy())))
        (out / "report.md").write_text(certification_markdown(summary) + figures_markdown(figures), encoding="utf-8")

    run.finish(write)
    return run.read_json("summary.json")


def run_certify(data_args: ImageDataArguments, cert: CertifyImageArguments) -> dict[str, Any]:
    """``robusttext vision certify``: load the model (and denoiser), certify the split."""
    from robusttext.runs.fingerprint import folder_fingerprint

    from .denoise import load_denoiser
    from .models import load_model

    validate_certify_args(cert)
    model, _ = load_model(cert.model_dir)
    denoiser = load_denoiser(cert.denoiser_dir) if cert.denoiser_dir else None
    data = load_data(data_args)
    params = {"task": "vision-certify", "model_dir": cert.model_dir, "dataset": data.name, "split": data.split,
              "max_examples": data_args.max_examples, "model_fingerprint": folder_fingerprint(cert.model_dir, MODEL_FILES),
              "denoiser_fingerprint": folder_fingerprint(cert.denoiser_dir, MODEL_FILES) if cert.denoiser_dir else None}
    return certify_images(model, data, cert, params, denoiser, name=Path(cert.model_dir).name)


# --------------------------------------------------------------------------- denoise
def run_denoise(data_args: ImageDataArguments, den: DenoiseArguments) -> dict[str, Any]:
    """Train a denoiser in front of the frozen classifier, then certify ``f`` and ``f(D(.))`` on
    ``den.certify_examples`` images of ``den.eval_split`` with the same CERTIFY; writes ``denoise.json``
    and ``denoise.md``."""
    from robusttext.runs.report import plot_certified_accuracy

    from .denoise import train_denoiser
    from .models import load_model
    from .report import table_markdown
    from .training import FitConfig

    classifier, _ = load_model(den.classifier_dir)
    data = load_data(data_args)
    out = Path(den.output_dir)
    cfg = FitConfig(epochs=den.epochs, batch_size=den.batch_size, lr=den.lr, seed=den.seed)
    denoiser, history = train_denoiser(data.images, data.labels, classifier, den.objective, den.sigma, cfg, out / "denoiser",
                                       den.depth, den.width)
    result: dict[str, Any] = {"parameters": {**asdict(den), **asdict(data_args)}, "history": history, "rows": {}}
    if den.certify_examples > 0:
        evaluation = load_data(data_args, den.eval_split, den.certify_examples)
        curves = {}
        for label, d in (("f (no denoiser)", None), (f"f(D) {den.objective}", denoiser)):
            cert = CertifyImageArguments(
                model_dir=den.classifier_dir, denoiser_dir=str(out / "denoiser") if d is not None else None,
                sigma=den.sigma, n0=den.n0, n=den.n, alpha=den.alpha, batch_size=den.certify_batch_size,
                seed=den.seed, output_dir=str(out / ("certify_denoised" if d is not None else "certify_plain")),
            )
            params = {"task": "vision-certify", "model_dir": den.classifier_dir, "dataset": evaluation.name,
                      "split": evaluation.split}
            s = certify_images(classifier, evaluation, cert, params, d, name=label)
            curves[label] = s["certified_accuracy"]
            result["rows"][label] = {k: s.get(k) for k in ("clean_accuracy", "smoothed_accuracy", "certified_count",
                                                           "mean_radius_certified")}
        plot_certified_accuracy(curves, out / "denoise_certified_accuracy.png", xlabel="L2 radius (pixel units)",
                                title=f"Denoised smoothing, sigma={den.sigma}")
        cols = [("clean_accuracy", "clean acc. of f"), ("smoothed_accuracy", "smoothed acc."),
                ("certified_count", "certified correct"), ("mean_radius_certified", "mean radius")]
        (out / "denoise.md").write_text(table_markdown(result["rows"], cols, f"Denoised smoothing at sigma = {den.sigma}"))
    write_json(out / "denoise.json", result)
    return result


# --------------------------------------------------------------------------- linear
def run_linear(data_args: ImageDataArguments, args: LinearArguments) -> dict[str, Any]:
    """Regular vs exactly robust hinge-loss training of a binary linear classifier; exact errors on
    ``args.eval_split``; ``linear.json``, ``linear.md``, ``weights.png`` and the figures of
    :func:`robusttext_vision.figures.linear_figure_set` in ``args.output_dir``."""
    from .figures import check_figure_args, figures_markdown, linear_figure_set
    from .linear import binary_task, errors, plot_weights, train_linear
    from .report import table_markdown

    check_figure_args(args)
    train = load_data(data_args)
    test = load_data(data_args, args.eval_split)
    x, y = binary_task(train.images, train.labels, args.classes)
    xt, yt = binary_task(test.images, test.labels, args.classes)
    rows, weights, models = {}, {}, {}
    for name, eps in (("regular", 0.0), (f"robust eps={args.eps:g}", args.eps)):
        w, b, hist = train_linear(x, y, eps, args.norm, args.epochs, args.lr, args.batch_size, args.seed)
        rows[name] = {**errors(w, b, xt, yt, args.eps, args.norm), "final_train_loss": hist[-1]}
        weights[name], models[name] = w, (w, b)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_weights(weights, tuple(train.shape[1:]), out / "weights.png")
    result = {"parameters": {**asdict(args), **asdict(data_args), "num_train": len(x), "num_test": len(xt)}, "rows": rows}
    write_json(out / "linear.json", result)
    cols = [("clean_error", "clean error"), ("robust_error", f"exact robust error ({args.norm}, eps={args.eps:g})")]
    figures = [("weights.png", "the weights w as images (red positive, blue negative)", None)] + linear_figure_set(
        models, test.images, test.labels, args.classes, args.curve_eps, args.norm, args.boundary_digits, out, args.eps)
    (out / "linear.md").write_text(table_markdown(rows, cols, f"Binary linear classifier, classes {args.classes}")
                                   + figures_markdown(figures))
    return result
