"""``robusttext vision compare``: one small CNN trained three ways, attacked and certified the same way.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from robusttext.runs.results import write_json

from .arguments import CURVE_L2_EPS, CURVE_LINF_EPS, CertifyImageArguments, ImageDataArguments, TrainImageArguments
from .figures import check_figure_args, compare_figure_set, figures_markdown

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
    figure_examples: int = field(default=300, metadata={"help": "Eval images attacked for the figures (the first N; 0 = no attack figures)."})
    grid_images: int = field(default=8, metadata={"help": "Images in each model's grid of adversarial examples."})


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
    from .attacks import attack_dataset

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


def ensure_model(args: CompareArguments, data_args: ImageDataArguments, method: str, model_dir: Path) -> None:
    """Train the ``method`` model into ``model_dir`` unless its weights are already there."""
    from .models import WEIGHTS_NAME
    from .pipelines import train_and_save

    if (model_dir / WEIGHTS_NAME).exists():
        return
    train = TrainImageArguments(
        method=method, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        eps=args.train_eps, norm="linf", steps=args.train_steps, warmup_epochs=args.warmup_epochs,
        sigma=args.sigma, seed=args.seed, eval_split=None, output_dir=str(model_dir),
    )
    train_and_save(data_args, train)


def certify_model(model: Any, name: str, model_dir: Path, certified: Any, args: CompareArguments, out: Path) -> dict[str, Any]:
    """The certify summary of ``model`` smoothed at ``args.sigma`` on the ``certified`` images (cached in
    ``out/certify/<method>``)."""
    from .pipelines import certify_images

    cert = CertifyImageArguments(
        model_dir=str(model_dir), sigma=args.sigma, n0=args.n0, n=args.n, alpha=args.alpha,
        batch_size=args.certify_batch_size, seed=args.seed, output_dir=str(out / "certify" / model_dir.name),
    )
    params = {"task": "vision-certify", "model_dir": str(model_dir), "dataset": certified.name,
              "split": args.eval_split, "max_examples": args.certify_examples}
    return certify_images(model, certified, cert, params, name=name)


def write_compare(
    result: dict[str, Any], curves: dict[str, Any], models: dict[str, Any], evaluation: Any, attacked: Any,
    certified: Any, args: CompareArguments, out: Path,
) -> None:
    """``compare.json``, ``compare.md`` (table and figures), ``compare.png`` and ``compare_certified.png``
    (main process). Adds each row's ``certified_fraction`` after ``compare.json`` is written."""
    from robusttext.runs.report import plot_certified_accuracy

    from .report import plot_accuracy_bars, table_markdown

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
    figures = compare_figure_set(models, evaluation, args, out, {n: out / "certify" / m for n, m in METHODS})
    (out / "compare.md").write_text(table_markdown(rows, cols, caption) + figures_markdown(figures), encoding="utf-8")
    for r in rows.values():
        r["certified_fraction"] = r["certified_count"] / max(1, len(certified))
    plot_accuracy_bars(rows, acc_cols + [("certified_fraction", f"certified (sigma={args.sigma})")],
                       out / "compare.png", f"{args.dataset}: normal vs PGD-AT vs Gaussian training")
    plot_certified_accuracy(curves, out / "compare_certified.png", xlabel="L2 radius (pixel units)",
                            title=f"Gaussian smoothing, sigma={args.sigma}")


def run_compare(args: CompareArguments) -> dict[str, Any]:
    """Train (or reuse) the three models, attack and certify them; write and return the table."""
    from robusttext.runs.distributed import process_state

    from .models import load_model
    from .pipelines import clean_accuracy, load_data

    check_figure_args(args)
    state = process_state()
    out = Path(args.output_dir)
    data_args = ImageDataArguments(dataset=args.dataset, split=args.train_split, data_root=args.data_root)
    evaluation = load_data(data_args, args.eval_split)
    attacked = load_data(data_args, args.eval_split, args.attack_examples)
    certified = load_data(data_args, args.eval_split, args.certify_examples)
    rows: dict[str, dict[str, Any]] = {}
    curves, models = {}, {}
    for name, method in METHODS:
        model_dir = out / "models" / method
        ensure_model(args, data_args, method, model_dir)
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
