"""The command line's conversion for ``robusttext dg`` and the Fishr part of ``robusttext train``: argument
dataclasses -> :class:`~robusttext.training.fishr.FishrTrainingArguments` (``--hparams``), a
:class:`~robusttext.dg.domains.SweepConfig` and a :class:`~robusttext.training.trainer.TrainingRecipe`, once."""

from __future__ import annotations

from typing import Any

from ..certificate.protocol import CertifyProtocol
from ..dg.domains import SweepConfig, leave_one_domain_out
from ..training.fishr import FishrTrainingArguments
from ..training.trainer import TrainingRecipe
from ..config import hparams_errors
from .arguments import DGArguments, HparamsArguments, ModelDataArguments, SmoothingArguments
from .convert import data_spec, flag_errors


def fishr_arguments(args: Any, hp: HparamsArguments) -> FishrTrainingArguments:
    """The parsed ``TrainingArguments`` with ``--hparams``' Fishr values (checked against the registry; the
    others at the registry's defaults); errors name ``--hparams`` and the key."""
    with hparams_errors():
        return FishrTrainingArguments.with_hparams(args, hp.hparams)


def sweep_config(dg: DGArguments) -> SweepConfig:
    """``robusttext dg``'s options as a :class:`SweepConfig` (``--certify``: a protocol of ``--n`` samples at ``--alpha``)."""
    with flag_errors(dg):
        protocol = CertifyProtocol(n0=min(CertifyProtocol.n0, dg.n), n=dg.n, alpha=dg.alpha) if dg.certify else None
        return SweepConfig(algorithms=dg.algorithms, test_domains=dg.test_domains, seeds=dg.seeds,
                           val_fraction=dg.val_fraction, max_per_domain=dg.max_per_domain,
                           max_test_examples=dg.max_test_examples, hparam_trials=dg.hparam_trials,
                           certify=protocol, update_model_card=dg.update_model_card)


def dg_recipe(data: ModelDataArguments, smooth: SmoothingArguments, dg: DGArguments) -> TrainingRecipe:
    """The sweep's training noise (``--rate-schedule``, else ``--p-del``; dg's default 0), unit, length and head."""
    with flag_errors(data, smooth, dg):
        return TrainingRecipe(rate=smooth.training_rate(), unit=smooth.unit, max_length=data.max_length,
                              algorithm="fishr", freeze_encoder=dg.freeze_encoder)


def dg_from_arguments(data: ModelDataArguments, smooth: SmoothingArguments, dg: DGArguments, args: Any,
                      hp: HparamsArguments) -> dict:
    """``robusttext dg``: convert the arguments once, then :func:`robusttext.dg.domains.leave_one_domain_out`."""
    fishr_args, sweep, recipe = fishr_arguments(args, hp), sweep_config(dg), dg_recipe(data, smooth, dg)
    with flag_errors(data, smooth, dg):
        return leave_one_domain_out(data.model, data_spec(data), fishr_args, sweep, recipe)
