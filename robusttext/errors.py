"""Which errors are the user's, and what the command line prints when a run stops.

The classification that :func:`run_command` (the wrapper of ``robusttext ...`` and ``robusttext vision ...``)
applies:

* **User errors** print one line, ``PROG: error: MESSAGE``, and exit with :data:`EXIT_USER_ERROR` (2), with
  no traceback (``--debug`` prints it first). A user error is

  - a :class:`UserError` (a ``ValueError``), raised where input is validated: missing model folder or
    file, malformed file, empty dataset, missing column, untrained head, custom code not allowed; or
  - a ``ValueError``, ``FileNotFoundError``, ``NotADirectoryError`` or ``ImportError`` raised by a ``raise``
    statement in the code of ``robusttext`` or ``vision``: by the house rule, our code raises these only
    for bad input (argument checks, missing files, optional packages not installed), so the existing
    argument checks count as user errors without being rewritten.

* **Interruptions** (Ctrl-C) print ``interrupted; rerun the same command to resume`` (or, from a
  :class:`RunInterrupted`, ``interrupted after K of N inputs; ...``) and exit with :data:`EXIT_INTERRUPTED`
  (130, the shell's code for SIGINT).

* **Everything else is a bug** and propagates with its full traceback (exit 1): an exception raised
  inside torch, transformers or datasets, or by a failing operation (not a ``raise`` statement) in our
  own code, e.g. ``int("x")`` or a ``KeyError``.
"""

from __future__ import annotations

import linecache
import sys
import traceback
from pathlib import Path
from typing import Callable, Sequence

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
DEBUG_FLAG = "--debug"
#: Exception types that count as user errors when raised by a ``raise`` statement in our packages.
VALIDATION_TYPES = (ValueError, FileNotFoundError, NotADirectoryError, ImportError)
#: Folders of the packages whose ``raise`` statements validate input: ``robusttext`` and its sibling ``vision``.
OUR_PACKAGES = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "vision")


class UserError(ValueError):
    """Bad input the user can fix; the message is one line that names the field or file and the fix."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or folder named on the command line does not exist."""


class RemoteCodeRefused(UserError):
    """A model asks to run Python code shipped with it, and the user did not opt in (``--trust-remote-code``)."""


class UntrainedHeadError(UserError):
    """A model's weights are partly newly initialised (e.g. a bare encoder's classification head), so its
    predictions are random: certifying or attacking it would be meaningless. Train it first."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run that had finished ``done`` of its ``total`` inputs (their records are kept)."""

    def __init__(self, done: int, total: int, unit: str = "inputs") -> None:
        super().__init__(done, total)
        self.done = int(done)
        self.total = int(total)
        self.unit = unit

    def __str__(self) -> str:
        return f"interrupted after {self.done} of {self.total} {self.unit}; rerun the same command to resume"


def one_line(text: object) -> str:
    """``text`` as one line: its non-empty lines, stripped, joined by spaces."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _raised_by_our_raise_statement(err: BaseException) -> bool:
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = Path(tb.tb_frame.f_code.co_filename).resolve()
    if not any(pkg == filename.parent or pkg in filename.parents for pkg in OUR_PACKAGES):
        return False
    return linecache.getline(str(filename), tb.tb_lineno).lstrip().startswith("raise ")


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is a user error (see the module docstring), printed as one line without a traceback."""
    if isinstance(err, UserError):
        return True
    return isinstance(err, VALIDATION_TYPES) and _raised_by_our_raise_statement(err)


def split_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug``, and whether it was there."""
    rest = [a for a in argv if a != DEBUG_FLAG]
    return rest, len(rest) != len(argv)


def run_command(prog: str, command: Callable[[Sequence[str]], int], argv: Sequence[str], debug: bool = False) -> int:
    """Run ``command(argv)``; print user errors and interruptions as one line (see the module docstring)
    and return their exit code; let every other exception propagate with its traceback."""
    try:
        return command(argv)
    except KeyboardInterrupt as err:
        if debug:
            traceback.print_exc()
        message = str(err) if isinstance(err, RunInterrupted) else "interrupted; rerun the same command to resume"
        print(f"{prog}: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if not is_user_error(err):
            raise
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
