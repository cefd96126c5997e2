"""Certify a whole dataset: shard over processes, write results as they come, resume, summarize, report.

``certify_dataset`` is what ``robusttext certify`` and ``scripts/certify_hub_model.py`` run. It works
unchanged on one process and under ``accelerate launch`` with N processes: inputs are dealt out by
index (``todo[rank::N]``), every input draws from its own seeded stream, each process appends to its
own part file, and the main process merges them into one ``results.jsonl`` and writes
``summary.json``, ``certified_accuracy.png`` and ``report.md``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..cli.arguments import CertifyArguments, ModelDataArguments, SmoothingArguments
from ..certificate.deletion import check_deletion_args
from ..certificate.precision import precision_name
from ..certificate.protocol import CertifyProtocol
from .distributed import process_state
from ..certificate.models import model_label_names
from .results import versions, write_json
from ..certificate.stats import max_edit_distance_radius

if TYPE_CHECKING:
    from ..certificate.rates import RateSchedule
    from ..certificate.smoothing import SmoothedTextClassifier

logger = logging.getLogger("robusttext")


def certification_rate(smooth: SmoothingArguments, model: str) -> "RateSchedule":
    """The deletion rate to smooth ``model`` with: ``--rate-schedule``, else ``--p-del``, else the model
    folder's ``rate_schedule.json`` (what it was trained with), else RS-Del's fixed 0.9. Says so in the log
    when the rate chosen differs from the one the folder records."""
    from ..cli.arguments import DEFAULT_P_DEL
    from ..certificate.rates import FixedRate, load, parse_rate_schedule

    recorded = load(model) if Path(model).is_dir() else None
    if smooth.rate_schedule:
        rate = parse_rate_schedule(smooth.rate_schedule)
    elif smooth.p_del is not None:
        if not 0.0 < float(smooth.p_del) < 1.0:
            raise ValueError(f"p_del must be in (0, 1) to certify, got {smooth.p_del:g}; set --p-del 0.9 (RS-Del/CERT-ED)")
        rate = FixedRate(float(smooth.p_del))
    else:
        rate = recorded or FixedRate(DEFAULT_P_DEL)
    if not rate.certifiable:
        raise ValueError(f"--rate-schedule {rate.describe()} is for training only; certify with a fixed, adaptive "
                         "or binned schedule (robusttext tune-rates writes a binned one into the model folder)")
    if recorded is not None and rate != recorded:
        logger.warning("smoothing with %s, while %s records %s (its rate_schedule.json: the training schedule, "
                       "or the one tune-rates chose)", rate.describe(), model, recorded.describe())
    return rate


def validate_certify_args(data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments) -> CertifyProtocol:
    """Reject unusable parameters before any model or data is loaded, naming the flag and the fix; returns
    the certification protocol they describe."""
    check_deletion_args(0.5, smooth.unit)  # the unit (the rate is checked by certification_rate)
    certification_rate(smooth, data.model)
    protocol = cert.protocol()
    for name in ("batch_size", "chunk_size"):
        if getattr(cert, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cert, name)}")
    if data.max_length is not None and data.max_length < 3:
        raise ValueError(f"--max-length must be >= 3, got {data.max_length}")
    return protocol


def load_smoothed_classifier(
    data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments, device: Any = None
) -> "SmoothedTextClassifier":
    """The one factory of :class:`SmoothedTextClassifier` from command-line arguments (certify, predict,
    attack, evaluate): loads ``data.model`` and wraps it with these deletion and batching parameters."""
    from ..certificate.models import load_classifier
    from ..certificate.smoothing import SmoothedTextClassifier

    model, tokenizer = load_classifier(data.model)
    return SmoothedTextClassifier(
        model, tokenizer, p_del=certification_rate(smooth, data.model), unit=smooth.unit, batch_size=cert.batch_size,  # type: ignore[arg-type]
        max_length=data.max_length, seed=cert.seed, dedup=cert.dedup, device=device,
        autocast_dtype=cert.precision,  # resolved on the model's device (robusttext.certificate.precision)
    )


def load_examples(
    data: ModelDataArguments, clf: "SmoothedTextClassifier", max_examples: int | None = None, labelled: bool | None = True
) -> Any:
    """The split ``data`` names, labels mapped through the model's classes (``labelled``: see
    :func:`robusttext.runs.data.load_text_dataset`)."""
    from .data import load_text_dataset

    return load_text_dataset(
        data.dataset, data.split, data.dataset_config, data.text_column, data.label_column,
        label_names=model_label_names(clf.model.config),
        max_examples=data.max_examples if max_examples is None else max_examples, labelled=labelled,
    )


def run_identity(task: str, data: ModelDataArguments, clf: "SmoothedTextClassifier", ds: Any) -> dict[str, Any]:
    """What a text run is about: the task, the model and data as named and as content (fingerprints)."""
    from .fingerprint import examples_fingerprint, model_fingerprint

    return {
        "task": task,
        "model": data.model,
        "model_fingerprint": model_fingerprint(data.model, clf.model),
        "dataset": data.dataset,
        "dataset_config": data.dataset_config,
        "split": data.split,
        "text_column": data.text_column,
        "label_column": data.label_column,
        "max_examples": data.max_examples,
        "max_length": data.max_length,
        "num_examples": len(ds),
        "data_fingerprint": examples_fingerprint(ds.texts, ds.labels),
    }


def certify_dataset(
    data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments, clf: "SmoothedTextClassifier | None" = None
) -> dict:
    """Certify every example of a dataset split with RS-Del; returns the summary (on every process).

    Writes, in ``cert.output_dir``: ``results.jsonl`` (one line per input: index, label, prediction,
    radius, top1_lower, top2_upper, correct, clean_prediction, n_queries, n_samples, looks_used,
    exact_mass, seconds), ``summary.json``, ``certified_accuracy.png``, ``report.md`` and
    ``run_config.json``. Runs on the :class:`robusttext.runs.results.Run` skeleton: sharded over the processes
    of ``accelerate launch``/``torchrun``, resumable, and refusing a folder of other parameters or content.
    ``clf`` may pass the classifier already loaded from ``data.model`` with these arguments.
    """
    from .results import Run

    protocol = validate_certify_args(data, smooth, cert)
    state = process_state()
    clf = clf if clf is not None else load_smoothed_classifier(data, smooth, cert, device=state.device)
    ds = load_examples(data, clf, labelled=None)  # unlabelled: radii without accuracy
    params = {
        **run_identity("certify", data, clf, ds),
        "p_del": clf.p_del,
        "rate_schedule": clf.rate.to_dict(),
        "unit": smooth.unit,
        **protocol.record(),
        "seed": cert.seed,
        "precision": precision_name(clf.autocast_dtype),  # certificates are about the base model as run
    }
    run = Run(cert.output_dir, params, overwrite=cert.overwrite_output_dir, state=state)
    texts, gold = ds.texts, ds.labels or [None] * len(ds)

    def certify_chunk(idx: list[int], tick: Any) -> list[dict]:
        chunk = [texts[i] for i in idx]
        certs = clf.certify(chunk, protocol, indices=idx, on_done=lambda _i, _c: tick())
        clean = clf.base_predict(chunk)
        return [certification_record(i, gold[i], c, int(cp), clf.num_units(texts[i]))
                for i, c, cp in zip(idx, certs, clean)]

    # fixed blocks of inputs: the noisy copies of one block are batched together whatever the number of
    # processes, so N processes compute the same forward passes (and the same floats) as one
    records = run.execute(len(ds), certify_chunk, cert.chunk_size, desc="certify", fixed_chunks=True)
    out = Path(cert.output_dir)

    def write() -> None:
        assert records is not None
        largest = max_edit_distance_radius(clf.p_del) if clf.p_del is not None else max(
            [int(r["radius"]) for r in records] + [0])
        write_certification_outputs(records, params, list(range(largest + 1)), out, smooth.unit, ds.label_names,
                                    data.model, vocab_size=len(clf.tokenizer) if smooth.unit == "token" else None)

    run.finish(write)
    return run.read_json("summary.json")


def certification_record(index: int, label: int | None, c: Any, clean_prediction: int, length: int) -> dict[str, Any]:
    """One line of ``results.jsonl`` (the label and ``correct`` are None for unlabelled data; ``length`` in
    smoothing units)."""
    return {
        "index": index,
        "label": label,
        "length": length,
        "prediction": c.prediction,
        "radius": c.radius,
        "top1_lower": c.top1_lower,
        "top2_upper": c.top2_upper,
        "correct": None if label is None else bool(c.prediction == label),
        "clean_prediction": clean_prediction,
        "n_queries": c.n_queries,
        "n_samples": c.n_samples,
        "looks_used": c.looks_used,
        "exact_mass": c.exact_mass,
        "seconds": round(c.seconds, 4),
    }


def write_certification_outputs(
    records: list[dict], params: dict, radii: list[int], out: Path, unit: str, label_names: list[str], name: str,
    vocab_size: int | None = None,
) -> None:
    """``summary.json``, ``certified_accuracy.png``, ``radius_by_length.png`` and ``report.md`` of a text
    certification run."""
    from .report import (
        certification_markdown,
        plot_certified_accuracy,
        plot_radius_by_length,
        summarize_certification,
        summarize_lengths,
    )

    summary = summarize_certification(records, params, radii)
    summary.update(summarize_lengths(records, unit, vocab_size))
    summary["unit"] = unit
    summary["label_names"] = label_names
    summary["versions"] = versions()
    write_json(out / "summary.json", summary)
    labelled = summary["certified_accuracy"] is not None
    plot_certified_accuracy({name: summary["certified_accuracy"] if labelled else summary["certified_fraction"]},
                            out / "certified_accuracy.png", xlabel=f"edit-distance radius ({unit}s)",
                            ylabel="certified accuracy" if labelled else "certified fraction (no labels)")
    plot_radius_by_length(records, out / "radius_by_length.png", unit)
    (out / "report.md").write_text(certification_markdown(summary, unit), encoding="utf-8")


def predict_texts(
    data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments, texts: list[str],
    certify: bool = False, chunk_size: int = 32,
) -> Iterator[dict[str, Any]]:
    """The smoothed classifier's answer for each text, as it comes (one dict per text, in order).

    Without ``certify``: Cohen et al.'s PREDICT from ``cert.n`` samples (default 1000) at ``cert.alpha``
    (default 0.05): the class, or -1 (abstain) unless a binomial test separates the top two classes; a
    non-abstained answer differs from the smoothed classifier's with probability <= alpha. With
    ``certify``: CERTIFY under the protocol of ``cert`` (its defaults), adding the certified radius.
    """
    if not texts:
        raise ValueError("predict: no texts given (pass them as arguments, on standard input, or with --dataset)")
    protocol = validate_certify_args(data, smooth, cert)
    state = process_state()
    clf = load_smoothed_classifier(data, smooth, cert, device=state.device)
    names = model_label_names(clf.model.config)
    n, alpha = cert.n or 1000, protocol.alpha
    for start in range(0, len(texts), chunk_size):
        idx = list(range(start, min(start + chunk_size, len(texts))))
        chunk = [texts[i] for i in idx]
        if certify:
            outs: list[Any] = clf.certify(chunk, protocol, indices=idx)
        else:
            outs = clf.predict(chunk, n=n, alpha=alpha, indices=idx)
        for i, text, o in zip(idx, chunk, outs):
            rec: dict[str, Any] = {"index": i, "text": text, "prediction": o.prediction,
                                   "class": names[o.prediction] if o.prediction >= 0 else None}
            if certify:
                rec.update(radius=o.radius, unit=smooth.unit, top1_lower=o.top1_lower, top2_upper=o.top2_upper)
            else:
                rec.update(counts=o.counts, pvalue=o.pvalue)
            rec["n_queries"] = o.n_queries
            yield rec
