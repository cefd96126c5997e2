"""Certified accuracy at radius r: the fraction of inputs predicted correctly with a certified radius >= r
(a local ``evaluate`` module; loads offline: ``evaluate.load(robusttext.hub.metrics.metric_path("certified_accuracy"))``).
It computes with :func:`robusttext.runs.report.certified_accuracy_curve`, the function behind ``summary.json``,
``report.md`` and the model cards, so its numbers are the reports' (keys of several radii as there: ``"2"``, ``"0.5"``).
"""

import datasets
import evaluate

_DESCRIPTION = (
    "Certified accuracy at radius r = (number of inputs whose certified prediction equals the reference and whose "
    "certified radius is >= r) / (number of inputs). Abstentions (prediction -1, radius -1) count as wrong. "
    "Radii are in the certificate's unit (e.g. word edits for RS-Del)."
)
_KWARGS = """
Args:
    predictions (list of int): certified class ids (-1 = abstain).
    references (list of int): true class ids.
    radii (list of float): certified radius of each input (-1 = abstain).
    radius (float or list of float): the radius r (default 0), or several radii.
Returns:
    certified_accuracy (float in [0, 1]) for one radius, or a dict radius -> certified accuracy for several.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class CertifiedAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                    "radii": datasets.Value("float64"),
                }
            ),
        )

    def _compute(self, predictions, references, radii, radius=0.0):
        # the definition robusttext's reports use (summary.json, report.md, model cards): one implementation
        from robusttext.runs.report import certified_accuracy_curve

        records = [{"correct": int(p) == int(y) and int(p) >= 0, "radius": float(d)}
                   for p, y, d in zip(predictions, references, radii)]
        if isinstance(radius, (list, tuple)):
            return {"certified_accuracy": certified_accuracy_curve(records, radius) if records else {}}
        if not records:
            return {"certified_accuracy": 0.0}
        return {"certified_accuracy": next(iter(certified_accuracy_curve(records, [radius]).values()))}
