"""One registry of domain-generalization algorithms and their hyper-parameters (as DomainBed's
``hparams_registry.py``, Gulrajani & Lopez-Paz, ICLR 2021): for every algorithm, each hyper-parameter's
default and its random-search distribution, in one place.

* :data:`ALGORITHMS`: the algorithm names, registered once (``robusttext dg --algorithms``, the
  Colored MNIST sidecar and the spurious-marker benchmark all read them from here).
* :func:`default_hparams` / :func:`random_hparams`: the defaults, or one draw of the random search
  (``hparams_seed`` 0 is the defaults; seed ``k > 0`` draws every value from its distribution with a
  generator seeded by ``(algorithm, k)``, so a trial is reproducible and independent of the others).

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
"""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np

#: name -> (default, draw(rng) -> value)
_Spec = dict[str, tuple[float, Callable[[np.random.Generator], float]]]

_COMMON: _Spec = {
    "learning_rate": (5e-5, lambda r: float(10 ** r.uniform(-5.0, -3.5))),
    "weight_decay": (0.0, lambda r: float(10 ** r.uniform(-6.0, -2.0))),
}
_FISHR: _Spec = {
    "fishr_lambda": (1000.0, lambda r: float(10 ** r.uniform(1.0, 4.0))),
    "fishr_ema": (0.95, lambda r: float(r.uniform(0.90, 0.99))),
    "fishr_anneal_steps": (0, lambda r: int(r.integers(0, 51))),
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
    return {k: v for k, (v, _) in REGISTRY[check_algorithm(algorithm)].items()}


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
    return {k: draw(rng) for k, (_, draw) in REGISTRY[algorithm].items()}
