"""The ``robusttext`` command line's arguments, as dataclasses (parsed by :mod:`robusttext.config`).

Every option is ``--snake_case`` or ``--kebab-case`` on the command line, or a key of a YAML file passed
with ``--config FILE.yaml`` (command-line options win).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..runs.data import EMBEDDED_BBC
from ..certificate.models import EMBEDDED_MINILM
from ..certificate.protocol import CertifyProtocol
from ..certificate.rates import DEFAULT_P_DEL, parse_rate_schedule
from ..evaluation.evaluate import ATTACK_TARGETS, EvaluateConfig
from ..evaluation.tuning import TuneConfig



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
                          "'uniform:0.7,0.99' or 'uniform_keep:low=5,high=25,p_lb=0.9' (training only), or a JSON file; see robusttext.certificate.rates."},
    )
    unit: str = field(default="word", metadata={"help": "Deletion unit: word, char or token.", "choices": ["word", "char", "token"]})

    def training_rate(self) -> Any:
        """The rate ``robusttext train`` draws each example's noise with: the schedule, else ``p_del``
        (default 0.9; 0 = no noise)."""
        if self.rate_schedule:
            return parse_rate_schedule(self.rate_schedule)
        return DEFAULT_P_DEL if self.p_del is None else float(self.p_del)


#: The protocol defaults, shown in the help of the options that leave them unset.
_P = CertifyProtocol()


@dataclass
class CertifyArguments:
    """Monte Carlo budget, confidence, outputs. The protocol fields (n0, n, alpha, looks, top2) left unset take
    the defaults of :class:`robusttext.certificate.protocol.CertifyProtocol`; :meth:`protocol` turns them into
    one. The protocol's internals (``futility``, ``exact_budget``, ``candidate_pvalue``) and the classifier's
    ``dedup`` switch keep their library defaults here; a Python caller (or ``scripts/bench_certify.py``) sets them."""

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
    top2: Optional[str] = field(
        default=None,
        metadata={"help": f"Runner-up bound (default {_P.top2}).", "choices": ["complement", "bonferroni"]},
    )
    seed: int = field(default=0, metadata={"help": "Seed of every input's random stream."})
    batch_size: int = field(default=256, metadata={"help": "Noisy samples per forward pass."})
    chunk_size: int = field(default=32, metadata={"help": "Inputs certified together (and written) at a time."})
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
    """``robusttext predict``: whether to certify. The texts are the command's words, else ``--dataset`` (any
    dataset spec, e.g. a file; labels not needed), else standard input."""

    certify: bool = field(default=False, metadata={"help": "Also certify each text (radius, bounds) under the protocol options."})


@dataclass
class CardArguments:
    """The model's Hugging Face card (robusttext.hub.model_card): robusttext card RUN_DIR."""

    push_to_hub: Optional[str] = field(default=None, metadata={
        "help": "Then upload the model folder to this Hub repository (token: HF_TOKEN or `hf auth login`)."})
    model_dir: Optional[str] = field(default=None, metadata={
        "help": "The folder whose README.md to write (default: the run's model, when a local folder)."})


@dataclass
class CertifyCardArguments(CardArguments):
    """certify / evaluate --update-model-card (and --push-to-hub, which implies it): the certified results."""

    update_model_card: bool = field(default=False, metadata={
        "help": "Merge the certified results into the model folder's README.md (model-index metadata and a section; "
                "the rest of a card you wrote is kept)."})


@dataclass
class TuneArguments:
    """``robusttext tune-rates``: AdaptDel+ bin values chosen on a validation split (see robusttext.evaluation.tuning).
    The search's other fields (objective, threshold, guard, iterations, start value) keep the defaults of
    :class:`robusttext.evaluation.tuning.TuneConfig`; ``experiments/tune_rates.py`` sets them."""

    edges: str = field(default=TuneConfig.edges, metadata={"help": "Length bin edges in units, e.g. 20|50|100|200."})
    max_per_bin: int = field(default=TuneConfig.max_per_bin, metadata={"help": "Validation inputs certified per bin and step."})
    p_lb: float = field(default=TuneConfig.p_lb, metadata={
        "help": "Floor of every bin's rate, p(L) = max(p_lb, 1 - v/L), so the fixed rate p_lb is a candidate of every "
                "bin; 0: the paper's unfloored 1 - v/L."})


#: ``--freeze-encoder`` of ``robusttext train`` and ``robusttext dg`` (robusttext.training.linear_probe).
FREEZE_ENCODER_HELP = ("Train only the classification head, on standardized features of the frozen pretrained encoder, "
                       "kept in eval mode (a linear probe).")


@dataclass
class TrainArguments:
    """Training under deletion noise (and, with --algorithm fishr, across domains). Consistency training
    (``TrainingRecipe.noise_copies``, ``consistency_weight``, ``entropy_weight``) and the certified evaluation's
    own budget are library fields; ``experiments/train_text.py`` sets them."""

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
    certify_eval: int = field(default=0, metadata={
        "help": "Certify the first N inputs of the evaluation set at each evaluation (robusttext.hub.CertifiedEvalCallback): "
                "adds eval_smoothed_accuracy, eval_abstain_rate, eval_median_radius, eval_certified_accuracy_r{k} "
                "(usable as --metric-for-best-model; under the callback's protocol: 32 selection and 256 estimation samples, "
                "alpha 0.05); needs --eval-split or --test-domains. 0: off."})


@dataclass
class HparamsArguments:
    """DomainBed-style hyper-parameters of ``train`` and ``dg`` (robusttext.training.hparams_registry)."""

    hparams: Optional[str] = field(default=None, metadata={
        "help": "Fishr hyper-parameters as a JSON object, e.g. '{\"fishr_lambda\": 1e4, \"fishr_anneal_steps\": 18}' "
                "(keys: fishr_lambda >= 0, fishr_ema in [0, 1), fishr_anneal_steps >= 0 optimizer steps of ERM warm-up; "
                "those left out take robusttext.training.hparams_registry's defaults: 1000, 0.95, 0)."})


@dataclass
class DGArguments:
    """A leave-one-domain-out sweep (``robusttext dg``). Fishr hyper-parameters (``--hparams``) and ``--eval-steps``
    (evaluate validation + held-out domain every N steps; default once per epoch) are training arguments."""

    algorithms: str = field(default="erm,fishr", metadata={"help": "Comma-separated algorithms of robusttext.training.hparams_registry: erm, fishr."})
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
        default=None, metadata={"help": "Test (and, with --certify, certify) on at most N examples of the held-out domain "
                                        "(reduced budget)."}
    )
    hparam_trials: int = field(
        default=0,
        metadata={"help": "Random hyper-parameter trials per cell besides the given values (robusttext.training.hparams_registry); "
                          "selection picks among them."},
    )
    freeze_encoder: bool = field(default=False, metadata={"help": FREEZE_ENCODER_HELP})
    certify: bool = field(
        default=False, metadata={"help": "Certify each held-out domain's test rows with each run's model (needs --p-del > 0)."}
    )
    n: int = field(default=1000, metadata={"help": "With --certify: estimation samples per input."})
    alpha: float = field(default=CertifyProtocol.alpha, metadata={"help": "With --certify: failure probability of each certificate."})
    update_model_card: bool = field(default=False, metadata={
        "help": "With --certify: write each run's certified results into its saved model folder's README.md "
                "(runs/<run>/model; robusttext.hub.model_card)."})


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
    """``robusttext evaluate``: what to run besides certification (the cross-check's ``confirm_n`` and
    ``significance`` and the smoothed target's own recipes and examples keep the defaults of
    :class:`robusttext.evaluation.evaluate.EvaluateConfig`; ``experiments/evaluate_text.py`` sets them)."""

    attack_target: str = field(
        default=EvaluateConfig.attack_target,
        metadata={"help": "Model the attacks target: smoothed, base or both.", "choices": list(ATTACK_TARGETS)},
    )


@dataclass
class AugmentArguments:
    """Adversarial data augmentation during training (TextAttack augmenters, on the fly; the rates keep the
    defaults of :class:`robusttext.training.augment.Augmentation`, which ``experiments/train_text.py`` sets)."""

    augment: Optional[str] = field(
        default=None,
        metadata={"help": "Augmenter: deepwordbug, charswap, swap, deletion, wordnet, eda (default: none)."},
    )
