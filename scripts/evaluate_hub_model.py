"""Evaluate a Hub (or local) text classifier: clean accuracy, RS-Del certified accuracy, accuracy under
TextAttack attacks, and the certified-vs-empirical cross-check, in one robustness_report.md.

    python scripts/evaluate_hub_model.py --model textattack/bert-base-uncased-SST-2 --dataset glue \
        --dataset-config sst2 --split validation --max-examples 200 --output-dir runs/eval_sst2
    python scripts/evaluate_hub_model.py configs/evaluate_sst2.yaml          # every option from YAML
    accelerate launch --num_processes 2 scripts/evaluate_hub_model.py ...     # examples sharded over processes

Certification and attacks deal the examples out over the processes (each input has its own seeded
random stream, so the numbers do not depend on the number of processes); the main process merges,
cross-checks and writes the report. Rerunning the same command resumes. A copyable example of the
library API: parse ``robusttext evaluate``'s options, convert them once into the library's objects (a
``SmoothedTextClassifier``, a ``DataSpec``, a ``CertifyProtocol``, an ``AttackConfig``, an ``EvaluateConfig``)
and call ``robusttext.evaluation.evaluate.evaluate_model``.
"""

import sys

from transformers import HfArgumentParser

from robusttext.cli.arguments import (
    AttackArguments,
    CertifyArguments,
    EvaluateArguments,
    ModelDataArguments,
    SmoothingArguments,
)
from robusttext.cli.convert import evaluate_from_arguments
from robusttext.runs.distributed import end_process_group
from robusttext.config import apply_loading_options  # --trust-remote-code, --encoding


def main() -> int:
    parser = HfArgumentParser((ModelDataArguments, SmoothingArguments, CertifyArguments, AttackArguments, EvaluateArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith((".yaml", ".yml")):
        args = parser.parse_yaml_file(sys.argv[1])
    else:
        args = parser.parse_args_into_dataclasses()
    apply_loading_options(args)
    summary = evaluate_from_arguments(*args)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(summary["crosscheck"]["message"])
        print(f"clean accuracy {summary['clean_accuracy']:.4f}, smoothed {summary['smoothed_accuracy']:.4f}, "
              f"certified {summary['certified_accuracy']}, under attack {summary['accuracy_under_attack']}")
        print(f"wrote {args[2].output_dir}/robustness_report.md")
    end_process_group()
    return 0 if summary["crosscheck"]["sound"] else 1


if __name__ == "__main__":
    sys.exit(main())
