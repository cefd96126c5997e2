"""Data of several domains: the domain list, domain-balanced batches, domain ids in batches, DomainBed splits.

* :func:`training_domains`, :func:`check_heldout`: which domains a dataset has and which are held out.
* :class:`DomainBalancedSampler` orders a dataset so every batch holds every training domain in fixed,
  equal shares (the setting of Fishr and DomainBed: one minibatch per domain, concatenated).
* :class:`DomainCollator` wraps any data collator and adds the batch's domain ids (``domain_ids``).
* :func:`split_domains`: per-domain train / validation rows (DomainBed's in/out split).
* :func:`safe_name`: a domain (or any value) as one safe path component.

This module imports nothing else of the package: the Fishr trainer, the training glue and the sweep
all build on it.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Callable, Iterator, Sequence

import numpy as np

#: Key of the domain-id tensor a :class:`DomainCollator` adds to each batch.
DOMAIN_KEY = "domain_ids"


def training_domains(dataset: Any, column: str = "domain") -> list[str]:
    """The sorted distinct domains of ``dataset[column]``; a clear error when the column is missing."""
    names = getattr(dataset, "column_names", None)
    if names is not None and column not in names:
        raise ValueError(
            f"the training data has no domain column {column!r} (columns: {names}); "
            "pass --domain-column NAME naming the column that says which domain each example comes from"
        )
    return sorted({str(d) for d in dataset[column]})


class DomainBalancedSampler:
    """Indices in batches of ``batch_size`` that each hold every domain in fixed shares.

    Domain ``k`` (in id order) contributes ``batch_size // K`` samples to every batch, the
    first ``batch_size % K`` domains one more. An epoch has ``max_k ceil(n_k / share_k)`` batches, so
    every sample of the largest domain is drawn once per epoch and smaller domains are cycled, each
    pass in a fresh random order. Samples with a negative domain id are never drawn. The order depends
    only on ``seed`` and the epoch (``set_epoch``, called by the Trainer/accelerate), so a run on N
    processes (which deal out whole batches) sees the same global batches and resumes exactly.
    """

    def __init__(self, domain_ids: Sequence[int], batch_size: int, seed: int = 0) -> None:
        ids = np.asarray(domain_ids, dtype=np.int64)
        self.groups = [np.flatnonzero(ids == k) for k in sorted(set(ids[ids >= 0].tolist()))]
        k = len(self.groups)
        if k == 0:
            raise ValueError("DomainBalancedSampler: no example has a known domain")
        if batch_size < k:
            raise ValueError(f"batch size {batch_size} is smaller than the number of domains {k}")
        self.batch_size = int(batch_size)
        self.shares = [batch_size // k + (1 if i < batch_size % k else 0) for i in range(k)]
        self.num_batches = max(math.ceil(len(g) / s) for g, s in zip(self.groups, self.shares))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        streams = []
        for group, share in zip(self.groups, self.shares):
            need = self.num_batches * share
            passes = [rng.permutation(group) for _ in range(math.ceil(need / len(group)))]
            streams.append(np.concatenate(passes)[:need])
        for b in range(self.num_batches):
            for stream, share in zip(streams, self.shares):
                yield from (int(i) for i in stream[b * share : (b + 1) * share])


class DomainCollator:
    """Wrap a data collator: drop the domain column from the features, add ``domain_ids`` (long, (N,)).

    Domains are numbered by their position in ``domains``; a domain not in the list (e.g. a held-out
    test domain) gets id -1, which the Fishr penalty ignores.
    """

    def __init__(self, collator: Callable[[list[dict]], dict], domains: Sequence[str], column: str = "domain") -> None:
        self.collator = collator.collator if isinstance(collator, DomainCollator) else collator
        self.domains = [str(d) for d in domains]
        self.lookup = {d: i for i, d in enumerate(self.domains)}
        self.column = column

    def __call__(self, features: list[dict]) -> dict:
        import torch

        if any(self.column not in f for f in features):
            raise KeyError(
                f"DomainCollator: a feature has no domain column {self.column!r} (has {sorted(features[0])}); "
                "pass --domain-column NAME and keep the column (remove_unused_columns=False or FishrTrainer)"
            )
        ids = [self.lookup.get(str(f[self.column]), -1) for f in features]
        batch = dict(self.collator([{k: v for k, v in f.items() if k != self.column} for f in features]))
        batch[DOMAIN_KEY] = torch.tensor(ids, dtype=torch.long)
        return batch


def check_heldout(domains: Sequence[str], heldout: Sequence[str] | None, min_train: int = 2) -> list[str]:
    """The held-out domains to test (default: all), checked against the data's domains."""
    domains = [str(d) for d in domains]
    chosen = [str(d) for d in heldout] if heldout else list(domains)
    unknown = [d for d in chosen if d not in domains]
    if unknown:
        raise ValueError(f"--test-domains {unknown} are not domains of the data; choose from {domains}")
    if len(domains) - 1 < min_train:
        raise ValueError(
            f"the data has {len(domains)} domain(s) {domains}; holding one out leaves fewer than {min_train} "
            "training domains. Leave-one-domain-out needs at least 3 domains"
        )
    return chosen


def split_domains(
    dataset: Any, val_fraction: float, max_per_domain: int | None = None, seed: int = 0
) -> dict[str, dict[str, list[int]]]:
    """Per domain, row indices of a training part and a validation part (DomainBed's in/out split).

    Each domain's rows are shuffled with ``seed`` (data seed, fixed across runs); ``all`` is that
    whole order (a held-out domain is tested on its first rows), ``val`` and ``train`` split the
    first ``max_per_domain`` rows: the first ``round(val_fraction * n)`` become validation.
    """
    if not (0.0 < val_fraction < 1.0):
        raise ValueError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    if max_per_domain is not None and max_per_domain < 2:
        raise ValueError(f"--max-per-domain must be >= 2, got {max_per_domain}")
    rng = np.random.default_rng(seed)
    col = np.asarray([str(d) for d in dataset["domain"]])
    out = {}
    for d in sorted(set(col.tolist())):
        order = rng.permutation(np.flatnonzero(col == d))
        rows = order[: max_per_domain or None]
        n_val = max(1, int(round(val_fraction * len(rows))))
        out[d] = {"val": rows[:n_val].tolist(), "train": rows[n_val:].tolist(), "all": order.tolist()}
    return out


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(value: Any, max_len: int = 48) -> str:
    """``value`` as one path component that cannot leave its folder: runs of characters other than
    ``[A-Za-z0-9_.-]`` become ``_``, leading dots are dropped (no ``.``/``..``), and when anything was
    changed (or the result is empty or longer than ``max_len``) an 8-hex-digit hash of the original is
    appended, so distinct values keep distinct names. ``"books"`` -> ``"books"``;
    ``"../x"`` -> ``"_x-<hash>"``."""
    text = str(value)
    clean = _UNSAFE.sub("_", text).lstrip(".")[:max_len]
    if clean == text and clean:
        return clean
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{clean or 'domain'}-{digest}"
