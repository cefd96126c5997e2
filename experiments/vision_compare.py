#!/usr/bin/env python
"""One small CNN trained three ways, attacked and certified the same way: the MNIST study of docs/benchmarks.md
(section 8), through the vision library (:mod:`robusttext_vision.pipelines`, :mod:`robusttext_vision.attacks`,
:mod:`robusttext_vision.figures`).

    python experiments/vision_compare.py --config experiments/vision_compare.yaml

The models: **normal** (cross-entropy), **PGD-AT** (Madry et al. 2018, Linf) and **Gaussian**
(noise augmentation at the smoothing sigma, Cohen et al. 2019). For each, on the evaluation split:
clean accuracy; robust accuracy under FGSM and PGD at Linf eps (default 0.3) and at L2 eps (default
1, 2, 3); and, for the model smoothed at ``sigma``, the number of images certified correct and their
average certified L2 radius. Output in ``output_dir``: ``compare.json``, ``compare.md``,
``compare.png`` (accuracies), ``compare_certified.png`` (certified accuracy vs radius) and the figures of
:func:`robusttext_vision.figures.compare_figure_set` (adversarial examples, accuracy vs eps, exact certified curves).
Every stage is cached (models via their checkpoints, attacks in ``eval/``, certification via its
results store), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from robusttext.config import parse, run_script
from robusttext.runs.distributed import process_state
from robusttext.runs.report import plot_certified_accuracy
from robusttext.runs.results import write_json
from robusttext_vision.attacks import attack_dataset
from robusttext_vision.data import load_images
from robusttext_vision.figures import (
    FIGURE_EXAMPLES, GRID_IMAGES, check_figure_args, compare_figure_set, figures_markdown,
)
from robusttext_vision.models import WEIGHTS_NAME, load_model
from robusttext_vision.pipelines import (
    CURVE_L2_EPS, CURVE_LINF_EPS, ImageCertifyConfig, TrainConfig, certify_images, clean_accuracy, train_and_save,
)
from robusttext_vision.report import plot_accuracy_bars, table_markdown

METHODS = (("normal", "standard"), ("PGD-AT", "pgd"), ("Gaussian", "gaussian"))


@dataclass
class CompareArguments:
    """The comparison: data, training budget, attack budget, certification budget."""

    dataset: str = field(default="mnist", metadata={"help": "mnist, fashion-mnist, digits or cifar10."})
    data_root: Optional[str] = field(default=None, metadata={"help": "Folder with the dataset files."})
    train_split: str = field(default="test[:8000]", metadata={"help": "Training split (offline MNIST: 8k of the test split)."})
    eval_split: str = field(default="test[8000:]", metadata={"help": "Evaluation split (the other 2k)."})
    arch: str = field(default="cnn", metadata={"help": "cnn or linear.", "choices": ["cnn", "linear"]})
    epochs: int = field(default=5, metadata={"help": "Training epochs of each model."})
    batch_size: int = field(default=128, metadata={"help": "Training batch size."})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    train_eps: float = field(default=0.3, metadata={"help": "PGD-AT Linf radius."})
    train_steps: int = field(default=10, metadata={"help": "PGD-AT steps per batch."})
    warmup_epochs: float = field(default=1.0, metadata={"help": "PGD-AT eps ramp-up (epochs)."})
    sigma: float = field(default=0.5, metadata={"help": "Gaussian training noise = smoothing noise."})
    linf_eps: list[float] = field(default_factory=lambda: [0.3], metadata={"help": "Linf attack radii."})
    l2_eps: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0], metadata={"help": "L2 attack radii."})
    attack_steps: int = field(default=40, metadata={"help": "PGD attack steps."})
    attack_restarts: int = field(default=1, metadata={"help": "PGD attack restarts."})
    attack_examples: Optional[int] = field(default=None, metadata={"help": "Attack only the first N eval images."})
    certify_examples: int = field(default=500, metadata={"help": "Certify the first N eval images."})
    n0: int = field(default=100, metadata={"help": "Selection samples per image."})
    n: int = field(default=1000, metadata={"help": "Estimation samples per image."})
    alpha: float = field(default=0.001, metadata={"help": "Failure probability of each certificate."})
    certify_batch_size: Optional[int] = field(default=None, metadata={"help": "Noisy images per forward pass (default: 200 on CPUs, 1000 on GPUs)."})
    seed: int = field(default=0, metadata={"help": "Seed of training, attacks and noise."})
    output_dir: str = field(default="runs/vision/compare", metadata={"help": "Where everything goes."})
    curve_linf_eps: list[float] = field(default_factory=lambda: list(CURVE_LINF_EPS), metadata={"help": "Linf radii of the accuracy-vs-eps figure (pixel units)."})
    curve_l2_eps: list[float] = field(default_factory=lambda: list(CURVE_L2_EPS), metadata={"help": "L2 radii of the accuracy-vs-eps figure (pixel units)."})
    figure_examples: int = field(default=FIGURE_EXAMPLES, metadata={"help": "Eval images attacked for the figures (the first N; 0 = no attack figures)."})
    grid_images: int = field(default=GRID_IMAGES, metadata={"help": "Images in each model's grid of adversarial examples."})


def attack_columns(args: CompareArguments) -> list[tuple[str, str, str, float]]:
    """(key, attack, norm, eps) of every robust-accuracy column."""
    cols = []
    for norm, values in (("linf", args.linf_eps), ("l2", args.l2_eps)):
        for eps in values:
            for name in ("fgsm", "pgd"):
                cols.append((f"{name}_{norm}_{eps:g}", name, norm, float(eps)))
    return cols


def evaluate_attacks(model: Any, images: Any, labels: Any, args: CompareArguments, cache: Path) -> dict[str, float]:
    """Robust accuracies of ``attack_columns``; cached in ``cache`` (reused when the parameters match)."""
    params = {k: getattr(args, k) for k in ("linf_eps", "l2_eps", "attack_steps", "attack_restarts", "attack_examples", "seed")}
    if cache.exists():
        old = json.loads(cache.read_text())
        if old.get("parameters") == params:
            return old["accuracy"]
    acc: dict[str, float] = {}
    for key, name, norm, eps in attack_columns(args):
        kwargs: dict[str, Any] = {"norm": norm}
        if name == "pgd":
            kwargs.update(steps=args.attack_steps, restarts=args.attack_restarts)
        res = attack_dataset(model, images, labels, name, [eps], seed=args.seed, **kwargs)
        acc[key] = res[f"{eps:g}"]["accuracy"]
        print(f"  {cache.stem}: {key} accuracy={acc[key]:.4f}", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json(cache, {"parameters": params, "accuracy": acc})
    return acc


def ensure_model(args: CompareArguments, train_data: Any, method: str, model_dir: Path) -> None:
    """Train the ``method`` model into ``model_dir`` unless its weights are already there."""
    if (model_dir / WEIGHTS_NAME).exists():
        return
    config = TrainConfig(method=method, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         eps=args.train_eps, norm="linf", steps=args.train_steps, warmup_epochs=args.warmup_epochs,
                         sigma=args.sigma, seed=args.seed)
    train_and_save(train_data, model_dir, config)


def certify_model(model: Any, name: str, model_dir: Path, certified: Any, args: CompareArguments, out: Path) -> dict[str, Any]:
    """The certify summary of ``model`` smoothed at ``args.sigma`` on the ``certified`` images (cached in
    ``out/certify/<method>``)."""
    config = ImageCertifyConfig(sigma=args.sigma, n0=args.n0, n=args.n, alpha=args.alpha,
                                batch_size=args.certify_batch_size, seed=args.seed)
    params = {"task": "vision-certify", "model_dir": str(model_dir), "dataset": certified.name,
              "split": args.eval_split, "max_examples": args.certify_examples, "denoiser_dir": None}
    return certify_images(model, certified, out / "certify" / model_dir.name, config, params, name=name)


def write_compare(
    result: dict[str, Any], curves: dict[str, Any], models: dict[str, Any], evaluation: Any, attacked: Any,
    certified: Any, args: CompareArguments, out: Path,
) -> None:
    """``compare.json``, ``compare.md`` (table and figures), ``compare.png`` and ``compare_certified.png``
    (main process). Adds each row's ``certified_fraction`` after ``compare.json`` is written."""
    rows = result["rows"]
    write_json(out / "compare.json", result)
    acc_cols = [("clean_accuracy", "clean")] + [
        (key, f"{name.upper()} {norm} {eps:g}") for key, name, norm, eps in attack_columns(args)
    ]
    cols = acc_cols + [("certified_count", f"certified (of {len(certified)})"),
                       ("mean_radius_certified", "avg radius")]
    caption = (
        f"{args.dataset}: trained on `{args.train_split}`, evaluated on `{args.eval_split}` ({len(evaluation)} images; "
        f"attacks on {len(attacked)}, PGD {args.attack_steps} steps x {args.attack_restarts} restart(s)); "
        f"certification on the first {len(certified)} at sigma = {args.sigma} (n0 = {args.n0}, n = {args.n}, "
        f"alpha = {args.alpha}); avg radius over the images certified correct (L2, pixel units)."
    )
    figures = compare_figure_set(models, evaluation, out, {n: out / "certify" / m for n, m in METHODS}, args.sigma,
                                 {"linf": args.curve_linf_eps, "l2": args.curve_l2_eps}, args.seed, args.attack_steps,
                                 args.attack_restarts, args.figure_examples, args.grid_images)
    (out / "compare.md").write_text(table_markdown(rows, cols, caption) + figures_markdown(figures), encoding="utf-8")
    for r in rows.values():
        r["certified_fraction"] = r["certified_count"] / max(1, len(certified))
    plot_accuracy_bars(rows, acc_cols + [("certified_fraction", f"certified (sigma={args.sigma})")],
                       out / "compare.png", f"{args.dataset}: normal vs PGD-AT vs Gaussian training")
    plot_certified_accuracy(curves, out / "compare_certified.png", xlabel="L2 radius (pixel units)",
                            title=f"Gaussian smoothing, sigma={args.sigma}")


def run_compare(args: CompareArguments) -> dict[str, Any]:
    """Train (or reuse) the three models, attack and certify them; write and return the table."""
    check_figure_args(args)
    state = process_state()
    out = Path(args.output_dir)
    load = lambda split, n=None: load_images(args.dataset, split, args.data_root, n)  # noqa: E731
    train_data, evaluation = load(args.train_split), load(args.eval_split)
    attacked, certified = load(args.eval_split, args.attack_examples), load(args.eval_split, args.certify_examples)
    rows: dict[str, dict[str, Any]] = {}
    curves, models = {}, {}
    for name, method in METHODS:
        model_dir = out / "models" / method
        ensure_model(args, train_data, method, model_dir)
        model = models[name] = load_model(model_dir)[0]
        row: dict[str, Any] = {"clean_accuracy": clean_accuracy(model, evaluation)}
        if state.is_main_process:
            row.update(evaluate_attacks(model, attacked.images, attacked.labels, args, out / "eval" / f"{method}.json"))
        summary = certify_model(model, name, model_dir, certified, args, out)
        row.update(smoothed_accuracy=summary["smoothed_accuracy"], certified_count=summary["certified_count"],
                   mean_radius_certified=summary["mean_radius_certified"])
        rows[name] = row
        curves[name] = summary["certified_accuracy"]
    result = {"parameters": asdict(args), "num_eval": len(evaluation), "num_attacked": len(attacked),
              "num_certified": len(certified), "rows": rows}
    if state.is_main_process:
        write_compare(result, curves, models, evaluation, attacked, certified, args, out)
    state.wait_for_everyone()
    return result


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` (options, or ``--config experiments/vision_compare.yaml``), run, print the rows."""
    (args,) = parse((CompareArguments,), argv, "experiments/vision_compare.py")
    print(json.dumps(run_compare(args)["rows"], indent=2, sort_keys=True, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("experiments/vision_compare.py", run, argv)


if __name__ == "__main__":
    sys.exit(main())
