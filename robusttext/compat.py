"""Where the two supported Hugging Face stacks differ, in one place.

robusttext runs on transformers 4.44+ (the pinned stack of the ``[attacks]`` extra: TextAttack's
``flair`` needs ``transformers<5``) and on transformers 5.x with datasets 5.x and huggingface_hub 2.x
(what a plain install resolves today). Everything else in the package uses public APIs that both
majors share; the few differences live here, each with the version that introduced it. This module
imports nothing from robusttext.
"""

from __future__ import annotations

from typing import Any, Sequence

import transformers

#: The installed transformers major version (4 or 5).
TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])

_PROBES = ("a", "hello world , this is a longer probe sentence")


def special_token_frame(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The special-token ids a tokenizer puts before and after one sequence: ``(prefix, suffix)``.

    transformers 5 removed ``build_inputs_with_special_tokens`` and ``prepare_for_model`` from the
    tokenizers-backed classes; the tokenizer's own call works on both majors. The frame is read off
    two probe texts encoded with and without special tokens, and must be the same for both (the
    template of a single sequence is ``prefix + ids + suffix`` for BERT, RoBERTa, DeBERTa, T5, XLNet,
    Llama-style tokenizers); a tokenizer whose template is anything else is refused with a ValueError
    rather than encoded wrongly.
    """
    frames = set()
    for probe in _PROBES:
        bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
        full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
        start = next((i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare), None)
        if not bare or start is None:
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__}: special tokens are not a prefix and suffix of the text's "
                "ids; randomized deletion cannot encode its noisy copies"
            )
        frames.add((tuple(full[:start]), tuple(full[start + len(bare) :])))
    if len(frames) != 1:
        raise ValueError(f"tokenizer {type(tokenizer).__name__}: its special tokens depend on the text")
    return frames.pop()


def with_special_tokens(frame: tuple[Sequence[int], Sequence[int]], ids: Sequence[int]) -> tuple[int, ...]:
    """``ids`` inside the tokenizer's special-token frame (what ``build_inputs_with_special_tokens`` gave)."""
    prefix, suffix = frame
    return (*prefix, *ids, *suffix)
