"""``robusttext tune-rates`` with every field of :class:`robusttext.evaluation.tuning.TuneConfig`: the AdaptDel+
searches of ``docs/benchmarks.md`` section 4 and ``docs/experiments-log.md`` (the mean-radius objective, the
per-bin and pooled guards on certified or balanced accuracy, the paper's reach threshold, fewer search steps).

    python experiments/tune_rates.py --model runs/m --dataset D --split validation --edges "50|100|200" \
        --objective mean-radius --max-drop 0.03 --guard pooled --guard-metric balanced

(``experiments/bench_rates.py`` trains and certifies every arm around the same library call.)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

from robusttext.config import run_script
from robusttext.evaluation.tuning import TuneConfig


@dataclass
class TuneExperimentArguments:
    """The ``TuneConfig`` fields the product command leaves at their defaults."""

    threshold: float = field(default=TuneConfig.threshold, metadata={
        "help": "In (0, 1]: each bin's value maximises the radius at which its certified accuracy stays >= this (reach)."})
    iterations: int = field(default=TuneConfig.iterations, metadata={"help": "Golden-section steps per bin (>= 1)."})
    start_k: float = field(default=TuneConfig.start_k, metadata={"help": "Initial value of every bin, in kept units (clipped to its range)."})
    objective: str = field(default=TuneConfig.objective, metadata={
        "help": "What each bin's value maximises on its validation inputs: reach (the paper's: the largest radius whose "
                "certified accuracy is >= --threshold) or mean-radius (mean certified radius, wrong or abstained = -1).",
        "choices": ["reach", "mean-radius"]})
    max_drop: Optional[float] = field(default=TuneConfig.max_drop, metadata={
        "help": "Guard, in [0, 1): refuse a value whose certified accuracy at radius 0 on the bin's validation inputs is "
                "more than this below that of the bin's fixed rate p_lb (e.g. 0.03); needs --p-lb > 0. Default: no guard."})
    guard: str = field(default=TuneConfig.guard, metadata={
        "help": "Where --max-drop applies: per-bin (each bin on its own) or pooled (to the whole validation split, bins "
                "weighted by their share of it; needs --objective mean-radius).", "choices": ["per-bin", "pooled"]})
    guard_metric: str = field(default=TuneConfig.guard_metric, metadata={
        "help": "What --max-drop bounds: accuracy (certified accuracy at radius 0) or balanced (its mean over classes; a "
                "value under which a bin gives one class to every input is refused, unless the fixed rate does too).",
        "choices": ["accuracy", "balanced"]})


def command(argv: Sequence[str]) -> int:
    from robusttext.cli.arguments import CertifyArguments, ModelDataArguments, SmoothingArguments, TuneArguments
    from robusttext.cli.convert import tune_from_arguments
    from robusttext.cli.main import TUNE_DEFAULTS, print_tuning
    from robusttext.config import parse

    data, smooth, cert, tune, exp = parse(
        (ModelDataArguments, SmoothingArguments, CertifyArguments, TuneArguments, TuneExperimentArguments), argv,
        "experiments/tune_rates.py", defaults=TUNE_DEFAULTS,
    )
    config = TuneConfig(edges=tune.edges, max_per_bin=tune.max_per_bin, p_lb=tune.p_lb, threshold=exp.threshold,
                        iterations=exp.iterations, start_k=exp.start_k, objective=exp.objective, max_drop=exp.max_drop,
                        guard=exp.guard, guard_metric=exp.guard_metric)
    print_tuning(tune_from_arguments(data, smooth, cert, tune, config), data.split, data.model)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("experiments/tune_rates.py", command, argv)


if __name__ == "__main__":
    sys.exit(main())
