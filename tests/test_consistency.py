"""Consistency training (Jeong & Shin 2020): the collator's noisy copies, the loss against hand-computed values,
the Trainer path on a tiny BERT, and the command line's refusals."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")

from _experiments import EXPERIMENTS, load_experiment  # noqa: E402

from robusttext.training.consistency import ConsistencyTrainer, consistency_loss  # noqa: E402
from robusttext.certificate.deletion import DeletionCollator  # noqa: E402
from robusttext.certificate.rates import UniformRate  # noqa: E402

#: Distinct words that MiniLM's WordPiece vocabulary holds as one token each.
VOCAB = ("apple bread chair dance eagle fable giant honey island jelly knife lemon mango night ocean piano queen "
         "river stone table uncle voice water youth zebra album beach cable dream earth flame grape heart image "
         "juice kitchen laser money nurse orange").split()


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def is_subsequence(small: list, big: list) -> bool:
    it = iter(big)
    return all(any(s == b for b in it) for s in small)


def test_copies_are_consecutive_independent_noisy_rows_of_each_example(tokenizer):
    texts = [" ".join(VOCAB[:40]), " ".join(VOCAB[10:30])]
    feats = [{"text": texts[0], "label": 1}, {"text": texts[1], "label": 0}]
    batch = DeletionCollator(tokenizer, 0.5, "word", seed=0, copies=3)(feats)
    assert batch["labels"].tolist() == [1, 1, 1, 0, 0, 0]
    rows = [[t for t, m in zip(ids, mask) if m][1:-1] for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())]
    for i, row in enumerate(rows):
        assert is_subsequence(row, tokenizer(texts[i // 3], add_special_tokens=False)["input_ids"])
    assert len({tuple(r) for r in rows[:3]}) == 3 and len({tuple(r) for r in rows[3:]}) == 3  # each copy its own draw
    # each copy draws its own rate too: 600 copies of one 40-word text under p ~ U[0.7, 0.99] keep a share with
    # std sqrt(0.29^2 / 12 + E[p(1 - p)] / 40) = 0.10; one rate for all the copies of an example gives a binomial
    # std sqrt(p(1 - p) / 40) <= 0.072 whatever p it draws
    many = DeletionCollator(tokenizer, UniformRate(0.7, 0.99), "word", seed=2, copies=600)([{"text": texts[0], "label": 0}])
    share = (many["attention_mask"].sum(1).numpy() - 2) / 40
    assert len(share) == 600 and share.std() > 0.085
    with pytest.raises(ValueError, match="copies"):
        DeletionCollator(tokenizer, 0.5, "word", copies=0)


def test_loss_equals_the_hand_computed_value():
    # two examples, two copies each, three classes; logits = log-probabilities, so softmax gives them back
    q = [(0.5, 0.3, 0.2), (0.1, 0.6, 0.3), (0.2, 0.2, 0.6), (0.2, 0.2, 0.6)]
    logits = torch.tensor([[math.log(v) for v in row] for row in q], dtype=torch.float64)
    labels = torch.tensor([0, 0, 2, 2])
    ce = -(math.log(0.5) + math.log(0.1) + 2 * math.log(0.6)) / 4
    mean1 = (0.3, 0.45, 0.25)  # example 1's mean prediction; example 2's copies agree (KL 0)
    kl = sum(sum(m * math.log(m / c) for m, c in zip(mean1, copy)) for copy in q[:2]) / 4  # over the 4 rows
    entropy = (-sum(m * math.log(m) for m in mean1) - sum(v * math.log(v) for v in q[2])) / 2  # over the 2 examples
    got = consistency_loss(logits, labels, copies=2, consistency_weight=10.0, entropy_weight=0.5)
    assert float(got) == pytest.approx(ce + 10 * kl + 0.5 * entropy, rel=1e-6)
    assert float(consistency_loss(logits, labels, 2, 0.0, 0.0)) == pytest.approx(ce, rel=1e-6)
    with pytest.raises(ValueError, match="not grouped"):  # rows of two examples interleaved
        consistency_loss(logits, torch.tensor([0, 2, 0, 2]), 2, 10.0, 0.5)
    with pytest.raises(ValueError, match="groups"):
        consistency_loss(logits[:3], labels[:3], 2, 10.0, 0.5)


def toy_rows(n: int = 16) -> dict:
    good, bad = ["good", "great", "fun", "nice"], ["bad", "awful", "dull", "boring"]
    return {"text": [f"the {(good if i % 2 else bad)[i % 4]} film was {(good if i % 2 else bad)[(i + 1) % 4]}" for i in range(n)],
            "label": [i % 2 for i in range(n)]}


def train_tiny(tiny_model_dir, tmp_path, **consistency):
    from transformers import TrainingArguments

    from robusttext.training.trainer import TrainingRecipe, build_trainer

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3, learning_rate=1e-3,
                             report_to=[], save_strategy="no", seed=3, use_cpu=True, disable_tqdm=True)
    trainer = build_trainer(tiny_model_dir, datasets.Dataset.from_dict(toy_rows()), ["0", "1"],
                            args, TrainingRecipe(rate=0.5, **consistency))
    rows = []
    trainer.model.register_forward_pre_hook(lambda module, a, kw: rows.append(kw["input_ids"].shape[0]), with_kwargs=True)
    trainer.train()
    return trainer, rows


def test_trainer_feeds_copies_and_the_weights_reach_the_gradient(tiny_model_dir, tmp_path):
    plain, plain_rows = train_tiny(tiny_model_dir, tmp_path / "plain")
    assert type(plain) is not ConsistencyTrainer and plain_rows == [4, 4, 4]
    no_weight, rows = train_tiny(tiny_model_dir, tmp_path / "w0", noise_copies=2)
    assert isinstance(no_weight, ConsistencyTrainer) and rows == [8, 8, 8]  # 4 examples x 2 copies a step
    weighted, _ = train_tiny(tiny_model_dir, tmp_path / "w10", noise_copies=2, consistency_weight=10.0, entropy_weight=0.5)
    # the same noise and order (same seeds): only the loss differs, and with it the parameters
    diffs = [float((a - b).detach().abs().max()) for a, b in zip(no_weight.model.parameters(), weighted.model.parameters())]
    assert max(diffs) > 1e-4


def run_experiment(*argv: str, cwd) -> subprocess.CompletedProcess:
    """``python experiments/train_text.py ARGV``: robusttext train with the consistency fields of TrainingRecipe."""
    return subprocess.run([sys.executable, str(EXPERIMENTS / "train_text.py"), *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


def test_cli_trains_with_copies_records_them_and_refuses_bad_settings(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from transformers import BertForSequenceClassification

    from robusttext.cli import main

    train_text = load_experiment("train_text").main  # robusttext train + TrainingRecipe's consistency fields
    data = tmp_path / "train.jsonl"
    rows = toy_rows()
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(rows["text"], rows["label"])))
    common = ["--model", tiny_model_dir, "--dataset", str(data), "--max_steps", "2",
              "--per_device_train_batch_size", "4", "--use_cpu", "--report_to", "none", "--p-del", "0.5"]
    seen, forward = [], BertForSequenceClassification.forward  # the rows each forward pass gets (transformers' class)

    @functools.wraps(forward)  # keeps forward's signature, which the Trainer inspects
    def counting(self, *a, **kw):
        seen.append(kw["input_ids"].shape[0])
        return forward(self, *a, **kw)

    monkeypatch.setattr(BertForSequenceClassification, "forward", counting)
    assert train_text([*common, "--output_dir", str(tmp_path / "m"), "--noise-copies", "2", "--consistency-weight", "10",
                       "--entropy-weight", "0.5"]) == 0
    assert seen == [8, 8]  # 4 articles x 2 copies, 2 steps
    info = json.loads((tmp_path / "m" / "robusttext_training.json").read_text())
    assert (info["noise_copies"], info["consistency_weight"], info["entropy_weight"]) == (2, 10.0, 0.5)
    assert np.isfinite(info["metrics"]["train_loss"])
    monkeypatch.undo()
    for extra, field in ((["--noise-copies", "0"], "--noise-copies"), (["--consistency-weight", "5"], "--consistency-weight"),
                         (["--noise-copies", "2", "--entropy-weight", "-1"], "--entropy-weight"),
                         (["--noise-copies", "2", "--algorithm", "fishr"], "--algorithm erm"),
                         (["--noise-copies", "2", "--p-del", "0"], "--noise-copies > 1 needs deletion noise")):
        bad = run_experiment(*common, "--output_dir", str(tmp_path / "bad"), *extra, cwd=tmp_path)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert field in bad.stderr.strip().splitlines()[-1], bad.stderr
    capsys.readouterr()
    for flag in ("--noise-copies", "--consistency-weight", "--entropy-weight"):  # not options of the product command
        assert main(["train", *common, "--output_dir", str(tmp_path / "bad"), flag, "2"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"unknown option {flag}" in err[0], err
