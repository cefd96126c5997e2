"""Command lines: arguments as dataclasses, ``--config`` YAML files, parsing, and the subcommand dispatcher.

Every option is ``--snake_case`` or ``--kebab-case`` on the command line, a key of a YAML file passed
with ``--config FILE.yaml`` (command-line options win), or a keyword in Python. Both command lines
(``robusttext ...`` and the vision sidecar's ``robusttext vision ...``) parse with :func:`parse` and run
their subcommand tables with :func:`dispatch`.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from .data import EMBEDDED_BBC
from .models import EMBEDDED_MINILM
from .errors import DEBUG_FLAG, MissingPathError, UserError, one_line, run_command, split_debug
from .protocol import CertifyProtocol

#: Deletion probability when neither --p-del, --rate-schedule nor the model folder says (RS-Del / CERT-ED's).
DEFAULT_P_DEL = 0.9

#: A subcommand table: name -> (one-line help, function taking the remaining argv and returning an exit code).
Commands = dict[str, tuple[str, Callable[[Sequence[str]], int]]]


@dataclass
class ModelDataArguments:
    """Which model and which data."""

    model: str = field(default=EMBEDDED_MINILM, metadata={"help": "Hub model id or local folder (or embedded:minilm-l6)."})
    dataset: str = field(
        default=EMBEDDED_BBC,
        metadata={"help": "Hub dataset id, local .tsv/.csv/.jsonl/.parquet file or folder (or embedded:bbc-news)."},
    )
    dataset_config: Optional[str] = field(default=None, metadata={"help": "Hub dataset configuration, e.g. sst2 for glue."})
    split: str = field(default="test", metadata={"help": "Split to use (train for `train`, test for `certify`)."})
    text_column: Optional[str] = field(default=None, metadata={"help": "Text column (auto-detected when obvious)."})
    label_column: Optional[str] = field(default=None, metadata={"help": "Label column (auto-detected when obvious)."})
    max_examples: Optional[int] = field(default=None, metadata={"help": "Use only the first N examples."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Tokens the model sees (default: its limit, <= 512)."})
    encoding: str = field(
        default="utf-8",
        metadata={"help": "Text encoding of local .tsv/.csv/.jsonl/.json files, e.g. latin-1 (default utf-8; "
                          "an undecodable file is refused, naming the byte)."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Let the model run the Python code shipped with it (auto_map in its config). Off: such "
                          "a model is refused. Turn on only for code you have read and trust."},
    )


@dataclass
class SmoothingArguments:
    """The randomized-deletion mechanism."""

    p_del: Optional[float] = field(
        default=None,
        metadata={"help": "Probability of deleting each unit, in (0, 1) (training also takes 0: no noise). Default "
                          f"{DEFAULT_P_DEL}; certify and predict default to the model folder's rate_schedule.json."},
    )
    rate_schedule: Optional[str] = field(
        default=None,
        metadata={"help": "Deletion rate as a function of the input's length (replaces --p-del): e.g. "
                          "'adaptive:k=13,p_lb=0.9' (AdaptDel), 'binned:edges=20|50,values=2|5|13' (AdaptDel+), "
                          "'uniform:0.7,0.99' or 'uniform_keep:low=5,high=25,p_lb=0.9' (training only), or a JSON file; see robusttext.rates."},
    )
    unit: str = field(default="word", metadata={"help": "Deletion unit: word, char or token.", "choices": ["word", "char", "token"]})

    def training_rate(self) -> Any:
        """The rate ``robusttext train`` draws each example's noise with: the schedule, else ``p_del``
        (default 0.9; 0 = no noise)."""
        from .rates import parse_rate_schedule

        if self.rate_schedule:
            return parse_rate_schedule(self.rate_schedule)
        return DEFAULT_P_DEL if self.p_del is None else float(self.p_del)


#: The protocol defaults, shown in the help of the options that leave them unset.
_P = CertifyProtocol()


@dataclass
class CertifyArguments:
    """Monte Carlo budget, confidence, outputs. The protocol fields (n0 ... top2) left unset take the
    defaults of :class:`robusttext.protocol.CertifyProtocol`; :meth:`protocol` turns them into one."""

    n0: Optional[int] = field(default=None, metadata={"help": f"Selection samples per input (default {_P.n0})."})
    n: Optional[int] = field(default=None, metadata={"help": f"Estimation samples per input, at most (default {_P.n})."})
    alpha: Optional[float] = field(
        default=None, metadata={"help": f"Failure probability of each certificate, in (0, 1) (default {_P.alpha})."}
    )
    looks: Optional[str] = field(
        default=None,
        metadata={"help": "Sequential looks: 'auto' (n/20, n/8, n/4, 3n/8, n/2, 3n/4, n; the default), 'none' "
                          "(one look at n), or e.g. '200,1000,4000'."},
    )
    exact_budget: Optional[int] = field(
        default=None,
        metadata={"help": "Classify up to this many of an input's most likely deletions with their exact "
                          f"probabilities and sample only the rest (0: plain sampling; default {_P.exact_budget})."},
    )
    futility: Optional[float] = field(
        default=None,
        metadata={"help": "Futility stopping level in [0, 1): an input stops once its radius would not grow even "
                          "at this optimistic a projection of its remaining votes (0: off; larger: cheaper, "
                          f"sometimes a smaller radius, never an invalid one; default {_P.futility})."},
    )
    candidate_pvalue: Optional[float] = field(
        default=None,
        metadata={"help": "In [0, 1): classes whose selection votes are not significantly fewer than the majority's "
                          "at this level stay candidates, chosen between by the estimation votes (alpha split "
                          f"over them; 0: the selection majority only; default {_P.candidate_pvalue})."},
    )
    top2: Optional[str] = field(
        default=None,
        metadata={"help": f"Runner-up bound (default {_P.top2}).", "choices": ["complement", "bonferroni"]},
    )
    seed: int = field(default=0, metadata={"help": "Seed of every input's random stream."})
    batch_size: int = field(default=256, metadata={"help": "Noisy samples per forward pass."})
    chunk_size: int = field(default=32, metadata={"help": "Inputs certified together (and written) at a time."})
    dedup: bool = field(
        default=True,
        metadata={"help": "Classify identical noisy samples once (same results, fewer forward passes)."},
    )
    precision: str = field(
        default="auto", metadata={"help": "fp32, bf16, fp16, or auto (bf16 where the GPU or CPU computes it natively).", "choices": ["auto", "fp32", "bf16", "fp16"]}
    )
    output_dir: str = field(default="runs/certify", metadata={"help": "Where results.jsonl, summary.json, report.md go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Delete earlier results in output_dir first."})

    def protocol(self) -> CertifyProtocol:
        """The certification protocol these arguments describe (validated; errors name the option)."""
        try:
            return CertifyProtocol.from_arguments(self)
        except ValueError as err:
            name = str(err).split(" ", 1)[0]
            raise ValueError(f"--{name.replace('_', '-')}{str(err)[len(name):]}") from None


@dataclass
class PredictArguments:
    """``robusttext predict``: what to predict and whether to certify."""

    certify: bool = field(default=False, metadata={"help": "Also certify each text (radius, bounds) under the protocol options."})
    dataset_file: Optional[str] = field(
        default=None, metadata={"help": "Predict the texts of this file (labels not needed) instead of arguments or stdin."}
    )


@dataclass
class CardArguments:
    """The model's Hugging Face card (robusttext.hub.model_card): robusttext card RUN_DIR."""

    push_to_hub: Optional[str] = field(default=None, metadata={
        "help": "Then upload the model folder to this Hub repository (token: HF_TOKEN or `hf auth login`)."})
    model_dir: Optional[str] = field(default=None, metadata={
        "help": "The folder whose README.md to write (default: the run's model, when a local folder)."})


@dataclass
class CertifyCardArguments(CardArguments):
    """certify --update-model-card (and --push-to-hub, which implies it)."""

    update_model_card: bool = field(default=False, metadata={
        "help": "Merge the certified results into the model folder's README.md (model-index metadata and a section; "
                "the rest of a card you wrote is kept)."})


@dataclass
class TuneArguments:
    """``robusttext tune-rates``: AdaptDel+ bin values chosen on a validation split (see robusttext.tuning)."""

    edges: str = field(default="20|50|100|200", metadata={"help": "Length bin edges in units, e.g. 20|50|100|200."})
    threshold: float = field(
        default=0.5, metadata={"help": "Each bin's value maximises the radius at which its certified accuracy stays >= this."}
    )
    iterations: int = field(default=6, metadata={"help": "Golden-section steps per bin."})
    max_per_bin: int = field(default=40, metadata={"help": "Validation inputs certified per bin and step."})
    start_k: float = field(default=13.0, metadata={"help": "Initial value of every bin (clipped to its range)."})
    p_lb: float = field(default=0.9, metadata={
        "help": "Floor of every bin's rate, p(L) = max(p_lb, 1 - v/L), so the fixed rate p_lb is a candidate of every "
                "bin; 0: the paper's unfloored 1 - v/L."})
    objective: str = field(default="reach", metadata={
        "help": "What each bin's value maximises on its validation inputs: reach (the paper's: the largest radius whose "
                "certified accuracy is >= --threshold) or mean-radius (mean certified radius, wrong or abstained = -1).",
        "choices": ["reach", "mean-radius"]})
    max_drop: Optional[float] = field(default=None, metadata={
        "help": "Guard, in [0, 1): refuse a value whose certified accuracy at radius 0 on the bin's validation inputs is "
                "more than this below that of the bin's fixed rate p_lb (e.g. 0.03); needs --p-lb > 0. Default: no guard."})
    guard: str = field(default="per-bin", metadata={
        "help": "Where --max-drop applies: per-bin (each bin on its own) or pooled (to the whole validation split, bins "
                "weighted by their share of it: the drop is spent in the bins where it buys the most mean radius; "
                "needs --objective mean-radius).", "choices": ["per-bin", "pooled"]})
    guard_metric: str = field(default="accuracy", metadata={
        "help": "What --max-drop bounds: accuracy (certified accuracy at radius 0) or balanced (its mean over classes, so "
                "a bin cannot pass the guard by predicting its majority class for every input; a value under which a "
                "bin's smoothed classifier gives one class to every input is refused outright, unless the fixed rate does too).",
        "choices": ["accuracy", "balanced"]})


#: ``--freeze-encoder`` of ``robusttext train`` and ``robusttext dg`` (robusttext.linear_probe).
FREEZE_ENCODER_HELP = ("Train only the classification head, on standardized features of the frozen pretrained encoder, "
                       "kept in eval mode (a linear probe).")


@dataclass
class TrainArguments:
    """Training under deletion noise (and, with --algorithm fishr, across domains)."""

    eval_split: Optional[str] = field(default=None, metadata={"help": "Split evaluated during training (optional)."})
    algorithm: str = field(
        default="erm", metadata={"help": "erm (plain) or fishr (domain generalization).", "choices": ["erm", "fishr"]}
    )
    ignore_mismatched_sizes: bool = field(default=False, metadata={"help": "Replace a classification head of another size."})
    freeze_encoder: bool = field(default=False, metadata={"help": FREEZE_ENCODER_HELP})
    test_domains: Optional[list[str]] = field(
        default=None,
        metadata={"help": "Domains held out of training (and evaluated unless --eval-split is given); needs --domain-column."},
    )
    noise_copies: int = field(default=1, metadata={
        "help": "Noisy copies of each training example per batch (consistency training, robusttext.consistency; "
                "--per-device-train-batch-size counts examples). Jeong & Shin use 2."})
    consistency_weight: float = field(default=0.0, metadata={
        "help": "Weight lambda of the KL term pulling each copy's prediction to the copies' mean (needs "
                "--noise-copies >= 2; Jeong & Shin: 5-20)."})
    entropy_weight: float = field(default=0.0, metadata={
        "help": "Weight eta of the entropy of the copies' mean prediction (Jeong & Shin: 0.5)."})
    certify_eval: int = field(default=0, metadata={
        "help": "Certify the first N inputs of the evaluation set at each evaluation (robusttext.hub.CertifiedEvalCallback): "
                "adds eval_smoothed_accuracy, eval_abstain_rate, eval_median_radius, eval_certified_accuracy_r{k} "
                "(usable as --metric-for-best-model); needs --eval-split or --test-domains. 0: off."})
    certify_eval_n: int = field(default=256, metadata={
        "help": "Estimation samples per input of --certify-eval (32 selection samples, alpha 0.05)."})


@dataclass
class DGArguments:
    """A leave-one-domain-out sweep (``robusttext dg``). Fishr hyper-parameters and ``--eval-steps`` (evaluate
    validation + held-out domain every N steps; default once per epoch) are training arguments."""

    algorithms: str = field(default="erm,fishr", metadata={"help": "Comma-separated algorithms of robusttext.hparams_registry: erm, fishr."})
    test_domains: Optional[list[str]] = field(
        default=None, metadata={"help": "Held-out domains to run (default: every domain, one at a time)."}
    )
    seeds: int = field(default=1, metadata={"help": "Seeds per (algorithm, held-out domain, trial): seed, seed+1, ..."})
    val_fraction: float = field(
        default=0.2, metadata={"help": "Fraction of each training domain kept for model selection (DomainBed: 0.2)."}
    )
    max_per_domain: Optional[int] = field(
        default=None, metadata={"help": "Use at most N examples of each training domain (reduced budget)."}
    )
    max_test_examples: Optional[int] = field(
        default=None, metadata={"help": "Test on at most N examples of the held-out domain (reduced budget)."}
    )
    hparam_trials: int = field(
        default=0,
        metadata={"help": "Random hyper-parameter trials per cell besides the given values (robusttext.hparams_registry); "
                          "selection picks among them."},
    )
    freeze_encoder: bool = field(default=False, metadata={"help": FREEZE_ENCODER_HELP})
    spurious: Optional[str] = field(
        default=None,
        metadata={"help": "Two marker words 'A,B': build the constructed spurious-marker benchmark from the dataset's "
                          "texts (robusttext.spurious) and add a marker-free ERM oracle."},
    )
    spurious_agreements: str = field(
        default="0.9,0.8,0.1",
        metadata={"help": "Marker-label agreement per environment, training environments first, the held-out one last."},
    )
    spurious_label_noise: float = field(default=0.25, metadata={"help": "Label flip probability, in [0, 0.5)."})
    spurious_seed: int = field(default=0, metadata={"help": "Seed of the environments' cut, label noise and markers."})
    certify: bool = field(
        default=False, metadata={"help": "Certify each held-out domain with each run's model (needs --p-del > 0)."}
    )
    certify_n: int = field(default=1000, metadata={"help": "Estimation samples per input when certifying."})
    certify_alpha: float = field(default=0.05, metadata={"help": "Failure probability of each certificate."})
    certify_max_examples: Optional[int] = field(
        default=100, metadata={"help": "Certify at most N held-out test examples per run."}
    )


@dataclass
class AttackArguments:
    """TextAttack attacks (``robusttext attack``; also used by ``robusttext evaluate``)."""

    recipes: str = field(
        default="deepwordbug,pruthi,pwws,input-reduction",
        metadata={"help": "Comma-separated TextAttack recipes that run offline: deepwordbug, pruthi, pwws, input-reduction."},
    )
    num_examples: Optional[int] = field(default=None, metadata={"help": "Attack the first N examples (default: --max-examples)."})
    smoothed: bool = field(default=False, metadata={"help": "Attack the smoothed classifier (Monte Carlo frequencies) instead of the base model."})
    attack_n: Optional[int] = field(default=None, metadata={"help": "Monte Carlo samples per smoothed query (default: --n)."})
    query_budget: Optional[int] = field(default=None, metadata={"help": "Stop an attack after this many model queries."})


@dataclass
class EvaluateArguments:
    """``robusttext evaluate``: what to run besides certification."""

    attack_target: str = field(
        default="smoothed",
        metadata={"help": "Model the attacks target: smoothed, base or both.", "choices": ["smoothed", "base", "both"]},
    )
    smoothed_recipes: Optional[str] = field(
        default=None, metadata={"help": "Recipes run against the smoothed target (default: --recipes); smoothed queries cost --attack-n samples each."}
    )
    smoothed_num_examples: Optional[int] = field(
        default=None, metadata={"help": "Attack only the first N examples through the smoothed target (default: --num-examples)."}
    )
    confirm_n: int = field(default=1000, metadata={"help": "Samples of the smoothed PREDICT that confirms a cross-check violation."})
    significance: float = field(default=0.05, metadata={"help": "Flag the cross-check when its binomial-tail p-value is below this."})


@dataclass
class AugmentArguments:
    """Adversarial data augmentation during training (TextAttack augmenters, on the fly)."""

    augment: Optional[str] = field(
        default=None,
        metadata={"help": "Augmenter: deepwordbug, charswap, swap, deletion, wordnet, eda (default: none)."},
    )
    augment_rate: float = field(default=0.5, metadata={"help": "Probability that a training example is augmented, in [0, 1]."})
    augment_words_pct: float = field(default=0.1, metadata={"help": "Share of an example's words an augmentation changes, in (0, 1]."})


# --------------------------------------------------------------------------- parsing
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
    from .data import set_default_encoding
    from .models import set_trust_remote_code

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
    debug = False
    if own_debug is None or name in own_debug:
        rest, debug = split_debug(rest)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    # a copy of the context: options a command sets (--trust-remote-code, --encoding) end with it
    return contextvars.copy_context().run(run_command, f"{prog} {name}", commands[name][1], rest, debug)
