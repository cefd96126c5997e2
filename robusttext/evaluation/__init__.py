"""Attacks and evaluation: TextAttack glue (``attacks``), the certified-vs-empirical cross-check
(``crosscheck``), the one-model robustness evaluation (``evaluate``) and AdaptDel+ rate tuning (``tuning``).

May import: :mod:`robusttext.certificate`, :mod:`robusttext.runs`, :mod:`robusttext.hub.model_card` (``evaluate``
writes its certified results into the model card) and the top-level leaves; never the command line.
"""
