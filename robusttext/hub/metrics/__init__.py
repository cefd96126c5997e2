"""Local ``evaluate`` metric modules shipped with robusttext (``evaluate.load`` of a Hub metric needs
the network; these load from the installed package)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def metric_path(name: str) -> str:
    """Folder of the local metric module ``name`` (e.g. ``"accuracy"``), for ``evaluate.load``."""
    path = _HERE / name
    if not (path / f"{name}.py").exists():
        known = sorted(p.name for p in _HERE.iterdir() if (p / f"{p.name}.py").exists())
        raise ValueError(f"no local metric {name!r}; available: {known}")
    return str(path)


def load_metric(name: str):
    """``evaluate.load`` of a local metric module, offline."""
    import evaluate

    return evaluate.load(metric_path(name))
