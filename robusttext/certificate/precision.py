"""Which floating-point precision the base classifier runs in during smoothing.

``precision`` is ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``. ``auto`` picks bf16 autocast where the
hardware computes it natively - CUDA GPUs that support it (else fp16), and CPUs with AVX512-BF16 or AMX
(e.g. AMD Zen 4, Intel Sapphire Rapids) - and fp32 elsewhere (speed figures: ``docs/benchmarks.md``).

Certificates are statements about the smoothed version of the base classifier *as run*, in the
precision it ran in (recorded in each certify run's parameters). Pass ``fp32`` to certify the
full-precision classifier.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo; False
    where that file is absent, e.g. on macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_name(dtype: torch.dtype | None) -> str:
    """The name of an autocast dtype as ``precision`` spells it (None = ``fp32``), for run records."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = full precision)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_supports_bf16() else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
