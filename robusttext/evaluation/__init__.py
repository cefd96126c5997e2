"""Attacks and evaluation: TextAttack glue (``attacks``), the certified-vs-empirical cross-check
(``crosscheck``), the one-model robustness evaluation (``evaluate``) and AdaptDel+ rate tuning (``tuning``).

May import: :mod:`robusttext.certificate`, :mod:`robusttext.runs` and the top-level leaves.
"""
