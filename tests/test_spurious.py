"""The constructed spurious-marker benchmark: counted agreement and noise rates, the oracle variant,
reproducibility, errors; the sweep's spurious mode end to end on a tiny model; and a synthetic
two-environment problem whose invariant feature Fishr recovers where ERM (lambda = 0) does not."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _experiments import load_experiment
from robusttext.training.fishr import FishrPenalty
from robusttext.dg.spurious import ORACLE, SpuriousSpec, parse_spec, spurious_environments


def _within(count: int, n: int, p: float, z: float = 4.5) -> bool:
    return abs(count / n - p) <= z * math.sqrt(p * (1 - p) / n)


def _corpus(n: int = 6000, seed: int = 0) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).tolist()
    return [f"review {i} {'good' if y else 'bad'}" for i, y in enumerate(labels)], labels


def test_environments_have_the_stated_agreement_and_noise_rates():
    texts, labels = _corpus()
    spec = SpuriousSpec(markers=("alpha", "omega"), agreements=(0.9, 0.8, 0.1), label_noise=0.25, seed=4)
    rows = spurious_environments(texts, labels, spec)
    assert [sum(r["domain"] == d for r in rows) for d in spec.names()] == [2000, 2000, 2000]
    by_text = dict(zip(texts, labels))
    for name, agree in zip(spec.names(), spec.agreements):
        env = [r for r in rows if r["domain"] == name]
        # counted from the text itself: the first word is the marker, the rest the original review
        marker_says = [spec.markers.index(r["text"].split(" ", 1)[0]) for r in env]
        assert marker_says == [r["marker"] for r in env]
        assert _within(sum(m == r["label"] for m, r in zip(marker_says, env)), len(env), agree)
        originals = [by_text[r["text"].split(" ", 1)[1]] for r in env]
        assert originals == [r["clean_label"] for r in env]
        assert _within(sum(o != r["label"] for o, r in zip(originals, env)), len(env), 0.25)
    assert len({r["text"] for r in rows}) == len(rows)  # every review used once


def test_oracle_variant_drops_only_the_marker_and_seed_fixes_everything():
    texts, labels = _corpus(600)
    spec = SpuriousSpec(seed=1)
    marked = spurious_environments(texts, labels, spec)
    plain = spurious_environments(texts, labels, spec, with_marker=False)
    assert [r["text"] for r in plain] == [r["text"].split(" ", 1)[1] for r in marked]
    assert [(r["label"], r["domain"], r["marker"]) for r in plain] == [(r["label"], r["domain"], r["marker"]) for r in marked]
    assert marked == spurious_environments(texts, labels, spec)
    assert marked != spurious_environments(texts, labels, SpuriousSpec(seed=2))
    assert ORACLE not in ("erm", "fishr")


@pytest.mark.parametrize(
    "args, match",
    [
        (("alpha", "0.9,0.8,0.1", 0.25), "two single-word markers"),
        (("alpha,alpha", "0.9,0.8,0.1", 0.25), "markers must differ"),
        (("a b,c", "0.9,0.8,0.1", 0.25), "two single-word markers"),
        (("a,b", "0.9,0.1", 0.25), "--spurious-agreements needs >= 3"),
        (("a,b", "0.9,x,0.1", 0.25), "--spurious-agreements must be comma-separated"),
        (("a,b", "0.9,0.8,1.1", 0.25), "--spurious-agreements"),
        (("a,b", "0.9,0.8,0.1", 0.5), "--spurious-label-noise"),
    ],
)
def test_bad_specs_are_clear_errors(args, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(*args, seed=0)


def test_non_binary_labels_are_refused():
    with pytest.raises(ValueError, match="binary labels"):
        spurious_environments(["a", "b", "c"], [0, 1, 2], SpuriousSpec())


# ----------------------------------------------------------------- the sweep's spurious mode (tiny)
def test_dg_spurious_experiment_holds_out_the_anti_correlated_environment(tiny_model_dir, tmp_path, capsys):
    # experiments/dg_spurious.py: the spurious-marker benchmark through the library's sweep (a tiny run)
    main = load_experiment("dg_spurious").main
    texts, labels = _corpus(90)
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels)))
    out = tmp_path / "o"
    argv = ["--model", tiny_model_dir, "--dataset", str(tmp_path / "d.jsonl"), "--spurious", "alpha,omega",
            "--max-steps", "1", "--per-device-train-batch-size", "4", "--use-cpu", "--report-to", "none",
            "--output-dir", str(out), "--max-length", "16", "--disable-tqdm", "true"]
    assert main(argv) == 0
    res = json.loads((out / "dg_results.json").read_text())
    assert res["heldout"] == ["env2-agree10"] and res["algorithms"] == ["erm", "fishr", ORACLE]
    assert all(r["train_domains"] == ["env0-agree90", "env1-agree80"] for r in res["runs"])
    assert "| erm-nomarker |" in (out / "dg_report.md").read_text()
    capsys.readouterr()
    assert main([*argv, "--spurious_agreements", "0.9,0.1"]) == 2  # the benchmark's own checks, one line
    assert "--spurious-agreements needs >= 3" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["dg_spurious", "dg_spurious_probe"])
def test_dg_spurious_experiment_configs_parse(name):
    # Every key of the experiment's configs is an option of experiments/dg_spurious.py
    from robusttext.cli.arguments import DGArguments, HparamsArguments, ModelDataArguments, SmoothingArguments
    from robusttext.config import parse
    from robusttext.training.fishr import DomainTrainingArguments

    module = load_experiment("dg_spurious")
    config = Path(__file__).resolve().parents[1] / "experiments" / f"{name}.yaml"
    *_, dg, args, hp, sp = parse(
        (ModelDataArguments, SmoothingArguments, DGArguments, DomainTrainingArguments, HparamsArguments,
         module.SpuriousArguments), ["--config", str(config)], "experiments/dg_spurious.py")
    assert dg.freeze_encoder is (name == "dg_spurious_probe") and sp.spurious == "alpha,omega"
    assert args.output_dir.startswith("runs/") and json.loads(hp.hparams)["fishr_lambda"] == 10000


# ----------------------------------------------------------------- Fishr recovers a known invariant feature
def _env(n: int, e: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Colored MNIST in two dimensions: x0 = the clean label (+-1), y = it flipped w.p. 0.25, x1 = a
    colour (+-1) equal to y flipped w.p. e. x0 predicts y at 75% everywhere; x1 at 1 - e."""
    clean = rng.integers(0, 2, n)
    y = clean ^ (rng.random(n) < 0.25)
    colour = y ^ (rng.random(n) < e)
    x = np.stack([2 * clean - 1 + 0.3 * rng.standard_normal(n), 2 * colour - 1], 1)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def _train(lam: float, seed: int) -> float:
    """Full-batch Adam on a 2-16-16-1 MLP with the core Fishr penalty (EMA off) at weight ``lam`` from
    step 50 (the loss divided by it, as in the IRM protocol); returns the accuracy on the test
    environment, where the colour agrees with the label only 10% of the time."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    (x0, y0), (x1, y1), (xt, yt) = _env(2000, 0.2, rng), _env(2000, 0.1, rng), _env(2000, 0.9, rng)
    x, y = torch.cat([x0, x1]), torch.cat([y0, y1])
    dom = torch.cat([torch.zeros(2000), torch.ones(2000)]).long()
    body = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    head = nn.Linear(16, 1)
    params = [*body.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    for step in range(300):
        h = body(x)
        z = head(h).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(z, y) + 1e-3 * sum(p.pow(2).sum() for p in params)
        w = lam if step >= 50 else 0.0
        if w > 0:
            pen = FishrPenalty(2, ema=0.0, sync=False)(h, torch.stack([torch.zeros_like(z), z], 1), y.long(), dom)
            loss = (loss + w * pen) / max(1.0, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(((head(body(xt)).squeeze(-1) > 0).float() == yt).float().mean())


def test_fishr_recovers_the_invariant_feature_where_erm_does_not():
    fishr = [_train(1e4, s) for s in range(3)]
    erm = [_train(0.0, s) for s in range(3)]
    # using the colour gives ~10% at test, the invariant feature 75%: ERM sits near the first
    assert max(erm) < 0.2
    assert np.mean(fishr) > 0.5 and min(fishr) > 0.35
