"""Hugging Face faces: model cards, TrainerCallback, Pipeline; may import every library layer, never the CLI.

- :class:`~robusttext.hub.callbacks.CertifiedEvalCallback`: certified accuracy of the current weights at
  every ``Trainer`` evaluation, as ``eval_*`` metrics (``metric_for_best_model``, early stopping, ``report_to``).
- :mod:`robusttext.hub.model_card`: a certification run's results as the model folder's Hub card
  (``model-index`` metadata plus a human section), merged into a card the user wrote; push to the Hub.
- :class:`~robusttext.hub.pipeline.SmoothedTextClassificationPipeline`: the smoothed classifier behind
  ``transformers.pipeline(...)``.

- :mod:`robusttext.hub.metrics`: the local ``evaluate`` metric modules, loadable offline.

May import: every library layer (certificate, runs), never the command line; nothing below imports the
faces except ``training``, which loads the ``accuracy`` metric module and attaches the callback, and
``evaluation.evaluate``, which writes the model card. The
submodules import ``transformers`` / ``huggingface_hub`` when loaded; this package itself imports nothing.
"""
