"""Runs and their input/output: data specs and loading (``data``), the run skeleton that resumes, shards over
processes and merges (``results``), the fingerprints that refuse a stale resume (``fingerprint``), which process
this is (``distributed``), reports and curves (``report``), TextAttack's offline environment (``textattack_env``),
and the jobs built on them: ``certify_dataset`` and ``predict_texts`` (``certify``).

May import: :mod:`robusttext.certificate` and the top-level leaves (``robusttext.errors``, ``robusttext.compat``,
``robusttext.version``).
"""
