"""The ``robusttext`` command line: subcommands over the library, arguments via ``HfArgumentParser``.

    robusttext quickstart                      # train + certify on the embedded default (no download)
    robusttext train   --model M --dataset D --p-del 0.9 --output-dir DIR [TrainingArguments ...]
    robusttext certify --model M --dataset D --split test --p-del 0.9 --n0 100 --n 4000 --output-dir DIR
    robusttext certify --config configs/certify_sst2.yaml --max-examples 50   # YAML + overrides

Every subcommand runs unchanged under ``accelerate launch``. This module holds no logic: each
command parses its dataclasses and calls one library function.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .errors import DEBUG_FLAG, MissingPathError, UserError, one_line, run_command, split_debug

logger = logging.getLogger("robusttext")


def yaml_to_argv(path: str) -> list[str]:
    """Turn a YAML mapping of option -> value into command-line arguments (lists become several values)."""
    import yaml

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
    if positional:
        *parsed, rest = parser.parse_args_into_dataclasses(args=expand_config(argv), return_remaining_strings=True)
        unknown = [w for w in rest if w.startswith("--")]
        if unknown:
            raise ValueError(f"{prog}: unknown option {unknown[0]}; see {prog} --help")
    else:
        parsed, rest = parser.parse_args_into_dataclasses(args=expand_config(argv)), None
    apply_loading_options(parsed)
    return tuple(parsed) if rest is None else (*parsed, rest)


def add_common_help(parser: Any) -> None:
    """Document ``--config`` and ``--debug`` in ``--help`` (both are handled before parsing), and give each
    ``--no_X`` switch of a boolean that defaults to true a help that says it turns X off."""
    import argparse

    parser.add_argument("--config", metavar="FILE.yaml", default=argparse.SUPPRESS,
                        help="Read options from a YAML mapping of option: value (options given here win).")
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
    from .data import set_default_encoding
    from .models import set_trust_remote_code

    for args in parsed:
        if hasattr(args, "trust_remote_code"):
            set_trust_remote_code(args.trust_remote_code)
        if hasattr(args, "encoding"):
            set_default_encoding(args.encoding)


# --------------------------------------------------------------------------- commands
def cmd_certify(argv: Sequence[str]) -> int:
    """Certify every example of a dataset split (see ``robusttext.pipelines.certify_dataset``)."""
    from .arguments import CertifyArguments, ModelDataArguments, SmoothingArguments
    from .pipelines import certify_dataset

    data, smooth, cert = parse((ModelDataArguments, SmoothingArguments, CertifyArguments), argv, "robusttext certify")
    summary = certify_dataset(data, smooth, cert)
    print_summary(summary, cert.output_dir)
    return 0


def cmd_predict(argv: Sequence[str]) -> int:
    """Smoothed predictions (``--certify``: with radii) of texts given as arguments, on standard input (one
    per line) or in ``--dataset``, printed as JSON lines (see ``robusttext.pipelines.predict_texts``)."""
    import json

    from .arguments import CertifyArguments, ModelDataArguments, PredictArguments, SmoothingArguments
    from .pipelines import predict_texts

    data, smooth, cert, pred, texts = parse(
        (ModelDataArguments, SmoothingArguments, CertifyArguments, PredictArguments), argv, "robusttext predict",
        positional=True,
    )
    if not texts and pred.dataset_file:
        from .data import load_text_dataset

        texts = load_text_dataset(pred.dataset_file, data.split, text_column=data.text_column,
                                  max_examples=data.max_examples, labelled=False).texts
    elif not texts:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for rec in predict_texts(data, smooth, cert, texts, certify=pred.certify):
        print(json.dumps(rec), flush=True)
    return 0


def training_defaults(output_dir: str) -> dict[str, Any]:
    """Our defaults for ``TrainingArguments`` (any can be overridden on the command line)."""
    import torch

    return dict(
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning only helps (and only works) with CUDA
        output_dir=output_dir, report_to="none", save_strategy="epoch", save_total_limit=1,
        per_device_train_batch_size=16, per_device_eval_batch_size=64, num_train_epochs=1.0,
        logging_steps=20, learning_rate=5e-5,
    )


def cmd_train(argv: Sequence[str]) -> int:
    """Fine-tune under deletion noise (see ``robusttext.training.train_classifier``)."""
    from .arguments import AugmentArguments, ModelDataArguments, SmoothingArguments, TrainArguments
    from .fishr import FishrTrainingArguments  # TrainingArguments + --fishr-* and --domain-column
    from .training import train_classifier

    data, smooth, train, args, augment = parse(
        (ModelDataArguments, SmoothingArguments, TrainArguments, FishrTrainingArguments, AugmentArguments), argv,
        "robusttext train", defaults={**training_defaults("runs/train"), "split": "train"},
    )
    metrics = train_classifier(data, smooth, train, args, augment)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    return 0


def cmd_dg(argv: Sequence[str]) -> int:
    """Leave-one-domain-out sweep (see ``robusttext.domains.leave_one_domain_out``)."""
    from .arguments import DGArguments, ModelDataArguments, SmoothingArguments
    from .domains import dg_markdown, leave_one_domain_out
    from .fishr import FishrTrainingArguments

    data, smooth, dg, args = parse(
        (ModelDataArguments, SmoothingArguments, DGArguments, FishrTrainingArguments), argv, "robusttext dg",
        defaults={**training_defaults("runs/dg"), "split": "all", "p_del": 0.0},
    )
    summary = leave_one_domain_out(data, smooth, dg, args)
    print(dg_markdown(summary, summary["parameters"]))
    print(f"wrote {args.output_dir}/dg_results.json, dg_report.md")
    return 0


@dataclass
class QuickstartArguments:
    """The main job on the embedded default: MiniLM-L6 + BBC News, train under deletion, certify."""

    output_dir: str = field(default="runs/quickstart", metadata={"help": "Where the model and the report go."})
    model: str = field(default="embedded:minilm-l6", metadata={"help": "Model to fine-tune (Hub id or folder)."})
    dataset: str = field(default="embedded:bbc-news", metadata={"help": "Dataset (Hub id, file or folder)."})
    p_del: float = field(default=0.9, metadata={"help": "Deletion probability (word unit)."})
    epochs: float = field(default=1.0, metadata={"help": "Training epochs."})
    max_length: int = field(default=128, metadata={"help": "Tokens the model sees."})
    certify_examples: int = field(default=60, metadata={"help": "Held-out examples to certify."})
    n0: int = field(default=64, metadata={"help": "Selection samples."})
    n: int = field(default=1000, metadata={"help": "Estimation samples (at most)."})
    seed: int = field(default=0, metadata={"help": "Seed for training and certification."})


def cmd_quickstart(argv: Sequence[str]) -> int:
    """Train MiniLM under word deletion on BBC News (embedded), then certify held-out articles."""
    from pathlib import Path

    from transformers import TrainingArguments

    from .arguments import CertifyArguments, ModelDataArguments, SmoothingArguments, TrainArguments
    from .pipelines import certify_dataset
    from .training import train_classifier

    (q,) = parse((QuickstartArguments,), argv, "robusttext quickstart")
    model_dir = str(Path(q.output_dir) / "model")
    smooth = SmoothingArguments(p_del=q.p_del, unit="word")
    args = TrainingArguments(**{**training_defaults(model_dir), "num_train_epochs": q.epochs, "seed": q.seed})
    data = ModelDataArguments(model=q.model, dataset=q.dataset, split="train", max_length=q.max_length)
    train_classifier(data, smooth, TrainArguments(), args)
    data = ModelDataArguments(
        model=model_dir, dataset=q.dataset, split="test", max_length=q.max_length, max_examples=q.certify_examples
    )
    cert = CertifyArguments(n0=q.n0, n=q.n, seed=q.seed, output_dir=str(Path(q.output_dir) / "certify"))
    summary = certify_dataset(data, smooth, cert)
    print_summary(summary, cert.output_dir)
    return 0


def print_summary(summary: dict, output_dir: str) -> None:
    """Print the headline numbers of a certification summary."""
    labelled = summary.get("certified_accuracy") is not None
    what = "certified accuracy" if labelled else "certified fraction (no labels)"
    curve = ", ".join(f"r>={r}: {v:.3f}" for r, v in (summary["certified_accuracy"] if labelled
                                                       else summary["certified_fraction"]).items())
    clean, smoothed = summary.get("clean_accuracy"), summary.get("smoothed_accuracy")
    print(
        f"examples={summary['num_examples']} clean_accuracy={clean if clean is None else round(clean, 4)} "
        f"smoothed_accuracy={'None' if smoothed is None else format(smoothed, '.4f')} "
        f"abstain_rate={summary['abstain_rate']:.4f} "
        f"median_certified_radius={summary['median_certified_radius']:g} ({summary.get('unit', '')})\n"
        f"{what}: {curve}\nwrote {output_dir}/summary.json, report.md, certified_accuracy.png"
    )


#: name -> (one-line help, function taking the remaining argv). Add a subcommand by adding an entry.
COMMANDS: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {
    "quickstart": ("train + certify on the embedded default (MiniLM, BBC News)", cmd_quickstart),
    "train": ("fine-tune a classifier under deletion noise", cmd_train),
    "certify": ("certify a dataset split with randomized deletion", cmd_certify),
    "predict": ("smoothed predictions (with --certify: radii) of texts, as JSON lines", cmd_predict),
    "attack": ("TextAttack recipes against the base or the smoothed classifier",
               lambda argv: __import__("robusttext.attack_commands", fromlist=["_"]).cmd_attack(argv)),
    "evaluate": ("certify + attack + cross-check + robustness_report.md for one model",
                 lambda argv: __import__("robusttext.attack_commands", fromlist=["_"]).cmd_evaluate(argv)),
    "dg": ("leave-one-domain-out sweep (ERM vs Fishr), DomainBed-style report", cmd_dg),
}


def plugin_commands() -> dict[str, tuple[str, Callable[[Sequence[str]], int]]]:
    """Subcommands other packages register under the entry-point group ``robusttext.commands``
    (e.g. ``robusttext vision``, provided by the vision sidecar, which the core never imports)."""
    from importlib.metadata import entry_points

    found: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {}
    for ep in entry_points(group="robusttext.commands"):
        def run(argv: Sequence[str], _ep: Any = ep) -> int:
            return _ep.load()(argv)

        found[ep.name] = (f"plugin subcommands ({ep.value}; robusttext {ep.name} --help)", run)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robusttext`` console script; errors are reported as :mod:`robusttext.errors` says
    (user errors: one line, exit 2; Ctrl-C: exit 130; bugs: traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V"):
        from . import __version__

        print(f"robusttext {__version__}")
        return 0
    commands = {**COMMANDS, **plugin_commands()}
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: robusttext [--version] COMMAND [options]   (robusttext COMMAND --help for its options)\n")
        for name, (help_, _) in commands.items():
            print(f"  {name:<12} {help_}")
        print(f"\nevery COMMAND takes --config FILE.yaml (options from YAML) and {DEBUG_FLAG} (tracebacks of user errors)")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"robusttext: unknown command {name!r}; choose one of {', '.join(commands)}", file=sys.stderr)
        return 2
    debug = False
    if name in COMMANDS:  # a plugin handles its own --debug
        rest, debug = split_debug(rest)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    # a copy of the context: options a command sets (--trust-remote-code, --encoding) end with it
    return contextvars.copy_context().run(run_command, f"robusttext {name}", commands[name][1], rest, debug)


if __name__ == "__main__":
    sys.exit(main())
