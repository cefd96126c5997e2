"""Host-side arrays for text certification: from keep masks to padded, deduplicated, length-sorted batches.

The engine's per-copy path handles one noisy copy at a time as a tuple of token ids; at the rates
certification uses most copies repeat, and the Python work per copy (tuples, dict grouping, sorting
lists, a padding loop) sets the speed once the model runs on a fast device. The functions here do the
same work on arrays, per draw chunk:

* :func:`unique_masks` - distinct keep masks of a chunk by their packed bits (``np.packbits`` +
  ``np.unique``), in first-occurrence order, with multiplicities (``bincount``);
* :func:`kept_token_rows` - the token ids of each kept-unit mask gathered from the units' token spans by
  indexing, truncated to the model's limit, inside the tokenizer's special-token frame, as one padded
  ``int64`` matrix with each row's length;
* :class:`RowChunk` - one chunk's distinct copies (rows, lengths, multiplicities and the copies' keys:
  :func:`sample_key`, which the per-copy path uses too, so both paths share one cache and count the
  same copies);
* :func:`length_batches` - batches of a length-sorted pool, by rows (``batch_size``) and optionally by a
  token budget (rows x padded width), with the padding they cost;
* :func:`prefetch` - the next draw chunks prepared in a background thread while the device computes.

Everything is exact: a row holds exactly the ids the per-copy path builds for the same mask
(:meth:`robusttext.certificate.deletion.DeletionMechanism.encode_kept`), and multiplicities add up to the copies drawn.
"""

from __future__ import annotations

import queue
from array import array
import threading
from dataclasses import dataclass, field
from typing import Iterator, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass
class RowChunk:
    """Distinct noisy copies of one input from one draw chunk.

    ``ids`` (rows x width, int64, padded with ``pad_id`` past each row's ``lengths``) holds each distinct
    copy's token ids, special tokens included; ``mult[i]`` is how many of the chunk's copies equal row ``i``
    (they sum to the chunk's size); ``keys[i]`` is row ``i``'s dedup key (:func:`sample_key`). Rows are
    distinct as token sequences and in the order of their first copy in the draw.
    """

    ids: np.ndarray
    lengths: np.ndarray
    mult: np.ndarray
    keys: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lengths)


def unit_spans(unit_ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The token ids of all units concatenated, each unit's first position and each unit's token count."""
    lens = np.fromiter((len(u) for u in unit_ids), dtype=np.int64, count=len(unit_ids))
    flat = np.fromiter((t for u in unit_ids for t in u), dtype=np.int64, count=int(lens.sum()))
    starts = np.cumsum(lens) - lens
    return flat, starts, lens


def unique_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a boolean ``masks`` matrix in the order of their first occurrence, and how often each occurs."""
    if masks.shape[0] == 0:
        return masks, np.zeros(0, dtype=np.int64)
    if masks.shape[1] == 0:
        return masks[:1], np.array([masks.shape[0]], dtype=np.int64)
    packed = np.packbits(masks, axis=1)
    if packed.shape[1] <= 8:  # up to 64 units: one uint64 per row
        packed = np.pad(packed, ((0, 0), (0, 8 - packed.shape[1])))
        flat = np.ascontiguousarray(packed).view(np.uint64).reshape(-1)
    else:
        packed = np.ascontiguousarray(packed)
        flat = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)  # one bytes-comparable item per row
    _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    mult = np.bincount(inverse.reshape(-1), minlength=len(first))
    order = np.argsort(first, kind="stable")
    return masks[first[order]], mult[order]


def kept_token_rows(
    spans: tuple[np.ndarray, np.ndarray, np.ndarray], masks: np.ndarray, limit: int,
    frame: tuple[Sequence[int], Sequence[int]], pad_id: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Padded token ids of the kept units of each mask row: ``(ids, lengths)``.

    ``spans`` is :func:`unit_spans` of the input's units; row ``i`` is ``prefix + ids of the units kept by
    masks[i] in order, first limit of them + suffix``, exactly ``with_special_tokens(frame, ids[:limit])``.
    The work is proportional to the kept tokens (gathered by indexing), not to rows x input length.
    """
    flat, starts, lens = spans
    prefix, suffix = (np.asarray(f, dtype=np.int64) for f in frame)
    rows = masks.shape[0]
    r, unit = np.nonzero(masks)
    rep = lens[unit]
    r_tok = np.repeat(r, rep)
    first_of_unit = np.cumsum(rep) - rep
    src = np.repeat(starts[unit] - first_of_unit, rep) + np.arange(len(r_tok))
    per_row = np.bincount(r_tok, minlength=rows)
    pos = np.arange(len(r_tok)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    body = np.minimum(per_row, int(limit))
    lengths = body + len(prefix) + len(suffix)
    ids = np.full((rows, max(1, int(lengths.max()) if rows else 1)), pad_id, dtype=np.int64)
    ids[:, : len(prefix)] = prefix
    keep = pos < limit
    ids[r_tok[keep], len(prefix) + pos[keep]] = flat[src[keep]]
    if len(suffix):
        ids[np.arange(rows)[:, None], (len(prefix) + body)[:, None] + np.arange(len(suffix))] = suffix
    return ids, lengths


def rows_from_tuples(samples: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Encoded samples (sequences of ids) as one padded int64 matrix and their lengths."""
    lengths = np.fromiter((len(s) for s in samples), dtype=np.int64, count=len(samples))
    ids = np.full((len(samples), max(1, int(lengths.max()) if len(samples) else 1)), pad_id, dtype=np.int64)
    mask = np.arange(ids.shape[1]) < lengths[:, None]
    ids[mask] = np.fromiter((t for s in samples for t in s), dtype=np.int64, count=int(lengths.sum()))
    return ids, lengths


def sample_key(sample: Sequence[int]) -> bytes:
    """The dedup key of an encoded sample: its ids as native C ints, as bytes (cheap to build from arrays and
    to hash; equal keys if and only if equal id sequences, for ids below 2**31)."""
    return array("i", sample).tobytes()


def row_keys(ids: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """Each row's ids up to its length as :func:`sample_key` gives them, built from one buffer."""
    valid = np.arange(ids.shape[1]) < lengths[:, None]
    buf = ids[valid].astype(np.intc).tobytes()
    ends = (np.cumsum(lengths) * np.dtype(np.intc).itemsize).tolist()
    return [buf[a:b] for a, b in zip([0] + ends[:-1], ends)]


def merge_chunk(ids: np.ndarray, lengths: np.ndarray, mult: np.ndarray) -> RowChunk:
    """Merge rows that are the same token sequence (distinct masks can give equal ids: truncation, repeated
    words), keeping first-occurrence order and adding multiplicities."""
    keys = row_keys(ids, lengths)
    if len(set(keys)) == len(keys):
        return RowChunk(ids, lengths, mult, keys)
    where: dict = {}
    for i, k in enumerate(keys):
        where.setdefault(k, i)
    first = np.fromiter(where.values(), dtype=np.int64, count=len(where))
    slot = np.fromiter((where[k] for k in keys), dtype=np.int64, count=len(keys))
    dense = np.searchsorted(first, slot)
    merged = np.bincount(dense, weights=mult, minlength=len(first)).astype(np.int64)
    return RowChunk(ids[first], lengths[first], merged, [keys[i] for i in first])


def length_batches(lengths: np.ndarray, batch_size: int, token_budget: int | None = None) -> tuple[np.ndarray, list[slice]]:
    """A stable length sort of a pool and its batches: at most ``batch_size`` rows each, and, with a
    ``token_budget``, at most that many padded tokens (rows x the batch's longest row; a row longer than
    the budget gets a batch of its own). Returns ``(order, slices into order)``."""
    order = np.argsort(lengths, kind="stable")
    if token_budget is None:
        return order, [slice(s, min(s + batch_size, len(order))) for s in range(0, len(order), batch_size)]
    sorted_len = lengths[order]
    out, start = [], 0
    while start < len(order):
        # rows fit while (rows) * (longest = the last, sorted) <= budget
        fits = np.nonzero(sorted_len[start : start + batch_size] * np.arange(1, min(batch_size, len(order) - start) + 1)
                          <= token_budget)[0]
        stop = start + (int(fits[-1]) + 1 if len(fits) else 1)
        out.append(slice(start, stop))
        start = stop
    return order, out


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Iterate ``items``, producing up to ``depth`` of them ahead in a background thread (``depth <= 0``: inline).

    The order and the values are those of plain iteration (one producer, a FIFO queue), so whatever the
    producer computes stays deterministic; what changes is only that the host prepares the next items
    while the caller waits on the device. An exception in the producer is raised here, in order.
    """
    if depth <= 0:
        yield from items
        return
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry: tuple) -> bool:
        """Queue ``entry`` unless the consumer has stopped; False once it has."""
        while not stop.is_set():
            try:
                box.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as err:  # handed to the consumer, raised there
            put((False, err))

    worker = threading.Thread(target=produce, name="robusttext-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, item = box.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
