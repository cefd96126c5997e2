"""The ``robusttext`` command line: argument dataclasses (``arguments``), YAML configs and dispatch, the
subcommands (``main``, ``attack_commands``). Each command parses its arguments, converts them once and calls
one library function.

May import: everything in the package. Nothing imports it (the library knows no command line).
``python -m robusttext.cli`` and the ``robusttext`` console script both run :func:`main`.
"""

from .main import COMMANDS, QuickstartArguments, main, plugin_commands, print_summary, training_defaults

__all__ = ["COMMANDS", "QuickstartArguments", "main", "plugin_commands", "print_summary", "training_defaults"]
