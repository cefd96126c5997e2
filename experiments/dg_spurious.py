#!/usr/bin/env python
"""The constructed spurious-marker benchmark (docs/benchmarks.md, section 6c): ERM vs Fishr vs a marker-free
ERM oracle, leave the anti-correlated environment out. It calls the library: the environments of
:mod:`robusttext.dg.spurious` and the sweep of :func:`robusttext.dg.domains.leave_one_domain_out`.

    python experiments/dg_spurious.py --config experiments/dg_spurious.yaml              # fine-tuning
    torchrun --nproc_per_node 2 experiments/dg_spurious.py --config experiments/dg_spurious_probe.yaml \\
        --per_device_train_batch_size 128                                              # linear probe

Every option of ``robusttext dg`` works here too (``--seeds 1``, ``--num_train_epochs 9``, ...), plus the
benchmark's own: ``--spurious A,B`` (the two marker words), ``--spurious_agreements`` (marker-label agreement
per environment, training environments first, the held-out one last), ``--spurious_label_noise`` (label flip
probability, in [0, 0.5)) and ``--spurious_seed`` (the environments' cut, label noise and markers).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from robusttext.cli.arguments import DGArguments, HparamsArguments, ModelDataArguments, SmoothingArguments
from robusttext.cli.convert import data_spec
from robusttext.cli.convert_dg import dg_recipe, fishr_arguments, sweep_config
from robusttext.cli.main import training_defaults
from robusttext.config import parse, run_script
from robusttext.dg.domains import leave_one_domain_out, report_markdown
from robusttext.dg.spurious import ORACLE, parse_spec, spurious_text_data
from robusttext.training.fishr import DomainTrainingArguments


@dataclass
class SpuriousArguments:
    """How the environments are built (robusttext.dg.spurious.SpuriousSpec)."""

    spurious: str = field(default="alpha,omega", metadata={"help": "The two marker words 'A,B'."})
    spurious_agreements: str = field(default="0.9,0.8,0.1", metadata={
        "help": "Marker-label agreement per environment, training environments first, the held-out one last."})
    spurious_label_noise: float = field(default=0.25, metadata={"help": "Label flip probability, in [0, 0.5)."})
    spurious_seed: int = field(default=0, metadata={"help": "Seed of the environments' cut, label noise and markers."})


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` like ``robusttext dg`` (plus :class:`SpuriousArguments`), build the environments with and
    without the marker, and run the sweep on them holding out the last environment."""
    data, smooth, dg, args, hp, sp = parse(
        (ModelDataArguments, SmoothingArguments, DGArguments, DomainTrainingArguments, HparamsArguments, SpuriousArguments),
        argv, "experiments/dg_spurious.py", defaults={**training_defaults("runs/dg_spurious"), "split": "all", "p_del": 0.0},
    )
    spec = parse_spec(sp.spurious, sp.spurious_agreements, sp.spurious_label_noise, sp.spurious_seed)
    fishr_args, recipe = fishr_arguments(args, hp), dg_recipe(data, smooth, dg)
    sweep = replace(sweep_config(dg), test_domains=[spec.names()[-1]])
    full = data_spec(data).load()
    variants = {"": spurious_text_data(full, spec, True), ORACLE: spurious_text_data(full, spec, False)}
    summary = leave_one_domain_out(data.model, variants, fishr_args, sweep, recipe)
    print(report_markdown(summary))
    print(f"wrote {Path(fishr_args.output_dir) / 'dg_results.json'}, dg_report.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("experiments/dg_spurious.py", run, argv)


if __name__ == "__main__":
    sys.exit(main())
