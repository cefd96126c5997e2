"""robusttext: certified (randomized deletion) and domain-robust (Fishr) Hugging Face text classifiers.

The public API::

    from robusttext import SmoothedTextClassifier, CertifyProtocol, DeletionCollator, FishrTrainer
"""

from __future__ import annotations

from .version import __version__

from .certificate.deletion import DeletionCollator, DeletionMechanism
from .certificate.engine import Certification, MonteCarloEngine, Prediction
from .certificate.protocol import CertifyProtocol
from .certificate.smoothing import SmoothedTextClassifier
from .certificate.stats import (
    EditDistanceCertificate,
    GaussianL2Certificate,
    clopper_pearson_lower,
    clopper_pearson_upper,
    edit_distance_radius,
    gaussian_l2_radius,
)

__all__ = [
    "CertifiedEvalCallback",
    "CertifyProtocol",
    "Certification",
    "ConsistencyTrainer",
    "DeletionCollator",
    "DeletionMechanism",
    "EditDistanceCertificate",
    "FishrTrainer",
    "GaussianL2Certificate",
    "MonteCarloEngine",
    "Prediction",
    "SmoothedTextClassificationPipeline",
    "SmoothedTextClassifier",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "edit_distance_radius",
    "gaussian_l2_radius",
]


def __getattr__(name: str):  # the Trainer glue loads transformers' Trainer only when asked for
    if name == "FishrTrainer":
        from .training.fishr import FishrTrainer

        return FishrTrainer
    if name == "CertifiedEvalCallback":
        from .hub.callbacks import CertifiedEvalCallback

        return CertifiedEvalCallback
    if name == "SmoothedTextClassificationPipeline":
        from .hub.pipeline import SmoothedTextClassificationPipeline

        return SmoothedTextClassificationPipeline
    if name == "ConsistencyTrainer":
        from .training.consistency import ConsistencyTrainer

        return ConsistencyTrainer
    raise AttributeError(f"module 'robusttext' has no attribute {name!r}")
