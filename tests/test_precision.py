"""Precision selection: explicit choices are honoured, ``auto`` follows the hardware, bad names are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robusttext.certificate import precision
from robusttext.certificate.precision import autocast_dtype, cpu_supports_bf16


def test_explicit_precisions():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("fp16", cpu) is torch.float16


def test_auto_on_cpu_follows_the_cpu_flags():
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = next((ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")), "")
    native = " avx512_bf16" in flags or " amx_bf16" in flags
    assert cpu_supports_bf16() is native
    assert autocast_dtype("auto", torch.device("cpu")) is (torch.bfloat16 if native else None)


def test_auto_without_cpuinfo_is_full_precision(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "Path", lambda _: tmp_path / "absent")
    precision.cpu_supports_bf16.cache_clear()
    try:
        assert autocast_dtype("auto", torch.device("cpu")) is None
    finally:
        precision.cpu_supports_bf16.cache_clear()


def test_precision_names_round_trip():
    cpu = torch.device("cpu")
    for name in ("fp32", "bf16", "fp16"):
        assert precision.precision_name(autocast_dtype(name, cpu)) == name


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        autocast_dtype("fp8", torch.device("cpu"))
