"""Content fingerprints, so a resumed run never mixes results of another model or other examples.

A run records the fingerprint of the model it certified (its weights, config and tokenizer files) and of
the examples (their texts or pixels and labels). Retraining into the same folder or editing the data file
changes them, and the run refuses to resume instead of reporting the old numbers
(:class:`robusttext.runs.results.ResultsStore`).
"""

from __future__ import annotations

import hashlib
import json
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Iterable, Sequence

#: Files of a model folder that decide its outputs (weights, config, tokenizer, deletion schedule).
MODEL_FILES = (
    "config.json", "*.safetensors", "pytorch_model*.bin", "model*.bin", "tokenizer*", "vocab*", "merges.txt",
    "special_tokens_map.json", "added_tokens.json", "*.model", "preprocessor_config.json", "rate_schedule.json",
    "*.pt",
)


def _digest(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()[:16]


def folder_fingerprint(folder: str | Path, patterns: Sequence[str] = MODEL_FILES) -> str:
    """SHA-256 (first 16 hex digits) over the names and bytes of the top-level files matching ``patterns``."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and any(fnmatch(p.name, pat) for pat in patterns))
    if not files:
        raise ValueError(f"{folder}: no model files ({', '.join(patterns[:4])}, ...) to fingerprint")

    def chunks() -> Iterable[bytes]:
        for p in files:
            yield p.name.encode() + b"\0"
            with open(p, "rb") as fh:
                while block := fh.read(1 << 22):
                    yield block

    return _digest(chunks())


def model_fingerprint(name_or_path: str, model: Any = None) -> str:
    """A local folder's :func:`folder_fingerprint`; for a Hub id, the commit the loaded ``model`` came from."""
    path = Path(name_or_path)
    if path.is_dir():
        return folder_fingerprint(path)
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return f"hub:{name_or_path}@{commit or 'unknown'}"


def examples_fingerprint(inputs: Sequence[Any], labels: Sequence[Any] | None) -> str:
    """SHA-256 (first 16 hex digits) of the inputs (texts, or arrays/tensors as bytes) and their labels."""

    def chunks() -> Iterable[bytes]:
        for x in inputs:
            if isinstance(x, str):
                yield x.encode("utf-8") + b"\0"
            else:
                yield bytes(memoryview(_numpy(x)).cast("B")) + b"\0"
        yield json.dumps(None if labels is None else [None if v is None else int(v) for v in labels]).encode()

    return _digest(chunks())


def _numpy(x: Any) -> Any:
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x)
