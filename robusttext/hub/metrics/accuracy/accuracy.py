"""Accuracy: the fraction of predictions equal to the references (a local ``evaluate`` module).

Loads with no network: ``evaluate.load(robusttext.hub.metrics.metric_path("accuracy"))``.
"""

import datasets
import evaluate

_DESCRIPTION = "Accuracy = (number of predictions equal to their reference) / (number of predictions)."
_KWARGS = """
Args:
    predictions (list of int): predicted class ids (-1 = abstain counts as wrong).
    references (list of int): true class ids.
Returns:
    accuracy (float): in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        total = len(references)
        correct = sum(int(p) == int(r) for p, r in zip(predictions, references))
        return {"accuracy": correct / total if total else 0.0}
