"""Fine-tune a Hugging Face text classifier under random word deletion (RS-Del training).

    python scripts/finetune_rsdel.py --model embedded:minilm-l6 --dataset ../shared/data/sst2 --split train \
        --p-del 0.9 --output-dir runs/sst2_minilm --num-train-epochs 1
    python scripts/finetune_rsdel.py configs/train_sst2_rsdel.yaml
    accelerate launch --num_processes 2 scripts/finetune_rsdel.py ...       # data-parallel, same Trainer

Any ``transformers.TrainingArguments`` option works (learning rate, epochs, fp16/bf16 on GPUs, gradient
accumulation, ...). The saved folder goes straight into ``scripts/certify_hub_model.py --model``.
"""

import sys

from transformers import HfArgumentParser, TrainingArguments

from robusttext.cli.arguments import ModelDataArguments, SmoothingArguments, TrainArguments
from robusttext.cli import training_defaults
from robusttext.cli.convert import train_from_arguments
from robusttext.runs.distributed import end_process_group
from robusttext.config import apply_loading_options  # --trust-remote-code, --encoding


def main() -> None:
    parser = HfArgumentParser((ModelDataArguments, SmoothingArguments, TrainArguments, TrainingArguments))
    parser.set_defaults(**training_defaults("runs/train"), split="train")
    if len(sys.argv) == 2 and sys.argv[1].endswith((".yaml", ".yml")):
        data, smooth, train, args = parser.parse_yaml_file(sys.argv[1])
    else:
        data, smooth, train, args = parser.parse_args_into_dataclasses()
    apply_loading_options((data, smooth, train, args))
    print(train_from_arguments(data, smooth, train, args))
    end_process_group()


if __name__ == "__main__":
    main()
