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
    if algorithm == "fishr":
        from .fishr import FishrTrainer

        return FishrTrainer
    raise ValueError(f"--algorithm must be 'erm' or 'fishr', got {algorithm!r}")


def build_trainer(
    model_name: str,
    train_dataset: Any,
    label_names: list[str],
    smooth: SmoothingArguments,
    args: Any,
    algorithm: str = "erm",
    eval_dataset: Any = None,
    max_length: int | None = None,
    compute_metrics: Any = None,
    domains: list[str] | None = None,
    ignore_mismatched_sizes: bool = False,
    train_head_only: bool = False,
    noise_copies: int = 1,
    consistency_weight: float = 0.0,
    entropy_weight: float = 0.0,
) -> Any:
    """The Trainer of ``algorithm`` for ``model_name`` with a :class:`DeletionCollator` in the data path
    (``smooth.p_del = 0``: clean batches). ``domains`` (Fishr) fixes the training domains' id order;
    ``train_head_only`` freezes the encoder and standardizes the head's inputs on the training texts
    (:mod:`robusttext.linear_probe`). ``noise_copies > 1`` or a consistency or entropy weight above 0 train
    ERM with :class:`~robusttext.consistency.ConsistencyTrainer` (refused with another algorithm or without
    noise)."""
    from transformers import Trainer, set_seed

    from .consistency import check_consistency_args
    from .models import load_classifier

    rate = smooth.training_rate()
    check_consistency_args(noise_copies, consistency_weight, entropy_weight, algorithm, rate)
    consistency = noise_copies > 1 or consistency_weight > 0 or entropy_weight > 0
    # Seed before loading: a checkpoint without a classification head (e.g. the embedded MiniLM encoder) gets
    # a randomly initialised one, which the Trainer's own seeding, done later, would leave unseeded.
    set_seed(args.seed)
    model, tokenizer = load_classifier(model_name, label_names=label_names, ignore_mismatched_sizes=ignore_mismatched_sizes)
    if train_head_only:
        from .linear_probe import freeze_encoder, standardize_head

        freeze_encoder(model)
        standardize_head(model.to(args.device), tokenizer, train_dataset["text"], max_length)
    collator = DeletionCollator(tokenizer, rate, smooth.unit, max_length, seed=args.seed, copies=noise_copies)
    args.remove_unused_columns = False
    cls = trainer_class(algorithm)
    if not issubclass(cls, Trainer):  # pragma: no cover - guards future algorithms
        raise TypeError(f"{cls} is not a transformers.Trainer")
    extra: dict = {"domains": domains} if algorithm == "fishr" and domains is not None else {}
    if consistency:
        from .consistency import ConsistencyTrainer

        cls, extra = ConsistencyTrainer, {"copies": noise_copies, "consistency_weight": consistency_weight, "entropy_weight": entropy_weight}
    return cls(
        model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, data_collator=collator,
        processing_class=tokenizer, compute_metrics=compute_metrics, **extra,
    )


def save_rate_schedule(rate: Any, model_dir: str) -> None:
    """Record the deletion rate a model was trained under as its ``rate_schedule.json`` (certify's default);
    nothing for clean training (rate 0) or a training-only schedule (AdaptDel+'s uniform draws: ``robusttext
    tune-rates`` writes the certification schedule)."""
    from .rates import as_schedule

    if isinstance(rate, float) and rate == 0.0:
        return
    schedule = as_schedule(rate)
    if schedule.certifiable:
        schedule.save(model_dir)


def load_training_splits(data: ModelDataArguments, train: TrainArguments, args: Any) -> tuple[Any, Any, Any]:
    """The labelled training data (its ``label_names`` fix the head) and the train and eval
    ``datasets.Dataset`` s: ``--eval-split`` when given; with ``--test-domains`` the held-out domains leave the
    training set and, without an eval split, become it."""
    from .data import load_text_dataset

    test_domains = list(getattr(train, "test_domains", None) or [])
    domain_column = getattr(args, "domain_column", "domain")
    use_domains = train.algorithm == "fishr" or bool(test_domains)
    train_data = load_text_dataset(
        data.dataset, data.split, data.dataset_config, data.text_column, data.label_column,
        domain_column=domain_column if use_domains else None, max_examples=data.max_examples,
    )
    if len(train_data) == 0:
        raise ValueError(f"--dataset {data.dataset} split {data.split!r} is empty")
    eval_data = None
    if train.eval_split:
        eval_data = load_text_dataset(
            data.dataset, train.eval_split, data.dataset_config, data.text_column, data.label_column,
            label_names=train_data.label_names,
        )
    train_ds, eval_ds = train_data.dataset, eval_data.dataset if eval_data is not None else None
    if test_domains:
        train_ds, eval_ds = hold_out_domains(train_ds, eval_ds, test_domains)
    return train_data, train_ds, eval_ds


def hold_out_domains(train_ds: Any, eval_ds: Any, test_domains: list[str]) -> tuple[Any, Any]:
    """``train_ds`` without the ``test_domains`` (refused unless a training domain is left), and the eval
    set: ``eval_ds`` when given, else the held-out domains' examples."""
    from .domain_data import check_heldout, training_domains

    check_heldout(training_domains(train_ds), test_domains, min_train=1)
    held = set(test_domains)
    if eval_ds is None:
        eval_ds = train_ds.filter(lambda d: d in held, input_columns="domain")
    train_ds = train_ds.filter(lambda d: d not in held, input_columns="domain")
    return train_ds, eval_ds


def last_checkpoint(args: Any) -> str | None:
    """The checkpoint to resume from: the last one in ``args.output_dir`` unless ``overwrite_output_dir``."""
    from transformers.trainer_utils import get_last_checkpoint

    from .compat import overwrite_requested

    last = None
    if Path(args.output_dir).is_dir() and not overwrite_requested(args):
        last = get_last_checkpoint(args.output_dir)
        if last:
            logger.warning("resuming training from %s", last)
    return last


def save_training_info(
    data: ModelDataArguments, smooth: SmoothingArguments, train: TrainArguments, args: Any, rate: Any,
    label_names: list[str], metrics: dict,
) -> None:
    """Write the model folder's ``rate_schedule.json`` and ``robusttext_training.json`` (what it was
    trained on, under which noise and algorithm, by how many processes, and its final metrics)."""
    save_rate_schedule(rate, args.output_dir)
    info = {
        "model": data.model,
        "dataset": data.dataset,
        "dataset_config": data.dataset_config,
        "split": data.split,
        "p_del": rate if isinstance(rate, float) else None,
        "rate_schedule": None if isinstance(rate, float) else rate.to_dict(),
        "unit": smooth.unit,
        "algorithm": train.algorithm,
        "freeze_encoder": bool(getattr(train, "freeze_encoder", False)),
        "test_domains": list(getattr(train, "test_domains", None) or []),
        "noise_copies": int(getattr(train, "noise_copies", 1)),
        "consistency_weight": float(getattr(train, "consistency_weight", 0.0)),
        "entropy_weight": float(getattr(train, "entropy_weight", 0.0)),
        "label_names": label_names,
        "world_size": args.world_size,  # processes that trained it (torchrun / accelerate launch)
        "metrics": metrics,
    }
    Path(args.output_dir, TRAINING_INFO).write_text(json.dumps(info, indent=2) + "\n")


def train_classifier(
    data: ModelDataArguments, smooth: SmoothingArguments, train: TrainArguments, args: Any, augment: Any = None
) -> dict:
    """Fine-tune ``data.model`` on ``data.dataset`` under deletion noise; returns the final metrics.

    ``args`` is a ``transformers.TrainingArguments``; ``remove_unused_columns`` is forced off so the
    raw text reaches the collator. With ``smooth.p_del == 0`` the model trains without noise.
    ``augment`` (an ``AugmentArguments``) adds TextAttack augmentation before the deletion noise.
    """
    from .consistency import check_consistency_args

    rate = smooth.training_rate()
    check_deletion_args(rate if isinstance(rate, float) else 0.5, smooth.unit, allow_zero=True)
    check_consistency_args(train.noise_copies, train.consistency_weight, train.entropy_weight, train.algorithm, rate)
    train_data, train_ds, eval_ds = load_training_splits(data, train, args)
    trainer = build_trainer(
        data.model, train_ds, train_data.label_names, smooth, args, algorithm=train.algorithm,
        eval_dataset=eval_ds, max_length=data.max_length,
        compute_metrics=accuracy_metric() if eval_ds is not None else None,
        ignore_mismatched_sizes=train.ignore_mismatched_sizes, train_head_only=train.freeze_encoder,
        noise_copies=train.noise_copies, consistency_weight=train.consistency_weight, entropy_weight=train.entropy_weight,
    )
    if augment is not None and augment.augment:
        from .augment import AugmentingCollator

        trainer.data_collator = AugmentingCollator(
            trainer.data_collator, augment, seed=args.seed, active=lambda: trainer.model.training
        )
    if train.certify_eval:
        from .hub.callbacks import certified_eval_for

        certified_eval_for(trainer, train.certify_eval, train.certify_eval_n, smooth.unit, args.seed)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(args))
    metrics = dict(result.metrics)
    if eval_ds is not None:
        metrics.update(trainer.evaluate())
    from .linear_probe import unstandardize_head

    unstandardize_head(trainer.model)  # a plain head in the saved folder (--freeze-encoder)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        save_training_info(data, smooth, train, args, rate, train_data.label_names, metrics)
    return metrics
