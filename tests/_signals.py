"""Starting a child that Ctrl-C (SIGINT) can interrupt, whatever the test runner's own SIGINT disposition.

A shell starts background jobs (``cmd &``, ``nohup``) with SIGINT ignored, children inherit an ignored
signal across exec, and Python then keeps it ignored instead of raising ``KeyboardInterrupt``: an
interruption test run under such a CI job would see the child finish normally. Resetting SIGINT to its
default in the child before exec gives it the disposition a terminal user's command has.
"""

from __future__ import annotations

import signal


def sigint_default() -> None:
    """``preexec_fn`` for ``subprocess.Popen``: SIGINT back to its default in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
