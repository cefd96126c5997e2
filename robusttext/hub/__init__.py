"""Hugging Face faces: the local ``evaluate`` metric modules (``hub.metrics``), loadable offline.

May import: nothing else of the package today (the metric modules are leaves that ``evaluate.load`` runs on
their own); faces built on the layers above (model cards, callbacks, pipelines) may import them.
"""
