"""The ``robusttext`` command line: subcommands over the library, arguments via ``HfArgumentParser``.

    robusttext quickstart                      # train + certify on the embedded default (no download)
    robusttext train   --model M --dataset D --p-del 0.9 --output-dir DIR [TrainingArguments ...]
    robusttext certify --model M --dataset D --split test --p-del 0.9 --n0 100 --n 4000 --output-dir DIR
    robusttext certify --config configs/certify_sst2.yaml --max-examples 50   # YAML + overrides

Every subcommand runs unchanged under ``accelerate launch``. This module holds no logic: each
command parses its dataclasses and calls one library function.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ..config import dispatch, parse
from ..hub.model_card import card_for_run, hub_token
from ..runs.certify import predict_texts
from ..runs.data import load_text_dataset
from ..runs.distributed import process_state
from .arguments import (
    AugmentArguments,
    CardArguments,
    CertifyArguments,
    CertifyCardArguments,
    DGArguments,
    ModelDataArguments,
    PredictArguments,
    SmoothingArguments,
    TrainArguments,
    TuneArguments,
)
from .convert import certify_from_arguments, certify_setup, smoothed_classifier, train_from_arguments, tune_from_arguments

logger = logging.getLogger("robusttext")


# --------------------------------------------------------------------------- commands
def cmd_certify(argv: Sequence[str]) -> int:
    """Certify every example of a dataset split (see ``robusttext.runs.certify.certify_dataset``); with
    ``--update-model-card`` / ``--push-to-hub``, the model folder's Hub card too (``robusttext.hub.model_card``)."""
    data, smooth, cert, card = parse((ModelDataArguments, SmoothingArguments, CertifyArguments, CertifyCardArguments), argv,
                                     "robusttext certify")
    token = hub_token(card.push_to_hub) if card.push_to_hub else None  # refused before anything is written
    summary = certify_from_arguments(data, smooth, cert)
    print_summary(summary, cert.output_dir)
    if card.update_model_card or card.push_to_hub:
        print(card_for_run(cert.output_dir, card.model_dir, card.push_to_hub, token))
    return 0


def cmd_card(argv: Sequence[str]) -> int:
    """Write (and push) the model card of a certify run folder (see ``robusttext.hub.model_card``)."""
    card, runs = parse((CardArguments,), argv, "robusttext card", positional=True)
    if len(runs) != 1:
        raise ValueError(f"robusttext card: give one run folder (the --output-dir of robusttext certify), got {len(runs)}")
    print(card_for_run(runs[0], card.model_dir, card.push_to_hub))
    return 0


def cmd_predict(argv: Sequence[str]) -> int:
    """Smoothed predictions (``--certify``: with radii) of texts given as arguments, on standard input (one
    per line) or in ``--dataset``, printed as JSON lines (see ``robusttext.runs.certify.predict_texts``)."""
    data, smooth, cert, pred, texts = parse(
        (ModelDataArguments, SmoothingArguments, CertifyArguments, PredictArguments), argv, "robusttext predict",
        positional=True, defaults={"dataset": None},
    )
    if texts and data.dataset:
        raise ValueError("predict: give texts as arguments or --dataset, not both")
    if data.dataset:
        texts = load_text_dataset(data.dataset, data.split, config=data.dataset_config, text_column=data.text_column,
                                  max_examples=data.max_examples, labelled=False).texts
    elif not texts:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ValueError("predict: no texts given (pass them as arguments, on standard input, or with --dataset)")
    rate, protocol = certify_setup(data, smooth, cert)
    clf = smoothed_classifier(data, smooth, cert, rate, device=process_state().device)
    for rec in predict_texts(clf, texts, protocol, certify=pred.certify, n=cert.n, alpha=protocol.alpha):
        print(json.dumps(rec), flush=True)
    return 0


def cmd_tune_rates(argv: Sequence[str]) -> int:
    """AdaptDel+: choose each length bin's deletion rate on a validation split (``robusttext.evaluation.tuning``)."""
    data, smooth, cert, tune = parse(
        (ModelDataArguments, SmoothingArguments, CertifyArguments, TuneArguments), argv, "robusttext tune-rates",
        defaults=TUNE_DEFAULTS,
    )
    print_tuning(tune_from_arguments(data, smooth, cert, tune), data.split, data.model)
    return 0


#: tune-rates' own defaults (docs/cli.md says why).
TUNE_DEFAULTS = {"split": "validation", "n": 500}


def print_tuning(result: dict, split: str, model: str) -> None:
    """The table of a tune-rates result: per bin, its inputs, chosen value, objective and accuracy at r = 0."""
    fmt = lambda x, f: "-" if x is None else format(x, f)  # noqa: E731
    acc = "bal acc r=0" if result["guard_metric"] == "balanced" else "acc r=0"
    print(f"{'bin':<5} {'inputs':>6} {'value v':>8} {result['objective']:>11} {acc:>11} {'fixed ' + acc:>17}")
    for b in result["bins"]:
        print(f"{b['bin']:<5} {b['inputs']:>6} {b['value']:>8.3f} {fmt(b['score'], '.2f'):>11} "
              f"{fmt(b['accuracy_at_0'], '.3f'):>11} {fmt(b['fixed_rate_accuracy_at_0'], '.3f'):>17}")
    if "pooled_drop" in result:
        what = "balanced certified accuracy" if result["guard_metric"] == "balanced" else "certified accuracy"
        print(f"pooled drop of {what} at r=0 against the fixed rate on {split} (bins weighted by their share): "
              f"{100 * result['pooled_drop']:.1f} points, allowed {100 * result['max_drop']:.1f}")
    print(f"{result['describe']}\nwrote {model}/rate_schedule.json, tune_rates.json")


def training_defaults(output_dir: str) -> dict[str, Any]:
    """Our defaults for ``TrainingArguments`` (any can be overridden on the command line)."""
    import torch

    return dict(
        use_cpu=not torch.cuda.is_available(),  # joins torchrun's CPU processes with gloo (else each is alone)
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning only helps (and only works) with CUDA
        output_dir=output_dir, report_to="none", save_strategy="epoch", save_total_limit=1,
        per_device_train_batch_size=16, per_device_eval_batch_size=64, num_train_epochs=1.0,
        logging_steps=20, learning_rate=5e-5,
    )


def parse_train(argv: Sequence[str], prog: str = "robusttext train", extra: tuple[type, ...] = ()) -> tuple:
    """``robusttext train``'s arguments (data, smoothing, training, the ``TrainingArguments`` with ``--hparams``'
    Fishr values, augmentation), then those of the ``extra`` dataclasses (an experiment's), with the command's
    defaults."""
    from ..training.fishr import DomainTrainingArguments  # TrainingArguments + --domain-column
    from .arguments import HparamsArguments
    from .convert_dg import fishr_arguments

    data, smooth, train, args, augment, hp, *rest = parse(
        (ModelDataArguments, SmoothingArguments, TrainArguments, DomainTrainingArguments, AugmentArguments,
         HparamsArguments, *extra), argv, prog, defaults={**training_defaults("runs/train"), "split": "train"},
    )
    return (data, smooth, train, fishr_arguments(args, hp), augment, *rest)


def print_metrics(metrics: dict) -> None:
    """A training run's final metrics, rounded."""
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})


def cmd_train(argv: Sequence[str]) -> int:
    """Fine-tune under deletion noise (see ``robusttext.training.trainer.train_classifier``)."""
    data, smooth, train, args, augment = parse_train(argv)
    print_metrics(train_from_arguments(data, smooth, train, args, augment))
    return 0


def cmd_dg(argv: Sequence[str]) -> int:
    """Leave-one-domain-out sweep (see ``robusttext.dg.domains.leave_one_domain_out``)."""
    from ..dg.domains import report_markdown
    from ..training.fishr import DomainTrainingArguments
    from .arguments import HparamsArguments
    from .convert_dg import dg_from_arguments

    data, smooth, dg, args, hp = parse(
        (ModelDataArguments, SmoothingArguments, DGArguments, DomainTrainingArguments, HparamsArguments), argv,
        "robusttext dg", defaults={**training_defaults("runs/dg"), "split": "all", "p_del": 0.0},
    )
    summary = dg_from_arguments(data, smooth, dg, args, hp)
    print(report_markdown(summary))
    print(f"wrote {args.output_dir}/dg_results.json, dg_report.md")
    return 0


@dataclass
class QuickstartArguments:
    """The main job on the embedded default: MiniLM-L6 + BBC News, train under deletion, certify."""

    output_dir: str = field(default="runs/quickstart", metadata={"help": "Where the model and the report go."})
    model: str = field(default="embedded:minilm-l6", metadata={"help": "Model to fine-tune (Hub id or folder)."})
    dataset: str = field(default="embedded:bbc-news", metadata={"help": "Dataset (Hub id, file or folder)."})
    rate_schedule: str = field(default="adaptive:k=13,p_lb=0.9", metadata={
        "help": "Word-deletion rate for training and certification: AdaptDel's max(0.9, 1 - 13/L) keeps about 13 "
                "words of an L-word article; 'fixed:0.9' is RS-Del's constant rate."})
    epochs: float = field(default=3.0, metadata={"help": "Training epochs (3 of AdaptDel's ~13-word inputs cost "
                                                         "about 1 of fixed 0.9's)."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Adam learning rate."})
    max_length: int = field(default=128, metadata={"help": "Tokens the model sees."})
    certify_examples: int = field(default=60, metadata={"help": "Held-out examples to certify."})
    n0: Optional[int] = field(default=None, metadata={"help": "Selection samples (default: the certification protocol's)."})
    n: int = field(default=1000, metadata={"help": "Estimation samples (at most)."})
    top2: str = field(default="bonferroni", metadata={
        "help": "Runner-up bound: bonferroni bounds the runner-up class's own share (tighter with 5 classes), "
                "complement uses 1 - the top class's lower bound.", "choices": ["complement", "bonferroni"]})
    seed: int = field(default=0, metadata={"help": "Seed for training and certification."})


def cmd_quickstart(argv: Sequence[str]) -> int:
    """Train MiniLM under word deletion on BBC News (embedded), then certify held-out articles."""
    from pathlib import Path

    from ..compat import ResumableTrainingArguments

    (q,) = parse((QuickstartArguments,), argv, "robusttext quickstart")
    model_dir = str(Path(q.output_dir) / "model")
    smooth = SmoothingArguments(rate_schedule=q.rate_schedule, unit="word")
    args = ResumableTrainingArguments(**{**training_defaults(model_dir), "num_train_epochs": q.epochs,
                                "learning_rate": q.learning_rate, "seed": q.seed})
    data = ModelDataArguments(model=q.model, dataset=q.dataset, split="train", max_length=q.max_length)
    train_from_arguments(data, smooth, TrainArguments(), args)
    data = ModelDataArguments(
        model=model_dir, dataset=q.dataset, split="test", max_length=q.max_length, max_examples=q.certify_examples
    )
    cert = CertifyArguments(n0=q.n0, n=q.n, top2=q.top2, seed=q.seed, output_dir=str(Path(q.output_dir) / "certify"))
    summary = certify_from_arguments(data, smooth, cert)
    print_summary(summary, cert.output_dir)
    return 0


def print_summary(summary: dict, output_dir: str) -> None:
    """Print the headline numbers of a certification summary."""
    labelled = summary.get("certified_accuracy") is not None
    what = "certified accuracy" if labelled else "certified fraction (no labels)"
    points = summary["certified_accuracy"] if labelled else summary["certified_fraction"]
    curve = ", ".join(f"r>={r}: {v:.3f}" for r, v in sorted(points.items(), key=lambda kv: int(kv[0])))  # JSON: str keys
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
    "tune-rates": ("AdaptDel+: per-length-bin deletion rates chosen on a validation split", cmd_tune_rates),
    "card": ("write a certify run's results into the model folder's Hugging Face card (README.md)", cmd_card),
    "predict": ("smoothed predictions (with --certify: radii) of texts, as JSON lines", cmd_predict),
    "attack": ("TextAttack recipes against the base or the smoothed classifier",
               lambda argv: __import__("robusttext.cli.attack_commands", fromlist=["_"]).cmd_attack(argv)),
    "evaluate": ("certify + attack + cross-check + robustness_report.md for one model",
                 lambda argv: __import__("robusttext.cli.attack_commands", fromlist=["_"]).cmd_evaluate(argv)),
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
        from ..version import __version__

        print(f"robusttext {__version__}")
        return 0
    from ..compat import quiet_weight_bars  # imports transformers: after --version

    quiet_weight_bars()
    # plugins (robusttext vision) are dispatched by their own main, which handles its own --debug
    return dispatch("robusttext", {**COMMANDS, **plugin_commands()}, argv, own_debug=set(COMMANDS))


if __name__ == "__main__":
    sys.exit(main())
