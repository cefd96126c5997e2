"""Domain generalization: leave-one-domain-out sweeps (``domains``), their DomainBed-style tables
(``dg_tables``) and the constructed spurious marker (``spurious``).

May import: :mod:`robusttext.training`, :mod:`robusttext.runs`, :mod:`robusttext.certificate`,
:mod:`robusttext.hub.model_card` (``dg --certify --update-model-card``) and the top-level leaves.
"""
