"""The pictures and curves behind the vision tables (matplotlib, Agg backend; no display needed).

Each figure comes in two parts: a function that computes what is drawn from a model, images or a
results file, and a ``plot_*`` function that draws it, saves one PNG and returns what it drew, read
back from the figure's own artists (lines, bars, titles), so a test can hold the picture against the
data it was made of. Every random draw (PGD starts, the noisy copies of a smoothing figure) comes from
a ``torch.Generator`` seeded by the caller: the same seed gives the same PNG bytes.

* attacks (Goodfellow et al. 2015; Madry et al. 2018): :func:`adversarial_grid` /
  :func:`plot_adversarial_grid` (clean images and their FGSM/PGD versions with the model's
  predictions), :func:`accuracy_curve` / :func:`plot_accuracy_curves` (accuracy under attack vs eps);
* the exactly robust linear classifier (:mod:`robusttext_vision.linear`): :func:`exact_attack_accuracy` /
  :func:`plot_linear_curves` (accuracy under the exact worst-case attack vs eps),
  :func:`boundary_misclassified` / :func:`plot_boundary_digits` (misclassified digits with the smallest
  ``|w . x + b|``), :func:`plot_misclassified_logits` (their logit histogram);
* Gaussian smoothing (Cohen et al. 2019): :func:`certified_curve` / :func:`plot_certified_curves`
  (certified accuracy vs L2 radius, exact at every radius of a results file), :func:`noisy_copies` /
  :func:`plot_noisy_examples` (images, noisy copies at sigma, smoothed prediction and radius);
* :func:`figures_markdown`: the Markdown that shows the PNGs beside a command's table.

Pixel units throughout: eps and radii are distances between images with pixels in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .attacks import attack, attack_dataset, check_attack_args
from .linear import margins, worst_case_perturbation

#: (attack, norm, eps) rows of the adversarial-example grid: L2 eps 5 and Linf eps 0.3 on MNIST.
GRID_ATTACKS: tuple[tuple[str, str, float], ...] = (
    ("fgsm", "l2", 5.0), ("pgd", "l2", 5.0), ("fgsm", "linf", 0.3), ("pgd", "linf", 0.3),
)
NORM_NAMES = {"linf": "Linf", "l2": "L2"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    """Save as PNG without the software-version text chunk, so the bytes depend on the data only."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    _pyplot().close(fig)


def _gray(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] -> what ``imshow`` takes: ``(H, W)`` for one channel, ``(H, W, C)`` else."""
    img = image.detach().cpu().double().clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def _predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images).argmax(1).cpu()


#: The figures' sizes (library defaults): images attacked for the attack figures, images in a grid of adversarial
#: examples, images shown with their noisy copies in a certification report.
FIGURE_EXAMPLES, GRID_IMAGES, FIGURE_IMAGES = 300, 8, 4

#: the figure options of the commands' arguments: eps lists (>= 0) and counts (>= 0).
FIGURE_EPS_LISTS = ("curve_linf_eps", "curve_l2_eps", "curve_eps")
FIGURE_COUNTS = ("figure_examples", "grid_images", "figure_images", "noisy_copies", "boundary_digits")


def check_figure_args(args: Any) -> None:
    """Raise a one-line ``ValueError`` naming the option unless every figure option ``args`` has is usable:
    eps lists of finite numbers >= 0, counts that are integers >= 0. Call it before the costly work."""
    for name in FIGURE_EPS_LISTS:
        values = getattr(args, name, None)
        if values is not None and not all(isinstance(v, (int, float)) and 0 <= float(v) < float("inf") for v in values):
            raise ValueError(f"--{name} must list radii >= 0 in pixel units (e.g. 0 0.1 0.2), got {list(values)}")
    for name in FIGURE_COUNTS:
        value = getattr(args, name, None)
        if value is not None and (int(value) != value or value < 0):
            raise ValueError(f"--{name} must be an integer >= 0 (0 = none), got {value!r}")


# --------------------------------------------------------------------------- attacks
@dataclass
class AdversarialGrid:
    """Clean images ``(K, C, H, W)``, labels, the model's predictions, and one row per attack:
    ``rows[i] = (name, adversarial images, predictions on them)``."""

    images: torch.Tensor
    labels: torch.Tensor
    clean_predictions: torch.Tensor
    rows: list[tuple[str, torch.Tensor, torch.Tensor]] = field(default_factory=list)


def attack_name(name: str, norm: str, eps: float) -> str:
    """``"PGD L2 eps=5"``: how a row or column of attack results is labelled."""
    return f"{name.upper()} {NORM_NAMES.get(norm, norm)} eps={eps:g}"


def adversarial_grid(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
    attacks: Sequence[tuple[str, str, float]] = GRID_ATTACKS, steps: int = 40, restarts: int = 1, seed: int = 0,
) -> AdversarialGrid:
    """Attack ``images`` with each ``(attack, norm, eps)`` of ``attacks`` (untargeted; PGD with
    ``steps``, ``restarts`` and random starts from ``torch.Generator().manual_seed(seed)``) and record
    the model's prediction on every clean and adversarial image."""
    model = model.eval()
    labels = torch.as_tensor(labels).long()
    grid = AdversarialGrid(images, labels, _predict(model, images))
    gen = torch.Generator().manual_seed(int(seed))
    for name, norm, eps in attacks:
        kwargs: dict[str, Any] = {"norm": norm}
        if name == "pgd":
            kwargs.update(steps=steps, restarts=restarts, generator=gen)
        adv = attack(name, model, images, labels, float(eps), **kwargs).adversarial
        grid.rows.append((attack_name(name, norm, eps), adv, _predict(model, adv)))
    return grid


def plot_adversarial_grid(grid: AdversarialGrid, path: str | Path, classes: Sequence[str], title: str = "") -> dict:
    """One column per image; the first row clean, then one row per attack. Each cell is titled with the
    model's prediction (green: the true class, red: wrong). Returns ``{"rows": [row names],
    "predictions": [[class name per cell]]}`` read back from the cell titles."""
    plt = _pyplot()
    rows = [("clean", grid.images, grid.clean_predictions)] + list(grid.rows)
    k = len(grid.images)
    fig, axes = plt.subplots(len(rows), k, figsize=(1.15 * k + 1.3, 1.3 * len(rows) + 0.5), dpi=110, squeeze=False)
    for r, (name, imgs, preds) in enumerate(rows):
        for j in range(k):
            ax = axes[r, j]
            ax.imshow(_gray(imgs[j]), cmap="gray", vmin=0, vmax=1)
            ok = int(preds[j]) == int(grid.labels[j])
            ax.set_title(classes[int(preds[j])], fontsize=9, color="tab:green" if ok else "tab:red")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title or "Predictions on clean and adversarial images (green: correct, red: wrong)", fontsize=9)
    fig.tight_layout()
    drawn = {"rows": [axes[r, 0].get_ylabel() for r in range(len(rows))],
             "predictions": [[axes[r, j].get_title() for j in range(k)] for r in range(len(rows))]}
    _save(fig, path)
    return drawn


def accuracy_curve(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack_name_: str, norm: str,
    eps_values: Sequence[float], seed: int = 0, batch_size: int = 500, **kwargs,
) -> dict[float, float]:
    """Accuracy under ``attack_name_`` at each eps (the fraction of attacked images still classified as
    their label; eps = 0 is no attack, i.e. clean accuracy). ``kwargs`` go to the attack (steps,
    restarts, ...); PGD's random starts come from ``seed``."""
    out: dict[float, float] = {}
    for eps in eps_values:
        check_attack_args(float(eps), norm)
        if float(eps) == 0:  # no perturbation: every attack is the identity
            out[0.0] = float((_predict(model.eval(), images) == labels.cpu()).double().mean())
            continue
        res = attack_dataset(model, images, labels, attack_name_, [float(eps)], batch_size=batch_size, seed=seed,
                             progress=False, norm=norm, **kwargs)
        out[float(eps)] = res[f"{float(eps):g}"]["accuracy"]
    return out


def _line_plot(ax: Any, curves: dict[str, dict[float, float]], xlabel: str) -> dict[str, list[tuple[float, float]]]:
    for name, curve in curves.items():
        ax.plot(list(curve), list(curve.values()), marker="o", ms=3.5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return {line.get_label(): [(float(x), float(y)) for x, y in line.get_xydata()] for line in ax.get_lines()}


def plot_accuracy_curves(curves: dict[str, dict[str, dict[float, float]]], path: str | Path, title: str) -> dict:
    """Accuracy under attack vs eps: one panel per norm (``curves[norm][model] = {eps: accuracy}``), one
    line per model. Returns ``{norm: {model: [(eps, accuracy), ...]}}`` read back from the lines."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.6), dpi=120, squeeze=False)
    drawn = {}
    for ax, (norm, per_model) in zip(axes[0], curves.items()):
        drawn[norm] = _line_plot(ax, per_model, f"{NORM_NAMES.get(norm, norm)} eps (pixel units)")
        ax.set_title(f"{NORM_NAMES.get(norm, norm)} attacks", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return drawn


# --------------------------------------------------------------------------- linear
def exact_attack_accuracy(
    w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float], norm: str = "linf",
) -> dict[float, float]:
    """Accuracy of ``sign(w . x + b)`` (labels ``y`` in {-1, +1}; margin <= 0 counts as wrong) on the
    images moved by the worst-case perturbation ``x - eps y sign(w)`` (Linf; ``x - eps y w / ||w||_2``
    for L2) at each eps. For a linear model this attack is optimal, so the accuracy is exactly the
    fraction of images whose whole eps-ball is classified correctly (no pixel-range box, as in
    :mod:`robusttext_vision.linear`)."""
    out = {}
    for eps in eps_values:
        moved = x + worst_case_perturbation(w, y, float(eps), norm)
        out[float(eps)] = float((margins(w, b, moved, y) > 0).double().mean())
    return out


def boundary_misclassified(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Positions (rows of ``x``) of the ``k`` misclassified images (margin <= 0) with the smallest
    ``|w . x + b|``, nearest first (stable order for ties)."""
    logit = x @ w + b
    wrong = (y * logit <= 0).nonzero().flatten()
    return wrong[torch.argsort(logit[wrong].abs(), stable=True)[: max(0, int(k))]]


def plot_linear_curves(curves: dict[str, dict[float, float]], path: str | Path, norm: str = "linf") -> dict:
    """Accuracy under the exact worst-case attack vs eps, one line per model; the caption says why it
    is exact. Returns ``{model: [(eps, accuracy), ...]}`` read back from the lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=120)
    drawn = _line_plot(ax, curves, f"{NORM_NAMES.get(norm, norm)} eps (pixel units)")
    step = "x - eps y sign(w)" if norm == "linf" else "x - eps y w / ||w||_2"
    ax.set_title(f"Exact worst-case attack {step}\n(optimal for a linear model, so the accuracy is exact)", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return drawn


def plot_boundary_digits(
    digits: dict[str, tuple[torch.Tensor, Sequence[int], torch.Tensor, torch.Tensor]], path: str | Path,
    classes: Sequence[int],
) -> dict:
    """One row per model: its misclassified test images nearest the decision boundary, nearest first.
    ``digits[model] = (images (K, C, H, W), split indices, logits, labels in {-1, +1})``; ``classes``
    are the class names of labels -1 and +1. Returns ``{model: [cell title, ...]}``."""
    plt = _pyplot()
    k = max(1, max(len(v[1]) for v in digits.values()))
    fig, axes = plt.subplots(len(digits), k, figsize=(max(6.0, 1.3 * k + 1.4), 1.6 * len(digits) + 0.7), dpi=110,
                             squeeze=False)
    drawn = {}
    for r, (name, (images, index, logits, labels)) in enumerate(digits.items()):
        for j in range(k):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(index):
                ax.imshow(_gray(images[j]), cmap="gray", vmin=0, vmax=1)
                true = classes[0] if float(labels[j]) < 0 else classes[1]
                ax.set_title(f"#{int(index[j])} ({true})\nlogit {float(logits[j]):+.3g}", fontsize=7)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(name, fontsize=8)
        drawn[name] = [axes[r, j].get_title() for j in range(len(index))]
    fig.suptitle(f"Misclassified test digits nearest the boundary (smallest |w.x+b|)\nlogit > 0 means {classes[1]}, "
                 f"< 0 means {classes[0]}; title: index in the split (true class)", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return drawn


def plot_misclassified_logits(logits: dict[str, dict[str, torch.Tensor]], path: str | Path, bins: int = 20) -> dict:
    """Histograms of ``|w . x + b|`` of misclassified images, i.e. how far on the wrong side of the
    boundary they are (0: on it, large: confidently wrong): one row per condition (``logits[row]``, e.g.
    clean and under the exact attack: then the logit at the attacked image), one panel per model
    (``logits[row][model]``, the logits; scales differ). Returns ``{row: {model: (counts, bin edges)}}``
    read back from the bars."""
    plt = _pyplot()
    cols = max(len(v) for v in logits.values())
    fig, axes = plt.subplots(len(logits), cols, figsize=(4.0 * cols, 2.9 * len(logits)), dpi=120, squeeze=False)
    drawn: dict[str, dict] = {}
    for r, (row, per_model) in enumerate(logits.items()):
        drawn[row] = {}
        for ax, (name, values) in zip(axes[r], per_model.items()):
            v = values.detach().double().abs().numpy()
            _, edges, patches = ax.hist(v, bins=bins if len(v) else 1, color="tab:red", alpha=0.75)
            ax.set_xlim(left=0)
            ax.set_title(f"{name}, {row}: {len(v)} misclassified", fontsize=8)
            ax.set_xlabel("|w . x + b| of a misclassified digit (0 = on the boundary)", fontsize=8)
            ax.set_ylabel("images", fontsize=8)
            drawn[row][name] = ([int(round(p.get_height())) for p in patches], [float(e) for e in edges])
    fig.tight_layout()
    _save(fig, path)
    return drawn


# --------------------------------------------------------------------------- smoothing
def certified_curve(records: Sequence[dict]) -> tuple[list[float], list[float]]:
    """Certified accuracy as a function of the L2 radius r: the fraction of all records predicted
    correctly with radius >= r (abstentions have radius -1 and never count). Exact at every r: returns
    the step function's corners ``(radii, fractions)``, starting at r = 0, one corner per distinct radius
    of a correct record; the fraction at r holds up to and including r, then drops."""
    n = max(1, len(records))
    radii = sorted(float(r["radius"]) for r in records if r["correct"] and float(r["radius"]) >= 0)
    xs = [0.0] + sorted({r for r in radii if r > 0})
    ys = [sum(1 for r in radii if r >= x) / n for x in xs]
    return xs, ys


def plot_certified_curves(records: dict[str, Sequence[dict]], path: str | Path, sigma: float) -> dict:
    """Certified accuracy vs L2 radius (Cohen et al. 2019, Fig. 7 style), one line per model, exact at
    every radius of its results. Returns ``{model: [(radius, fraction), ...]}`` (the corners drawn)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.4, 3.8), dpi=120)
    drawn = {}
    for name, recs in records.items():
        xs, ys = certified_curve(recs)
        # steps-pre: the value at corner x holds on (previous corner, x]; then a drop to 0 after the last
        line = ax.step(xs + [xs[-1] * 1.05 + 0.05], ys + [0.0], where="pre", label=f"{name} ({len(recs)} images)")[0]
        drawn[name] = [(float(x), float(y)) for x, y in line.get_xydata()[:-1]]
    ax.set_xlabel("L2 radius (pixel units)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Gaussian smoothing, sigma = {sigma:g}: fraction correct with radius >= r", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return drawn


def noisy_copies(images: torch.Tensor, sigma: float, copies: int, seed: int = 0) -> torch.Tensor:
    """``copies`` draws of ``x + N(0, sigma^2 I)`` per image, ``(K, copies, C, H, W)``, not clipped (the
    distribution the base classifier sees), from ``torch.Generator().manual_seed(seed)``."""
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((len(images), int(copies)) + tuple(images.shape[1:]), generator=gen, dtype=images.dtype)
    return images[:, None].cpu() + float(sigma) * noise


def plot_noisy_examples(
    images: torch.Tensor, noisy: torch.Tensor, records: Sequence[dict], path: str | Path, sigma: float,
    classes: Sequence[str], base: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """One row per image: the image, titled with its label, the smoothed prediction and certified radius
    from its ``record`` (prediction -1 = abstain), then its noisy copies (shown clipped to [0, 1]),
    titled with the base classifier's prediction on each when ``base`` (images -> classes) is given.
    Returns ``{"images": [first-column titles], "copies": [[copy titles]]}``."""
    plt = _pyplot()
    k, m = noisy.shape[:2]
    fig, axes = plt.subplots(k, m + 1, figsize=(1.25 * (m + 1) + 0.4, 1.45 * k + 0.6), dpi=110, squeeze=False)
    drawn: dict[str, list] = {"images": [], "copies": []}
    for i, rec in enumerate(records):
        pred = int(rec["prediction"])
        said = "abstain" if pred < 0 else f"g: {classes[pred]}, R={float(rec['radius']):.2f}"
        axes[i, 0].imshow(_gray(images[i]), cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_title(f"#{rec['index']} ({classes[int(rec['label'])]})\n{said}", fontsize=7,
                             color="tab:green" if rec["correct"] else "tab:red")
        preds = base(noisy[i]) if base is not None else None
        for j in range(m):
            axes[i, j + 1].imshow(_gray(noisy[i, j]), cmap="gray", vmin=0, vmax=1)
            axes[i, j + 1].set_title("" if preds is None else f"f: {classes[int(preds[j])]}", fontsize=7)
        drawn["images"].append(axes[i, 0].get_title())
        drawn["copies"].append([axes[i, j + 1].get_title() for j in range(m)])
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"Noisy copies at sigma = {sigma:g} (g: smoothed prediction and certified L2 radius; "
                 "f: base classifier on the copy)", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return drawn


# --------------------------------------------------------------------------- markdown
def figures_markdown(figures: Sequence[tuple], heading: str = "### Figures") -> str:
    """Markdown showing each ``(PNG file name, caption, ...)`` (paths relative to the Markdown file)."""
    if not figures:
        return ""
    lines = ["", heading, ""]
    for name, caption, *_ in figures:
        lines += [f"![{Path(name).stem}]({name})", "", f"*{name}*: {caption}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- what each command draws
def attack_figure_set(
    models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], out: Path,
    attack_: str, curve_eps: dict[str, Sequence[float]], grid_images: int, seed: int = 0, prefix: str = "",
    **kwargs,
) -> list[tuple[str, str, Any]]:
    """The attack figures of ``models`` on ``images``: per model, the grid of its first ``grid_images``
    images under :data:`GRID_ATTACKS`; and one accuracy-vs-eps figure (``curve_eps[norm]`` = the eps of
    each norm's curve) with one line per model, attacked by ``attack_`` (``kwargs``: PGD's steps,
    restarts, ...). Writes ``{prefix}adversarial_examples[_{model}].png`` and
    ``{prefix}accuracy_vs_eps.png`` in ``out``; returns ``(file, caption, what was drawn)`` triples."""
    figures = []
    k = min(int(grid_images), len(images))
    for name, model in models.items():
        if k < 1:
            break
        grid = adversarial_grid(model, images[:k], labels[:k], steps=kwargs.get("steps", 40),
                                restarts=kwargs.get("restarts", 1), seed=seed)
        file = f"{prefix}adversarial_examples{'' if len(models) == 1 else '_' + _slug(name)}.png"
        drawn = plot_adversarial_grid(grid, out / file, classes, f"{name}: predictions on clean and adversarial "
                                      "images (green: correct, red: wrong)")
        figures.append((file, f"{name}: the first {k} images, clean and under "
                        + ", ".join(attack_name(*a) for a in GRID_ATTACKS) + ", titled with the model's prediction",
                        drawn))
    curves = {norm: {name: accuracy_curve(model, images, labels, attack_, norm, eps, seed=seed, **kwargs)
                     for name, model in models.items()} for norm, eps in curve_eps.items() if eps}
    if curves:
        file = f"{prefix}accuracy_vs_eps.png"
        drawn = plot_accuracy_curves(curves, out / file, f"Accuracy under {attack_.upper()} on {len(images)} images")
        figures.append((file, f"accuracy under {attack_.upper()} vs eps on {len(images)} images "
                        "(eps = 0: clean accuracy), per norm and model", drawn))
    return figures


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def linear_figure_set(
    models: dict[str, tuple[torch.Tensor, torch.Tensor]], images: torch.Tensor, labels: torch.Tensor,
    classes: Sequence[int], eps_values: Sequence[float], norm: str, k: int, out: Path, attack_eps: float,
) -> list[tuple[str, str, Any]]:
    """The figures of ``vision linear`` for ``models[name] = (w, b)`` on the evaluation split
    (``images``, ``labels``: the whole split; only ``classes`` are used): accuracy under the exact
    worst-case attack at ``eps_values``, the ``k`` misclassified digits nearest the boundary per model
    (titled with their index in the split) and the logit histograms of the misclassified ones, clean and
    under the exact attack at ``attack_eps`` (logits at the attacked images). Writes
    ``linear_attack.png``, ``boundary_digits.png``, ``misclassified_logits.png``; returns
    ``(file, caption, what was drawn)`` triples."""
    index = ((labels == classes[0]) | (labels == classes[1])).nonzero().flatten()
    x = images[index].flatten(1).double()
    y = torch.where(labels[index] == classes[1], 1.0, -1.0).double()
    attacked = f"exact attack eps={attack_eps:g}"
    curves, digits, logits = {}, {}, {"clean": {}, attacked: {}}
    for name, (w, b) in models.items():
        curves[name] = exact_attack_accuracy(w, b, x, y, eps_values, norm)
        logit, near = x @ w + b, boundary_misclassified(w, b, x, y, k)
        digits[name] = (images[index[near]], index[near].tolist(), logit[near], y[near])
        logits["clean"][name] = logit[y * logit <= 0]
        moved = (x + worst_case_perturbation(w, y, float(attack_eps), norm)) @ w + b
        logits[attacked][name] = moved[y * moved <= 0]
    step = "x - eps y sign(w)" if norm == "linf" else "x - eps y w / ||w||_2"
    return [
        ("linear_attack.png", f"accuracy under the worst-case {NORM_NAMES.get(norm, norm)} attack {step} vs eps; "
         "exact for a linear model (no other perturbation in the ball does worse)",
         plot_linear_curves(curves, out / "linear_attack.png", norm)),
        ("boundary_digits.png", f"per model, the {k} misclassified test digits with the smallest |w . x + b|, "
         "titled with their index in the split, true class and logit",
         plot_boundary_digits(digits, out / "boundary_digits.png", classes)),
        ("misclassified_logits.png", "histograms of |w . x + b| of the misclassified test digits per model (how "
         f"confidently wrong), clean and under the exact attack at eps = {attack_eps:g} (at the attacked digit)",
         plot_misclassified_logits(logits, out / "misclassified_logits.png")),
    ]


def certify_figure_set(
    records: Sequence[dict], images: torch.Tensor, classes: Sequence[str], sigma: float, seed: int, out: Path,
    name: str, examples: int = 4, copies: int = 6, base: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[tuple[str, str, Any]]:
    """The figures of a certification run from its ``records`` (``images[i]`` is record ``index`` i):
    ``certified_curve.png`` (certified accuracy vs L2 radius, exact) and, with ``examples`` > 0,
    ``noisy_examples.png`` (the first ``examples`` records' images with ``copies`` noisy copies drawn
    from ``seed`` for the figure only; the smoothed prediction and radius are the records')."""
    drawn = plot_certified_curves({name: records}, out / "certified_curve.png", sigma)
    figures = [("certified_curve.png", "certified accuracy vs L2 radius: the fraction of the images predicted "
                "correctly with a certified radius >= r (exact at every radius of results.jsonl)", drawn)]
    shown = sorted(records, key=lambda r: r["index"])[: max(0, int(examples))]
    if shown and copies > 0:
        picked = images[[int(r["index"]) for r in shown]]
        drawn = plot_noisy_examples(picked, noisy_copies(picked, sigma, copies, seed), shown,
                                    out / "noisy_examples.png", sigma, classes, base)
        figures.append(("noisy_examples.png", f"{len(shown)} images with {copies} noisy copies at sigma = {sigma:g} "
                        f"(drawn for the figure from seed {seed}, shown clipped to [0, 1]), the smoothed prediction g "
                        "and certified radius R from results.jsonl, and the base classifier's class f on each copy",
                        drawn))
    return figures


def attack_command_figures(model: nn.Module, name: str, data: Any, args: Any, out: Path) -> list[tuple[str, str, Any]]:
    """The figures of ``vision attack`` (``data``: an :class:`robusttext_vision.data.ImageData`, ``args``: its
    :class:`robusttext_vision.arguments.AttackArguments`): the model's adversarial-example grid and its accuracy
    under ``args.attack`` vs eps on the first ``args.figure_examples`` images, both norms."""
    if args.figure_examples < 1:
        return []
    n = min(int(args.figure_examples), len(data))
    kwargs = ({"steps": args.steps, "step_size": args.step_size, "restarts": args.restarts,
               "random_init": args.random_init} if args.attack == "pgd" else {})
    return attack_figure_set({name: model}, data.images[:n], data.labels[:n], data.classes, out, args.attack,
                             {"linf": args.curve_linf_eps, "l2": args.curve_l2_eps}, args.grid_images, args.seed,
                             **kwargs)


def compare_figure_set(
    models: dict[str, nn.Module], data: Any, out: Path, certify_dirs: dict[str, Path], sigma: float,
    curve_eps: dict[str, Sequence[float]], seed: int = 0, attack_steps: int = 40, attack_restarts: int = 1,
    figure_examples: int = FIGURE_EXAMPLES, grid_images: int = GRID_IMAGES,
) -> list[tuple[str, str, Any]]:
    """The figures of the three-model comparison (``experiments/vision_compare.py``): the bar chart and
    certified-accuracy grid it already draws, each model's adversarial-example grid (``grid_images`` images),
    accuracy under PGD (``attack_steps`` x ``attack_restarts``, ``seed``) vs eps (``curve_eps[norm]``, pixel units)
    for every model on the first ``figure_examples`` images of ``data``, and the exact certified-accuracy curves
    (Gaussian noise std ``sigma``) from the ``results.jsonl`` in each model's ``certify_dirs`` folder."""
    from robusttext.runs.results import read_jsonl

    figures: list[tuple[str, str, Any]] = [
        ("compare.png", "clean and robust accuracies and the certified fraction, per model", None),
        ("compare_certified.png", f"certified accuracy at radii 0, 0.25, ... (sigma = {sigma})", None)]
    n = min(int(figure_examples), len(data))
    if n >= 1:
        figures += attack_figure_set(models, data.images[:n], data.labels[:n], data.classes, out, "pgd", curve_eps,
                                     grid_images, seed, steps=attack_steps, restarts=attack_restarts)
    records = {name: read_jsonl(Path(d) / "results.jsonl") for name, d in certify_dirs.items()}
    drawn = plot_certified_curves({k: v for k, v in records.items() if v}, out / "compare_certified_curve.png",
                                  sigma)
    figures.append(("compare_certified_curve.png", "certified accuracy vs L2 radius per model, exact at every radius "
                    "of each model's certify/*/results.jsonl (Cohen et al. 2019)", drawn))
    return figures
