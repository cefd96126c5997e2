"""``SmoothedTextClassificationPipeline``: the randomized-deletion smoothed classifier behind ``transformers.pipeline``.

    from transformers import pipeline
    from robusttext.hub.pipeline import SmoothedTextClassificationPipeline

    clf = pipeline("text-classification", model="runs/sst2", pipeline_class=SmoothedTextClassificationPipeline,
                   p_del=0.9, n=1000, certify=True)
    clf(["a gripping , funny film", "dull and long"], batch_size=8)
    # [{'label': 'positive', 'score': 0.97, 'abstained': False, 'radius': 5, 'unit': 'word'}, ...]

Each call smooths the pipeline's model with :class:`robusttext.SmoothedTextClassifier` (same seed, same numbers:
text ``i`` of a call draws from the random stream ``[seed, i]``, so a call equals ``SmoothedTextClassifier.predict``
/ ``certify`` on the same list). Per text it returns ``label`` (the smoothed class's name; None when abstaining),
``score`` and ``abstained``:

- ``certify=False`` (Cohen et al.'s PREDICT from ``n`` samples at ``alpha``): ``score`` is the top class's
  vote share in [0, 1]; a non-abstained label differs from the smoothed classifier's with probability <= alpha.
- ``certify=True`` (CERTIFY under ``CertifyProtocol(n0, n, alpha, top2)``): ``score`` is the lower confidence
  bound of the label's probability under noise, and ``radius`` (-1 when abstaining) and ``unit`` are added:
  with probability >= 1 - alpha every text within Levenshtein distance ``radius`` (in ``unit`` s) gets the same
  label. With ``radius=r`` (an integer >= 0), ``certified`` says whether the certificate reaches r.

``batch_size`` (pipeline argument) is the number of texts smoothed together; ``noise_batch_size`` the noisy
copies per forward pass.
"""

from __future__ import annotations

from typing import Any, Sequence

from transformers import Pipeline

from robusttext.certificate.protocol import CertifyProtocol  # internal paths: robusttext itself exports this module lazily
from robusttext.certificate.smoothing import SmoothedTextClassifier

_CALL_OPTIONS = ("n", "n0", "alpha", "top2", "certify", "radius")


class SmoothedTextClassificationPipeline(Pipeline):
    """A ``text-classification`` pipeline answering with the smoothed classifier (see the module docstring).

    Construction options (``pipeline(..., p_del=..., unit=..., seed=..., noise_batch_size=...)``): ``p_del`` a
    deletion probability in (0, 1), a certifiable rate schedule or its text (``"adaptive:k=13,p_lb=0.9"``; default: the model folder's
    ``rate_schedule.json``, else refused); ``unit`` ``"word"``/``"char"``/``"token"``; ``seed``. Call options
    (also accepted at construction): ``n`` (default 1000), ``n0`` (certify's selection samples, default 50),
    ``alpha`` (default 0.05), ``top2``, ``certify`` (bool), ``radius`` (integer >= 0, with ``certify=True``).
    """

    def __init__(self, *args: Any, p_del: Any = None, unit: str = "word", seed: int = 0, noise_batch_size: int = 256,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.smoothed = SmoothedTextClassifier(self.model, self.tokenizer, p_del=_rate(self.model, p_del), unit=unit,
                                               seed=seed, batch_size=noise_batch_size)

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        unknown = sorted(set(kwargs) - set(_CALL_OPTIONS))
        if unknown:
            raise ValueError(f"SmoothedTextClassificationPipeline: unknown argument {unknown[0]!r}; "
                             f"it takes {', '.join(_CALL_OPTIONS)} per call and p_del, unit, seed, noise_batch_size")
        return {}, check_options(kwargs), {}

    def __call__(self, inputs: str | Sequence[str], **kwargs: Any) -> Any:
        """Smoothed answers for one text (a dict) or a list of texts (a list of dicts), in order."""
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("SmoothedTextClassificationPipeline: inputs must be a text or a list of texts")
        step = int(kwargs.pop("batch_size", None) or self._batch_size or 32)
        options = {**self._forward_params, **self._sanitize_parameters(**kwargs)[1]}
        out: list[dict] = []
        for start in range(0, len(texts), step):
            idx = list(range(start, min(start + step, len(texts))))
            out += self.smooth([texts[i] for i in idx], idx, **options)
        return out[0] if single else out

    def smooth(self, texts: list[str], indices: list[int], n: int = 1000, n0: int = 50, alpha: float = 0.05,
               top2: str = "complement", certify: bool = False, radius: int | None = None) -> list[dict]:
        """The answers for ``texts``, input ``indices[i]``'s random stream for text i."""
        names = self.model.config.id2label
        results = []
        if certify:
            protocol = CertifyProtocol(n0=n0, n=n, alpha=alpha, top2=top2)
            for c in self.smoothed.certify(texts, protocol, indices=indices):
                rec = {"label": names[c.prediction] if c.prediction >= 0 else None, "score": float(c.top1_lower),
                       "abstained": c.prediction < 0, "radius": int(c.radius), "unit": self.smoothed.unit}
                if radius is not None:
                    rec["certified"] = c.prediction >= 0 and c.radius >= radius
                results.append(rec)
            return results
        for p in self.smoothed.predict(texts, n=n, alpha=alpha, indices=indices):
            share = max(p.counts) / max(1, sum(p.counts))
            results.append({"label": names[p.prediction] if p.prediction >= 0 else None, "score": float(share),
                            "abstained": p.prediction < 0})
        return results

    # the Pipeline steps, for one text (run_single); __call__ batches texts itself
    def preprocess(self, inputs: str, **_: Any) -> dict:
        return {"text": inputs}

    def _forward(self, model_inputs: dict, **options: Any) -> dict:
        return {"results": self.smooth([model_inputs["text"]], [0], **options)}

    def postprocess(self, model_outputs: dict, **_: Any) -> dict:
        return model_outputs["results"][0]


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The call options, validated (ValueError naming the option and its range)."""
    for name in ("n", "n0", "radius"):
        value = options.get(name)
        low = 0 if name == "radius" else 1
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"SmoothedTextClassificationPipeline: {name} must be an integer >= {low}, got {value!r}")
    if "alpha" in options and not 0.0 < float(options["alpha"]) < 1.0:
        raise ValueError(f"SmoothedTextClassificationPipeline: alpha must be in (0, 1), got {options['alpha']!r}")
    if "certify" in options and not isinstance(options["certify"], bool):
        raise ValueError(f"SmoothedTextClassificationPipeline: certify must be True or False, got {options['certify']!r}")
    if options.get("radius") is not None and not options.get("certify", True):
        raise ValueError("SmoothedTextClassificationPipeline: radius needs certify=True")
    if "top2" in options and options["top2"] not in ("complement", "bonferroni"):
        raise ValueError(f"SmoothedTextClassificationPipeline: top2 must be 'complement' or 'bonferroni', got {options['top2']!r}")
    return {k: v for k, v in options.items() if v is not None}


def _rate(model: Any, p_del: Any) -> Any:
    """``p_del`` as given (a number, a schedule, or its command-line text such as ``"adaptive:k=13,p_lb=0.9"``),
    else the model folder's recorded schedule (ValueError when there is none)."""
    from pathlib import Path

    from robusttext.certificate.rates import load, parse_rate_schedule

    if isinstance(p_del, str):
        return parse_rate_schedule(p_del)
    if p_del is not None:
        return p_del

    folder = getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", "")
    recorded = load(folder) if folder and Path(folder).is_dir() else None
    if recorded is None:
        raise ValueError("SmoothedTextClassificationPipeline: no p_del given and the model folder records no "
                         "rate_schedule.json; pass p_del=0.9 (or a rate schedule)")
    return recorded
