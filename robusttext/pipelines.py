"""Certify a whole dataset: shard over processes, write results as they come, resume, summarize, report.

``certify_dataset`` is what ``robusttext certify`` and ``scripts/certify_hub_model.py`` run. It works
unchanged on one process and under ``accelerate launch`` with N processes: inputs are dealt out by
index (``todo[rank::N]``), every input draws from its own seeded stream, each process appends to its
own part file, and the main process merges them into one ``results.jsonl`` and writes
``summary.json``, ``certified_accuracy.png`` and ``report.md``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .arguments import CertifyArguments, ModelDataArguments, SmoothingArguments
from .deletion import check_deletion_args
from .precision import autocast_dtype, precision_name
from .protocol import CertifyProtocol
from .results import ResultsStore, run_sharded, write_json
from .stats import max_edit_distance_radius

logger = logging.getLogger("robusttext")


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    import accelerate
    import datasets
    import transformers

    from . import __version__

    return {
        "robusttext": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
    }


def model_label_names(config: Any) -> list[str]:
    """Class names of a model in id order, from ``config.id2label``."""
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), i))) for i in range(config.num_labels)]


def validate_certify_args(data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments) -> CertifyProtocol:
    """Reject unusable parameters before any model or data is loaded, naming the flag and the fix; returns
    the certification protocol they describe."""
    check_deletion_args(smooth.p_del, smooth.unit)
    protocol = cert.protocol()
    for name in ("batch_size", "chunk_size"):
        if getattr(cert, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cert, name)}")
    if data.max_length is not None and data.max_length < 3:
        raise ValueError(f"--max-length must be >= 3, got {data.max_length}")
    return protocol


def certify_dataset(data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments) -> dict:
    """Certify every example of a dataset split with RS-Del; returns the summary (on every process).

    Writes, in ``cert.output_dir``: ``results.jsonl`` (one line per input: index, label, prediction,
    radius, top1_lower, top2_upper, correct, clean_prediction, n_queries, n_samples, looks_used,
    exact_mass, seconds), ``summary.json``, ``certified_accuracy.png``, ``report.md`` and ``run_config.json``.
    Rerunning the same command resumes; a folder of other parameters is refused.
    """
    from accelerate import PartialState

    from .data import load_text_dataset
    from .models import load_classifier
    from .report import certification_markdown, plot_certified_accuracy, summarize_certification
    from .smoothing import SmoothedTextClassifier

    protocol = validate_certify_args(data, smooth, cert)
    state = PartialState()
    dtype = autocast_dtype(cert.precision, state.device)
    model, tokenizer = load_classifier(data.model)
    labels = model_label_names(model.config)
    ds = load_text_dataset(
        data.dataset, data.split, data.dataset_config, data.text_column, data.label_column,
        label_names=labels, max_examples=data.max_examples,
    )
    params = {
        "task": "certify",
        "model": data.model,
        "dataset": data.dataset,
        "dataset_config": data.dataset_config,
        "split": data.split,
        "text_column": data.text_column,
        "label_column": data.label_column,
        "max_examples": data.max_examples,
        "max_length": data.max_length,
        "num_examples": len(ds),
        **asdict(smooth),
        **protocol.record(),
        "seed": cert.seed,
        "precision": precision_name(dtype),  # certificates are about the base model as run
    }
    store = ResultsStore.open_run(cert.output_dir, params, state, overwrite=cert.overwrite_output_dir)

    clf = SmoothedTextClassifier(
        model, tokenizer, p_del=smooth.p_del, unit=smooth.unit, batch_size=cert.batch_size,
        max_length=data.max_length, seed=cert.seed, dedup=cert.dedup,
        device=state.device, autocast_dtype=dtype,
    )
    texts, gold = ds.texts, ds.labels

    def certify_chunk(idx: list[int]) -> list[dict]:
        chunk = [texts[i] for i in idx]
        certs = clf.certify(chunk, protocol, indices=idx)
        clean = clf.base_predict(chunk)
        return [
            {
                "index": i,
                "label": gold[i],
                "prediction": c.prediction,
                "radius": c.radius,
                "top1_lower": c.top1_lower,
                "top2_upper": c.top2_upper,
                "correct": bool(c.prediction == gold[i]),
                "clean_prediction": int(cp),
                "n_queries": c.n_queries,
                "n_samples": c.n_samples,
                "looks_used": c.looks_used,
                "exact_mass": c.exact_mass,
                "seconds": round(c.seconds, 4),
            }
            for i, c, cp in zip(idx, certs, clean)
        ]

    records = run_sharded(store, state, len(ds), certify_chunk, cert.chunk_size)
    out = Path(cert.output_dir)
    if records is not None:
        radii = list(range(0, max_edit_distance_radius(smooth.p_del) + 1))
        summary = summarize_certification(records, params, radii)
        summary["unit"] = smooth.unit
        summary["label_names"] = ds.label_names
        summary["versions"] = versions()
        write_json(out / "summary.json", summary)
        plot_certified_accuracy(
            {data.model: summary["certified_accuracy"]}, out / "certified_accuracy.png",
            xlabel=f"edit-distance radius ({smooth.unit}s)",
        )
        (out / "report.md").write_text(certification_markdown(summary, smooth.unit), encoding="utf-8")
    state.wait_for_everyone()
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))
