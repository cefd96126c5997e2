"""The command-line toolkit both command lines share (``robusttext ...`` and the vision sidecar's
``robusttext vision ...``): ``--config`` YAML files, parsing argument dataclasses with ``HfArgumentParser``,
and the subcommand dispatcher.

Part of the command-line layer (with :mod:`robusttext.cli`); it sits at the top of the package so that the
vision sidecar's command line can use it without importing the core's ``cli`` package. No library module
imports it.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import yaml

from .certificate.models import set_trust_remote_code
from .errors import DEBUG_FLAG, MissingPathError, UserError, one_line, run_command, split_debug
from .runs.data import set_default_encoding
from .runs.distributed import end_process_group

#: A subcommand table: name -> (one-line help, function taking the remaining argv and returning an exit code).
Commands = dict[str, tuple[str, Callable[[Sequence[str]], int]]]


# --------------------------------------------------------------------------- parsing
def yaml_to_argv(path: str) -> list[str]:
    """Turn a YAML mapping of option -> value into command-line arguments (lists become several values, a
    mapping one JSON object, e.g. ``hparams: {fishr_lambda: 1000}``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh) or {}
    except FileNotFoundError as err:
        raise MissingPathError(f"--config {path}: no such file") from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"--config {path}: not valid YAML ({one_line(err)})") from err
    if not isinstance(cfg, dict):
        raise UserError(f"--config {path} must hold a mapping of option: value")
    argv: list[str] = []
    for key, value in cfg.items():
        if value is None:
            continue
        flag = f"--{str(key).replace('-', '_')}"
        if isinstance(value, bool):
            argv += [flag, "true" if value else "false"]
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv


def expand_config(argv: Sequence[str]) -> list[str]:
    """Replace ``--config FILE.yaml`` by the file's options, placed first so explicit options win."""
    argv = list(argv)
    out: list[str] = []
    front: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--config":
            if i + 1 >= len(argv):
                raise UserError("--config needs a YAML file path")
            front += yaml_to_argv(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--config="):
            front += yaml_to_argv(argv[i].split("=", 1)[1])
            i += 1
            continue
        out.append(argv[i])
        i += 1
    return front + out


def parse(
    dataclass_types: Sequence[type], argv: Sequence[str], prog: str, defaults: dict | None = None,
    positional: bool = False,
) -> tuple:
    """Parse ``argv`` (with ``--config`` expanded) into instances of ``dataclass_types``, and apply the
    loading options among them (:func:`apply_loading_options`); with ``positional``, the words that are no
    option come last in the tuple (a list of strings)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types, prog=prog)
    if defaults:
        parser.set_defaults(**defaults)
    add_common_help(parser)
    *parsed, rest = parser.parse_args_into_dataclasses(args=expand_config(argv), return_remaining_strings=True)
    unknown = [w for w in rest if not positional or w.startswith("--")]
    if unknown:
        raise ValueError(f"{prog}: unknown option {unknown[0]}; see {prog} --help")
    rest = rest if positional else None
    apply_loading_options(parsed)
    return tuple(parsed) if rest is None else (*parsed, rest)


def add_common_help(parser: Any) -> None:
    """Document ``--config`` and ``--debug`` in ``--help`` (both are handled before parsing), and give each
    ``--no_X`` switch of a boolean that defaults to true a help that says it turns X off."""
    parser.add_argument("--config", metavar="FILE.yaml", default=argparse.SUPPRESS,
                        help="Read options from a YAML mapping of option: value (options given here win).")
    if DEBUG_FLAG in parser._option_string_actions:  # TrainingArguments' own --debug: ours is taken first
        parser._option_string_actions[DEBUG_FLAG].help = "On a user error, print the traceback too."
    else:
        parser.add_argument(DEBUG_FLAG, action="store_true", default=argparse.SUPPRESS,
                            help="On a user error, print the traceback too.")
    by_dest = {a.dest: a for a in parser._actions if any(o.startswith("--") and not o.startswith("--no_") for o in a.option_strings)}
    for action in parser._actions:
        if isinstance(action, argparse._StoreFalseAction) and action.option_strings[0].startswith("--no_"):
            positive = by_dest.get(action.dest)
            what = positive.help if positive is not None and positive.help else action.dest
            action.help = f"Turn off --{action.dest}, which is on by default: {what}"
            action.default = argparse.SUPPRESS  # the value's default is --{dest}'s; "(default: False)" misled


def apply_loading_options(parsed: Sequence[Any]) -> None:
    """Make ``--trust-remote-code`` and ``--encoding`` of the parsed arguments the current context's
    defaults for loading models and local files (library calls that pass them explicitly win)."""
    for args in parsed:
        if hasattr(args, "trust_remote_code"):
            set_trust_remote_code(args.trust_remote_code)
        if hasattr(args, "encoding"):
            set_default_encoding(args.encoding)


# --------------------------------------------------------------------------- dispatching
def dispatch(prog: str, commands: Commands, argv: Sequence[str], own_debug: Any = None) -> int:
    """Run the subcommand ``argv[0]`` of ``commands`` with the rest of ``argv``: help for none, exit 2 for an
    unknown one, and errors as :func:`robusttext.errors.run_command` reports them. ``--debug`` is taken out
    of the arguments of the commands in ``own_debug`` (default: all)."""
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND [options]   ({prog} COMMAND --help for its options)\n")
        for name, (help_, _) in commands.items():
            print(f"  {name:<12} {help_}")
        print(f"\nevery COMMAND takes --config FILE.yaml (options from YAML) and {DEBUG_FLAG} (tracebacks of user errors)")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"{prog}: unknown command {name!r}; choose one of {', '.join(commands)}", file=sys.stderr)
        return 2
    return run_script(f"{prog} {name}", commands[name][1], rest, own_debug is None or name in own_debug)


def run_script(prog: str, command: Callable[[Sequence[str]], int], argv: Sequence[str] | None = None,
               take_debug: bool = True) -> int:
    """Run ``command(argv)`` (default: the process's arguments) as every ``robusttext`` command runs: ``--debug``
    taken out when ``take_debug``, user errors as one line with exit 2 (:func:`robusttext.errors.run_command`),
    and the process group left at the end, also after an error (a gloo group left open can abort the exit).
    The subcommands and the ``experiments/`` scripts run through it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    if take_debug:
        argv, debug = split_debug(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:  # a copy of the context: options a command sets (--trust-remote-code, --encoding) end with it
        return contextvars.copy_context().run(run_command, prog, command, argv, debug)
    finally:
        end_process_group()


@contextmanager
def hparams_errors() -> Iterator[None]:
    """Re-raise a ``ValueError`` about ``--hparams``' values as the command line names them: the registry's
    ``hparams ...`` as ``--hparams ...``, a value the registry took but the algorithm refuses (``fishr_ema must be
    ...``) as ``--hparams: fishr_ema must be ...``; a message that already names a flag is kept."""
    try:
        yield
    except ValueError as err:
        msg = str(err)
        if type(err) is not ValueError or msg.startswith("--"):
            raise
        raise ValueError(f"--{msg}" if msg.startswith("hparams") else f"--hparams: {msg}") from None
