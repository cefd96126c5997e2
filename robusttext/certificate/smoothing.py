"""``SmoothedTextClassifier``: RS-Del randomized-deletion smoothing of any HF sequence classifier.

The smoothed classifier g(x) returns the class the base classifier f most likely outputs on a copy of
``x`` with every unit deleted independently with probability ``p_del`` (Huang et al., RS-Del,
NeurIPS 2023; CERT-ED, Findings of EMNLP 2024), or with a probability that depends on x's length
(AdaptDel, Huang et al., NeurIPS 2025; :mod:`robusttext.certificate.rates`). ``predict`` evaluates g with abstention (Cohen et al.
2019 PREDICT); ``certify`` returns g's class at x together with an edit-distance radius r such that,
with probability >= 1 - alpha over the Monte Carlo samples, g returns the same class on every text
within Levenshtein distance r of x, counted in the deletion unit.

This module only wires the pieces together: :mod:`robusttext.certificate.deletion` (the mechanism),
:mod:`robusttext.certificate.engine` (sampling, batching, dedup, sequential looks) and :mod:`robusttext.certificate.stats`
(bounds and radius).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .deletion import DeletionMechanism, Unit, check_deletion_args, model_max_length
from .engine import Certification, MonteCarloEngine, Prediction
from .precision import autocast_dtype as resolve_autocast
from .protocol import CertifyProtocol
from .models import load_classifier
from .rates import DEFAULT_P_DEL, RateSchedule, as_schedule, load as load_schedule
from .stats import EditDistanceCertificate, VariableRateCertificate


class SmoothedTextClassifier:
    """Randomized-deletion smoothing of a ``transformers`` sequence classifier.

    Args:
        model: an ``AutoModelForSequenceClassification`` (any architecture returning ``logits``).
        tokenizer: its tokenizer.
        p_del: probability of deleting each unit, in (0, 1) (CERT-ED uses 0.9 with word units), or a rate
            schedule of :mod:`robusttext.certificate.rates` giving it per input length (AdaptDel); certificates then
            use :func:`robusttext.certificate.stats.variable_rate_radius` with each input's own length.
        unit: ``"word"``, ``"char"`` or ``"token"``; radii are counted in this unit.
        batch_size: noisy samples per forward pass (pooled across inputs, bucketed by length).
        max_length: tokens the base model sees, >= 3 (default: the model's limit, at most 512).
        seed: seeds every input's random stream (``[seed, index]``), so results are reproducible
            and independent of batching and of the number of processes.
        dedup: classify identical noisy copies of an input once (exact).
        device: where the model runs (default: the model's device).
        autocast_dtype: the base model's autocast dtype, e.g. ``torch.bfloat16``; None: full precision;
            ``"auto"`` (default): bf16 where the device computes it natively (see :mod:`robusttext.certificate.precision`).
        token_budget: also cap each batch at this many padded tokens (rows x longest row); None: ``batch_size``
            rows per batch. The counts do not depend on it.

    Example::

        clf = SmoothedTextClassifier(model, tokenizer, p_del=0.9)
        out = clf.certify(["a gripping, funny film"], n=4000, alpha=0.05)
        out[0].prediction, out[0].radius   # radius -1 means abstain
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        p_del: "float | RateSchedule" = DEFAULT_P_DEL,
        unit: Unit = "word",
        batch_size: int = 256,
        max_length: int | None = None,
        seed: int = 0,
        dedup: bool = True,
        device: str | torch.device | None = None,
        autocast_dtype: torch.dtype | None | str = "auto",
        token_budget: int | None = None,
    ) -> None:
        self.rate = as_schedule(p_del)
        if not self.rate.certifiable:
            raise ValueError(f"p_del={self.rate.describe()} is a training-only schedule; smooth with a fixed, adaptive or binned one")
        constant = self.rate.constant()
        check_deletion_args(0.5 if constant is None else constant, unit)  # certification needs p_del in (0, 1)
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.device = next(self.model.parameters()).device
        self.tokenizer = tokenizer
        self.num_classes = int(model.config.num_labels)
        if max_length is not None and max_length < 3:
            raise ValueError(f"max_length must be >= 3, got {max_length}")
        self.max_length = int(max_length or model_max_length(tokenizer, model.config))
        #: the model's name or folder, as runs record it (from_pretrained: as given; else the model's own)
        self.name_or_path = str(getattr(model, "name_or_path", "") or "")
        self.mechanism = DeletionMechanism(tokenizer, self.rate, unit, self.max_length)
        self.seed = int(seed)
        self.autocast_dtype = (resolve_autocast(autocast_dtype, self.device) if isinstance(autocast_dtype, str)
                               else autocast_dtype)
        self.engine = MonteCarloEngine(self.classify, self.num_classes, batch_size=batch_size, dedup=dedup,
                                       classify_rows=self.classify_rows, token_budget=token_budget,
                                       prefetch=2 if self.device.type == "cuda" else 0)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> "SmoothedTextClassifier":
        """Load model and tokenizer from a Hub id or a local folder, then smooth them (with the folder's
        ``rate_schedule.json`` unless ``p_del`` is given)."""
        model, tokenizer = load_classifier(name_or_path)
        if "p_del" not in kwargs and Path(name_or_path).is_dir():
            recorded = load_schedule(name_or_path)
            if recorded is not None:
                kwargs["p_del"] = recorded
        clf = cls(model, tokenizer, **kwargs)
        clf.name_or_path = name_or_path  # as given (a Hub id, a folder or embedded:minilm-l6): what runs record
        return clf

    @property
    def p_del(self) -> float | None:
        """The deletion probability when it is the same for every input, else None (see ``rate``)."""
        return self.rate.constant()

    def set_rate(self, p_del: "float | RateSchedule") -> None:
        """Smooth with another deletion rate from now on (same model, seed and batching)."""
        self.rate = as_schedule(p_del)
        self.mechanism = DeletionMechanism(self.tokenizer, self.rate, self.unit, self.max_length)

    def num_units(self, text: str) -> int:
        """Units (words, characters or tokens) of ``text``: the length its rate and radius refer to."""
        return len(self.mechanism.prepare(text))

    def certificate(self, top2: str) -> Any:
        """The edit-distance certificate: RS-Del's closed form for a fixed rate; for a length-dependent rate,
        a function giving each prepared input its :class:`~robusttext.certificate.stats.VariableRateCertificate`."""
        p = self.rate.constant()
        if p is not None:
            return EditDistanceCertificate(p_del=p, top2=top2)  # type: ignore[arg-type]
        return lambda x: VariableRateCertificate(rate=self.rate, length=len(x), top2=top2)  # type: ignore[arg-type]

    @property
    def unit(self) -> str:
        return self.mechanism.unit

    # ---------------------------------------------------------------- base classifier
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def logits(self, samples: Sequence[Sequence[int]]) -> torch.Tensor:
        """Base-model logits for a batch of encoded samples (dynamic padding to the batch's longest)."""
        width = max(1, max(len(s) for s in samples))
        ids = torch.full((len(samples), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(samples), width), dtype=torch.long)
        for i, s in enumerate(samples):
            if len(s):
                ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
                mask[i, : len(s)] = 1
        with torch.inference_mode(), self._autocast():
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return out.logits.float()

    def classify_rows(self, ids: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        """The engine's array path: the class of each row of padded ids ``(rows, width)`` (int64; values past a
        row's length are ignored), as a tensor on the model's device (not synchronised: the engine reads it
        after submitting the pool's other batches). Same inputs to the model as :meth:`logits` for the same
        samples. On CUDA the host tensors are pinned and copied with ``non_blocking``."""
        ids_t = torch.from_numpy(ids)
        mask = torch.arange(ids_t.shape[1]) < torch.from_numpy(lengths)[:, None]
        ids_t = torch.where(mask, ids_t, self._pad_id)
        mask = mask.long()
        if self.device.type == "cuda":
            ids_t = ids_t.pin_memory().to(self.device, non_blocking=True)
            mask = mask.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            out = self.model(input_ids=ids_t, attention_mask=mask)
        return out.logits.float().argmax(dim=-1)

    def classify(self, samples: Sequence[Sequence[int]]) -> np.ndarray:
        """Base classifier f: the argmax class of each encoded sample."""
        return self.logits(samples).argmax(dim=-1).cpu().numpy()

    def base_predict(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """The base model's class for each text without noise (for clean accuracy)."""
        encoded = [self.mechanism.encode_clean(self.mechanism.prepare(t)) for t in texts]
        order = np.argsort([len(e) for e in encoded], kind="stable")
        out = np.empty(len(texts), dtype=np.int64)
        step = batch_size or self.engine.batch_size
        for start in range(0, len(order), step):
            idx = order[start : start + step]
            out[idx] = self.classify([encoded[i] for i in idx])
        return out

    # ---------------------------------------------------------------- smoothed classifier
    def predict(
        self, texts: Sequence[str], n: int = 1000, alpha: float = 0.05, indices: Sequence[int] | None = None
    ) -> list[Prediction]:
        """Smoothed prediction of each text from ``n`` noisy samples; -1 = abstain.

        Guarantee (Cohen et al. 2019, Thm. 2): a non-abstaining answer differs from g(x) with
        probability at most ``alpha``. ``indices`` name each text's random stream (default 0..N-1).
        """
        prepared = [self.mechanism.prepare(t) for t in texts]
        return self.engine.predict(prepared, self.mechanism, n, alpha, seed=self.seed, indices=indices)

    def certify(
        self,
        texts: Sequence[str],
        protocol: CertifyProtocol | None = None,
        indices: Sequence[int] | None = None,
        on_done: Callable[[int, Certification], None] | None = None,
        **budget: Any,
    ) -> list[Certification]:
        """Certified prediction and edit-distance radius of each text.

        Guarantee: with probability >= 1 - alpha (over the Monte Carlo samples, per text) the smoothed
        class is constant within the returned radius, counted in units of ``self.unit`` (insertions,
        deletions and substitutions; RS-Del Thm. 1). Radius -1 = abstain.

        ``protocol`` (default :class:`~robusttext.certificate.protocol.CertifyProtocol`'s defaults) says how samples and
        ``alpha`` are spent; keyword arguments (``n0=``, ``n=``, ``alpha=``, ``looks=``, ``futility=``,
        ``exact_budget=``, ``candidate_pvalue=``) change single fields of it. ``indices`` name each text's
        random stream (default 0..N-1); ``on_done(i, certification)`` is called as each text finishes.
        """
        protocol = (protocol or CertifyProtocol()).with_budget(**budget)
        prepared = [self.mechanism.prepare(t) for t in texts]
        return self.engine.certify(prepared, self.mechanism, self.certificate(protocol.top2), protocol, seed=self.seed,
                                   indices=indices, on_done=on_done)
