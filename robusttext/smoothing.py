"""``SmoothedTextClassifier``: RS-Del randomized-deletion smoothing of any HF sequence classifier.

The smoothed classifier g(x) returns the class the base classifier f most likely outputs on a copy of
``x`` with every unit deleted independently with probability ``p_del`` (Huang et al., RS-Del,
NeurIPS 2023; CERT-ED, Findings of EMNLP 2024). ``predict`` evaluates g with abstention (Cohen et al.
2019 PREDICT); ``certify`` returns g's class at x together with an edit-distance radius r such that,
with probability >= 1 - alpha over the Monte Carlo samples, g returns the same class on every text
within Levenshtein distance r of x, counted in the deletion unit.

This module only wires the pieces together: :mod:`robusttext.deletion` (the mechanism),
:mod:`robusttext.engine` (sampling, batching, dedup, sequential looks) and :mod:`robusttext.stats`
(bounds and radius).
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np
import torch

from .deletion import DeletionMechanism, Unit, check_deletion_args, model_max_length
from .engine import Certification, MonteCarloEngine, Prediction
from .precision import autocast_dtype as resolve_autocast
from .stats import EditDistanceCertificate, Top2Rule


#: Default futility level of :meth:`SmoothedTextClassifier.certify` (see ``MonteCarloEngine.certify``):
#: an input stops once even a 90% optimistic projection of its remaining votes would not raise its radius.
#: Simulated on the first 200 SST-2 test sentences (``scripts/simulate_certify.py``, MiniLM, p_del = 0.9, 20
#: repetitions, s.e. <= 0.2 points) with the other defaults: 0.1 drew 1,827 samples per input for an expected
#: -0.2 to -0.3 points of certified accuracy per radius against the published protocol; 0.2 drew 1,659 for up
#: to -0.6.
DEFAULT_FUTILITY = 0.1

#: Default selection samples of :meth:`SmoothedTextClassifier.certify`. With ambiguous selections kept
#: open (``DEFAULT_CANDIDATE_PVALUE``), 50 votes gave the expected certified accuracy of 100 within 0.1
#: point in the same simulation, and 12-15% fewer forward passes on the real model (measured without
#: candidates: 93,587 vs 109,722 on the first 200 sentences at futility 0.2).
DEFAULT_N0 = 50

#: Default ``exact_budget`` of :meth:`SmoothedTextClassifier.certify`: at most this many of an input's most
#: likely deletions are classified with their exact probabilities (see ``DeletionMechanism.strata``).
#: On the first 100 SST-2 test sentences (MiniLM, p_del = 0.9) 256 spent 13% fewer forward passes than
#: plain sampling (647 vs 742 per input) at the same certified accuracy within one input per radius;
#: texts of at most 8 words get their exact smoothed probabilities.
DEFAULT_EXACT_BUDGET = 256


#: Default ``candidate_pvalue`` of :meth:`SmoothedTextClassifier.certify` (see ``MonteCarloEngine.certify``):
#: a class stays a candidate unless its selection votes are fewer than the majority's at level 0.1. In the
#: simulation above, selecting from 50 votes without candidates lost an expected 2.1 points of certified
#: accuracy at radius 0 against the published protocol's 1,000 selection votes; with them, 0.3.
DEFAULT_CANDIDATE_PVALUE = 0.1


def default_looks(n: int) -> list[int]:
    """The default sequential schedule for ``n`` estimation samples: looks at n/20, n/8, n/4, 3n/8, n/2, 3n/4
    and n (200, 500, 1000, 1500, 2000, 3000, 4000 for n = 4000).

    At p_del = 0.9 and alpha = 0.05 the RS-Del radius saturates (r = 6) once the top-class lower bound
    exceeds 0.969, which 200 unanimous samples reach at the first look's level (5% of alpha, see
    :func:`default_alpha_weights`); so unanimous inputs stop at the first look, inputs whose radius is
    settled early stop at one of the next, and only inputs close to a radius threshold pay for all ``n``
    samples. Looks between 1000 and 4000 let an input stop near the sample size its radius needs. In the
    simulation of ``DEFAULT_FUTILITY``, this schedule at futility 0.1 drew 1,827 samples per input for
    -0.2 to -0.3 points; the earlier default, looks n/20, n/8, 3n/8, n at futility 0.2, drew 1,884 for up
    to -0.6. On the real model the two spent 554 and 535 forward passes per input on the first 200 SST-2
    sentences and 1,034 and 1,198 on the first 30 AG News articles.
    """
    return sorted({max(1, round(n * f)) for f in (1 / 20, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1)})


def default_alpha_weights(looks: Sequence[int]) -> list[float]:
    """How ``alpha`` is split over ``looks`` (Bonferroni weights, summing to 1).

    The last look gets 80% (its bound is then almost as tight as one look at ``alpha``), the look
    before it 10%, the first look 5% and the looks between share 5%: they only need to certify inputs
    that are (nearly) unanimous or far from the next radius threshold. The first look keeps 5% because
    that is what a unanimous input needs to reach the largest radius at n/20 samples (at n = 4000,
    p_del = 0.9, alpha = 0.05: 200 votes give a lower bound of 0.0025 ** (1/200) = 0.9705 > 0.9686).
    """
    k = len(looks)
    if k == 1:
        return [1.0]
    if k == 2:
        return [0.2, 0.8]
    if k == 3:
        return [0.1, 0.1, 0.8]
    return [0.05] + [0.05 / (k - 3)] * (k - 3) + [0.1, 0.8]


class SmoothedTextClassifier:
    """Randomized-deletion smoothing of a ``transformers`` sequence classifier.

    Args:
        model: an ``AutoModelForSequenceClassification`` (any architecture returning ``logits``).
        tokenizer: its tokenizer.
        p_del: probability of deleting each unit, in (0, 1) (CERT-ED uses 0.9 with word units).
        unit: ``"word"``, ``"char"`` or ``"token"``; radii are counted in this unit.
        batch_size: noisy samples per forward pass (pooled across inputs, bucketed by length; MiniLM's
            bf16 forward pass on a 2-core CPU ran 1.45x the samples/s at 256 as at 64; end to end
            certification was within noise between 32 and 256).
        max_length: tokens the base model sees (default: the model's limit, at most 512).
        seed: seeds every input's random stream (``[seed, index]``), so results are reproducible
            and independent of batching and of the number of processes.
        dedup: classify identical noisy copies of an input once (exact).
        top2: ``"complement"`` (default) or ``"bonferroni"`` (CERT-ED); see ``stats._Certificate``.
        device: where the model runs (default: the model's device).
        autocast_dtype: the base model's autocast dtype, e.g. ``torch.bfloat16``; None: full precision;
            ``"auto"`` (default): bf16 where the device computes it natively (see :mod:`robusttext.precision`).

    Example::

        clf = SmoothedTextClassifier(model, tokenizer, p_del=0.9)
        out = clf.certify(["a gripping, funny film"], n0=50, n=4000, alpha=0.05)
        out[0].prediction, out[0].radius   # radius -1 means abstain
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        p_del: float = 0.9,
        unit: Unit = "word",
        batch_size: int = 256,
        max_length: int | None = None,
        seed: int = 0,
        dedup: bool = True,
        top2: Top2Rule = "complement",
        device: str | torch.device | None = None,
        autocast_dtype: torch.dtype | None | str = "auto",
    ) -> None:
        check_deletion_args(p_del, unit)
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.device = next(self.model.parameters()).device
        self.tokenizer = tokenizer
        self.num_classes = int(model.config.num_labels)
        self.max_length = int(max_length or model_max_length(tokenizer, model.config))
        self.mechanism = DeletionMechanism(tokenizer, p_del, unit, self.max_length)
        self.certificate = EditDistanceCertificate(p_del=float(p_del), top2=top2)
        self.seed = int(seed)
        self.autocast_dtype = (resolve_autocast(autocast_dtype, self.device) if isinstance(autocast_dtype, str)
                               else autocast_dtype)
        self.engine = MonteCarloEngine(self.classify, self.num_classes, batch_size=batch_size, dedup=dedup)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> "SmoothedTextClassifier":
        """Load model and tokenizer from a Hub id or a local folder, then smooth them."""
        from .models import load_classifier

        model, tokenizer = load_classifier(name_or_path)
        return cls(model, tokenizer, **kwargs)

    @property
    def p_del(self) -> float:
        return self.mechanism.p_del

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
        n0: int = DEFAULT_N0,
        n: int = 4000,
        alpha: float = 0.05,
        looks: Sequence[int] | str | None = "auto",
        indices: Sequence[int] | None = None,
        futility: float = DEFAULT_FUTILITY,
        exact_budget: int = DEFAULT_EXACT_BUDGET,
        candidate_pvalue: float = DEFAULT_CANDIDATE_PVALUE,
    ) -> list[Certification]:
        """Certified prediction and edit-distance radius of each text.

        ``n0`` selection samples pick the class; up to ``n`` separate estimation samples bound its
        probability (Clopper-Pearson at ``alpha``, split over the sequential ``looks``: ``"auto"`` =
        :func:`default_looks` with :func:`default_alpha_weights`, ``None`` = one look at ``n``, the
        fixed-sample protocol, or a list of sample sizes with an equal split). ``futility`` in [0, 1)
        stops inputs whose radius cannot plausibly grow (0: only when it cannot grow at all); it
        changes cost, never validity. ``exact_budget`` > 0 classifies, for inputs whose selection votes
        are split, their at most ``exact_budget`` most likely deletions with exact probabilities and
        samples only the rest (stratified; texts of at most log2(exact_budget) units get exact
        probabilities and no sampling error). ``candidate_pvalue`` > 0 keeps every class whose selection
        votes are not significantly fewer than the majority's (binomial test at that level) and lets the
        estimation votes choose among them, alpha split over the candidates
        (:func:`robusttext.engine.candidate_classes`). With probability >= 1 - alpha the smoothed class is constant
        within the returned radius (in units of ``self.unit``; insertions, deletions and
        substitutions). Radius -1 = abstain.
        """
        weights = None
        if looks == "auto":
            looks = default_looks(n)
            weights = default_alpha_weights(looks)
        prepared = [self.mechanism.prepare(t) for t in texts]
        return self.engine.certify(
            prepared, self.mechanism, self.certificate, n0=n0, n=n, alpha=alpha, looks=looks,  # type: ignore[arg-type]
            seed=self.seed, indices=indices, alpha_weights=weights, futility=futility, exact_budget=exact_budget,
            candidate_pvalue=candidate_pvalue,
        )
