"""Certify a Hub (or local) text classifier with randomized-deletion smoothing (RS-Del / CERT-ED).

    python scripts/certify_hub_model.py --model textattack/bert-base-uncased-SST-2 --dataset glue \
        --dataset-config sst2 --split validation --p-del 0.9 --n0 100 --n 4000 --output-dir runs/sst2
    python scripts/certify_hub_model.py configs/certify_sst2.yaml          # every option from YAML
    accelerate launch --num_processes 2 scripts/certify_hub_model.py ...     # inputs sharded, same results

Writes results.jsonl (one line per input, resumable), summary.json, certified_accuracy.png, report.md.
A copyable example of the library API: parse the argument dataclasses, call ``certify_dataset``.
"""

import sys

from transformers import HfArgumentParser

from robusttext.cli.arguments import CertifyArguments, ModelDataArguments, SmoothingArguments
from robusttext.cli import print_summary
from robusttext.config import apply_loading_options  # --trust-remote-code, --encoding
from robusttext.runs.certify import certify_dataset


def main() -> None:
    parser = HfArgumentParser((ModelDataArguments, SmoothingArguments, CertifyArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith((".yaml", ".yml")):
        data, smooth, cert = parser.parse_yaml_file(sys.argv[1])
    else:
        data, smooth, cert = parser.parse_args_into_dataclasses()
    apply_loading_options((data, smooth, cert))
    summary = certify_dataset(data, smooth, cert)
    if summary is not None:
        print_summary(summary, cert.output_dir)


if __name__ == "__main__":
    main()
