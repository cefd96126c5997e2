"""Calling the engine's CERTIFY with protocol fields as keywords (Cohen's protocol with those fields changed)."""

from __future__ import annotations

from typing import Any, Sequence

from robusttext.certificate.protocol import CertifyProtocol


def certify_with(engine: Any, xs: Sequence, mechanism: Any, certificate: Any, seed: int = 0,
                 indices: Sequence[int] | None = None, **budget: Any) -> list:
    """``engine.certify`` under ``CertifyProtocol.fixed_sample(n0, n, alpha)`` with ``budget``'s other fields."""
    base = CertifyProtocol.fixed_sample(budget.pop("n0"), budget.pop("n"), budget.pop("alpha"))
    return engine.certify(xs, mechanism, certificate, base.with_budget(**budget), seed=seed, indices=indices)
