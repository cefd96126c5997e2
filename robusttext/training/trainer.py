"""Fine-tuning under deletion noise with a ``transformers.Trainer`` (the Trainer glue lives here).

``train_classifier`` is what ``robusttext train`` and ``scripts/finetune_rsdel.py`` run: it loads the
data and model, puts a :class:`~robusttext.certificate.deletion.DeletionCollator` in the Trainer's data path (fresh
noise every batch, the same mechanism certification uses), trains with the user's
``TrainingArguments`` (so ``accelerate launch``, mixed precision, gradient accumulation and
checkpoints all work as in any Trainer run), resumes from the last checkpoint in ``output_dir``, and
saves model + tokenizer for ``robusttext certify``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..compat import overwrite_requested
from ..certificate.deletion import DeletionCollator, check_deletion_args, check_unit
from ..certificate.models import load_classifier
from ..certificate.rates import DEFAULT_P_DEL, as_schedule, parse_rate_schedule
from ..hub.metrics import load_metric
from ..runs.data import DataSpec, TextData, as_text_data
from .augment import Augmentation, AugmentingCollator
from .consistency import ConsistencyTrainer, check_consistency_args
from .domain_data import check_heldout, training_domains
from .linear_probe import freeze_encoder, standardize_head, unstandardize_head

if TYPE_CHECKING:
    from ..hub.callbacks import CertifiedEvalCallback

logger = logging.getLogger("robusttext")

TRAINING_INFO = "robusttext_training.json"


def accuracy_metric() -> Any:
    """``compute_metrics`` for the Trainer, backed by the local ``evaluate`` accuracy module."""
    metric = load_metric("accuracy")

    def compute(eval_pred: Any) -> dict:
        logits, labels = eval_pred
        preds = np.asarray(logits).argmax(axis=-1)
        return metric.compute(predictions=preds.tolist(), references=np.asarray(labels).tolist())

    return compute


def trainer_class(algorithm: str) -> type:
    """The Trainer class implementing ``algorithm`` (``"erm"`` or ``"fishr"``)."""
    from transformers import Trainer

    if algorithm == "erm":
        return Trainer
    if algorithm == "fishr":
        from .fishr import FishrTrainer

        return FishrTrainer
    raise ValueError(f"algorithm must be 'erm' or 'fishr', got {algorithm!r}")


@dataclass(frozen=True)
class TrainingRecipe:
    """How a classifier is trained: the noise, the algorithm and the head (everything of ``robusttext train``
    that is not a ``TrainingArguments`` field or the data). Checked once, here.

    Args:
        rate: deletion rate of each training example: a probability in [0, 1) (0: clean training), a
            :class:`~robusttext.certificate.rates.RateSchedule` or its text form (e.g. ``"adaptive:k=13,p_lb=0.9"``,
            or a training-only ``"uniform:0.7,0.99"``); the model folder records a certifiable one.
        unit: ``"word"``, ``"char"`` or ``"token"``.
        max_length: tokens the model sees (default: its limit, at most 512).
        algorithm: ``"erm"`` or ``"fishr"`` (needs a domain column).
        noise_copies: noisy copies of each example per batch (>= 1; consistency training, Jeong & Shin use 2).
        consistency_weight, entropy_weight: the consistency terms' weights (>= 0; need ``algorithm="erm"``).
        freeze_encoder: train only the head on standardized features of the frozen encoder (a linear probe).
        ignore_mismatched_sizes: replace a classification head of another size.
    """

    rate: Any = DEFAULT_P_DEL
    unit: str = "word"
    max_length: int | None = None
    algorithm: str = "erm"
    noise_copies: int = 1
    consistency_weight: float = 0.0
    entropy_weight: float = 0.0
    freeze_encoder: bool = False
    ignore_mismatched_sizes: bool = False

    def __post_init__(self) -> None:
        rate = parse_rate_schedule(self.rate) if isinstance(self.rate, str) else self.rate
        if isinstance(rate, (int, float)) and not isinstance(rate, bool):
            rate = float(rate)
            check_deletion_args(rate, self.unit, allow_zero=True)
        else:
            check_unit(self.unit)
        object.__setattr__(self, "rate", rate)
        trainer_class(self.algorithm)
        check_consistency_args(self.noise_copies, self.consistency_weight, self.entropy_weight, self.algorithm, rate)

    @property
    def consistency(self) -> bool:
        """Whether the recipe trains with :class:`~robusttext.training.consistency.ConsistencyTrainer`."""
        return self.noise_copies > 1 or self.consistency_weight > 0 or self.entropy_weight > 0


def build_trainer(
    model_name: str, train_dataset: Any, label_names: list[str], args: Any, recipe: TrainingRecipe = TrainingRecipe(),
    eval_dataset: Any = None, compute_metrics: Any = None, domains: list[str] | None = None,
) -> Any:
    """The Trainer of ``recipe.algorithm`` for ``model_name`` with a :class:`DeletionCollator` in the data path
    (rate 0: clean batches). ``domains`` (Fishr) fixes the training domains' id order; ``recipe.freeze_encoder``
    freezes the encoder and standardizes the head's inputs on the training texts
    (:mod:`robusttext.training.linear_probe`); a recipe with noise copies or consistency weights trains with
    :class:`~robusttext.training.consistency.ConsistencyTrainer`."""
    from transformers import Trainer, set_seed

    # Seed before loading: a checkpoint without a classification head (e.g. the embedded MiniLM encoder) gets
    # a randomly initialised one, which the Trainer's own seeding, done later, would leave unseeded.
    set_seed(args.seed)
    model, tokenizer = load_classifier(model_name, label_names=label_names,
                                       ignore_mismatched_sizes=recipe.ignore_mismatched_sizes)
    if recipe.freeze_encoder:
        freeze_encoder(model)
        standardize_head(model.to(args.device), tokenizer, train_dataset["text"], recipe.max_length)
    collator = DeletionCollator(tokenizer, recipe.rate, recipe.unit, recipe.max_length, seed=args.seed,
                                copies=recipe.noise_copies)
    args.remove_unused_columns = False
    cls = trainer_class(recipe.algorithm)
    if not issubclass(cls, Trainer):  # pragma: no cover - guards future algorithms
        raise TypeError(f"{cls} is not a transformers.Trainer")
    extra: dict = {"domains": domains} if recipe.algorithm == "fishr" and domains is not None else {}
    if recipe.consistency:
        cls, extra = ConsistencyTrainer, {"copies": recipe.noise_copies, "consistency_weight": recipe.consistency_weight,
                                          "entropy_weight": recipe.entropy_weight}
    return cls(
        model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, data_collator=collator,
        processing_class=tokenizer, compute_metrics=compute_metrics, **extra,
    )


def save_rate_schedule(rate: Any, model_dir: str) -> None:
    """Record the deletion rate a model was trained under as its ``rate_schedule.json`` (certify's default);
    nothing for clean training (rate 0) or a training-only schedule (AdaptDel+'s uniform draws: ``robusttext
    tune-rates`` writes the certification schedule)."""
    if isinstance(rate, float) and rate == 0.0:
        return
    schedule = as_schedule(rate)
    if schedule.certifiable:
        schedule.save(model_dir)


def load_training_splits(
    data: Any, recipe: TrainingRecipe, eval_data: Any = None, test_domains: Sequence[str] = (), domain_column: str = "domain",
) -> tuple[TextData, Any, Any]:
    """The labelled training data (its ``label_names`` fix the head) and the train and eval
    ``datasets.Dataset`` s: ``eval_data`` when given; with ``test_domains`` the held-out domains leave the
    training set and, without eval data, become it."""
    test_domains = list(test_domains)
    use_domains = recipe.algorithm == "fishr" or bool(test_domains)
    train_data = as_text_data(data, domain_column=domain_column if use_domains else None)
    if len(train_data) == 0:
        raise ValueError(f"dataset {train_data.source} split {train_data.split!r} is empty")
    eval_ds = None if eval_data is None else as_text_data(eval_data, label_names=train_data.label_names).dataset
    train_ds = train_data.dataset
    if test_domains:
        train_ds, eval_ds = hold_out_domains(train_ds, eval_ds, test_domains)
    return train_data, train_ds, eval_ds


def hold_out_domains(train_ds: Any, eval_ds: Any, test_domains: list[str]) -> tuple[Any, Any]:
    """``train_ds`` without the ``test_domains`` (refused unless a training domain is left), and the eval
    set: ``eval_ds`` when given, else the held-out domains' examples."""
    check_heldout(training_domains(train_ds), test_domains, min_train=1)
    held = set(test_domains)
    if eval_ds is None:
        eval_ds = train_ds.filter(lambda d: d in held, input_columns="domain")
    train_ds = train_ds.filter(lambda d: d not in held, input_columns="domain")
    return train_ds, eval_ds


def last_checkpoint(args: Any) -> str | None:
    """The checkpoint to resume from: the last one in ``args.output_dir`` unless ``overwrite_output_dir``."""
    from transformers.trainer_utils import get_last_checkpoint

    last = None
    if Path(args.output_dir).is_dir() and not overwrite_requested(args):
        last = get_last_checkpoint(args.output_dir)
        if last:
            logger.warning("resuming training from %s", last)
    return last


def save_training_info(
    model: str, train_data: TextData, data: Any, recipe: TrainingRecipe, args: Any, test_domains: Sequence[str],
    metrics: dict,
) -> None:
    """Write the model folder's ``rate_schedule.json`` and ``robusttext_training.json`` (what it was
    trained on, under which noise and algorithm, by how many processes, and its final metrics)."""
    save_rate_schedule(recipe.rate, args.output_dir)
    spec = data.record() if isinstance(data, DataSpec) else DataSpec(train_data.source, train_data.split).record()
    rate = recipe.rate
    info = {
        "model": model,
        "dataset": spec["dataset"],
        "dataset_config": spec["dataset_config"],
        "split": spec["split"],
        "p_del": rate if isinstance(rate, float) else None,
        "rate_schedule": None if isinstance(rate, float) else rate.to_dict(),
        "unit": recipe.unit,
        "algorithm": recipe.algorithm,
        "freeze_encoder": recipe.freeze_encoder,
        "test_domains": list(test_domains),
        "noise_copies": recipe.noise_copies,
        "consistency_weight": float(recipe.consistency_weight),
        "entropy_weight": float(recipe.entropy_weight),
        "label_names": train_data.label_names,
        "world_size": args.world_size,  # processes that trained it (torchrun / accelerate launch)
        "metrics": metrics,
    }
    Path(args.output_dir, TRAINING_INFO).write_text(json.dumps(info, indent=2) + "\n")


def train_classifier(
    model: str, data: Any, args: Any, recipe: TrainingRecipe = TrainingRecipe(), *, eval_data: Any = None,
    test_domains: Sequence[str] = (), augmentation: Augmentation | None = None,
    certified_eval: "CertifiedEvalCallback | None" = None,
) -> dict:
    """Fine-tune ``model`` (a Hub id, a folder or ``embedded:minilm-l6``) on ``data`` under ``recipe``'s noise;
    returns the final metrics and saves the model, its tokenizer, ``rate_schedule.json`` (certify's default)
    and ``robusttext_training.json`` in ``args.output_dir``.

    ``data`` / ``eval_data``: a :class:`~robusttext.runs.data.DataSpec`, a :class:`~robusttext.runs.data.TextData`,
    a ``datasets.Dataset`` or a ``(texts, labels)`` pair (Fishr and ``test_domains`` need a domain column:
    ``args.domain_column``, default ``domain``). ``args`` is a ``transformers.TrainingArguments`` (or
    :class:`~robusttext.training.fishr.FishrTrainingArguments`); ``remove_unused_columns`` is forced off so
    the raw text reaches the collator. Training resumes from the last checkpoint in ``args.output_dir``.
    ``augmentation`` adds TextAttack augmentation before the deletion noise. ``certified_eval`` (a
    :class:`~robusttext.hub.callbacks.CertifiedEvalCallback`) adds certified metrics to every evaluation.
    """
    train_data, train_ds, eval_ds = load_training_splits(data, recipe, eval_data, test_domains,
                                                         getattr(args, "domain_column", "domain"))
    trainer = build_trainer(model, train_ds, train_data.label_names, args, recipe, eval_dataset=eval_ds,
                            compute_metrics=accuracy_metric() if eval_ds is not None else None)
    if certified_eval is not None:
        certified_eval.attach(trainer)  # before augmentation wraps the DeletionCollator it reads
    if augmentation is not None:
        trainer.data_collator = AugmentingCollator(
            trainer.data_collator, augmentation, seed=args.seed, active=lambda: trainer.model.training
        )
    result = trainer.train(resume_from_checkpoint=last_checkpoint(args))
    metrics = dict(result.metrics)
    if eval_ds is not None:
        metrics.update(trainer.evaluate())
    unstandardize_head(trainer.model)  # a plain head in the saved folder (freeze_encoder)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        save_training_info(model, train_data, data, recipe, args, test_domains, metrics)
    return metrics
