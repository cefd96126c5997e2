#!/usr/bin/env python
"""Colored MNIST variations (docs/benchmarks.md, section 6d): the study of ``robusttext vision coloredmnist``
with the benchmark's construction changed, through the library (:mod:`robusttext_vision.coloredmnist`).

    python experiments/coloredmnist.py --seeds 10 --env-sizes 1000,1000,2000 --output_dir runs/vision/cmnist_n1000
    python experiments/coloredmnist.py --seeds 10 --subsample-views 4 --lr 2e-3 \\
        --hparams '{"penalty_anneal_iters": 150}' --output_dir runs/vision/cmnist_views4
    python experiments/coloredmnist.py --mnist-split train --env-sizes 25000,25000,10000 \\
        --hparams '{"hidden_dim": 390}' --data-root DIR                           # IRM's exact protocol

Every option of ``robusttext vision coloredmnist`` works here, plus the construction's: ``--env-sizes``,
``--color-flip``, ``--label-noise``, ``--mnist-split``, ``--subsample-views`` (defaults: the paper's, those of
:class:`~robusttext_vision.coloredmnist.ColoredMNISTConfig`).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Sequence

from robusttext.config import parse, run_script
from robusttext_vision.arguments import ColoredMNISTArguments
from robusttext_vision.cli import coloredmnist_config
from robusttext_vision.coloredmnist import ColoredMNISTConfig, run_coloredmnist

_PAPER = ColoredMNISTConfig()


@dataclass
class ConstructionArguments:
    """How the environments are built (defaults: ColoredMNISTConfig's, the paper's)."""

    env_sizes: str = field(default=_PAPER.env_sizes, metadata={"help": "Images in training env 1, env 2, test env."})
    color_flip: str = field(default=_PAPER.color_flip, metadata={"help": "Colour flip probability e per environment."})
    label_noise: float = field(default=_PAPER.label_noise, metadata={"help": "Label flip probability, in [0, 0.5)."})
    mnist_split: str = field(default=_PAPER.mnist_split, metadata={"help": "MNIST split the environments are cut from: test or train."})
    subsample_views: int = field(default=_PAPER.subsample_views, metadata={"help": "Views of each training image: 1 or 4."})


def run(argv: Sequence[str]) -> int:
    """Parse ``argv``, run the study, print its table."""
    args, construction = parse((ColoredMNISTArguments, ConstructionArguments), argv, "experiments/coloredmnist.py")
    config = coloredmnist_config(args, **asdict(construction))
    print(run_coloredmnist(config, args.output_dir, args.overwrite_output_dir)["markdown"])
    print(f"wrote {args.output_dir}/summary.json, report.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("experiments/coloredmnist.py", run, argv)


if __name__ == "__main__":
    sys.exit(main())
