#!/usr/bin/env python
"""Write ``docs/cli.md``: every ``robusttext`` and ``robusttext vision`` subcommand with every option, its
type, default and help, read from the parsers the subcommands build, so the reference cannot drift.

    python scripts/gen_cli_docs.py            # rewrite docs/cli.md
    python scripts/gen_cli_docs.py --check    # exit 1 (and say so) if docs/cli.md is out of date

How: each subcommand is called through its CLI's ``main`` with ``--help`` while
``argparse.ArgumentParser.parse_known_args`` is intercepted, so the options listed are exactly the ones its
``HfArgumentParser`` holds (its argument dataclasses, with the subcommand's own defaults applied); types come
from the dataclass fields. The options ``transformers.TrainingArguments`` contributes are not repeated (they
are the transformers version's); only the defaults a subcommand changes are listed. Defaults are rendered as on
a machine without CUDA (CUDA is hidden from this process), so the file does not depend on where it is made.
"""

from __future__ import annotations

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # defaults such as dataloader_pin_memory follow torch.cuda.is_available()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import argparse
import dataclasses
import enum
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "docs" / "cli.md"
REGENERATE = "python scripts/gen_cli_docs.py"


class _Captured(BaseException):
    """Raised instead of parsing: carries the parser a subcommand built (BaseException, so no CLI catches it)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def capture_parser(main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser that ``main(argv)`` builds, taken at its first ``parse_known_args`` (nothing is parsed or run)."""
    original = argparse.ArgumentParser.parse_known_args

    def intercept(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Captured(self)

    argparse.ArgumentParser.parse_known_args = intercept  # type: ignore[method-assign]
    try:
        main(list(argv))
    except _Captured as got:
        return got.parser
    finally:
        argparse.ArgumentParser.parse_known_args = original  # type: ignore[method-assign]
    raise RuntimeError(f"{' '.join(argv)}: the command returned without building an argument parser")


def type_name(tp: Any) -> str:
    """A short readable name of a field's type annotation: ``int``, ``float | None``, ``list[str]``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        names = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(names + (["None"] if type(None) in args else []))
    if origin in (list, tuple, set, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]" if args else origin.__name__
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "str"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def field_types(parser: argparse.ArgumentParser) -> tuple[dict[str, str], set[str]]:
    """(field name -> type name over the parser's dataclasses, names that ``TrainingArguments`` contributes).

    A field that a robusttext class declares itself (``overwrite_output_dir``, which transformers 4.x also has
    and 5.x does not) is robusttext's own option, so the page is the same on both stacks."""
    from transformers import TrainingArguments

    names: dict[str, str] = {}
    inherited: set[str] = set()
    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    for dtype in getattr(parser, "dataclass_types", ()):
        hints = typing.get_type_hints(dtype)
        ours = {n for k in dtype.__mro__ if k.__module__.startswith("robusttext") for n in vars(k).get("__annotations__", {})}
        for f in dataclasses.fields(dtype):
            if f.init:
                names[f.name] = type_name(hints.get(f.name, f.type))
                if issubclass(dtype, TrainingArguments) and f.name in base - ours:
                    inherited.add(f.name)
    return names, inherited


def cell(text: Any) -> str:
    """One Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def show_default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    value = action.default
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        return "`" + " ".join(str(v) for v in value) + "`" if value else "`[]`"
    return f"`{value}`" if value != "" else '`""`'


def option_rows(parser: argparse.ArgumentParser) -> tuple[list[list[str]], list[list[str]], bool]:
    """(rows of the subcommand's own options, rows of the TrainingArguments defaults it sets, whether it has any).

    The defaults listed are those the command sets (``robusttext.cli.training_defaults``), not a comparison
    with ``TrainingArguments``' own, which differ between transformers 4.x and 5.x."""
    from robusttext.cli import training_defaults

    types_, inherited = field_types(parser)
    ours = set(training_defaults("")) if inherited else set()
    rows: dict[str, list[str]] = {}
    changed: list[list[str]] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.dest == argparse.SUPPRESS:
            continue
        flags = sorted(action.option_strings, key=lambda s: ("_" in s, s))
        if action.dest in rows:  # HfArgumentParser's --no_FLAG complement of a boolean option
            rows[action.dest][0] += ", " + ", ".join(f"`{f}`" for f in flags)
            continue
        if action.dest in inherited:
            if action.dest not in rows and action.dest in ours:
                changed.append([f"`--{action.dest}`", show_default(action)])
            rows[action.dest] = ["", "", "", ""]  # seen, not listed
            continue
        kind = types_.get(action.dest) or getattr(action.type, "__name__", "str")
        if action.choices:
            kind += " (one of: " + ", ".join(str(c) for c in action.choices) + ")"
        if action.nargs in ("+", "*"):
            kind += ", several values"
        rows[action.dest] = [", ".join(f"`{f}`" for f in flags), cell(kind), show_default(action), cell(action.help or "")]
    own = [r for d, r in rows.items() if d not in inherited]
    return own, sorted(changed), bool(inherited)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def command_section(title: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    own, changed, has_training_args = option_rows(parser)
    out = [f"### `{title}`", "", cell(summary) + ".", ""]
    out += table(["option", "type", "default", "help"], own)
    if has_training_args:
        out += ["", "Also every option of `transformers.TrainingArguments` (see the transformers documentation)."]
        if changed:
            out += ["This command sets these of their defaults:", ""]
            out += table(["option", "default here"], changed)
    return out + [""]


def cli_sections(prog: str, main: Callable[[Sequence[str]], int], commands: dict, prefix: Sequence[str] = ()) -> list[str]:
    out = [f"## `{prog}`", ""]
    out += table(["command", "what it does"], [[f"[`{prog} {name}`](#{anchor(prog, name)})", cell(help_)]
                                               for name, (help_, _) in commands.items()])
    out.append("")
    for name, (help_, _) in commands.items():
        out += command_section(f"{prog} {name}", help_, capture_parser(main, [*prefix, name, "--help"]))
    return out


def anchor(prog: str, name: str) -> str:
    """GitHub's heading anchor of ``### `PROG NAME` ``."""
    return f"{prog} {name}".replace(" ", "-").lower()


DEFAULTS_TABLE = [
    "## Where a command's default differs",
    "",
    "Each default is defined once, beside the code it configures (`CertifyProtocol`, `SmoothedTextClassifier`,",
    "`robusttext.certificate.rates.DEFAULT_P_DEL`, `TrainingRecipe`, `TuneConfig`, the hyperparameter registry).",
    "These commands set another, for the reason given:",
    "",
    "| command | option | here | library default | why |",
    "|---|---|---|---|---|",
    "| `quickstart` | `--n` | 1000 | 4000 (`CertifyProtocol.n`) | the embedded job certifies 60 articles in minutes on a CPU |",
    "| `quickstart` | `--top2` | bonferroni | complement (`CertifyProtocol.top2`) | BBC News has 5 classes: bounding the runner-up's own share gives larger radii than `1 - top1_lower` |",
    "| `attack` | `--n` | 1000 | 4000 | every query of an attack on the smoothed classifier costs `n` forward passes |",
    "| `predict` | `--n` | 1000 (`SmoothedTextClassifier.predict`) | 4000 (certify) | PREDICT needs a vote, not a radius (with `--certify` the protocol's 4000 applies) |",
    "| `predict` | `--dataset` | none | embedded:bbc-news | the texts come from the command's words or standard input unless a dataset (e.g. a file) is named |",
    "| `tune-rates` | `--n` | 500 | 4000 | every bin is certified once per search step |",
    "| `dg` | `--n` | 1000 | 4000 | one certification per trained run of the sweep (with `--certify`) |",
    "| `dg` | `--p-del` | 0 | 0.9 (`DEFAULT_P_DEL`) | the sweep compares training algorithms; deletion noise only when asked |",
    "| `train`, `tune-rates`, `dg` | `--split` | train, validation, all | test (`certify`) | training reads the training split; rates are chosen without test data; the sweep cuts every domain itself |",
    "| `evaluate` | `--max-examples` | 200 | all | attacks cost many queries per example |",
    "",
]


def render() -> str:
    """The whole of docs/cli.md."""
    import robusttext.cli as core
    import robusttext_vision.cli as vis

    lines = [
        "# Command-line reference",
        "",
        f"Generated by `{REGENERATE}` from the subcommands' argument parsers (do not edit by hand;",
        "`tests/test_scripts.py` fails when this file is out of date).",
        "",
        "Every option can also come from YAML: `--config FILE.yaml` holds `option: value` lines (lists for",
        "options that take several values), and options given on the command line win over the file's.",
        "Options are written with dashes or underscores alike (`--p-del` = `--p_del`); a boolean option takes",
        "`true`/`false` or stands alone for true. Every subcommand runs unchanged under `accelerate launch`.",
        "",
    ]
    lines += DEFAULTS_TABLE
    commands = dict(core.COMMANDS)
    lines += cli_sections("robusttext", core.main, commands)
    lines += cli_sections("robusttext vision", vis.main, dict(vis.COMMANDS))
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default=str(DEFAULT_OUTPUT), help="file to write (default: docs/cli.md)")
    ap.add_argument("--check", action="store_true", help="only compare with --output; exit 1 if it differs")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    text = render()
    out = Path(args.output)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.is_file() else ""
        if current != text:
            print(f"{out} is out of date: run `{REGENERATE}` and commit it", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
