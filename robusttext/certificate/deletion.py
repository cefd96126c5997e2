"""Randomized deletion: split a text into units, delete each unit independently, encode for the model.

The RS-Del mechanism (Huang et al., NeurIPS 2023, Sec. 3): every unit of the input is deleted
independently with probability ``p_del``; the order of the kept units is preserved. The unit is a
**word** (maximal run of non-whitespace, CERT-ED's setting; kept words are rejoined with one space),
a **character**, or a **token** (the model tokenizer's sub-tokens, special tokens excluded). The
certificate of :func:`robusttext.certificate.stats.edit_distance_radius` counts edits in the same unit.

Deletion is applied to the *whole* text before truncation: the base classifier sees at most
``max_length`` tokens of the kept units, so long inputs are still covered by the certificate (a
truncating base classifier is still a deterministic function of the noisy sequence).

The same code path serves certification (:class:`DeletionMechanism`, used by the engine) and training
(:class:`DeletionCollator`, a ``transformers`` data collator), so a model is trained under exactly the
noise it is certified with.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
from scipy import stats

from ..compat import special_token_frame, with_special_tokens
from .batching import RowChunk, kept_token_rows, merge_chunk, rows_from_tuples, sample_key, unique_masks, unit_spans

if TYPE_CHECKING:
    from .engine import Strata
    from .rates import RateSchedule

Unit = Literal["word", "char", "token"]
UNITS: tuple[str, ...] = ("word", "char", "token")
_WORD = re.compile(r"\S+")


def check_deletion_args(p_del: float, unit: str, allow_zero: bool = False) -> None:
    """Raise a clear ``ValueError`` for a deletion probability or unit that cannot be used.

    Certification needs ``p_del`` in (0, 1); training also accepts 0 (no noise, plain fine-tuning).
    """
    low_ok = float(p_del) >= 0.0 if allow_zero else float(p_del) > 0.0
    if not isinstance(p_del, (int, float)) or not (low_ok and float(p_del) < 1.0):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"p_del must be in {interval}, got {p_del!r}; RS-Del/CERT-ED use p_del=0.9 (word unit)")
    check_unit(unit)


def check_unit(unit: str) -> None:
    """Raise a clear ``ValueError`` for a deletion unit other than word, char or token."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")


def split_units(text: str, unit: str) -> list[str]:
    """Split ``text`` into word or character units (token units need a tokenizer: see DeletionMechanism)."""
    if unit == "word":
        return _WORD.findall(text)
    if unit == "char":
        return list(text)
    raise ValueError(f"split_units handles 'word' and 'char', got {unit!r}")


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance between two sequences (unit cost insert / delete / substitute)."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(list(a), list(b)))


def unit_edits(original: str, perturbed: str, unit: str, tokenizer: Any = None) -> int:
    """Edits between two texts counted in ``unit`` (word = whitespace-separated run, char, token),
    the unit in which RS-Del radii are stated."""
    if unit == "token":
        if tokenizer is None:
            raise ValueError("edits in token units need the model's tokenizer")
        a, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (original, perturbed))
        return edit_distance(a, b)
    return edit_distance(split_units(original, unit), split_units(perturbed, unit))


def keep_masks(rng: np.random.Generator, n: int, length: int, p_del: float) -> np.ndarray:
    """``n`` boolean rows of ``length``: True = unit kept (probability 1 - p_del, independently)."""
    return rng.random((n, length)) >= p_del


@dataclass
class DeletionInput:
    """A text prepared for deletion: its units and, when possible, each unit's token ids."""

    text: str
    units: list[Any]
    unit_ids: list[list[int]] | None = None  # word unit fast path: ids of each word, concatenable
    cache: dict = field(default_factory=dict)  # kept-mask bytes -> encoded ids
    p_del: float = 0.9  # this input's deletion probability (the schedule at its length)
    spans: tuple | None = None  # (flat ids, unit starts, unit lengths) for the array path, built on first use

    def __len__(self) -> int:
        return len(self.units)


class DeletionMechanism:
    """Randomized deletion for a ``transformers`` tokenizer: prepares texts, draws encoded noisy copies.

    A noisy sample is a tuple of input ids (special tokens added, truncated to ``max_length``); its
    deduplication key is those ids as bytes and its length is its batching cost. :meth:`draw_rows` gives
    the same copies as arrays (the engine's array path).

    Args:
        tokenizer: the classifier's tokenizer (fast or slow).
        p_del: deletion probability of each unit, in [0, 1) (0 = no noise, for plain training), or a rate
            schedule (:mod:`robusttext.certificate.rates`): each prepared input then carries its own rate, the
            schedule at its length in units.
        unit: ``"word"``, ``"char"`` or ``"token"``.
        max_length: tokens the base classifier sees at most (special tokens included).
    """

    def __init__(self, tokenizer: Any, p_del: "float | RateSchedule", unit: Unit = "word", max_length: int | None = None) -> None:
        from .rates import RateSchedule

        self.schedule = p_del if isinstance(p_del, RateSchedule) else None
        constant = self.schedule.constant() if self.schedule is not None else p_del
        check_deletion_args(0.5 if constant is None else constant, unit, allow_zero=True)
        self.tokenizer = tokenizer
        self.p_del = None if constant is None else float(constant)  # None: the rate depends on the length
        self.unit = unit
        self.max_length = int(max_length or model_max_length(tokenizer))
        self._frame = special_token_frame(tokenizer)
        self._n_special = len(self._frame[0]) + len(self._frame[1])
        if self.max_length <= self._n_special:
            raise ValueError(f"max_length={self.max_length} leaves no room for text after special tokens")

    # -------------------------------------------------------------- preparing and encoding
    def _ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]

    def prepare(self, text: str) -> DeletionInput:
        """Split ``text`` into units (and pre-tokenize words when concatenating their ids is exact)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if self.unit == "token":
            ids = self._ids([text])[0]
            return DeletionInput(text, ids, p_del=self.rate_of(len(ids)))
        units = split_units(text, self.unit)
        if self.unit == "word" and units:
            per_word = self._ids(units)
            whole = self._ids([" ".join(units)])[0]
            if [t for ids in per_word for t in ids] == whole:
                # WordPiece/SentencePiece-style tokenizers encode words independently: building ids
                # from per-word ids equals tokenizing the rejoined string, with no re-tokenization.
                return DeletionInput(text, units, per_word, p_del=self.rate_of(len(units)))
        return DeletionInput(text, units, p_del=self.rate_of(len(units)))

    def rate_of(self, length: int) -> float:
        """The deletion probability of an input of ``length`` units."""
        return self.p_del if self.p_del is not None else float(self.schedule(length))  # type: ignore[misc]

    def _finish(self, ids: Sequence[int]) -> tuple[int, ...]:
        ids = list(ids)[: self.max_length - self._n_special]
        return with_special_tokens(self._frame, ids)

    def encode_kept(self, x: DeletionInput, masks: np.ndarray) -> list[tuple[int, ...]]:
        """Encode the kept units of ``x`` for each boolean row of ``masks`` (exact, with caching)."""
        if len(x) == 0:
            return [self._finish([])] * masks.shape[0]
        packed = np.packbits(masks, axis=1)
        uniq, inverse = np.unique(packed, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        encoded: list[tuple[int, ...] | None] = [None] * len(uniq)
        todo: list[int] = []
        for u, row in enumerate(uniq):
            hit = x.cache.get(row.tobytes())
            if hit is None:
                todo.append(u)
            else:
                encoded[u] = hit
        if todo:
            rows = np.unpackbits(uniq[todo], axis=1, count=len(x)).astype(bool)
            if x.unit_ids is not None:
                new = [self._finish([t for k, ids in zip(r, x.unit_ids) if k for t in ids]) for r in rows]
            elif self.unit == "token":
                new = [self._finish([t for k, t in zip(r, x.units) if k]) for r in rows]
            else:
                sep = " " if self.unit == "word" else ""
                texts = [sep.join(u for k, u in zip(r, x.units) if k) for r in rows]
                new = [self._finish(ids) for ids in self._ids(texts)]
            for u, ids in zip(todo, new):
                encoded[u] = ids
                x.cache[uniq[u].tobytes()] = ids
        return [encoded[i] for i in inverse]  # type: ignore[misc]

    def encode_rows(self, x: DeletionInput, masks: np.ndarray) -> RowChunk:
        """The distinct noisy copies that the rows of ``masks`` give, as arrays (:class:`robusttext.certificate.batching.RowChunk`).

        Row for row the ids equal :meth:`encode_kept`'s tuples; equal masks are merged first (packed bits),
        then equal token sequences (truncation, repeated words), in first-occurrence order, with
        multiplicities summing to ``len(masks)``. Words that tokenize independently and token units are
        gathered by indexing; other inputs go through :meth:`encode_kept` once per distinct mask.
        """
        distinct, mult = unique_masks(masks)
        if x.unit_ids is not None or (self.unit == "token" and len(x)):
            if x.spans is None:
                x.spans = unit_spans(x.unit_ids if x.unit_ids is not None else [[t] for t in x.units])
            ids, lengths = kept_token_rows(x.spans, distinct, self.max_length - self._n_special, self._frame,
                                           self.pad_id)
        else:
            ids, lengths = rows_from_tuples(self.encode_kept(x, distinct), self.pad_id)
        return merge_chunk(ids, lengths, mult)

    def draw_rows(self, x: DeletionInput, n: int, rng: np.random.Generator) -> RowChunk:
        """The engine's array path: the same ``n`` copies as :meth:`draw` (same draws from ``rng``), as distinct rows."""
        return self.encode_rows(x, keep_masks(rng, n, len(x), x.p_del))

    @property
    def pad_id(self) -> int:
        """The id that pads rows (the tokenizer's pad token, else 0); masked out by the attention mask."""
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return int(pad) if pad is not None else 0

    def encode_clean(self, x: DeletionInput) -> tuple[int, ...]:
        """The noise-free encoding (every unit kept): what the base classifier sees without smoothing."""
        return self.encode_kept(x, np.ones((1, len(x)), dtype=bool))[0]

    # -------------------------------------------------------------- the engine's Mechanism protocol
    def draw(self, x: DeletionInput, n: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
        """``n`` noisy copies of ``x``: each unit deleted independently with probability ``x.p_del``."""
        return self.encode_kept(x, keep_masks(rng, n, len(x), x.p_del))

    def strata(self, x: DeletionInput, max_exact: int) -> "Strata | None":
        """The engine's exact strata for ``x``: every deletion that keeps at most ``depth`` units, with its
        exact probability, for the largest ``depth`` whose subsets number at most ``max_exact``.

        With ``L`` units, a deletion keeping ``j`` of them has probability ``(1 - p_del)^j p_del^(L - j)``;
        for ``p_del > 0.5`` these are the most likely deletions, so few subsets carry much of the mass
        (at p_del = 0.9 and L = 19 words, the 191 subsets keeping <= 2 words carry 70%). The rest, kept
        count ``K > depth``, has mass ``P[Binomial(L, 1 - p_del) > depth]`` and is sampled by
        :meth:`draw_residual`. Returns None when not even the empty deletion fits or nothing is left to
        enumerate (``max_exact < 1``).
        """
        from .engine import Strata

        length = len(x)
        depth, total = -1, 0
        while depth < length and total + math.comb(length, depth + 1) <= max_exact:
            depth += 1
            total += math.comb(length, depth)
        if depth < 0:
            return None
        masks = np.zeros((total, length), dtype=bool)
        row = 0
        for j in range(1, depth + 1):
            for kept in itertools.combinations(range(length), j):
                row += 1
                masks[row, list(kept)] = True
        j = masks.sum(axis=1)
        probs = np.exp(j * math.log1p(-x.p_del) + (length - j) * math.log(x.p_del))
        residual = 0.0 if depth == length else float(stats.binom.sf(depth, length, 1.0 - x.p_del))
        return Strata(
            samples=self.encode_kept(x, masks), probs=probs, residual_mass=residual,
            draw_residual=lambda n, rng: self.draw_residual(x, n, rng, depth),
            draw_residual_rows=lambda n, rng: self.encode_rows(x, self.residual_masks(x, n, rng, depth)),
        )

    def draw_residual(self, x: DeletionInput, n: int, rng: np.random.Generator, depth: int) -> list[tuple[int, ...]]:
        """``n`` noisy copies of ``x`` drawn from the deletion distribution conditioned on keeping more
        than ``depth`` units: the kept count K from Binomial(L, 1 - p_del) truncated to K > depth, then a
        uniformly random K-subset (given K, every K-subset is equally likely under independent deletion).
        """
        return self.encode_kept(x, self.residual_masks(x, n, rng, depth))

    def residual_masks(self, x: DeletionInput, n: int, rng: np.random.Generator, depth: int) -> np.ndarray:
        """The keep masks of :meth:`draw_residual` (rows keep more than ``depth`` of ``x``'s units)."""
        length = len(x)
        if not 0 <= depth < length:
            raise ValueError(f"depth must be in [0, {length}) for an input of {length} units, got {depth}")
        counts = np.arange(depth + 1, length + 1)
        pmf = stats.binom.pmf(counts, length, 1.0 - x.p_del)
        kept = rng.choice(counts, size=n, p=pmf / pmf.sum())
        rank = np.argsort(np.argsort(rng.random((n, length)), axis=1), axis=1)  # a random permutation per row
        return rank < kept[:, None]

    @staticmethod
    def key(sample: tuple[int, ...]) -> bytes:
        """The sample's ids as bytes (:func:`robusttext.certificate.batching.sample_key`): the key the array path builds too."""
        return sample_key(sample)

    @staticmethod
    def cost(sample: tuple[int, ...]) -> int:
        return len(sample)


def model_max_length(tokenizer: Any, config: Any = None, cap: int = 512) -> int:
    """Tokens the model accepts: the tokenizer's limit, the model's position embeddings, at most ``cap``."""
    limits = [cap]
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000:
        limits.append(tok_limit)
    pos = getattr(config, "max_position_embeddings", None) if config is not None else None
    if isinstance(pos, int) and pos > 0:
        limits.append(pos)
    return min(limits)


class DeletionCollator:
    """A ``transformers`` data collator that applies fresh deletion noise to every training batch.

    Use it with a plain ``transformers.Trainer`` (set ``remove_unused_columns=False`` so the raw text
    column reaches the collator)::

        collator = DeletionCollator(tokenizer, p_del=0.9, unit="word")
        Trainer(model=model, args=TrainingArguments(..., remove_unused_columns=False),
                train_dataset=ds, data_collator=collator).train()

    Each feature is a dict with a text column (``text_column``) and a label column; the output is a
    padded batch with ``input_ids``, ``attention_mask`` and ``labels``. ``p_del`` is a probability (0:
    clean batches through the same encoding) or a rate schedule of :mod:`robusttext.certificate.rates`: each example
    then gets ``schedule.sample(length, rng)`` (its length's rate, or AdaptDel+'s uniform draw). The noise
    stream is seeded by ``seed`` and advances with every batch. With ``copies = m > 1`` every example becomes
    ``m`` consecutive rows, each with its own noise (and its own rate draw) and the example's label, for
    consistency training (:mod:`robusttext.training.consistency`); ``copies = 1`` draws exactly what it always did.
    """

    def __init__(
        self,
        tokenizer: Any,
        p_del: "float | RateSchedule",
        unit: Unit = "word",
        max_length: int | None = None,
        text_column: str = "text",
        label_column: str = "label",
        seed: int = 0,
        copies: int = 1,
    ) -> None:
        from .rates import as_schedule

        if int(copies) != copies or copies < 1:
            raise ValueError(f"DeletionCollator: copies must be a whole number >= 1, got {copies}")
        self.copies = int(copies)

        self.rate = None if isinstance(p_del, (int, float)) and float(p_del) == 0.0 else as_schedule(p_del)
        self.mechanism = DeletionMechanism(tokenizer, 0.0, unit, max_length)  # prepares and encodes
        self.tokenizer = tokenizer
        self.text_column = text_column
        self.label_column = label_column
        self.rng = np.random.default_rng(seed)

    def __call__(self, features: list[dict]) -> dict:
        ids = []
        for f in features:
            if self.text_column not in f:
                raise KeyError(
                    f"DeletionCollator: feature has no text column {self.text_column!r} (has {sorted(f)}); "
                    "pass text_column=... and TrainingArguments(remove_unused_columns=False)"
                )
            x = self.mechanism.prepare(f[self.text_column])
            for _ in range(self.copies):
                if self.rate is not None:
                    p = self.rate.sample(len(x), self.rng)
                    ids.append(self.mechanism.encode_kept(x, keep_masks(self.rng, 1, len(x), p))[0])
                else:
                    ids.append(self.mechanism.encode_clean(x))
        batch = self.tokenizer.pad({"input_ids": [list(i) for i in ids]}, return_tensors="pt")
        if self.label_column in features[0]:
            import torch

            labels = [int(f[self.label_column]) for f in features for _ in range(self.copies)]
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return dict(batch)
