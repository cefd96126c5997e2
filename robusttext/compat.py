"""Where the two supported Hugging Face stacks differ, in one place.

robusttext runs on transformers 4.44+ (the pinned stack of the ``[attacks]`` extra: TextAttack's
``flair`` needs ``transformers<5``) and on transformers 5.x with datasets 5.x and huggingface_hub 2.x
(what a plain install resolves today). Everything else in the package uses public APIs that both
majors share; the few differences live here, each with the version that introduced it. This module
imports nothing from robusttext.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class ResumableTrainingArguments(transformers.TrainingArguments):
    """``transformers.TrainingArguments`` with ``overwrite_output_dir`` on both majors.

    transformers 4.x had the field (unused by the Trainer itself: scripts read it to decide whether to
    resume); 5.0 removed it. robusttext's training resumes from the last checkpoint in ``output_dir``
    unless this is set, so the option keeps its name and meaning on either stack.
    """

    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Start afresh in output_dir instead of resuming from its last checkpoint."}
    )


def overwrite_requested(args: Any) -> bool:
    """``args.overwrite_output_dir`` of any ``TrainingArguments`` (False where transformers 5 has no such field)."""
    return bool(getattr(args, "overwrite_output_dir", False))


def is_head_size_mismatch(err: BaseException) -> bool:
    """Whether ``from_pretrained`` failed because a checkpoint's weights (a classification head) have another
    shape than the config asks for: 4.x says "size mismatch for ...", 5.x "You set `ignore_mismatched_sizes`
    to `False`"."""
    text = str(err)
    return "size mismatch" in text or "ignore_mismatched_sizes" in text


_QUIET_BARS = ("Loading weights", "Writing model shards")


def quiet_weight_bars() -> None:
    """Hide the per-call "Loading weights" / "Writing model shards" bars transformers 5 draws for every
    ``from_pretrained`` / ``save_pretrained`` (4.x draws none), keeping download and training bars: the
    command line's stderr is for its own progress bar and one-line errors. A no-op on 4.x."""
    set_hook = getattr(transformers.utils.logging, "set_tqdm_hook", None)
    if set_hook is None:
        return

    def hook(factory: Any, args: tuple, kwargs: dict) -> Any:
        if kwargs.get("desc") in _QUIET_BARS:
            kwargs = {**kwargs, "disable": True}
        return factory(*args, **kwargs)

    set_hook(hook)
