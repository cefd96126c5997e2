"""The certificate and its sampling: the base classifier's loading and arithmetic (``models``, ``precision``),
the randomized-deletion mechanism and its rate schedules (``deletion``, ``rates``), the Monte Carlo engine
(``engine``, the only loop over samples), the bounds and radii (``stats``, the only place a bound or a radius
is computed), the certification protocol (``protocol``) and :class:`SmoothedTextClassifier` (``smoothing``).

May import: the top-level leaves (``robusttext.errors``, ``robusttext.compat``, ``robusttext.version``) and
nothing else of the package.
"""
