"""Shared helpers of the attack / cross-check / evaluate tests: a tiny BERT trained briefly on real SST-2
(cached per session), short real SST-2 test sentences, and an independent
Levenshtein oracle."""

from __future__ import annotations

import csv
from pathlib import Path

_CACHE: dict[str, str] = {}


def levenshtein(a, b) -> int:
    """Textbook O(len(a) len(b)) dynamic programme (Wagner & Fischer 1974): the test oracle."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def read_tsv(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[0], r[1]) for r in rows[1:]]


def short_sst2(data_dir: Path, out_dir: Path, n: int, max_words: int = 12) -> str:
    """The first ``n`` SST-2 test sentences with at most ``max_words`` words, as a TSV in ``out_dir``."""
    rows = [(t, y) for t, y in read_tsv(Path(data_dir) / "sst2" / "test.tsv") if len(t.split()) <= max_words][:n]
    path = Path(out_dir) / "sst2_short.tsv"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("sentence\tlabel\n")
        for t, y in rows:
            fh.write(f"{t}\t{y}\n")
    return str(path)


def trained_tiny_model(tmp_path_factory, tiny_model_dir: str, data_dir: Path, p_del: float = 0.0) -> str:
    """``tiny_model_dir`` (random tiny BERT) trained for 2 epochs on 3,000 real SST-2 training phrases
    (~70% test accuracy: weak, so attacks succeed, but not constant)."""
    key = f"{tiny_model_dir}:{p_del}"
    if key in _CACHE:
        return _CACHE[key]
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from robusttext.runs.data import load_text_dataset
    from robusttext.certificate.deletion import DeletionCollator

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_trained")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    ds = load_text_dataset(str(Path(data_dir) / "sst2"), "train", max_examples=3000).dataset
    args = TrainingArguments(
        output_dir=str(out / "ckpt"), per_device_train_batch_size=32, num_train_epochs=2, learning_rate=2e-3,
        warmup_ratio=0.1, report_to="none", save_strategy="no", logging_strategy="no", remove_unused_columns=False,
        seed=0, use_cpu=True, disable_tqdm=True,
    )
    collator = DeletionCollator(tok, p_del, "word", max_length=64, seed=0)
    Trainer(model=model, args=args, train_dataset=ds, data_collator=collator).train()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    _CACHE[key] = str(out)
    return str(out)


def evaluated_run(tmp_path_factory, tiny_model_dir: str, data_dir: Path) -> tuple[str, str, float]:
    """``evaluate_model`` on 30 short real SST-2 test sentences with the tiny trained model: certify at
    p_del = 0.7 (radii 0-1 words), DeepWordBug against the smoothed (20 samples per query) and the base
    model, alpha = 0.01. Returns (output dir, model dir, p_del); cached per session."""
    key = f"evaluated:{tiny_model_dir}"
    if key in _CACHE:
        return _CACHE[key]  # type: ignore[return-value]
    from robusttext import CertifyProtocol, SmoothedTextClassifier
    from robusttext.evaluation.attacks import AttackConfig
    from robusttext.evaluation.evaluate import EvaluateConfig, evaluate_model
    from robusttext.runs.data import DataSpec

    model = trained_tiny_model(tmp_path_factory, tiny_model_dir, data_dir)
    tmp = tmp_path_factory.mktemp("evaluate")
    dataset = short_sst2(data_dir, tmp, 30)
    out = str(tmp / "out")
    clf = SmoothedTextClassifier.from_pretrained(model, p_del=0.7, unit="word", max_length=64, batch_size=64, seed=0,
                                                 autocast_dtype="auto")
    evaluate_model(clf, DataSpec(dataset, "test", max_examples=30), out, CertifyProtocol(n0=50, n=400, alpha=0.01),
                   AttackConfig("deepwordbug", n=20), EvaluateConfig(attack_target="both", confirm_n=400), model=model)
    _CACHE[key] = (out, model, 0.7)  # type: ignore[assignment]
    return out, model, 0.7
