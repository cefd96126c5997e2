"""``robusttext vision SUBCOMMAND``: the vision sidecar's command line (registered as a plugin of the
core CLI through the entry-point group ``robusttext.commands``; the core never imports vision).

    robusttext vision train   --method pgd --split 'test[:8000]' --output-dir runs/vision/pgd
    robusttext vision attack  --model-dir runs/vision/pgd --attack pgd --norm linf --eps 0.1 0.3
    robusttext vision certify --model-dir runs/vision/gauss --sigma 0.5 --n 10000 --max-examples 100
    robusttext vision denoise --classifier-dir runs/vision/normal --objective stability --split 'test[:8000]'
    robusttext vision linear  --split 'test[:8000]' --eps 0.2
    robusttext vision coloredmnist --algorithm erm,fishr,gray --seeds 10

Each subcommand parses its dataclasses with :func:`robusttext.config.parse` (``HfArgumentParser`` +
``--config FILE.yaml``) and calls one library function; everything runs under ``accelerate launch``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Callable, Sequence

from robusttext.config import dispatch, hparams_errors, parse

if TYPE_CHECKING:
    from .arguments import ColoredMNISTArguments, ImageDataArguments
    from .coloredmnist import ColoredMNISTConfig
    from .data import ImageData


def _print(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def load_data(data: "ImageDataArguments", split: str | None = None, max_examples: int | None = None) -> "ImageData":
    """The images ``data`` names (``split`` and ``max_examples`` override its own)."""
    from .data import load_images

    return load_images(data.dataset, split or data.split, data.data_root, max_examples or data.max_examples, data.download)


def config_of(cls: type, args: Any) -> Any:
    """The library configuration ``cls`` from the same-named fields of ``args`` (lists as tuples), checked by ``cls``."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def cmd_train(argv: Sequence[str]) -> int:
    from .arguments import ImageDataArguments, TrainImageArguments
    from .pipelines import TrainConfig, train_and_save

    data, train = parse((ImageDataArguments, TrainImageArguments), argv, "robusttext vision train",
                        defaults={"split": "test[:8000]"})
    config = config_of(TrainConfig, train)
    evaluated = train.eval_split and str(train.eval_split).lower() != "none"
    _print(train_and_save(load_data(data), train.output_dir, config, load_data(data, train.eval_split) if evaluated else None))
    return 0


def cmd_attack(argv: Sequence[str]) -> int:
    from .arguments import AttackArguments, ImageDataArguments
    from .pipelines import AttackConfig, run_attack

    data, args = parse((ImageDataArguments, AttackArguments), argv, "robusttext vision attack")
    config = config_of(AttackConfig, args)
    _print(run_attack(args.model_dir, load_data(data), args.output_dir, config, args.overwrite_output_dir)["results"])
    return 0


def cmd_certify(argv: Sequence[str]) -> int:
    from .arguments import CertifyImageArguments, ImageDataArguments
    from .pipelines import ImageCertifyConfig, run_certify

    data, cert = parse((ImageDataArguments, CertifyImageArguments), argv, "robusttext vision certify")
    config = config_of(ImageCertifyConfig, cert)
    s = run_certify(cert.model_dir, load_data(data), cert.output_dir, config, cert.denoiser_dir, cert.overwrite_output_dir)
    _print({k: s.get(k) for k in ("num_examples", "clean_accuracy", "smoothed_accuracy", "abstain_rate",
                                   "certified_count", "mean_radius_certified", "certified_accuracy")})
    return 0


def cmd_denoise(argv: Sequence[str]) -> int:
    from .arguments import DenoiseArguments, ImageDataArguments
    from .pipelines import DenoiseConfig, run_denoise

    data, den = parse((ImageDataArguments, DenoiseArguments), argv, "robusttext vision denoise",
                      defaults={"split": "test[:8000]"})
    config = config_of(DenoiseConfig, den)
    evaluation = load_data(data, den.eval_split, den.certify_examples) if den.certify_examples > 0 else None
    _print(run_denoise(den.classifier_dir, load_data(data), den.output_dir, config, evaluation)["rows"])
    return 0


def cmd_linear(argv: Sequence[str]) -> int:
    from .arguments import ImageDataArguments, LinearArguments
    from .pipelines import LinearConfig, run_linear

    data, args = parse((ImageDataArguments, LinearArguments), argv, "robusttext vision linear",
                       defaults={"split": "test[:8000]"})
    config = config_of(LinearConfig, args)
    _print(run_linear(load_data(data), load_data(data, args.eval_split), args.output_dir, config)["rows"])
    return 0


def coloredmnist_config(args: "ColoredMNISTArguments", **construction: Any) -> "ColoredMNISTConfig":
    """``robusttext vision coloredmnist``'s options (and an experiment's ``construction`` of the environments) as a
    :class:`~robusttext_vision.coloredmnist.ColoredMNISTConfig`; ``--hparams`` errors name it and the key."""
    from .coloredmnist import ColoredMNISTConfig

    with hparams_errors():  # the options' own messages name their flag; the registry's keys come from --hparams
        config = ColoredMNISTConfig(algorithm=args.algorithm, seeds=args.seeds, seed=args.seed, lr=args.lr,
                                    steps=args.steps, data_root=args.data_root, **construction)
        return config.with_hparams(args.hparams)


def cmd_coloredmnist(argv: Sequence[str]) -> int:
    from .arguments import ColoredMNISTArguments
    from .coloredmnist import run_coloredmnist

    (args,) = parse((ColoredMNISTArguments,), argv, "robusttext vision coloredmnist")
    config = coloredmnist_config(args)
    print(run_coloredmnist(config, args.output_dir, args.overwrite_output_dir)["markdown"])
    print(f"wrote {args.output_dir}/summary.json, report.md")
    return 0


#: name -> (one-line help, function taking the remaining argv).
COMMANDS: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {
    "train": ("train a classifier: standard, PGD-AT, FGSM-RS or Gaussian noise", cmd_train),
    "attack": ("robust accuracy under FGSM / PGD (Linf, L2)", cmd_attack),
    "certify": ("Gaussian (or denoised) smoothing: certified L2 radii", cmd_certify),
    "denoise": ("train a denoiser for a frozen classifier, certify with and without it", cmd_denoise),
    "linear": ("regular vs exactly robust binary linear classifier", cmd_linear),
    "coloredmnist": ("Colored MNIST (IRM protocol): ERM vs Fishr vs grayscale oracle", cmd_coloredmnist),
}


def main(argv: Sequence[str] | None = None) -> int:
    """``robusttext vision ...`` (also ``python -m robusttext_vision.cli ...``); errors are reported as
    :mod:`robusttext.errors` says (user errors: one line, exit 2; Ctrl-C: exit 130; bugs: traceback)."""
    return dispatch("robusttext vision", COMMANDS, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
