"""Training: the ``Trainer`` glue (``trainer``: train a classifier under a deletion schedule), the Fishr and
consistency trainers, domain-balanced batches (``domain_data``), heads and the linear probe, the hyperparameter
registry (the one list of algorithms and their defaults) and training-time augmentation.

May import: :mod:`robusttext.certificate`, :mod:`robusttext.runs`, :mod:`robusttext.hub` (the local metric
modules) and the top-level leaves.
"""
