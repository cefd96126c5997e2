"""Certify a Hub (or local) text classifier with randomized-deletion smoothing (RS-Del / CERT-ED).

    python scripts/certify_hub_model.py --model textattack/bert-base-uncased-SST-2 --dataset glue \
        --dataset-config sst2 --split validation --p-del 0.9 --n0 100 --n 4000 --output-dir runs/sst2
    python scripts/certify_hub_model.py configs/certify_sst2.yaml          # every option from YAML
    accelerate launch --num_processes 2 scripts/certify_hub_model.py ...     # inputs sharded, same results

Writes results.jsonl (one line per input, resumable), summary.json, certified_accuracy.png, report.md.
A copyable example of the library API: parse the argument dataclasses, then load the smoothed classifier and
call ``certify_dataset`` with library objects (a data spec, a protocol, an output folder).
"""

import sys

from transformers import HfArgumentParser

from robusttext.cli.arguments import CertifyArguments, ModelDataArguments, SmoothingArguments
from robusttext.cli import print_summary
from robusttext.config import apply_loading_options  # --trust-remote-code, --encoding
from robusttext import SmoothedTextClassifier
from robusttext.runs.certify import certification_rate, certify_dataset
from robusttext.runs.data import DataSpec
from robusttext.runs.distributed import end_process_group, process_state


def main() -> None:
    parser = HfArgumentParser((ModelDataArguments, SmoothingArguments, CertifyArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith((".yaml", ".yml")):
        data, smooth, cert = parser.parse_yaml_file(sys.argv[1])
    else:
        data, smooth, cert = parser.parse_args_into_dataclasses()
    apply_loading_options((data, smooth, cert))
    protocol = cert.protocol()
    rate = certification_rate(data.model, smooth.p_del, smooth.rate_schedule)
    clf = SmoothedTextClassifier.from_pretrained(
        data.model, p_del=rate, unit=smooth.unit, batch_size=cert.batch_size, max_length=data.max_length,
        seed=cert.seed, autocast_dtype=cert.precision, device=process_state().device)
    spec = DataSpec(data.dataset, data.split, data.dataset_config, data.text_column, data.label_column, data.max_examples)
    summary = certify_dataset(clf, spec, cert.output_dir, protocol, chunk_size=cert.chunk_size,
                              overwrite=cert.overwrite_output_dir)
    print_summary(summary, cert.output_dir)
    end_process_group()


if __name__ == "__main__":
    main()
