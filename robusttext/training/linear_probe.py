"""Linear probing: train only a classifier's head, on its frozen pretrained encoder's standardized features.

``robusttext train --freeze-encoder`` and ``robusttext dg --freeze-encoder`` call :func:`freeze_encoder` and
then :func:`standardize_head`:

* the encoder (``model.base_model``) is frozen and kept in eval mode (no dropout); the classification head
  alone trains;
* the head's input features are standardized: the head ``z = W h + b`` is trained as
  ``z = W' (h - mu) / sigma + b'`` with ``mu``, ``sigma`` the per-feature mean and standard deviation of
  ``h`` over the clean training texts (encoder in eval mode; at most ``MAX_STATS_TEXTS``, evenly spaced),
  a :class:`StandardizedHead`. This is the same function class (an affine reparameterization), but every
  feature enters at unit scale, so the optimizer's steps, weight decay and the Fishr penalty (computed on the
  standardized features the head sees) do not favour features for their raw scale: the ``StandardScaler`` +
  ``LogisticRegression`` of a classical linear probe. Features that are constant on the training texts (``sigma < 1e-6``) are centred,
  not scaled.
* Before saving, :func:`unstandardize_head` folds the scaling back into a plain ``nn.Linear``
  (``W = W' / sigma``, ``b = b' - W mu``), so the saved folder is an ordinary ``transformers`` model with the
  same logits. (Trainer checkpoints written during training hold the wrapped head; they are for resuming.)
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

#: Features with a smaller standard deviation on the training texts are centred but not scaled.
MIN_STD = 1e-6
#: The statistics are taken on at most this many training texts, evenly spaced.
MAX_STATS_TEXTS = 10_000


def _stay_in_eval(module: nn.Module, args: Any) -> None:
    if module.training:
        module.eval()


def freeze_encoder(model: Any) -> None:
    """Freeze the pretrained encoder of a ``transformers`` sequence classifier so that training fits only
    its classification head (a linear layer for BERT-style models; the whole head, e.g. RoBERTa's dense +
    ``out_proj``, otherwise). The encoder is ``model.base_model`` (the module named by the model class's
    ``base_model_prefix``). It also stays in eval mode (no dropout) when the Trainer switches the model to
    training, so the head trains on the deterministic pretrained features it is evaluated on, as a classical
    linear probe does; the head's own dropout (BERT's classifier dropout) still applies. A model without a
    separate encoder is a ``ValueError``."""
    encoder = getattr(model, "base_model", model)
    if encoder is model:
        raise ValueError(
            f"--freeze-encoder: {type(model).__name__} has no separate encoder (base_model) to freeze; drop the flag to train it whole"
        )
    encoder.requires_grad_(False)
    encoder.eval()
    encoder.register_forward_pre_hook(_stay_in_eval)


class StandardizedHead(nn.Module):
    """``linear((h - mean) / std)``: a linear head on standardized features (``mean``, ``std``: buffers of
    shape ``(in_features,)``, ``std > 0``). :meth:`fold` gives the plain ``nn.Linear`` with the same output."""

    def __init__(self, linear: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear((h - self.mean) / self.std)

    @torch.no_grad()
    def fold(self) -> nn.Linear:
        """The plain head: weight ``W / std`` (per input column), bias ``b - (W / std) mean``."""
        w = self.linear.weight.double() / self.std.double()  # folded in float64, then cast
        bias = self.linear.bias.double() if self.linear.bias is not None else torch.zeros_like(w[:, 0])
        dtype = self.linear.weight.dtype
        out = nn.Linear(self.linear.in_features, self.linear.out_features, bias=True).to(w.device, dtype)
        out.weight.copy_(w.to(dtype))
        out.bias.copy_((bias - w @ self.mean.double()).to(dtype))
        out.weight.requires_grad_(self.linear.weight.requires_grad)
        out.bias.requires_grad_(self.linear.weight.requires_grad)
        return out


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


@torch.no_grad()
def head_input_stats(model: nn.Module, head: nn.Linear, tokenizer: Any, texts: Sequence[str], max_length: int | None,
                     batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and standard deviation (population) of the input of ``model``'s linear ``head`` over
    ``texts``, the model in eval mode (no dropout); restores the model's mode."""
    from .fishr import HeadCapture

    if not texts:
        raise ValueError("--freeze-encoder: no training texts to standardize the head's features on")
    capture = HeadCapture(head)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = total_sq = None
    try:
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=max_length is not None,
                              max_length=max_length, return_tensors="pt").to(device)
            model(**batch)
            feats, _ = capture.take()
            f = feats.double()
            total = f.sum(0) if total is None else total + f.sum(0)
            total_sq = (f * f).sum(0) if total_sq is None else total_sq + (f * f).sum(0)
    finally:
        capture.remove()
        model.train(was_training)
    mean = total / len(texts)
    std = (total_sq / len(texts) - mean * mean).clamp_min(0.0).sqrt()
    return mean.to(head.weight.dtype), std.to(head.weight.dtype)


def standardize_head(model: nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int | None) -> StandardizedHead:
    """Replace the classification head by a :class:`StandardizedHead` with the statistics of ``texts``."""
    from .fishr import find_head

    head = find_head(model)
    step = max(1, -(-len(texts) // MAX_STATS_TEXTS))
    mean, std = head_input_stats(model, head, tokenizer, list(texts)[::step], max_length)
    std = torch.where(std < MIN_STD, torch.ones_like(std), std)
    name = next(n for n, m in model.named_modules() if m is head)
    wrapped = StandardizedHead(head, mean, std)
    _replace(model, name, wrapped)
    return wrapped


def unstandardize_head(model: nn.Module) -> bool:
    """Fold every :class:`StandardizedHead` in ``model`` back into a plain ``nn.Linear`` (same logits);
    returns whether there was one."""
    names = [name for name, m in model.named_modules() if isinstance(m, StandardizedHead)]
    for name in names:
        _replace(model, name, model.get_submodule(name).fold())
    return bool(names)
