"""How every ``experiments/`` script runs: like a ``robusttext`` command (``--config FILE.yaml``, ``--debug``, user
errors as one line and exit 2, the process group left at the end), but outside the product's command line.

An experiment script is the product command's options plus the few that exist to reproduce one figure of
``docs/benchmarks.md``; it converts them into the library's configuration objects and calls the library.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def run(prog: str, command: Callable[[Sequence[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run ``command`` on ``argv`` (default: the process's arguments) as :func:`robusttext.config.dispatch` runs a
    subcommand."""
    from robusttext.config import split_debug
    from robusttext.errors import run_command
    from robusttext.runs.distributed import end_process_group

    rest, debug = split_debug(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        return contextvars.copy_context().run(run_command, prog, command, rest, debug)
    finally:
        end_process_group()
