"""Fishr (Rame, Dancette, Cord, ICML 2022): invariant gradient variances across training domains.

Fishr adds to the ERM loss a penalty that makes the *variance of per-sample gradients* of the loss
w.r.t. the classifier head the same in every training domain (paper Sec. 3, Eq. 4-6):

* for each domain ``e`` of the batch, ``v_e`` = centred variance over that domain's samples of the
  per-sample gradients of the loss w.r.t. the final linear layer (weight and bias), coordinate-wise;
* ``v_e`` is smoothed by an exponential moving average per domain across steps (past values detached);
* penalty = mean over domains of the squared distance between ``v_e`` and the mean ``v`` over domains.

Two details follow the authors' DomainBed code (``algorithms.Fishr``), with which the default
``lambda = 1000`` was tuned: the squared distance is averaged over the gradient coordinates
(``l2_between_dicts``), and the EMA is returned divided by ``1 - ema`` (``MovingAverage(
oneminusema_correction=True)``) so the current batch enters with weight 1 whatever ``ema`` is.

No BackPACK and no per-sample backward: for a linear head ``z = W h + b`` and cross-entropy, the
per-sample gradient is the outer product ``(softmax(z) - onehot(y)) [h, 1]^T``, so the per-domain first
and second moments are two small einsums over the batch. Under ``accelerate launch`` the per-domain
sums are all-reduced (differentiably), so every process sees the penalty of the global batch.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from ..compat import ResumableTrainingArguments

from .domain_data import DOMAIN_KEY, DomainBalancedSampler, DomainCollator, training_domains
from .hparams_registry import check_hparams, default_hparams, fishr_specs

logger = logging.getLogger("robusttext")

FISHR_STATE = "fishr_state.pt"
_FISHR_DEFAULTS = default_hparams("fishr")


def check_fishr_args(fishr_lambda: float, fishr_ema: float, fishr_anneal_steps: int) -> None:
    """Raise a clear ``ValueError`` for Fishr hyper-parameters that cannot be used."""
    if not isinstance(fishr_lambda, (int, float)) or not math.isfinite(fishr_lambda) or fishr_lambda < 0:
        raise ValueError(f"fishr_lambda must be a finite number >= 0, got {fishr_lambda!r} (paper default 1000)")
    if not (0.0 <= float(fishr_ema) < 1.0):
        raise ValueError(f"fishr_ema must be in [0, 1), got {fishr_ema!r} (paper default 0.95)")
    if int(fishr_anneal_steps) < 0:
        raise ValueError(f"fishr_anneal_steps must be >= 0, got {fishr_anneal_steps!r}")


@dataclass
class DomainTrainingArguments(ResumableTrainingArguments):
    """``transformers.TrainingArguments`` (with ``overwrite_output_dir``) plus the column naming each example's domain."""

    domain_column: str = field(default="domain", metadata={"help": "Column naming each example's domain."})


@dataclass
class FishrTrainingArguments(DomainTrainingArguments):
    """:class:`DomainTrainingArguments` plus the Fishr hyper-parameters (used by :class:`FishrTrainer`; defaults
    from :mod:`robusttext.training.hparams_registry`; the command line sets them with ``--hparams``)."""

    fishr_lambda: float = field(default=_FISHR_DEFAULTS["fishr_lambda"], metadata={"help": "Fishr penalty weight lambda (>= 0; paper: 1000)."})
    fishr_ema: float = field(default=_FISHR_DEFAULTS["fishr_ema"], metadata={"help": "EMA decay of per-domain gradient variances, in [0, 1)."})
    fishr_anneal_steps: int = field(
        default=int(_FISHR_DEFAULTS["fishr_anneal_steps"]),
        metadata={"help": "Optimizer steps with penalty weight 0 (ERM warm-up); the optimizer state is reset at the switch."},
    )

    def __post_init__(self) -> None:
        check_fishr_args(self.fishr_lambda, self.fishr_ema, self.fishr_anneal_steps)
        super().__post_init__()

    @classmethod
    def with_hparams(cls, args: TrainingArguments, hparams: str | dict | None = None) -> "FishrTrainingArguments":
        """``args`` (any ``TrainingArguments``) as Fishr training arguments, the Fishr hyper-parameters from
        ``hparams`` (a JSON object or a mapping, checked by :func:`~robusttext.training.hparams_registry.check_hparams`;
        keys left out take the registry's defaults)."""
        values = {f.name: getattr(args, f.name) for f in fields(args) if f.init and f.name in cls.__dataclass_fields__}
        return cls(**{**values, **check_hparams(hparams, fishr_specs())})


# --------------------------------------------------------------------------- the head
def find_head(model: nn.Module, num_labels: int | None = None) -> nn.Linear:
    """The final linear layer of a classifier: the last ``nn.Linear`` with ``out_features == num_labels``.

    ``num_labels`` defaults to ``model.config.num_labels``. For BERT this is ``model.classifier``; for
    RoBERTa ``model.classifier.out_proj``.
    """
    if num_labels is None:
        num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if not num_labels or num_labels < 2:
        raise ValueError(f"Fishr needs a classifier with >= 2 labels, got num_labels={num_labels!r}")
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if not found:
        raise ValueError(
            f"no nn.Linear with out_features={num_labels} in {type(model).__name__}: Fishr needs a head that "
            "ends in a linear layer (any AutoModelForSequenceClassification of BERT/RoBERTa/... type)"
        )
    return found[-1]


class HeadCapture:
    """Forward hook on the head: keeps the last ``(input features, output logits)`` it saw."""

    def __init__(self, head: nn.Linear) -> None:
        self.head = head
        self.features: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None
        self.handle = head.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.features, self.logits = inputs[0], output

    def take(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The captured ``(features (N, D), logits (N, C))``; cleared after reading."""
        if self.features is None or self.logits is None:
            raise RuntimeError("the classifier head was not called in the forward pass")
        feats, logits = self.features, self.logits
        self.features = self.logits = None
        if feats.dim() != 2:
            raise ValueError(
                f"the head's input has shape {tuple(feats.shape)}; Fishr needs one feature vector per example "
                "(heads applied per token, as in GPT-style classifiers, are not supported)"
            )
        return feats, logits

    def remove(self) -> None:
        self.handle.remove()


# --------------------------------------------------------------------------- closed-form gradients
def _work_dtype(t: torch.Tensor) -> torch.dtype:
    """float32 for half precision inputs, else the input's own dtype (float64 stays float64)."""
    return torch.promote_types(t.dtype, torch.float32)


def head_residuals(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``softmax(logits) - onehot(labels)`` (N, C): the per-sample gradient of cross-entropy w.r.t. logits."""
    z = logits.to(_work_dtype(logits))
    return torch.softmax(z, dim=-1) - F.one_hot(labels, z.shape[-1]).to(z.dtype)


def per_sample_head_grads(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample gradients of ``cross_entropy(logits_i, y_i)`` w.r.t. ``[W, b]`` of ``z = W h + b``.

    Returns (N, C, D + 1): entry ``[i, c, :D]`` is ``dL_i/dW[c, :]``, ``[i, c, D]`` is ``dL_i/db[c]``;
    ``(softmax(z_i) - onehot(y_i)) [h_i, 1]^T``. Differentiable in ``features`` and ``logits``.
    """
    r = head_residuals(logits, labels)
    h = features.to(r.dtype)
    h = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
    return r[:, :, None] * h[:, None, :]


def head_grad_moments(
    features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, domain_ids: torch.Tensor, num_domains: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-domain ``(count (K,), sum of grads (K, P), sum of squared grads (K, P))``, P = C (D + 1).

    Samples with label < 0 (ignored) or a domain id outside ``[0, K)`` are left out. Computed with two
    einsums over the batch, without materialising the per-sample gradients.
    """
    valid = (labels >= 0) & (domain_ids >= 0) & (domain_ids < num_domains)
    with torch.autocast(device_type=features.device.type, enabled=False):  # variances need >= fp32
        r = head_residuals(logits[valid], labels[valid])
        h = features[valid].to(r.dtype)
        h = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
        m = F.one_hot(domain_ids[valid].long(), num_domains).to(r.dtype)
        count = m.sum(0)
        s1 = torch.einsum("nk,nc,nd->kcd", m, r, h).reshape(num_domains, -1)
        s2 = torch.einsum("nk,nc,nd->kcd", m, r * r, h * h).reshape(num_domains, -1)
    return count, s1, s2


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _SumOverProcesses(torch.autograd.Function):
    """Differentiable all-reduce (sum). Every process computes the same penalty from the summed
    statistics, so the backward sums the incoming gradients too: process k then holds
    ``N * d penalty / d (its own statistics)``, and DDP's gradient averaging (divide by N) leaves
    exactly the single-process gradient of the global-batch penalty."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        out = grad.clone()
        dist.all_reduce(out)
        return out


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over processes (differentiable)."""
    return _SumOverProcesses.apply(t)


class FishrPenalty:
    """The Fishr penalty with per-domain EMA state (paper Eq. 4-6; authors' DomainBed code).

    Args:
        num_domains: K, the number of training domains (ids ``0..K-1``).
        ema: EMA decay in [0, 1) (paper: 0.95); 0 = no smoothing.
        min_samples: a domain enters a step's penalty only with at least this many labelled samples in
            the (global) batch (a variance of one sample is 0, not an estimate); absent domains keep
            their EMA state untouched.
        sync: combine per-domain statistics across processes (None = whenever torch.distributed runs
            with more than one process).

    Call it with the head's input features (N, D), its logits (N, C), labels (N,) and domain ids (N,);
    it returns a scalar tensor (0 when fewer than 2 domains are present) and advances the EMA.
    """

    def __init__(self, num_domains: int, ema: float = _FISHR_DEFAULTS["fishr_ema"], min_samples: int = 2, sync: bool | None = None) -> None:
        if num_domains < 2:
            raise ValueError(f"Fishr needs at least 2 training domains, got {num_domains}")
        check_fishr_args(0.0, ema, 0)
        self.num_domains = int(num_domains)
        self.ema = float(ema)
        self.min_samples = max(2, int(min_samples))
        self.sync = sync
        self.state: torch.Tensor | None = None  # (K, P) EMA of variances, detached
        self.updates = torch.zeros(self.num_domains, dtype=torch.long)

    def domain_variances(
        self, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, domain_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(variances (K, P), counts (K,))`` of per-sample head gradients, over the global batch."""
        count, s1, s2 = head_grad_moments(features, logits, labels, domain_ids, self.num_domains)
        if self.sync if self.sync is not None else _distributed():
            packed = _all_reduce_sum(torch.cat([count[:, None], s1, s2], dim=1))
            p = s1.shape[1]
            count, s1, s2 = packed[:, 0].detach(), packed[:, 1 : 1 + p], packed[:, 1 + p :]
        n = count.clamp_min(1)[:, None]
        mean = s1 / n
        return s2 / n - mean * mean, count  # centred (biased) variance, as the authors' code

    def __call__(
        self, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, domain_ids: torch.Tensor
    ) -> torch.Tensor:
        var, count = self.domain_variances(features, logits, labels, domain_ids)
        if self.state is None or self.state.shape != var.shape:
            self.state = torch.zeros_like(var.detach())
            self.updates.zero_()
        elif self.state.device != var.device or self.state.dtype != var.dtype:  # e.g. loaded from a checkpoint
            self.state = self.state.to(var.device, var.dtype)
        present = [k for k in range(self.num_domains) if float(count[k]) >= self.min_samples]
        smoothed = []
        for k in present:
            prev = self.state[k] if int(self.updates[k]) > 0 else torch.zeros_like(self.state[k])
            new = self.ema * prev + (1.0 - self.ema) * var[k]
            self.state[k] = new.detach()
            self.updates[k] += 1
            smoothed.append(new / (1.0 - self.ema))  # authors' oneminusema_correction
        if len(smoothed) < 2:
            return var.sum() * 0.0
        v = torch.stack(smoothed)
        return (v - v.mean(0, keepdim=True)).pow(2).mean(1).mean(0)

    def state_dict(self) -> dict:
        return {"state": self.state, "updates": self.updates.clone(), "num_domains": self.num_domains, "ema": self.ema}

    def load_state_dict(self, sd: dict) -> None:
        if int(sd["num_domains"]) != self.num_domains:
            raise ValueError(f"Fishr state has {sd['num_domains']} domains, this run has {self.num_domains}")
        self.state = sd["state"]
        self.updates = sd["updates"].clone()


# --------------------------------------------------------------------------- the Trainer
class FishrTrainer(Trainer):
    """A ``transformers.Trainer`` that trains with the Fishr penalty across the domains of ``train_dataset``.

    Drop-in: pass :class:`FishrTrainingArguments` (plain ``TrainingArguments`` gets the paper defaults)
    and a training set with a domain column; everything else (collator, ``compute_metrics``,
    callbacks, checkpoints, gradient accumulation, mixed precision, ``accelerate launch``) is the
    Trainer's. The collator is wrapped to carry domain ids, training batches come from a
    :class:`~robusttext.training.domain_data.DomainBalancedSampler` (equal share of every domain per batch) and the
    loss is ``cross_entropy + w * penalty`` with ``w = 0`` before ``fishr_anneal_steps`` optimizer steps
    and ``fishr_lambda`` from then on (the optimizer state is reset at the switch, as in the paper's
    code). With gradient accumulation each micro-batch is one Fishr batch. The EMA state is saved
    with checkpoints and restored on resume.

    Args:
        domains: the training domains in id order (default: the sorted distinct values of the domain
            column of ``train_dataset``).
    """

    def __init__(self, *args: Any, domains: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        a = self.args
        self.fishr_lambda = float(getattr(a, "fishr_lambda", _FISHR_DEFAULTS["fishr_lambda"]))
        self.fishr_ema = float(getattr(a, "fishr_ema", _FISHR_DEFAULTS["fishr_ema"]))
        self.fishr_anneal_steps = int(getattr(a, "fishr_anneal_steps", 0))
        self.domain_column = str(getattr(a, "domain_column", "domain"))
        check_fishr_args(self.fishr_lambda, self.fishr_ema, self.fishr_anneal_steps)
        if self.train_dataset is None:
            raise ValueError("FishrTrainer needs a train_dataset with a domain column")
        found = training_domains(self.train_dataset, self.domain_column)  # also checks the column exists
        self.domains = [str(d) for d in domains] if domains is not None else found
        if len(self.domains) < 2:
            raise ValueError(
                f"Fishr needs at least 2 training domains, got {self.domains} in column {self.domain_column!r}; "
                "train on several domains (e.g. hold out fewer with --test-domains) or use --algorithm erm"
            )
        if self._train_batch_size < 2 * len(self.domains):
            raise ValueError(
                f"--per-device-train-batch-size {self._train_batch_size} is too small for {len(self.domains)} domains: "
                f"Fishr needs >= 2 samples of every domain per batch, i.e. a batch size >= {2 * len(self.domains)}"
            )
        self.data_collator = DomainCollator(self.data_collator, self.domains, self.domain_column)
        self.model_accepts_loss_kwargs = False  # our loss is a mean per micro-batch
        self.head = HeadCapture(find_head(self.model))
        self.fishr = FishrPenalty(len(self.domains), self.fishr_ema)
        self.add_callback(FishrStateCallback(self.fishr))
        self._reset_done_at: int | None = None
        self._log_penalty = 0.0
        self._log_count = 0
        self._last_weight = 0.0

    # ---------------------------------------------------------------- data
    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.domain_column not in self._signature_columns:
            self._signature_columns.append(self.domain_column)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        ds = self.train_dataset if train_dataset is None else train_dataset
        lookup = {d: i for i, d in enumerate(self.domains)}
        ids = [lookup.get(str(d), -1) for d in ds[self.domain_column]]
        return DomainBalancedSampler(ids, self._train_batch_size, seed=self.args.seed)

    # ---------------------------------------------------------------- loss
    def penalty_weight(self) -> float:
        """``fishr_lambda`` once ``fishr_anneal_steps`` optimizer steps are done, else 0; resets the
        optimizer state on the first batch after the switch (paper code: Adam re-initialised). With
        ``fishr_lambda = 0`` there is no switch: no reset, the run is plain ERM whatever the warm-up."""
        step = self.state.global_step
        if step < self.fishr_anneal_steps:
            return 0.0
        switch = step == self.fishr_anneal_steps and self.fishr_anneal_steps > 0 and self.fishr_lambda > 0
        if switch and self._reset_done_at != step:
            self._reset_done_at = step
            reset_optimizer_state(self.optimizer)
        return self.fishr_lambda

    def compute_loss(
        self, model: nn.Module, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        domain_ids = inputs.pop(DOMAIN_KEY, None)
        outputs = model(**inputs)
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
        feats, logits = self.head.take()
        labels = inputs.get("labels")
        if model.training and domain_ids is not None and labels is not None:
            weight = self._last_weight = self.penalty_weight()
            if weight > 0:
                penalty = self.fishr(feats, logits, labels, domain_ids)
                loss = loss + weight * penalty
            else:
                with torch.no_grad():  # the EMA still tracks the variances during the warm-up
                    penalty = self.fishr(feats.detach(), logits.detach(), labels, domain_ids)
            self._log_penalty += float(penalty.detach())
            self._log_count += 1
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model: nn.Module, inputs: dict, *args: Any, **kwargs: Any) -> Any:
        inputs = {k: v for k, v in inputs.items() if k != DOMAIN_KEY}
        return super().prediction_step(model, inputs, *args, **kwargs)

    def log(self, logs: dict, *args: Any, **kwargs: Any) -> None:
        if self._log_count and "loss" in logs:
            logs["fishr_penalty"] = self._log_penalty / self._log_count
            logs["fishr_weight"] = self._last_weight
            self._log_penalty, self._log_count = 0.0, 0
        super().log(logs, *args, **kwargs)

    # ---------------------------------------------------------------- checkpoints
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        """``Trainer.train``, first restoring the Fishr EMA state saved in the checkpoint resumed from."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
        path = os.path.join(checkpoint, FISHR_STATE) if isinstance(checkpoint, str) else None
        if path and os.path.isfile(path):
            self.fishr.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


class FishrStateCallback(TrainerCallback):
    """Saves a :class:`FishrTrainer`'s EMA state into each checkpoint folder the Trainer writes
    (``on_save`` runs after the checkpoint, on every process; the main one writes)."""

    def __init__(self, penalty: FishrPenalty) -> None:
        self.penalty = penalty

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if args.should_save and os.path.isdir(folder):
            torch.save(self.penalty.state_dict(), os.path.join(folder, FISHR_STATE))


def reset_optimizer_state(optimizer: Any) -> None:
    """Forget an optimizer's per-parameter state (Adam moments and step counts); keeps lr and groups."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
    if inner is not None:
        inner.state.clear()
