"""The package version (one place; ``robusttext --version`` and every run record read it)."""

__version__ = "0.1.0"
