"""Command-line arguments as dataclasses, parsed by ``transformers.HfArgumentParser``.

Every option is ``--snake_case`` or ``--kebab-case`` on the command line, a key of a YAML file passed
with ``--config FILE.yaml`` (command-line options win), or a keyword in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .data import EMBEDDED_BBC
from .models import EMBEDDED_MINILM


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


@dataclass
class SmoothingArguments:
    """The randomized-deletion mechanism."""

    p_del: float = field(default=0.9, metadata={"help": "Probability of deleting each unit, in (0, 1)."})
    unit: str = field(default="word", metadata={"help": "Deletion unit: word, char or token.", "choices": ["word", "char", "token"]})


@dataclass
class CertifyArguments:
    """Monte Carlo budget, confidence, outputs."""

    n0: int = field(default=50, metadata={"help": "Selection samples per input."})
    n: int = field(default=4000, metadata={"help": "Estimation samples per input (at most)."})
    alpha: float = field(default=0.05, metadata={"help": "Failure probability of each certificate, in (0, 1)."})
    looks: str = field(
        default="auto",
        metadata={"help": "Sequential looks: 'auto' (n/20, n/8, n/4, 3n/8, n/2, 3n/4, n), 'none' (one look at n), or e.g. '200,1000,4000'."},
    )
    exact_budget: Optional[int] = field(
        default=None,
        metadata={"help": "Classify up to this many of an input's most likely deletions with their exact "
                          "probabilities and sample only the rest (0: plain sampling; default: the library's)."},
    )
    futility: Optional[float] = field(
        default=None,
        metadata={"help": "Futility stopping level in [0, 1): an input stops once its radius would not grow even "
                          "at this optimistic a projection of its remaining votes (0: off; larger: cheaper, "
                          "sometimes a smaller radius, never an invalid one; default: the library's)."},
    )
    candidate_pvalue: Optional[float] = field(
        default=None,
        metadata={"help": "In [0, 1): classes whose selection votes are not significantly fewer than the majority's "
                          "at this level stay candidates, chosen between by the estimation votes (alpha split "
                          "over them; 0: the selection majority only; default: the library's)."},
    )
    top2: str = field(default="complement", metadata={"help": "Runner-up bound.", "choices": ["complement", "bonferroni"]})
    seed: int = field(default=0, metadata={"help": "Seed of every input's random stream."})
    batch_size: int = field(default=256, metadata={"help": "Noisy samples per forward pass."})
    chunk_size: int = field(default=32, metadata={"help": "Inputs certified together (and written) at a time."})
    dedup: bool = field(default=True, metadata={"help": "Classify identical noisy samples once (exact)."})
    precision: str = field(
        default="auto", metadata={"help": "fp32, bf16, fp16, or auto (bf16 where the GPU or CPU computes it natively).", "choices": ["auto", "fp32", "bf16", "fp16"]}
    )
    output_dir: str = field(default="runs/certify", metadata={"help": "Where results.jsonl, summary.json, report.md go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Delete earlier results in output_dir first."})

    def parsed_looks(self) -> list[int] | str | None:
        """``looks`` as the smoothing API takes it."""
        value = str(self.looks).strip().lower()
        if value == "auto":
            return "auto"
        if value in ("none", ""):
            return None
        try:
            return [int(v) for v in value.split(",") if v.strip()]
        except ValueError as err:
            raise ValueError(f"--looks must be 'auto', 'none' or comma-separated integers, got {self.looks!r}") from err


@dataclass
class TrainArguments:
    """Training under deletion noise (and, with --algorithm fishr, across domains)."""

    eval_split: Optional[str] = field(default=None, metadata={"help": "Split evaluated during training (optional)."})
    algorithm: str = field(
        default="erm", metadata={"help": "erm (plain) or fishr (domain generalization).", "choices": ["erm", "fishr"]}
    )
    ignore_mismatched_sizes: bool = field(default=False, metadata={"help": "Replace a classification head of another size."})
    test_domains: Optional[list[str]] = field(
        default=None,
        metadata={"help": "Domains held out of training (and evaluated unless --eval-split is given); needs --domain-column."},
    )


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
