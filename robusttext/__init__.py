"""robusttext: certified (randomized deletion) and domain-robust (Fishr) Hugging Face text classifiers.

The public API::

    from robusttext import SmoothedTextClassifier, DeletionCollator, edit_distance_radius
"""

from __future__ import annotations

__version__ = "0.1.0"

from .deletion import DeletionCollator, DeletionMechanism
from .engine import Certification, MonteCarloEngine, Prediction
from .smoothing import SmoothedTextClassifier
from .stats import (
    EditDistanceCertificate,
    GaussianL2Certificate,
    clopper_pearson_lower,
    clopper_pearson_upper,
    edit_distance_radius,
    gaussian_l2_radius,
)

__all__ = [
    "Certification",
    "DeletionCollator",
    "DeletionMechanism",
    "EditDistanceCertificate",
    "GaussianL2Certificate",
    "MonteCarloEngine",
    "Prediction",
    "SmoothedTextClassifier",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "edit_distance_radius",
    "gaussian_l2_radius",
]
