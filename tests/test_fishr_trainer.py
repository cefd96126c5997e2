"""FishrTrainer on a tiny BERT: warm-up = ERM exactly, optimizer reset at the switch, EMA state in
checkpoints, evaluation on an unseen domain, bad input, and the ``robusttext train --algorithm fishr`` path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

datasets = pytest.importorskip("datasets")

from robusttext.training.fishr import FISHR_STATE, FishrTrainer, FishrTrainingArguments  # noqa: E402
from robusttext.training.trainer import accuracy_metric  # noqa: E402

WORDS = {0: ["bad", "awful", "dull", "boring"], 1: ["good", "great", "fun", "nice"]}


def toy_rows(domains=("a", "b", "c"), per_domain: int = 8) -> dict:
    rows = {"text": [], "label": [], "domain": []}
    for j, d in enumerate(domains):
        for i in range(per_domain):
            y = i % 2
            rows["text"].append(f"{d} item {WORDS[y][(i + j) % 4]} {WORDS[y][(i + 2 * j + 1) % 4]}")
            rows["label"].append(y)
            rows["domain"].append(d)
    return rows


def make_trainer(tiny_model_dir, tmp_path, train_rows=None, eval_rows=None, p_del=0.5, **kw) -> FishrTrainer:
    from robusttext.training.trainer import TrainingRecipe, build_trainer

    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=6, max_steps=4, learning_rate=1e-3,
        report_to=[], save_strategy="no", logging_steps=1, seed=7, use_cpu=True, disable_tqdm=True,
    )
    args = FishrTrainingArguments(**{**defaults, **kw})
    train = datasets.Dataset.from_dict(train_rows or toy_rows())
    evald = datasets.Dataset.from_dict(eval_rows) if eval_rows else None
    return build_trainer(
        tiny_model_dir, train, ["0", "1"], args, TrainingRecipe(rate=p_del, unit="word", algorithm="fishr"),
        eval_dataset=evald, compute_metrics=accuracy_metric() if evald is not None else None,
    )


def params(trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters()]


def test_warmup_is_erm_then_penalty_with_optimizer_reset_unless_lambda_is_zero(tiny_model_dir, tmp_path):
    erm = make_trainer(tiny_model_dir, tmp_path / "erm", fishr_lambda=0.0)
    erm.train()
    warm = make_trainer(tiny_model_dir, tmp_path / "warm", fishr_lambda=1000.0, fishr_anneal_steps=4)
    warm.train()
    for a, b in zip(params(erm), params(warm)):
        assert torch.equal(a, b)  # penalty weight 0 for all 4 steps: exactly ERM
    assert warm.fishr.updates.tolist() == [4, 4, 4]  # the EMA tracks variances during the warm-up
    steps = {int(s["step"]) for s in warm.optimizer.state.values()}
    assert steps == {4}

    switched = make_trainer(tiny_model_dir, tmp_path / "switch", fishr_lambda=1000.0, fishr_anneal_steps=2)
    switched.train()
    # Adam state was reset before the 3rd step: it has seen steps 3 and 4 only
    assert {int(s["step"]) for s in switched.optimizer.state.values()} == {2}
    assert any(not torch.equal(a, b) for a, b in zip(params(erm), params(switched)))
    logged = [h for h in switched.state.log_history if "fishr_penalty" in h]
    assert [h["fishr_weight"] for h in logged] == [0.0, 0.0, 1000.0, 1000.0]
    assert all(h["fishr_penalty"] >= 0 for h in logged)

    # lambda 0: no penalty to switch on, so no Adam reset at the end of the warm-up: the same model as ERM
    lambda0 = make_trainer(tiny_model_dir, tmp_path / "lambda0", fishr_lambda=0.0, fishr_anneal_steps=2)
    lambda0.train()
    for a, b in zip(params(erm), params(lambda0)):
        assert torch.equal(a, b)
    assert {int(s["step"]) for s in lambda0.optimizer.state.values()} == {4}


def test_every_batch_is_domain_balanced(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, p_del=0.0)
    loader = trainer.get_train_dataloader()
    seen = 0
    for batch in loader:
        assert sorted(batch["domain_ids"].tolist()) == [0, 0, 1, 1, 2, 2]
        seen += 1
    assert seen == 4  # 8 per domain, 2 per domain per batch


def test_checkpoint_holds_ema_state_and_resume_matches(tiny_model_dir, tmp_path):
    full = make_trainer(tiny_model_dir, tmp_path / "full", p_del=0.0, fishr_anneal_steps=1, save_strategy="steps", save_steps=2)
    full.train()
    state = torch.load(tmp_path / "full" / "checkpoint-2" / FISHR_STATE, weights_only=True)
    assert state["updates"].tolist() == [2, 2, 2]
    resumed = make_trainer(tiny_model_dir, tmp_path / "resumed", p_del=0.0, fishr_anneal_steps=1)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert resumed.fishr.updates.tolist() == [4, 4, 4]
    torch.testing.assert_close(resumed.fishr.state, full.fishr.state)
    for a, b in zip(params(full), params(resumed)):
        torch.testing.assert_close(a, b)


def test_evaluate_on_unseen_domain(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, eval_rows=toy_rows(("z",), 6), max_steps=2)
    trainer.train()
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_loss" in metrics


def test_bad_input(tiny_model_dir, tmp_path):
    rows = toy_rows()
    no_domain = {k: v for k, v in rows.items() if k != "domain"}
    with pytest.raises(ValueError, match="no domain column 'domain'.*--domain-column"):
        make_trainer(tiny_model_dir, tmp_path, train_rows=no_domain)
    with pytest.raises(ValueError, match="at least 2 training domains"):
        make_trainer(tiny_model_dir, tmp_path, train_rows=toy_rows(("a",)))
    with pytest.raises(ValueError, match="batch size >= 6"):
        make_trainer(tiny_model_dir, tmp_path, per_device_train_batch_size=4)


def _write_domain_folder(folder, domains=("a", "b", "c"), per_domain=8):
    folder.mkdir()
    rows = toy_rows(domains, per_domain)
    for d in domains:
        with open(folder / f"{d}.jsonl", "w") as fh:
            for t, y, dd in zip(rows["text"], rows["label"], rows["domain"]):
                if dd == d:
                    fh.write(json.dumps({"text": t, "label": y}) + "\n")  # domain comes from the file name
    return folder


def test_cli_train_fishr_with_held_out_domain(tiny_model_dir, tmp_path, capsys):
    from robusttext.cli import main

    data = _write_domain_folder(tmp_path / "data")
    out = tmp_path / "out"
    common = ["--model", tiny_model_dir, "--dataset", str(data), "--max-steps", "2", "--p-del", "0",
              "--per-device-train-batch-size", "4", "--use-cpu", "--report-to", "none", "--save-strategy", "no"]
    rc = main(["train", "--algorithm", "fishr", "--test-domains", "c", "--output-dir", str(out), *common])
    assert rc == 0
    info = json.loads((out / "robusttext_training.json").read_text())
    assert info["algorithm"] == "fishr" and info["test_domains"] == ["c"]
    assert "eval_accuracy" in info["metrics"]
    rc = main(["train", "--algorithm", "fishr", "--test-domains", "books", "--output-dir", str(tmp_path / "o2"), *common])
    assert rc == 2 and "--test-domains ['books'] are not domains of the data" in capsys.readouterr().err
    rc = main(["train", "--algorithm", "fishr", "--test-domains", "b", "c", "--output-dir", str(tmp_path / "o3"), *common])
    assert rc == 2 and "at least 2 training domains" in capsys.readouterr().err
    rc = main(["train", "--algorithm", "fishr", "--hparams", '{"fishr_lambda": -1}', "--output-dir", str(tmp_path / "o4"), *common])
    assert rc == 2 and "--hparams: fishr_lambda must be" in capsys.readouterr().err


def test_new_classification_head_is_seeded(tmp_path, tiny_model_dir):
    # A bare encoder gets a freshly initialised head: same seed, same head; another seed, another head.
    from transformers import BertModel

    bare = tmp_path / "bare"
    BertModel.from_pretrained(tiny_model_dir).save_pretrained(bare)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (Path(tiny_model_dir) / name).exists():
            shutil.copy(Path(tiny_model_dir) / name, bare / name)
    heads = [make_trainer(str(bare), tmp_path / f"run{i}", seed=seed).model.classifier.weight.detach().clone()
             for i, seed in enumerate((7, 7, 8))]
    assert torch.equal(heads[0], heads[1])
    assert not torch.equal(heads[0], heads[2])


def test_freeze_encoder_trains_only_the_head(tiny_model_dir, tmp_path):
    # `robusttext train --freeze-encoder`: the saved encoder is bit-for-bit the starting one, the head moved;
    # the same run without the flag moves the encoder too (so the comparison can fail).
    from transformers import BertForSequenceClassification

    from robusttext.cli import main

    data = _write_domain_folder(tmp_path / "data")
    start = BertForSequenceClassification.from_pretrained(tiny_model_dir)
    common = ["--model", tiny_model_dir, "--dataset", str(data), "--max-steps", "3", "--p-del", "0",
              "--learning-rate", "1e-2", "--per-device-train-batch-size", "4", "--use-cpu", "--report-to", "none",
              "--save-strategy", "no"]
    moved = {}
    for flag in (True, False):
        out = tmp_path / f"out{flag}"
        assert main(["train", "--output-dir", str(out), *common, *(["--freeze-encoder"] if flag else [])]) == 0
        done = BertForSequenceClassification.from_pretrained(out)
        moved[flag] = {name for name, p in done.named_parameters() if not torch.equal(p, start.get_parameter(name))}
    assert moved[True] == {"classifier.weight", "classifier.bias"}
    assert json.loads((tmp_path / "outTrue" / "robusttext_training.json").read_text())["freeze_encoder"] is True
    assert any(name.startswith("bert.encoder.") for name in moved[False])


def test_freeze_encoder_with_fishr(tiny_model_dir, tmp_path):
    from robusttext.training.trainer import TrainingRecipe, build_trainer

    args = FishrTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=6, max_steps=3, learning_rate=1e-2, report_to=[],
        save_strategy="no", logging_steps=1, seed=7, use_cpu=True, disable_tqdm=True, fishr_lambda=1000.0,
    )
    trainer = build_trainer(tiny_model_dir, datasets.Dataset.from_dict(toy_rows()), ["0", "1"],
                            args, TrainingRecipe(rate=0.0, unit="word", algorithm="fishr", freeze_encoder=True))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {"classifier.linear.weight", "classifier.linear.bias"}  # the standardized head
    assert [h["fishr_weight"] for h in trainer.state.log_history if "fishr_weight" in h][-1] == 1000.0


def test_frozen_encoder_stays_in_eval_mode_while_the_head_trains(tiny_model_dir, tmp_path):
    # A linear probe trains on the features it is evaluated on: with the model in training mode the frozen
    # encoder's output is deterministic (no dropout), while the head's own dropout still acts.
    from robusttext.training.trainer import TrainingRecipe, build_trainer

    args = FishrTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True, seed=7)
    model = build_trainer(tiny_model_dir, datasets.Dataset.from_dict(toy_rows()), ["0", "1"],
                          args, TrainingRecipe(rate=0.0, unit="word", freeze_encoder=True)).model
    assert model.config.hidden_dropout_prob > 0  # otherwise this test could not fail
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(tiny_model_dir)(toy_rows()["text"][:6], padding=True, return_tensors="pt")
    model.train()  # what the Trainer does before every step
    with torch.no_grad():
        first, second = model.bert(**batch).pooler_output, model.bert(**batch).pooler_output
        assert torch.equal(first, second)
        model.eval()
        assert torch.equal(model.bert(**batch).pooler_output, first)
        model.train()
        assert not torch.equal(model.dropout(first), first)  # the head's dropout is on


def test_standardized_head_folds_into_the_same_linear_head():
    from robusttext.training.linear_probe import StandardizedHead

    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3).double()
    mean, std = torch.randn(5).double(), torch.rand(5).double() + 0.1
    h = torch.randn(7, 5).double()
    wrapped = StandardizedHead(lin, mean, std)
    expected = (h - mean) / std @ lin.weight.T + lin.bias  # the closed form, written out
    assert torch.allclose(wrapped(h), expected, atol=1e-12)
    assert torch.allclose(wrapped.fold()(h), expected, atol=1e-12)


def test_freeze_encoder_standardizes_the_head_inputs_and_saves_a_plain_head(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from robusttext.training.linear_probe import StandardizedHead, unstandardize_head
    from robusttext.training.trainer import TrainingRecipe, build_trainer

    rows = toy_rows()
    args = FishrTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=6, max_steps=3, learning_rate=1e-2, report_to=[],
        save_strategy="no", seed=7, use_cpu=True, disable_tqdm=True, fishr_lambda=1000.0,
    )
    trainer = build_trainer(tiny_model_dir, datasets.Dataset.from_dict(rows), ["0", "1"],
                            args, TrainingRecipe(rate=0.0, unit="word", algorithm="fishr", freeze_encoder=True))
    model = trainer.model
    assert isinstance(model.classifier, StandardizedHead)
    # The statistics are those of the pooled features of the training texts, computed here through the encoder.
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tok(rows["text"], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        pooled = model.bert(**batch).pooler_output.double()
    assert torch.allclose(model.classifier.mean.double(), pooled.mean(0), atol=1e-5)
    assert torch.allclose(model.classifier.std.double(), pooled.std(0, unbiased=False), atol=1e-5)
    trainer.train()
    model.eval()
    with torch.no_grad():
        trained = model(**batch).logits
    assert unstandardize_head(model) and isinstance(model.classifier, torch.nn.Linear)
    # float32 tolerance: the random tiny model's pooled features vary by ~1e-4, so the folded weights are ~1e4 x
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, trained, atol=1e-4)
    trainer.save_model(str(tmp_path / "saved"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, trained, atol=1e-4)
