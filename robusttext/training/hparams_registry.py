"""One registry of domain-generalization algorithms and their hyper-parameters (as DomainBed's
``hparams_registry.py``, Gulrajani & Lopez-Paz, ICLR 2021): for every algorithm, each hyper-parameter's
default, type and random-search distribution, in one place; and the hyper-parameters of the Colored MNIST
benchmark (``robusttext vision coloredmnist``).

* :data:`ALGORITHMS`: the algorithm names, registered once (``robusttext dg --algorithms``, the
  Colored MNIST sidecar and the spurious-marker benchmark all read them from here).
* :func:`default_hparams` / :func:`random_hparams`: the defaults, or one draw of the random search
  (``hparams_seed`` 0 is the defaults; seed ``k > 0`` draws every value from its distribution with a
  generator seeded by ``(algorithm, k)``, so a trial is reproducible and independent of the others).
* :func:`check_hparams`: a DomainBed-style ``--hparams '{"fishr_lambda": 100}'`` (a JSON object or a
  mapping) checked against the registry: an unknown key, or a value not of the registry's type, is a
  ``ValueError`` that names the key and lists the valid ones.

Search distributions (DomainBed's style: log-uniform for scales):

=================== ============ ===================================================
name                default      random search
=================== ============ ===================================================
learning_rate       5e-5         10 ** U(-5, -3.5)
weight_decay        0            10 ** U(-6, -2)
fishr_lambda        1000         10 ** U(1, 4)       (Fishr only; DomainBed's range)
fishr_ema           0.95         U(0.90, 0.99)       (Fishr only)
fishr_anneal_steps  0            integer U[0, 50]    (Fishr only; optimizer steps)
=================== ============ ===================================================

Colored MNIST (IRM's ``reproduce_paper_results.sh`` values, which Fishr's code keeps; no random search):
``hidden_dim`` 128 (MLP width; IRM: 390), ``l2_regularizer_weight`` None (IRM's prior for the training-set
size, see :mod:`robusttext_vision.coloredmnist`), ``penalty_anneal_iters`` 190 (steps at penalty weight 1),
``penalty_weight`` 91257.18613115903 (the paper's units).
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import numpy as np


class HParam(NamedTuple):
    """One hyper-parameter: its default, its type (``int`` or ``float``; ``None`` allowed where the default
    is ``None``) and its random-search draw (``None``: not searched)."""

    default: Any
    kind: type
    draw: Optional[Callable[[np.random.Generator], Any]] = None


#: name -> its spec
_Spec = dict[str, HParam]

_COMMON: _Spec = {
    "learning_rate": HParam(5e-5, float, lambda r: float(10 ** r.uniform(-5.0, -3.5))),
    "weight_decay": HParam(0.0, float, lambda r: float(10 ** r.uniform(-6.0, -2.0))),
}
_FISHR: _Spec = {
    "fishr_lambda": HParam(1000.0, float, lambda r: float(10 ** r.uniform(1.0, 4.0))),
    "fishr_ema": HParam(0.95, float, lambda r: float(r.uniform(0.90, 0.99))),
    "fishr_anneal_steps": HParam(0, int, lambda r: int(r.integers(0, 51))),
}

#: Benchmarks with hyper-parameters of their own (DomainBed keys its registry by algorithm and dataset).
BENCHMARKS: dict[str, _Spec] = {
    "coloredmnist": {
        "hidden_dim": HParam(128, int),
        "l2_regularizer_weight": HParam(None, float),
        "penalty_anneal_iters": HParam(190, int),
        "penalty_weight": HParam(91257.18613115903, float),
    },
}

#: Every algorithm, once: name -> its hyper-parameter specs (common ones included).
REGISTRY: dict[str, _Spec] = {
    "erm": dict(_COMMON),
    "fishr": {**_COMMON, **_FISHR},
}
ALGORITHMS: tuple[str, ...] = tuple(REGISTRY)


def check_algorithm(name: str) -> str:
    """``name`` lower-cased, or a ``ValueError`` naming the registered algorithms."""
    key = str(name).strip().lower()
    if key not in REGISTRY:
        raise ValueError(f"--algorithm must be one of {', '.join(ALGORITHMS)}, got {name!r}")
    return key


def parse_algorithms(value: str | Sequence[str]) -> list[str]:
    """``"erm,fishr"`` -> ``["erm", "fishr"]``, each checked against the registry."""
    items = value.split(",") if isinstance(value, str) else list(value)
    algos = [a.strip().lower() for a in items if a.strip()]
    bad = [a for a in algos if a not in REGISTRY]
    if not algos or bad:
        raise ValueError(f"--algorithms must be a comma-separated subset of {','.join(ALGORITHMS)}, got {value!r}")
    return algos


def default_hparams(algorithm: str) -> dict[str, float]:
    """Every hyper-parameter of ``algorithm`` at its default."""
    return {k: h.default for k, h in REGISTRY[check_algorithm(algorithm)].items()}


def random_hparams(algorithm: str, hparams_seed: int) -> dict[str, float]:
    """One reproducible draw of the random search (``hparams_seed`` 0: the defaults).

    The generator is seeded by ``(crc32(algorithm), hparams_seed)`` and values are drawn in the
    registry's order, so a trial depends only on the algorithm and its seed."""
    algorithm = check_algorithm(algorithm)
    if int(hparams_seed) < 0:
        raise ValueError(f"--hparams-seed must be >= 0, got {hparams_seed}")
    if int(hparams_seed) == 0:
        return default_hparams(algorithm)
    rng = np.random.default_rng([zlib.crc32(algorithm.encode()), int(hparams_seed)])
    return {k: h.draw(rng) for k, h in REGISTRY[algorithm].items()}


def benchmark_hparams(benchmark: str) -> dict[str, Any]:
    """Every hyper-parameter of ``benchmark`` (a key of :data:`BENCHMARKS`) at its default."""
    return {k: h.default for k, h in BENCHMARKS[benchmark].items()}


def _typed(name: str, value: Any, spec: HParam) -> Any:
    """``value`` as the registry's type of ``name`` (an int is a float too; a bool, a string or a
    fractional number for an int is refused)."""
    if value is None and spec.default is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and spec.kind is int and isinstance(value, float):
        ok = value.is_integer()
    if not ok:
        raise ValueError(f"hparams: {name} must be {'an int' if spec.kind is int else 'a number'}, got {value!r}")
    return spec.kind(value)


def check_hparams(values: str | Mapping[str, Any] | None, specs: Mapping[str, HParam]) -> dict[str, Any]:
    """``values`` (a JSON object, as DomainBed's ``--hparams``, or a mapping; ``None``: empty) checked against
    ``specs`` (a part of the registry, e.g. ``fishr_specs()``): the given keys only, each converted to the
    registry's type. An unknown key or a value of another type raises a one-line ``ValueError`` starting
    with ``hparams`` that names the key and lists the valid keys."""
    if values is None or values == "":
        return {}
    if isinstance(values, str):
        try:
            values = json.loads(values)
        except json.JSONDecodeError as err:
            raise ValueError(f"hparams must be a JSON object such as '{{\"{next(iter(specs))}\": ...}}', got {values!r} ({err.msg})") from None
    if not isinstance(values, Mapping):
        raise ValueError(f"hparams must be a JSON object of {', '.join(sorted(specs))}, got {values!r}")
    out = {}
    for key, value in values.items():
        if key not in specs:
            raise ValueError(f"hparams: unknown key {key!r}; valid keys: {', '.join(sorted(specs))}")
        out[key] = _typed(key, value, specs[key])
    return out


def fishr_specs() -> _Spec:
    """The Fishr hyper-parameters (the ``--hparams`` keys of ``robusttext train`` and ``robusttext dg``; the
    learning rate and weight decay are ``TrainingArguments`` of their own)."""
    return dict(_FISHR)
