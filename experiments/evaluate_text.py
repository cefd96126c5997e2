"""``robusttext evaluate`` with the cross-check's and the smoothed target's experiment settings: section 7 of
``docs/benchmarks.md`` (certified vs empirical robustness on SST-2), whose smoothed target runs DeepWordBug
alone on the first 50 sentences.

    python experiments/evaluate_text.py --config experiments/evaluate_sst2.yaml --model M --output-dir runs/eval_sst2

Every ``robusttext evaluate`` option works, plus the fields of
:class:`robusttext.evaluation.evaluate.EvaluateConfig` that the product command leaves at their defaults.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

from robusttext.config import run_script
from robusttext.evaluation.evaluate import EvaluateConfig


@dataclass
class CrosscheckExperimentArguments:
    """The ``EvaluateConfig`` fields of this experiment (defaults: the library's)."""

    smoothed_recipes: Optional[str] = field(default=None, metadata={
        "help": "Recipes run against the smoothed target (default: --recipes); smoothed queries cost --attack-n samples each."})
    smoothed_num_examples: Optional[int] = field(default=None, metadata={
        "help": "Attack only the first N examples through the smoothed target (default: --num-examples)."})
    confirm_n: int = field(default=EvaluateConfig.confirm_n, metadata={"help": "Samples of the smoothed PREDICT that confirms a cross-check violation."})
    significance: float = field(default=EvaluateConfig.significance, metadata={"help": "Flag the cross-check when its binomial-tail p-value is below this, in (0, 1)."})


def command(argv: Sequence[str]) -> int:
    from robusttext.cli.arguments import (AttackArguments, CertifyArguments, CertifyCardArguments, EvaluateArguments,
                                          ModelDataArguments, SmoothingArguments)
    from robusttext.cli.attack_commands import evaluate_and_report
    from robusttext.cli.convert import attacked_examples, flag_errors
    from robusttext.config import parse

    data, smooth, cert, attack, ev, card, exp = parse(
        (ModelDataArguments, SmoothingArguments, CertifyArguments, AttackArguments, EvaluateArguments,
         CertifyCardArguments, CrosscheckExperimentArguments), argv, "experiments/evaluate_text.py",
        defaults={"output_dir": "runs/evaluate", "max_examples": 200},
    )
    with flag_errors(ev, exp):
        config = EvaluateConfig(ev.attack_target, attacked_examples(attack), exp.smoothed_recipes,
                                exp.smoothed_num_examples, exp.confirm_n, exp.significance)
    return evaluate_and_report(data, smooth, cert, attack, ev, card, config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("experiments/evaluate_text.py", command, argv)


if __name__ == "__main__":
    sys.exit(main())
