"""The command line's one conversion: argument dataclasses -> library objects (a data spec, a rate, a
protocol, a smoothed classifier). Checks run in the library constructors; :func:`flag_errors` makes their
messages name the command-line flag instead of the Python field."""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Any, Iterator

from ..certificate.protocol import CertifyProtocol
from ..certificate.rates import RateSchedule
from ..certificate.smoothing import SmoothedTextClassifier
from ..runs.certify import certification_rate, certify_dataset
from ..runs.data import DataSpec
from ..runs.distributed import process_state
from ..evaluation.attacks import AttackConfig, run_attacks
from ..evaluation.evaluate import EvaluateConfig, evaluate_model
from ..evaluation.tuning import TuneConfig, tune_rates
from ..hub.callbacks import CertifiedEvalCallback
from ..training.augment import Augmentation
from ..training.trainer import TrainingRecipe, train_classifier
from .arguments import (
    AttackArguments,
    AugmentArguments,
    CertifyArguments,
    EvaluateArguments,
    ModelDataArguments,
    SmoothingArguments,
    TrainArguments,
    TuneArguments,
)


@contextmanager
def flag_errors(*bundles: Any) -> Iterator[None]:
    """Re-raise a ``ValueError`` whose message starts with a field of ``bundles`` (``chunk_size must ...``)
    with that field written as its flag (``--chunk-size must ...``)."""
    names = {f.name for b in bundles for f in fields(b)}
    try:
        yield
    except ValueError as err:
        m = re.match(r"(\w+)\b", str(err))
        if m and m.group(1) in names and type(err) is ValueError:
            raise ValueError(f"--{m.group(1).replace('_', '-')}{str(err)[m.end():]}") from None
        raise


def data_spec(data: ModelDataArguments, max_examples: int | None = None) -> DataSpec:
    """The examples ``data`` names (``max_examples`` overrides ``data.max_examples``)."""
    return DataSpec(data.dataset, data.split, data.dataset_config, data.text_column, data.label_column,
                    data.max_examples if max_examples is None else max_examples)


def certify_setup(data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments) -> tuple[RateSchedule, CertifyProtocol]:
    """The rate (reading the model folder once) and the protocol, checked before any model is loaded."""
    protocol = cert.protocol()
    return certification_rate(data.model, smooth.p_del, smooth.rate_schedule), protocol


def smoothed_classifier(
    data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments, rate: RateSchedule, device: Any = None
) -> SmoothedTextClassifier:
    """The one factory of :class:`SmoothedTextClassifier` from command-line arguments (certify, predict,
    attack, evaluate, tune-rates): loads ``data.model`` and smooths it at ``rate`` with these batching
    parameters."""
    with flag_errors(data, smooth, cert):
        return SmoothedTextClassifier.from_pretrained(
            data.model, p_del=rate, unit=smooth.unit, batch_size=cert.batch_size, max_length=data.max_length,
            seed=cert.seed, device=device,
            autocast_dtype=cert.precision,  # resolved on the model's device (robusttext.certificate.precision)
        )


def certify_from_arguments(
    data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments, clf: SmoothedTextClassifier | None = None
) -> dict:
    """``robusttext certify``: convert the arguments once (rate and protocol before any loading), then
    :func:`robusttext.runs.certify.certify_dataset`; ``clf`` may pass the classifier already loaded from them."""
    rate, protocol = certify_setup(data, smooth, cert)
    if clf is None:
        clf = smoothed_classifier(data, smooth, cert, rate, device=process_state().device)
    with flag_errors(cert):
        return certify_dataset(clf, data_spec(data), cert.output_dir, protocol, chunk_size=cert.chunk_size,
                               overwrite=cert.overwrite_output_dir, model=data.model)


def training_recipe(data: ModelDataArguments, smooth: SmoothingArguments, train: TrainArguments) -> TrainingRecipe:
    """How ``robusttext train`` trains: the noise (``--rate-schedule``, else ``--p-del``), algorithm and head."""
    return TrainingRecipe(
        rate=smooth.training_rate(), unit=smooth.unit, max_length=data.max_length, algorithm=train.algorithm,
        freeze_encoder=train.freeze_encoder, ignore_mismatched_sizes=train.ignore_mismatched_sizes,
    )


def train_from_arguments(
    data: ModelDataArguments, smooth: SmoothingArguments, train: TrainArguments, args: Any,
    augment: AugmentArguments | None = None, *, recipe: TrainingRecipe | None = None,
    augmentation: Augmentation | None = None, eval_protocol: CertifyProtocol | None = None,
) -> dict:
    """``robusttext train``: convert the arguments once, then :func:`robusttext.training.trainer.train_classifier`.
    ``recipe``, ``augmentation`` and ``eval_protocol`` (the certified evaluation's), when given, replace what the
    arguments say (``experiments/train_text.py`` sets their fields the command leaves at the library defaults)."""
    spec = data_spec(data)
    eval_data = replace(spec, split=train.eval_split, max_examples=None) if train.eval_split else None
    recipe = recipe or training_recipe(data, smooth, train)
    if augmentation is None and augment is not None:
        augmentation = augmentation_of(augment)
    return train_classifier(data.model, spec, args, recipe, eval_data=eval_data,
                            test_domains=train.test_domains or (), augmentation=augmentation,
                            certified_eval=certified_eval_of(train, recipe, args.seed, eval_protocol))


def certified_eval_of(train: TrainArguments, recipe: TrainingRecipe, seed: int,
                      protocol: CertifyProtocol | None = None) -> CertifiedEvalCallback | None:
    """``--certify-eval N`` as a :class:`CertifiedEvalCallback` under the training rate and ``protocol`` (None: the
    callback's default), None when 0; refused before anything loads without an evaluation set, or (by the
    callback) without a certifiable rate."""
    if not train.certify_eval:
        return None
    if not (train.eval_split or train.test_domains):
        raise ValueError("--certify-eval needs an evaluation set: add --eval-split (or --test-domains)")
    return CertifiedEvalCallback(train.certify_eval, p_del=recipe.rate, unit=recipe.unit, protocol=protocol, seed=seed)


def augmentation_of(augment: AugmentArguments) -> Augmentation | None:
    """``--augment`` as an :class:`Augmentation` at its default rates (None without ``--augment``)."""
    if augment.augment is None:
        return None
    return Augmentation(augment.augment)


def tune_from_arguments(data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments,
                        tune: TuneArguments, config: TuneConfig | None = None) -> dict:
    """``robusttext tune-rates``: the tuning configuration (checked before any loading; ``config``, when given,
    replaces the one of ``tune``), the classifier, then :func:`robusttext.evaluation.tuning.tune_rates` writing
    into the ``--model`` folder."""
    if config is None:
        config = TuneConfig(edges=tune.edges, max_per_bin=tune.max_per_bin, p_lb=tune.p_lb)
    rate, protocol = certify_setup(data, smooth, cert)
    clf = smoothed_classifier(data, smooth, cert, rate)
    return tune_rates(clf, data_spec(data), protocol, config, model_dir=data.model)


def attack_config(attack: AttackArguments, cert: CertifyArguments, smoothed: bool | None = None,
                  recipes: str | None = None) -> AttackConfig:
    """``--recipes``, ``--smoothed``, ``--attack-n`` (else ``--n``) and ``--query-budget`` as an :class:`AttackConfig`."""
    return AttackConfig(recipes=recipes or attack.recipes, smoothed=attack.smoothed if smoothed is None else smoothed,
                        n=attack.attack_n or cert.n, query_budget=attack.query_budget)


def attacked_examples(attack: AttackArguments) -> int | None:
    """``--num-examples`` (checked: >= 1), None when not given."""
    if attack.num_examples is not None and attack.num_examples < 1:
        raise ValueError(f"--num-examples must be >= 1, got {attack.num_examples}")
    return attack.num_examples


def attack_from_arguments(data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments,
                          attack: AttackArguments) -> dict:
    """``robusttext attack``: the attack configuration (checked before any loading), the classifier, then
    :func:`robusttext.evaluation.attacks.run_attacks` on the first ``--num-examples`` (else ``--max-examples``)."""
    num = attacked_examples(attack)
    config = attack_config(attack, cert)
    rate = certification_rate(data.model, smooth.p_del, smooth.rate_schedule)
    clf = smoothed_classifier(data, smooth, cert, rate, device=process_state().device)
    with flag_errors(cert):
        return run_attacks(clf, data_spec(data, num), cert.output_dir, config,
                           overwrite=cert.overwrite_output_dir, model=data.model)


def evaluate_from_arguments(data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments,
                            attack: AttackArguments, ev: EvaluateArguments, config: EvaluateConfig | None = None) -> dict:
    """``robusttext evaluate``: rate, protocol, attack and evaluation configurations (checked before any
    loading; ``config``, when given, replaces the one of ``ev`` and ``--num-examples``), the classifier, then
    :func:`robusttext.evaluation.evaluate.evaluate_model`."""
    rate, protocol = certify_setup(data, smooth, cert)
    with flag_errors(ev):  # every configuration (each target's too) is refused before the model loads
        config = config or EvaluateConfig(ev.attack_target, attacked_examples(attack))
        attacks = attack_config(attack, cert)
        config.attack_configs(attacks)
    clf = smoothed_classifier(data, smooth, cert, rate, device=process_state().device)
    with flag_errors(cert):
        return evaluate_model(clf, data_spec(data), cert.output_dir, protocol, attacks, config,
                              chunk_size=cert.chunk_size, overwrite=cert.overwrite_output_dir, model=data.model)
