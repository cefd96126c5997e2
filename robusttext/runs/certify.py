"""Certify a whole dataset, and predict texts: the library jobs behind ``robusttext certify`` and ``predict``.

``certify_dataset(classifier, data, output_dir, protocol)`` works unchanged on one process and under
``accelerate launch`` / ``torchrun`` with N processes: inputs are dealt out in fixed blocks, every input
draws from its own seeded stream, each process appends to its own part file, and the main process merges
them into one ``results.jsonl`` and writes ``summary.json``, ``certified_accuracy.png``,
``radius_by_length.png``, ``report.md`` and ``run_config.json``. A rerun resumes; a folder of other
parameters or content is refused. ``predict_texts`` yields one answer per text as it comes.

Both take objects a Python user holds: a :class:`~robusttext.certificate.smoothing.SmoothedTextClassifier`,
the data (a :class:`~robusttext.runs.data.DataSpec`, a :class:`~robusttext.runs.data.TextData`, a
``datasets.Dataset``, a list of texts or a ``(texts, labels)`` pair) and a
:class:`~robusttext.certificate.protocol.CertifyProtocol`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..certificate.models import model_label_names
from ..certificate.precision import precision_name
from ..certificate.protocol import CertifyProtocol
from ..certificate.rates import DEFAULT_P_DEL, FixedRate, RateSchedule, load, parse_rate_schedule
from ..certificate.smoothing import SmoothedTextClassifier
from ..certificate.stats import max_edit_distance_radius
from .data import DataSpec, TextData, as_text_data
from .distributed import process_state
from .fingerprint import examples_fingerprint, model_fingerprint
from .report import (
    certification_markdown,
    plot_certified_accuracy,
    plot_radius_by_length,
    summarize_certification,
    summarize_lengths,
)
from .results import Run, versions, write_json

logger = logging.getLogger("robusttext")


def certification_rate(model: str, p_del: float | None = None, rate_schedule: "str | RateSchedule | None" = None) -> RateSchedule:
    """The deletion rate to smooth ``model`` with: ``rate_schedule``, else ``p_del``, else the model
    folder's ``rate_schedule.json`` (what it was trained with), else RS-Del's fixed
    :data:`~robusttext.certificate.rates.DEFAULT_P_DEL`. Says so in the log when the rate chosen differs from
    the one the folder records. Raises ``ValueError`` (naming ``p_del`` or ``rate_schedule``) for a rate that
    cannot certify."""
    recorded = load(model) if Path(model).is_dir() else None
    if rate_schedule:
        rate = parse_rate_schedule(rate_schedule) if isinstance(rate_schedule, str) else rate_schedule
    elif p_del is not None:
        if not 0.0 < float(p_del) < 1.0:
            raise ValueError(f"p_del must be in (0, 1) to certify, got {p_del:g}; set --p-del 0.9 (RS-Del/CERT-ED)")
        rate = FixedRate(float(p_del))
    else:
        rate = recorded or FixedRate(DEFAULT_P_DEL)
    if not rate.certifiable:
        raise ValueError(f"rate_schedule {rate.describe()} is for training only; certify with a fixed, adaptive "
                         "or binned schedule (robusttext tune-rates writes a binned one into the model folder)")
    if recorded is not None and rate != recorded:
        logger.warning("smoothing with %s, while %s records %s (its rate_schedule.json: the training schedule, "
                       "or the one tune-rates chose)", rate.describe(), model, recorded.describe())
    return rate


def load_examples(data: Any, classifier: SmoothedTextClassifier, labelled: bool | None = True) -> TextData:
    """``data`` (see :func:`robusttext.runs.data.as_text_data`) with its labels mapped through the classifier's
    classes (``labelled``: True requires labels, None uses them when present, False ignores them)."""
    return as_text_data(data, label_names=model_label_names(classifier.model.config), labelled=labelled)


def run_identity(task: str, classifier: SmoothedTextClassifier, ds: TextData, data: Any = None,
                 model: str | None = None) -> dict[str, Any]:
    """What a text run is about: the task, the model and the data as named and as content (fingerprints).
    ``data``: the :class:`DataSpec` the examples came from, if any; ``model``: the model's name or folder
    (default: the classifier's ``name_or_path``)."""
    name = model if model is not None else classifier.name_or_path
    spec = data.record() if isinstance(data, DataSpec) else DataSpec(ds.source, ds.split).record()
    return {
        "task": task,
        "model": name,
        "model_fingerprint": model_fingerprint(name, classifier.model),
        **spec,
        "max_length": classifier.max_length,
        "num_examples": len(ds),
        "data_fingerprint": examples_fingerprint(ds.texts, ds.labels),
    }


def certify_dataset(
    classifier: SmoothedTextClassifier,
    data: Any,
    output_dir: str | Path,
    protocol: CertifyProtocol | None = None,
    *,
    chunk_size: int = 32,
    overwrite: bool = False,
    model: str | None = None,
) -> dict:
    """Certify every example of ``data`` with ``classifier`` under ``protocol``; returns the summary (on
    every process).

    Args:
        classifier: the smoothed classifier (its rate, unit, seed, batching and precision are recorded).
        data: a :class:`DataSpec` (loaded here), a :class:`TextData`, a ``datasets.Dataset`` (text and label
            columns detected), a list of texts, or a ``(texts, labels)`` pair; unlabelled data gives radii
            without accuracy.
        output_dir: where ``results.jsonl`` (one line per input: index, label, length, prediction, radius,
            top1_lower, top2_upper, correct, clean_prediction, n_queries, n_samples, looks_used, exact_mass,
            seconds), ``summary.json``, ``report.md``, ``certified_accuracy.png``, ``radius_by_length.png``
            and ``run_config.json`` go.
        protocol: how the samples and ``alpha`` are spent (default: ``CertifyProtocol()``).
        chunk_size: inputs certified (and written) together, >= 1; blocks are fixed, so N processes compute
            the same forward passes as one.
        overwrite: delete earlier results in ``output_dir`` first (else a rerun resumes, and a folder of other
            parameters or content is refused).
        model: the model's name or folder as recorded (default: ``classifier.name_or_path``).

    Guarantee: each line's radius holds with probability at least ``1 - protocol.alpha`` (see
    :meth:`SmoothedTextClassifier.certify`). Under ``accelerate launch``/``torchrun`` build the classifier
    on ``process_state().device``; results do not depend on the number of processes.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    protocol = protocol if protocol is not None else CertifyProtocol()
    clf = classifier
    state = process_state()
    ds = load_examples(data, clf, labelled=None)  # unlabelled: radii without accuracy
    params = {
        **run_identity("certify", clf, ds, data, model),
        "p_del": clf.p_del,
        "rate_schedule": clf.rate.to_dict(),
        "unit": clf.unit,
        **protocol.record(),
        "seed": clf.seed,
        "precision": precision_name(clf.autocast_dtype),  # certificates are about the base model as run
    }
    run = Run(str(output_dir), params, overwrite=overwrite, state=state)
    texts, gold = ds.texts, ds.labels or [None] * len(ds)

    def certify_chunk(idx: list[int], tick: Any) -> list[dict]:
        chunk = [texts[i] for i in idx]
        certs = clf.certify(chunk, protocol, indices=idx, on_done=lambda _i, _c: tick())
        clean = clf.base_predict(chunk)
        return [certification_record(i, gold[i], c, int(cp), clf.num_units(texts[i]))
                for i, c, cp in zip(idx, certs, clean)]

    # fixed blocks of inputs: the noisy copies of one block are batched together whatever the number of
    # processes, so N processes compute the same forward passes (and the same floats) as one
    records = run.execute(len(ds), certify_chunk, chunk_size, desc="certify", fixed_chunks=True)

    def write() -> None:
        assert records is not None
        largest = max_edit_distance_radius(clf.p_del) if clf.p_del is not None else max(
            [int(r["radius"]) for r in records] + [0])
        write_certification_outputs(records, params, list(range(largest + 1)), Path(output_dir), clf.unit,
                                    ds.label_names, params["model"],
                                    vocab_size=len(clf.tokenizer) if clf.unit == "token" else None)

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
    classifier: SmoothedTextClassifier,
    texts: Sequence[str],
    protocol: CertifyProtocol | None = None,
    *,
    certify: bool = False,
    n: int | None = None,
    alpha: float | None = None,
    chunk_size: int = 32,
) -> Iterator[dict[str, Any]]:
    """The smoothed classifier's answer for each text, as it comes (one dict per text, in order: index, text,
    prediction, class, then counts and pvalue, or with ``certify`` radius, unit, top1_lower and top2_upper,
    then n_queries).

    Without ``certify``: Cohen et al.'s PREDICT from ``n`` samples at ``alpha`` (None: the defaults of
    :meth:`SmoothedTextClassifier.predict`): the class, or -1 (abstain) unless a binomial test separates the
    top two classes; a non-abstained answer differs from the smoothed classifier's with probability <= alpha.
    With ``certify``: CERTIFY under ``protocol`` (default ``CertifyProtocol()``), adding the certified radius.
    """
    if not texts:
        raise ValueError("predict: no texts given (pass them as arguments, on standard input, or with --dataset)")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    protocol = protocol if protocol is not None else CertifyProtocol()
    clf = classifier
    names = model_label_names(clf.model.config)
    budget = {k: v for k, v in (("n", n), ("alpha", alpha)) if v is not None}
    for start in range(0, len(texts), chunk_size):
        idx = list(range(start, min(start + chunk_size, len(texts))))
        chunk = [texts[i] for i in idx]
        outs: list[Any] = clf.certify(chunk, protocol, indices=idx) if certify else clf.predict(chunk, indices=idx, **budget)
        for i, text, o in zip(idx, chunk, outs):
            rec: dict[str, Any] = {"index": i, "text": text, "prediction": o.prediction,
                                   "class": names[o.prediction] if o.prediction >= 0 else None}
            if certify:
                rec.update(radius=o.radius, unit=clf.unit, top1_lower=o.top1_lower, top2_upper=o.top2_upper)
            else:
                rec.update(counts=o.counts, pvalue=o.pvalue)
            rec["n_queries"] = o.n_queries
            yield rec
