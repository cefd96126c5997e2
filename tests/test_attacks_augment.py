"""Adversarial augmentation in the training data path: TextAttack augmenters on the fly, per-example rate,
deterministic for a seed, off in eval mode, hooked into ``robusttext train``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from _attack_helpers import levenshtein, read_tsv

if importlib.util.find_spec("textattack") is None:
    pytest.skip("textattack not installed: the augmentation tests need the [attacks] extra (transformers<5: pip install -c .ci/constraints.txt -e '.[all]')", allow_module_level=True)


def test_augment_args_are_checked():
    from robusttext.training.augment import Augmentation

    with pytest.raises(ValueError, match="cannot run offline"):
        Augmentation(augment="embedding")
    with pytest.raises(ValueError, match="unknown augmenter"):
        Augmentation(augment="typo")
    with pytest.raises(ValueError, match="--augment-rate"):
        Augmentation(augment="charswap", augment_rate=1.5)


def _features(data_dir, n):
    return [{"text": t, "label": int(y)} for t, y in read_tsv(Path(data_dir) / "sst2" / "test.tsv")[:n]]


def test_deepwordbug_augmentation_edits_characters_of_a_few_words(data_dir):
    from robusttext.training.augment import Augmentation as AugmentArguments
    from robusttext.training.augment import AugmentingCollator

    feats = _features(data_dir, 12)
    aug = AugmentArguments(augment="deepwordbug", augment_rate=1.0, augment_words_pct=0.2)
    a = AugmentingCollator(lambda fs: fs, aug, seed=0)(feats)
    b = AugmentingCollator(lambda fs: fs, aug, seed=0)(feats)
    assert a == b  # deterministic for a seed
    changed = 0
    for f, g in zip(feats, a):
        assert g["label"] == f["label"]
        w0, w1 = f["text"].split(), g["text"].split()
        assert len(w0) == len(w1)  # character edits inside words: the word count is kept
        diff = [(x, y) for x, y in zip(w0, w1) if x != y]
        changed += bool(diff)
        assert len(diff) <= max(1, round(0.2 * len(w0))) + 1
        assert all(levenshtein(x, y) <= 2 for x, y in diff)  # one swap/substitution/insertion/deletion
    assert changed >= 10
    # rate 0, or inactive (eval mode): untouched
    assert AugmentingCollator(lambda fs: fs, AugmentArguments(augment="charswap", augment_rate=0.0))(feats) == feats
    off = AugmentingCollator(lambda fs: fs, aug, active=lambda: False)
    assert off(feats) == feats


def test_train_with_augmentation_runs(tiny_model_dir, data_dir, tmp_path):
    from transformers import TrainingArguments

    from robusttext.runs.data import DataSpec
    from robusttext.training.augment import Augmentation
    from robusttext.training.trainer import TrainingRecipe, train_classifier

    data = DataSpec(str(Path(data_dir) / "sst2"), "train", max_examples=64)
    args = TrainingArguments(output_dir=str(tmp_path / "m"), max_steps=2, per_device_train_batch_size=16,
                             report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True)
    train_classifier(tiny_model_dir, data, args, TrainingRecipe(rate=0.5, max_length=32),
                     augmentation=Augmentation(augment="charswap", augment_rate=0.5))
    assert (tmp_path / "m" / "config.json").exists()
