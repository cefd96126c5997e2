"""The vision figures show what they claim: each figure's drawn data (read back from its artists) against
oracles computed here - brute force over the sign vertices of an Linf box, argsorts of |logit|, counts
from results.jsonl, the model's own predictions - plus each command writing and linking its PNGs.
Everything runs on scikit-learn's bundled 8x8 digits with linear models (a few seconds)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from robusttext_vision import figures as F
from robusttext_vision.cli import main
from robusttext_vision.data import load_images
from robusttext_vision.linear import binary_task, train_linear

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def linked_pngs(markdown: Path) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown.read_text())


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", "test")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("figure_model")
    assert main(["train", "--dataset", "digits", "--split", "train", "--eval_split", "test", "--arch", "linear",
                 "--epochs", "3", "--lr", "0.01", "--output_dir", str(out)]) == 0
    return str(out)


@pytest.fixture(scope="module")
def model(model_dir):
    from robusttext_vision.models import load_model

    return load_model(model_dir)[0]


# --------------------------------------------------------------------------- linear
def brute_force_accuracy(w, b, x, y, eps):
    """Correct on the whole Linf ball iff correct at its worst vertex: check all 2^d sign vectors."""
    vertices = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=x.shape[1])), dtype=x.dtype)
    ok = [all(float(y[i] * ((x[i] + eps * s) @ w + b)) > 0 for s in vertices) for i in range(len(x))]
    return sum(ok) / len(x)


def test_exact_linear_attack_equals_brute_force_over_sign_vertices():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, generator=g, dtype=torch.float64)
    b = torch.randn((), generator=g, dtype=torch.float64)
    x = torch.rand((200, 4), generator=g, dtype=torch.float64)
    y = torch.where(x @ w + b + 0.3 * torch.randn(200, generator=g, dtype=torch.float64) > 0, 1.0, -1.0).double()
    eps = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4]
    got = F.exact_attack_accuracy(w, b, x, y, eps, "linf")
    want = {e: brute_force_accuracy(w, b, x, y, e) for e in eps}
    assert got == want
    assert len(set(want.values())) >= 4  # the curve really moves over these eps
    assert got[0.0] == float((y * (x @ w + b) > 0).double().mean())  # eps = 0: clean accuracy


@pytest.fixture(scope="module")
def linear_models(digits):
    train = load_images("digits", "train")
    x, y = binary_task(train.images, train.labels, (3, 8))
    return {name: train_linear(x, y, eps, "linf", 3, 0.1, 50, 0)[:2] for name, eps in (("regular", 0.0), ("robust", 0.1))}


def test_linear_figures_boundary_digits_histogram_and_curve(digits, linear_models, tmp_path):
    eps = [0.0, 0.05, 0.1]
    out = F.linear_figure_set(linear_models, digits.images, digits.labels, (3, 8), eps, "linf", 5, tmp_path, 0.1)
    drawn = {file: d for file, _, d in out}
    assert all(is_png(tmp_path / f) for f in drawn)
    index = np.flatnonzero(np.isin(digits.labels.numpy(), (3, 8)))  # the two classes' rows in the split
    x = digits.images.flatten(1).double().numpy()[index]
    y = np.where(digits.labels.numpy()[index] == 8, 1.0, -1.0)
    for name, (w, b) in linear_models.items():
        logit = x @ w.numpy() + float(b)
        wrong = np.flatnonzero(y * logit <= 0)
        assert len(wrong) >= 3, "the toy should have misclassified digits to show"
        nearest = wrong[np.argsort(np.abs(logit[wrong]), kind="stable")[:5]]
        titles = drawn["boundary_digits.png"][name]
        assert [int(re.match(r"#(\d+)", t).group(1)) for t in titles] == index[nearest].tolist()
        assert [float(re.search(r"logit (\S+)", t).group(1)) for t in titles] == pytest.approx(logit[nearest], rel=1e-2)
        # clean, and at the attacked digit: w . (x - eps y sign(w)) + b = logit - eps y ||w||_1
        attacked = logit - 0.1 * y * np.abs(w.numpy()).sum()
        for row, values in (("clean", logit), ("exact attack eps=0.1", attacked)):
            shown = np.abs(values[y * values <= 0])  # how far on the wrong side
            counts, edges = drawn["misclassified_logits.png"][row][name]
            assert sum(counts) == len(shown)
            assert edges[0] - 1e-9 <= shown.min() and shown.max() <= edges[-1] + 1e-9
            # (BLAS may round the extremes one ulp off the edges the figure computed: clip them onto the range)
            assert counts == np.histogram(np.clip(shown, edges[0], edges[-1]), bins=edges)[0].tolist()
        curve = dict(drawn["linear_attack.png"][name])
        assert list(curve) == eps
        assert curve[0.0] == pytest.approx(float(np.mean(y * logit > 0)), abs=1e-12)


def test_boundary_misclassified_is_the_argsort_of_abs_logit():
    g = torch.Generator().manual_seed(1)
    w, b = torch.randn(6, generator=g, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)
    x = torch.randn((300, 6), generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(300, generator=g) < 0.5, 1.0, -1.0).double()
    logit = (x @ w + b).numpy()
    wrong = np.flatnonzero(y.numpy() * logit <= 0)
    want = wrong[np.argsort(np.abs(logit[wrong]))[:7]]
    assert F.boundary_misclassified(w, b, x, y, 7).tolist() == want.tolist()


def test_linear_command_writes_and_links_its_figures(tmp_path):
    assert main(["linear", "--dataset", "digits", "--split", "train", "--eval_split", "test", "--classes", "3", "8",
                 "--epochs", "2", "--eps", "0.1", "--curve_eps", "0", "0.1", "0.2", "--output_dir", str(tmp_path)]) == 0
    links = linked_pngs(tmp_path / "linear.md")
    assert links == ["weights.png", "linear_attack.png", "boundary_digits.png", "misclassified_logits.png"]
    assert all(is_png(tmp_path / f) for f in links)
    assert "exact for a linear model" in (tmp_path / "linear.md").read_text()


# --------------------------------------------------------------------------- attacks
def test_accuracy_curve_starts_at_clean_accuracy_and_falls(model, digits, tmp_path):
    images, labels = digits.images[:60], digits.labels[:60]
    clean = float((model(images).argmax(1) == labels).double().mean())
    for attack in ("fgsm", "pgd"):
        out = F.attack_figure_set({"m": model, "same": model}, images, labels, digits.classes, tmp_path, attack,
                                  {"linf": [0.0, 0.1, 0.3], "l2": [0.0, 1.0]}, 0, steps=10)
        assert [f for f, _, _ in out] == ["accuracy_vs_eps.png"] and is_png(tmp_path / "accuracy_vs_eps.png")
        drawn = out[0][2]
        for norm, eps in (("linf", [0.0, 0.1, 0.3]), ("l2", [0.0, 1.0])):
            assert [x for x, _ in drawn[norm]["m"]] == eps
            assert drawn[norm]["m"][0] == (0.0, clean) and drawn[norm]["same"][0] == (0.0, clean)
        assert drawn["linf"]["m"][-1][1] < clean


def test_adversarial_grid_predictions_are_the_models(model, digits, tmp_path):
    images, labels = digits.images[:5], digits.labels[:5]
    grid = F.adversarial_grid(model, images, labels, steps=10, seed=0)
    drawn = F.plot_adversarial_grid(grid, tmp_path / "grid.png", digits.classes)
    assert is_png(tmp_path / "grid.png")
    assert drawn["rows"] == ["clean"] + [F.attack_name(*a) for a in F.GRID_ATTACKS]
    assert drawn["predictions"][0] == [str(int(c)) for c in model(images).argmax(1)]
    for (attack, norm, eps), (_, adv, _), shown in zip(F.GRID_ATTACKS, grid.rows, drawn["predictions"][1:]):
        dist = (adv - images).flatten(1).abs().amax(1) if norm == "linf" else (adv - images).flatten(1).norm(dim=1)
        assert float(dist.max()) <= eps + 1e-5 and float(adv.min()) >= 0 and float(adv.max()) <= 1
        assert shown == [str(int(c)) for c in model(adv).argmax(1)]
    # L2 eps 5 on 8x8 digits flips every prediction of a linear model under PGD
    assert all(p != str(int(l)) for p, l in zip(drawn["predictions"][2], labels))


def test_figures_are_reproducible_from_the_seed(model, digits, tmp_path):
    images, labels = digits.images[:4], digits.labels[:4]
    for name in ("a", "b"):
        grid = F.adversarial_grid(model, images, labels, steps=5, seed=7)
        F.plot_adversarial_grid(grid, tmp_path / f"{name}.png", digits.classes)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_attack_command_writes_and_links_its_figures(model_dir, tmp_path):
    # the figure sizes are library settings (AttackConfig.figure_examples, .grid_images): set through the library
    from robusttext_vision.pipelines import AttackConfig, run_attack

    config = AttackConfig(attack="pgd", norm="linf", eps=(0.0, 0.1), steps=5, figure_examples=30, grid_images=4,
                          curve_linf_eps=(0.0, 0.2), curve_l2_eps=(0.0, 2.0))
    run_attack(model_dir, load_images("digits", "test", max_examples=40), tmp_path, config)
    links = linked_pngs(tmp_path / "robustness.md")
    assert links == ["adversarial_examples.png", "accuracy_vs_eps.png"]
    assert all(is_png(tmp_path / f) for f in links)
    table = (tmp_path / "robustness.md").read_text()
    acc = json.loads((tmp_path / "robustness.json").read_text())["results"]["0.1"]["accuracy"]
    assert f"| 0.1 | {100 * acc:.1f}% |" in table


# --------------------------------------------------------------------------- smoothing
def test_certified_curve_is_exact_on_known_radii():
    recs = [{"index": i, "correct": c, "radius": r, "prediction": 0, "label": 0}
            for i, (c, r) in enumerate([(True, 0.5), (True, 0.5), (True, 1.25), (False, 2.0), (True, -1.0),
                                        (False, -1.0), (True, 0.0), (True, 0.9)])]
    xs, ys = F.certified_curve(recs)
    assert xs == [0.0, 0.5, 0.9, 1.25]
    assert ys == [5 / 8, 4 / 8, 2 / 8, 1 / 8]


def test_certify_command_figures_match_results_file(model_dir, digits, tmp_path):
    # figure_images is a library setting (ImageCertifyConfig.figure_images): set through the library
    from robusttext_vision.pipelines import ImageCertifyConfig, run_certify

    config = ImageCertifyConfig(sigma=0.25, n0=20, n=200, alpha=0.01, figure_images=3, noisy_copies=4)
    run_certify(model_dir, load_images("digits", "test", max_examples=15), tmp_path, config)
    links = linked_pngs(tmp_path / "report.md")
    assert links == ["certified_curve.png", "noisy_examples.png"]
    assert all(is_png(tmp_path / f) for f in links)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    name = Path(model_dir).name  # the curve's label in the command's figure
    drawn = F.plot_certified_curves({name: records}, tmp_path / "again.png", 0.25)[name]
    radii = sorted({r["radius"] for r in records if r["correct"] and r["radius"] > 0})
    assert [x for x, _ in drawn] == [0.0] + radii
    for x, y in drawn:
        assert y == sum(1 for r in records if r["correct"] and r["radius"] >= x) / len(records)
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "certified_curve.png").read_bytes()


def test_noisy_examples_show_the_records_and_seeded_copies(model, digits, tmp_path):
    images = digits.images[:3]
    a, b, c = (F.noisy_copies(images, 0.5, 4, seed) for seed in (1, 1, 2))
    assert a.shape == (3, 4, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert float((a - images[:, None]).std()) == pytest.approx(0.5, rel=0.1)
    records = [{"index": 0, "label": int(digits.labels[0]), "prediction": int(digits.labels[0]), "radius": 0.4321,
                "correct": True},
               {"index": 1, "label": int(digits.labels[1]), "prediction": -1, "radius": -1.0, "correct": False},
               {"index": 2, "label": int(digits.labels[2]), "prediction": 7, "radius": 0.1, "correct": False}]
    drawn = F.plot_noisy_examples(images, a, records, tmp_path / "n.png", 0.5, digits.classes,
                                  base=lambda x: model(x).argmax(1))
    assert "R=0.43" in drawn["images"][0] and "abstain" in drawn["images"][1] and "g: 7" in drawn["images"][2]
    for i in range(3):
        assert drawn["copies"][i] == [f"f: {int(c)}" for c in model(a[i]).argmax(1)]


def test_compare_experiment_writes_and_links_its_figures(tmp_path):
    # experiments/vision_compare.py: the MNIST study, moved out of the CLI, on 8x8 digits
    from _experiments import load_experiment

    compare = load_experiment("vision_compare")
    args = ["--dataset", "digits", "--train_split", "train", "--eval_split", "test", "--arch", "linear",
            "--epochs", "1", "--lr", "0.01", "--train_steps", "2", "--warmup_epochs", "0", "--sigma", "0.25",
            "--linf_eps", "0.1", "--l2_eps", "1", "--attack_steps", "3", "--attack_examples", "30",
            "--certify_examples", "8", "--n0", "10", "--n", "50", "--alpha", "0.05", "--figure_examples", "20",
            "--grid_images", "3", "--curve_linf_eps", "0", "0.2", "--curve_l2_eps", "0", "2",
            "--output_dir", str(tmp_path)]
    assert compare.main(args) == 0
    links = linked_pngs(tmp_path / "compare.md")
    assert links == ["compare.png", "compare_certified.png", "adversarial_examples_normal.png",
                     "adversarial_examples_pgd_at.png", "adversarial_examples_gaussian.png", "accuracy_vs_eps.png",
                     "compare_certified_curve.png"]
    assert all(is_png(tmp_path / f) for f in links)
    records = {name: [json.loads(line) for line in (tmp_path / "certify" / m / "results.jsonl").read_text().splitlines()]
               for name, m in (("normal", "standard"), ("PGD-AT", "pgd"), ("Gaussian", "gaussian"))}
    drawn = F.plot_certified_curves(records, tmp_path / "again.png", 0.25)
    for name, recs in records.items():
        for x, y in drawn[name]:
            assert y == sum(1 for r in recs if r["correct"] and r["radius"] >= x) / len(recs)
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "compare_certified_curve.png").read_bytes()


@pytest.mark.parametrize("argv, field", [
    (["linear", "--curve_eps", "0", "-0.1"], "--curve_eps"),
    (["attack", "--curve_l2_eps", "-1"], "--curve_l2_eps"),
    (["certify", "--noisy_copies", "-1"], "--noisy_copies"),
])
def test_bad_figure_options_are_refused_naming_the_option(argv, field, tmp_path, capsys):
    assert main([*argv, "--output_dir", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0]
    assert not (tmp_path / "never").exists()


def test_bad_figure_settings_are_refused_by_the_library_naming_the_field():
    from robusttext_vision.pipelines import AttackConfig, ImageCertifyConfig

    with pytest.raises(ValueError, match="--grid_images must be an integer >= 0"):
        AttackConfig(grid_images=-2)
    with pytest.raises(ValueError, match="--figure_examples must be an integer >= 0"):
        AttackConfig(figure_examples=-5)
    with pytest.raises(ValueError, match="--figure_images must be an integer >= 0"):
        ImageCertifyConfig(figure_images=-1)
