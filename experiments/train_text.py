"""``robusttext train`` with the training fields the product command leaves at the library defaults:
consistency training (:class:`robusttext.training.trainer.TrainingRecipe`'s ``noise_copies``,
``consistency_weight``, ``entropy_weight``: Jeong & Shin 2020, the consistency run of ``docs/benchmarks.md``
section 4 and ``docs/experiments-log.md``), the augmentation rates (:class:`robusttext.training.augment.Augmentation`)
and the certified evaluation's estimation samples (section 10 of ``docs/benchmarks.md``, n = 128).

    python experiments/train_text.py --model embedded:minilm-l6 --dataset embedded:bbc-news \
        --rate-schedule adaptive:k=13,p_lb=0.9 --noise-copies 2 --consistency-weight 10 --entropy-weight 0.5 \
        --num_train_epochs 6 --learning_rate 1e-4 --output_dir runs/bbc_cons
    python experiments/train_text.py --model embedded:minilm-l6 --dataset ../shared/data/sst2 --split train \
        --eval-split dev --max-examples 640 --max-length 64 --p-del 0.9 --certify-eval 48 --certify-eval-n 128 ...

Every ``robusttext train`` option works (``TrainingArguments`` included).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

from robusttext.config import run_script
from robusttext.training.augment import Augmentation
from robusttext.training.trainer import TrainingRecipe


@dataclass
class TrainExperimentArguments:
    """The library fields this experiment sets (defaults: the library's)."""

    noise_copies: int = field(default=TrainingRecipe.noise_copies, metadata={
        "help": "Noisy copies of each training example per batch (consistency training, integer >= 1; "
                "--per-device-train-batch-size counts examples). Jeong & Shin use 2."})
    consistency_weight: float = field(default=TrainingRecipe.consistency_weight, metadata={
        "help": "Weight lambda >= 0 of the KL term pulling each copy's prediction to the copies' mean (needs "
                "--noise-copies >= 2; Jeong & Shin: 5-20)."})
    entropy_weight: float = field(default=TrainingRecipe.entropy_weight, metadata={
        "help": "Weight eta >= 0 of the entropy of the copies' mean prediction (Jeong & Shin: 0.5)."})
    augment_rate: float = field(default=Augmentation.augment_rate, metadata={
        "help": "Probability that a training example is augmented (with --augment), in [0, 1]."})
    augment_words_pct: float = field(default=Augmentation.augment_words_pct, metadata={
        "help": "Share of an example's words an augmentation changes, in (0, 1]."})
    certify_eval_n: Optional[int] = field(default=None, metadata={
        "help": "Estimation samples per input of --certify-eval (default: CertifiedEvalCallback's protocol, 256)."})


def command(argv: Sequence[str]) -> int:
    from robusttext.cli.convert import flag_errors, training_recipe, train_from_arguments
    from robusttext.cli.main import parse_train, print_metrics
    from robusttext.hub.callbacks import EVAL_PROTOCOL

    data, smooth, train, args, augment, exp = parse_train(argv, "experiments/train_text.py", (TrainExperimentArguments,))
    with flag_errors(exp):
        recipe = replace(training_recipe(data, smooth, train), noise_copies=exp.noise_copies,
                         consistency_weight=exp.consistency_weight, entropy_weight=exp.entropy_weight)
        augmentation = (Augmentation(augment.augment, exp.augment_rate, exp.augment_words_pct)
                        if augment.augment is not None else None)
        protocol = EVAL_PROTOCOL.with_budget(n=exp.certify_eval_n) if exp.certify_eval_n is not None else None
    print_metrics(train_from_arguments(data, smooth, train, args, recipe=recipe, augmentation=augmentation,
                                       eval_protocol=protocol))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("experiments/train_text.py", command, argv)


if __name__ == "__main__":
    sys.exit(main())
