"""Fine-tuning under deletion noise with a ``transformers.Trainer`` (the Trainer glue lives here).

``train_classifier`` is what ``robusttext train`` and ``scripts/finetune_rsdel.py`` run: it loads the
data and model, puts a :class:`~robusttext.deletion.DeletionCollator` in the Trainer's data path (fresh
noise every batch, the same mechanism certification uses), trains with the user's
``TrainingArguments`` (so ``accelerate launch``, mixed precision, gradient accumulation and
checkpoints all work as in any Trainer run), resumes from the last checkpoint in ``output_dir``, and
saves model + tokenizer for ``robusttext certify``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .arguments import ModelDataArguments, SmoothingArguments, TrainArguments
from .deletion import DeletionCollator, check_deletion_args

logger = logging.getLogger("robusttext")

TRAINING_INFO = "robusttext_training.json"


def accuracy_metric() -> Any:
    """``compute_metrics`` for the Trainer, backed by the local ``evaluate`` accuracy module."""
    from .metrics import load_metric

    metric = load_metric("accuracy")

    def compute(eval_pred: Any) -> dict:
        logits, labels = eval_pred
        preds = np.asarray(logits).argmax(axis=-1)
        return metric.compute(predictions=preds.tolist(), references=np.asarray(labels).tolist())

    return compute


def trainer_class(algorithm: str) -> type:
    """The Trainer class implementing ``--algorithm``."""
    from transformers import Trainer

    if algorithm == "erm":
        return Trainer
    raise ValueError(f"--algorithm must be 'erm', got {algorithm!r}")


def train_classifier(
    data: ModelDataArguments, smooth: SmoothingArguments, train: TrainArguments, args: Any
) -> dict:
    """Fine-tune ``data.model`` on ``data.dataset`` under deletion noise; returns the final metrics.

    ``args`` is a ``transformers.TrainingArguments``; ``remove_unused_columns`` is forced off so the
    raw text reaches the collator. With ``smooth.p_del == 0`` the model trains without noise.
    """
    from transformers import Trainer
    from transformers.trainer_utils import get_last_checkpoint

    from .data import load_text_dataset
    from .models import load_classifier

    check_deletion_args(smooth.p_del, smooth.unit, allow_zero=True)
    train_data = load_text_dataset(
        data.dataset, data.split, data.dataset_config, data.text_column, data.label_column,
        max_examples=data.max_examples,
    )
    if len(train_data) == 0:
        raise ValueError(f"--dataset {data.dataset} split {data.split!r} is empty")
    eval_data = None
    if train.eval_split:
        eval_data = load_text_dataset(
            data.dataset, train.eval_split, data.dataset_config, data.text_column, data.label_column,
            label_names=train_data.label_names,
        )
    model, tokenizer = load_classifier(
        data.model, label_names=train_data.label_names, ignore_mismatched_sizes=train.ignore_mismatched_sizes
    )
    collator = DeletionCollator(tokenizer, smooth.p_del, smooth.unit, data.max_length, seed=args.seed)
    args.remove_unused_columns = False
    cls = trainer_class(train.algorithm)
    if not issubclass(cls, Trainer):  # pragma: no cover - guards future algorithms
        raise TypeError(f"{cls} is not a transformers.Trainer")
    trainer = cls(
        model=model,
        args=args,
        train_dataset=train_data.dataset,
        eval_dataset=eval_data.dataset if eval_data is not None else None,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=accuracy_metric() if eval_data is not None else None,
    )
    last = None
    if Path(args.output_dir).is_dir() and not args.overwrite_output_dir:
        last = get_last_checkpoint(args.output_dir)
        if last:
            logger.warning("resuming training from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    metrics = dict(result.metrics)
    if eval_data is not None:
        metrics.update(trainer.evaluate())
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        info = {
            "model": data.model,
            "dataset": data.dataset,
            "dataset_config": data.dataset_config,
            "split": data.split,
            "p_del": smooth.p_del,
            "unit": smooth.unit,
            "algorithm": train.algorithm,
            "label_names": train_data.label_names,
            "metrics": metrics,
        }
        Path(args.output_dir, TRAINING_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return metrics
