"""Consistency training for smoothed classifiers (Jeong & Shin, NeurIPS 2020), as a ``transformers.Trainer``.

Why: a smoothed classifier's certificate depends on ``pA``, the share of noisy copies of an input that the
base model labels with the top class (``robusttext.certificate.stats``); plain training under noise fits each noisy copy
to the label but never asks the copies to agree. With ``m`` noisy copies of each example in a batch (rows
``i*m .. i*m+m-1`` are example ``i``: ``DeletionCollator(copies=m)``), the loss is Jeong & Shin's
("Consistency Regularization for Certified Robustness of Smoothed Classifiers", Section 3):

    L = (1/m) sum_j CE(f(x_j), y) + lambda * (1/m) sum_j KL(p_bar || softmax f(x_j)) + eta * H(p_bar),
    p_bar = (1/m) sum_j softmax f(x_j),

averaged over the examples of the batch: the KL term pulls every copy's prediction towards the copies' mean,
the entropy term sharpens that mean. The authors use m = 2, lambda in {5, 10, 20} (larger for heavier noise)
and eta = 0.5. With lambda = eta = 0 it is the mean cross-entropy over all rows, i.e. plain training on
m times as many noisy copies. Nothing here changes the certificate: it is a training objective only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer


def check_consistency_args(
    copies: int, consistency_weight: float, entropy_weight: float, algorithm: str = "erm", rate: Any = None
) -> None:
    """Refuse (``ValueError``, naming the option) a copy count below 1, a negative weight, a consistency
    weight with one copy (there is nothing to agree with), copies of clean examples (training ``rate`` 0: they
    are identical), and consistency settings with an ``algorithm`` other than ERM."""
    if int(copies) != copies or copies < 1:
        raise ValueError(f"--noise-copies must be a whole number >= 1, got {copies}")
    for name, value in (("--consistency-weight", consistency_weight), ("--entropy-weight", entropy_weight)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if consistency_weight > 0 and copies < 2:
        raise ValueError("--consistency-weight needs --noise-copies >= 2 (the copies of an example it makes agree)")
    if copies > 1 and isinstance(rate, (int, float)) and rate == 0:
        raise ValueError("--noise-copies > 1 needs deletion noise (--p-del > 0 or --rate-schedule): clean copies are identical")
    if (copies > 1 or consistency_weight > 0 or entropy_weight > 0) and algorithm != "erm":
        raise ValueError(f"--noise-copies, --consistency-weight and --entropy-weight train with --algorithm erm, not {algorithm}")


def consistency_loss(
    logits: torch.Tensor, labels: torch.Tensor, copies: int, consistency_weight: float, entropy_weight: float
) -> torch.Tensor:
    """The module's loss ``L`` for ``logits`` of shape (B * copies, classes) whose rows come in groups of
    ``copies`` per example (``labels`` repeated alike; refused with ``ValueError`` otherwise)."""
    rows, classes = logits.shape
    if rows % copies:
        raise ValueError(f"a batch of {rows} rows is not made of groups of --noise-copies {copies}")
    grouped_labels = labels.view(-1, copies)
    if not bool((grouped_labels == grouped_labels[:, :1]).all()):
        raise ValueError(
            f"the rows of a batch are not grouped {copies} per example (labels differ within a group); "
            "train with DeletionCollator(copies=...)"
        )
    log_p = F.log_softmax(logits.float(), dim=-1)
    ce = F.nll_loss(log_p, labels)
    if consistency_weight == 0 and entropy_weight == 0:
        return ce
    log_p = log_p.view(-1, copies, classes)
    p_bar = log_p.exp().mean(dim=1)  # (B, classes)
    log_p_bar = p_bar.clamp_min(1e-12).log()
    kl = (p_bar.unsqueeze(1) * (log_p_bar.unsqueeze(1) - log_p)).sum(-1).mean()  # mean over examples and copies
    entropy = -(p_bar * log_p_bar).sum(-1).mean()
    return ce + consistency_weight * kl + entropy_weight * entropy


class ConsistencyTrainer(Trainer):
    """A ``Trainer`` whose loss is :func:`consistency_loss`; its data collator must put ``copies`` noisy copies
    of each example on consecutive rows (``DeletionCollator(copies=copies)``; ``per_device_train_batch_size``
    counts examples, so a batch holds ``copies`` times as many rows)."""

    def __init__(
        self, *args: Any, copies: int = 2, consistency_weight: float = 10.0, entropy_weight: float = 0.5, **kwargs: Any
    ) -> None:
        check_consistency_args(copies, consistency_weight, entropy_weight)
        super().__init__(*args, **kwargs)
        self.copies, self.consistency_weight, self.entropy_weight = int(copies), float(consistency_weight), float(entropy_weight)
        self.model_accepts_loss_kwargs = False  # the loss is a batch mean: the Trainer divides it for gradient accumulation

    def compute_loss(
        self, model: torch.nn.Module, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        labels = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        loss = consistency_loss(logits, labels, self.copies, self.consistency_weight, self.entropy_weight)
        return (loss, outputs) if return_outputs else loss
