"""``CertifiedEvalCallback``: the certified accuracy of the current weights at every ``Trainer`` evaluation.

At each evaluation the callback smooths the model being trained (:class:`~robusttext.SmoothedTextClassifier`,
the trainer's deletion rate and unit unless told otherwise), certifies a fixed subset of the evaluation set
(its first ``num_examples`` inputs, input ``i`` drawing from the seeded stream ``[seed, i]``) under a small
:class:`~robusttext.CertifyProtocol`, and adds to the evaluation metrics:

- ``eval_smoothed_accuracy``: the share of the subset the smoothed classifier gets right (abstain = wrong), in [0, 1];
- ``eval_abstain_rate``: the share it abstains on, in [0, 1];
- ``eval_median_radius``: the median certified radius in deletion units (wrong or abstained = -1);
- ``eval_certified_accuracy_r{k}``: the share predicted correctly with a certified radius >= k, for each k in ``radii``.

These are the numbers ``robusttext certify`` reports for the same checkpoint, inputs, protocol and seed
(the same records and summary code; the same blocks of inputs batched together). Each certificate holds with
probability >= 1 - alpha over its Monte Carlo samples.

How the metrics reach the Trainer: :meth:`CertifiedEvalCallback.attach` wraps the trainer's
``compute_metrics``, whose results the Trainer prefixes with ``eval_``, logs (every ``report_to``
integration), hands to every callback's ``on_evaluate`` (``EarlyStoppingCallback``, in any order), uses for
``metric_for_best_model`` / ``load_best_model_at_end`` and returns from ``evaluate()``, identically on
transformers 4.x and 5.x. A callback passed only as ``Trainer(callbacks=[...])`` adds the metrics in its own
``on_evaluate`` instead: ``evaluate()``'s result, best-model selection and the callbacks after it see them,
but the logged line (``report_to``) was written before and does not.

Under ``torchrun`` / ``accelerate launch`` the subset's blocks of ``chunk_size`` inputs are dealt out over the
processes, the records are gathered, and every process computes the same metrics from all of them (equal to
one process's, as each input's random stream and batch do not depend on the number of processes).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from transformers import TrainerCallback

from robusttext.certificate.deletion import DeletionCollator, check_deletion_args  # internal paths: robusttext itself exports this module lazily
from robusttext.certificate.protocol import CertifyProtocol
from robusttext.certificate.smoothing import SmoothedTextClassifier
from robusttext.certificate.stats import max_edit_distance_radius
from robusttext.runs.certify import certification_record
from robusttext.runs.report import summarize_certification

logger = logging.getLogger("robusttext")

#: The default protocol of an evaluation: 32 selection and at most 256 estimation samples per input at
#: alpha = 0.05 (a cheap look at the certified accuracy, not the published protocol; see ``robusttext certify``).
EVAL_PROTOCOL = CertifyProtocol(n0=32, n=256)


class CertifiedEvalCallback(TrainerCallback):
    """Certify a fixed subset of the evaluation set at each evaluation; add ``eval_*`` certified metrics.

    Args:
        num_examples: the first ``num_examples`` inputs of the evaluation set are certified (integer >= 1).
        p_del: the deletion rate (a probability in (0, 1) or a certifiable rate schedule); default: the
            trainer's :class:`~robusttext.DeletionCollator` rate.
        unit: ``"word"``, ``"char"`` or ``"token"``; default: the collator's.
        protocol: the certification protocol (default :data:`EVAL_PROTOCOL`).
        radii: the radii k of ``eval_certified_accuracy_r{k}`` (integers >= 0); default 0 .. the largest
            radius a fixed rate can certify, else 0, 1, 2, 4, 8, 16.
        seed: seed of every input's random stream.
        eval_dataset: the set to certify (default: the trainer's ``eval_dataset``), with ``text_column`` and
            an integer ``label_column``.
        batch_size: noisy samples per forward pass; chunk_size: inputs certified together (``robusttext
            certify``'s defaults, so that the floats match its).

    Example::

        cb = CertifiedEvalCallback(num_examples=64, protocol=CertifyProtocol(n0=32, n=256))
        trainer = cb.attach(Trainer(model, args, eval_dataset=val, data_collator=DeletionCollator(tok, 0.9), ...))
        trainer.train()   # args.metric_for_best_model="eval_certified_accuracy_r2" works
    """

    def __init__(
        self, num_examples: int = 64, p_del: Any = None, unit: str | None = None,
        protocol: CertifyProtocol | None = None, radii: Sequence[int] | None = None, seed: int = 0,
        eval_dataset: Any = None, text_column: str = "text", label_column: str = "label",
        batch_size: int = 256, chunk_size: int = 32,
    ) -> None:
        for name, value in (("num_examples", num_examples), ("batch_size", batch_size), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"CertifiedEvalCallback: {name} must be an integer >= 1, got {value!r}")
        if radii is not None and any(isinstance(r, bool) or int(r) != r or r < 0 for r in radii):
            raise ValueError(f"CertifiedEvalCallback: radii must be integers >= 0, got {list(radii)!r}")
        self.num_examples, self.batch_size, self.chunk_size = int(num_examples), int(batch_size), int(chunk_size)
        if p_del is not None:  # checked here, where it enters; a rate read off the trainer is checked by attach
            if isinstance(p_del, (int, float)) and not isinstance(p_del, bool):
                check_deletion_args(p_del, unit or "word")
            elif not getattr(p_del, "certifiable", False):
                raise ValueError(f"CertifiedEvalCallback: p_del must be a probability in (0, 1) or a certifiable rate "
                                 f"schedule (fixed, adaptive, binned), got {p_del!r}")
        self.p_del, self.unit, self.seed = p_del, unit, int(seed)
        self.protocol = protocol or EVAL_PROTOCOL
        self.radii = None if radii is None else [int(r) for r in radii]
        self.eval_dataset, self.text_column, self.label_column = eval_dataset, text_column, label_column
        self.history: list[dict[str, Any]] = []  # one entry per evaluation: step, metrics, seconds
        self.shares: list[int] = []  # the inputs this process certified at the last evaluation
        self.seconds = 0.0  # spent certifying since training began
        self._trainer: Any = None
        self._fresh = False
        self._train_start: float | None = None

    # ------------------------------------------------------------------ wiring
    def attach(self, trainer: Any) -> Any:
        """Add this callback to ``trainer`` and wrap its ``compute_metrics`` (see the module docstring);
        returns the trainer. Raises ValueError when there is no evaluation set to certify, or no rate to smooth
        with (no ``p_del`` given, and the trainer's collator is not a DeletionCollator of a certifiable rate)."""
        if self.eval_dataset is None and getattr(trainer, "eval_dataset", None) is None:
            raise ValueError(_NO_EVAL_SET)
        self._rate_and_unit(trainer.data_collator)  # refused before training, not at the first evaluation
        if getattr(trainer.args, "batch_eval_metrics", False):
            raise ValueError("CertifiedEvalCallback: TrainingArguments(batch_eval_metrics=True) calls compute_metrics "
                             "per batch; certified metrics need the whole evaluation: set batch_eval_metrics=False")
        self._trainer = trainer
        trainer.compute_metrics = self.wrap(trainer.compute_metrics)
        trainer.add_callback(self)
        return trainer

    def wrap(self, compute_metrics: Callable[[Any], dict] | None = None) -> Callable[[Any], dict]:
        """``compute_metrics`` plus the certified metrics of the attached trainer's current model."""
        def compute(eval_pred: Any) -> dict:
            out = dict(compute_metrics(eval_pred)) if compute_metrics is not None else {}
            t = self._trainer
            dataset = self.eval_dataset if self.eval_dataset is not None else t.eval_dataset
            out.update(self.certified_metrics(t.model, t.processing_class, dataset, t.data_collator, t.state.global_step))
            self._fresh = True
            return out

        return compute

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._train_start, self.seconds = time.perf_counter(), 0.0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> None:
        if self._fresh or metrics is None:  # the wrapped compute_metrics already added them
            self._fresh = False
            return
        loader = kwargs.get("eval_dataloader")
        dataset = self.eval_dataset if self.eval_dataset is not None else getattr(loader, "dataset", None)
        found = self.certified_metrics(kwargs.get("model"), kwargs.get("processing_class"), dataset,
                                       getattr(loader, "collate_fn", None), state.global_step)
        metrics.update({f"eval_{k}": v for k, v in found.items()})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._train_start is None or not state.is_world_process_zero:
            return
        total = time.perf_counter() - self._train_start
        logger.info("certified evaluation: %.1f s of %.1f s of training (%.1f%%) over %d evaluations", self.seconds,
                    total, 100 * self.seconds / max(total, 1e-9), len(self.history))

    # ------------------------------------------------------------------ the work
    def certified_metrics(self, model: Any, tokenizer: Any, dataset: Any, collator: Any = None, step: int = 0) -> dict:
        """Certify the subset with ``model`` as it is now; returns the metrics without the ``eval_`` prefix
        (the same on every process)."""

        if dataset is None:
            raise ValueError(_NO_EVAL_SET)
        start = time.perf_counter()
        texts, labels = self._subset(dataset)
        rate, unit = self._rate_and_unit(collator)
        was_training = model.training
        clf = SmoothedTextClassifier(model, tokenizer, p_del=rate, unit=unit, batch_size=self.batch_size, seed=self.seed)
        records = self._certify_share(clf, texts, labels)
        model.train(was_training)
        radii = self.radii if self.radii is not None else default_radii(clf)
        summary = summarize_certification(records, {}, radii)
        metrics = {"smoothed_accuracy": summary["smoothed_accuracy"], "abstain_rate": summary["abstain_rate"],
                   "median_radius": summary["median_certified_radius"],
                   **{f"certified_accuracy_r{k}": v for k, v in summary["certified_accuracy"].items()}}
        seconds = time.perf_counter() - start
        self.seconds += seconds
        self.history.append({"step": step, "metrics": metrics, "seconds": seconds})
        if _rank_and_world()[0] == 0:  # one line, not one per process
            logger.info("certified eval at step %d (%d inputs, %s %s, n=%d, alpha=%g) in %.1f s: %s", step, len(texts),
                        clf.rate.describe(), clf.unit, self.protocol.n, self.protocol.alpha, seconds,
                        " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        return metrics

    def _certify_share(self, clf: SmoothedTextClassifier, texts: list[str], labels: list[int]) -> list[dict]:
        """This process's blocks of inputs certified, then every process's records gathered (sorted by index)."""

        rank, world = _rank_and_world()
        blocks = [list(range(s, min(s + self.chunk_size, len(texts)))) for s in range(0, len(texts), self.chunk_size)]
        records: list[dict] = []
        self.shares = []
        for block in blocks[rank::world]:
            chunk = [texts[i] for i in block]
            certs = clf.certify(chunk, self.protocol, indices=block)
            clean = clf.base_predict(chunk)
            records += [certification_record(i, labels[i], c, int(cp), clf.num_units(texts[i]))
                        for i, c, cp in zip(block, certs, clean)]
            self.shares += block
        if world > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, records)
            records = [r for part in gathered for r in part]
        return sorted(records, key=lambda r: r["index"])

    def _subset(self, dataset: Any) -> tuple[list[str], list[int]]:
        """The first ``num_examples`` texts and integer labels of the evaluation set."""
        names = getattr(dataset, "column_names", None) or []
        if self.text_column not in names or self.label_column not in names:
            raise ValueError(f"CertifiedEvalCallback: the evaluation set needs a {self.text_column!r} and a "
                             f"{self.label_column!r} column (integer class ids), has {names}; pass text_column= / label_column=")
        part = dataset.select(range(min(self.num_examples, len(dataset))))
        return list(part[self.text_column]), [int(y) for y in part[self.label_column]]

    def _rate_and_unit(self, collator: Any) -> tuple[Any, str]:
        """``p_del`` / ``unit`` as given, else the trainer's DeletionCollator's (refused when not certifiable)."""
        is_deletion = isinstance(collator, DeletionCollator)
        unit = self.unit or (collator.mechanism.unit if is_deletion else "word")
        rate = self.p_del if self.p_del is not None else (collator.rate if is_deletion else None)
        if rate is None or not getattr(rate, "certifiable", True):
            what = "trains without a DeletionCollator" if not is_deletion else (
                "trains without deletion noise" if rate is None else f"trains under {rate.describe()} (training only)")
            raise ValueError(f"CertifiedEvalCallback: the trainer {what}; pass p_del= (e.g. 0.9 or a certifiable "
                             "rate schedule) to certify with")
        return rate, unit


_NO_EVAL_SET = ("CertifiedEvalCallback: no evaluation set to certify; pass eval_dataset= to the Trainer "
                "(robusttext train: --eval-split) or to the callback")


def default_radii(clf: SmoothedTextClassifier) -> list[int]:
    """0 .. the largest radius a fixed rate can certify (``robusttext certify``'s table), else 0, 1, 2, 4, 8, 16."""

    p = clf.p_del
    return list(range(max_edit_distance_radius(p) + 1)) if p is not None else [0, 1, 2, 4, 8, 16]


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside torch.distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
