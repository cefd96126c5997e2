"""scripts/simulate_certify.py: the label rates it recovers and the expectation it computes, on exact cases."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from robusttext.certificate.stats import clopper_pearson_lower

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "simulate_certify.py"


@pytest.fixture(scope="module")
def sim():
    spec = importlib.util.spec_from_file_location("simulate_certify", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_label_rates_recover_the_published_counts(sim):
    # records as the published arm writes them without counts: the bound of k top votes of 4000
    ks, labels = [4000, 3100, 2600, 2100], [1, 0, 1, 0]
    records = [
        {"index": i, "prediction": 1 if i != 1 else 0, "radius": 0, "top1_lower": clopper_pearson_lower(k, 4000, 0.05)}
        for i, k in enumerate(ks)
    ]
    rates = sim.label_rates(records, labels, 0.05)
    # inputs 0, 1: predicted = label; 2: predicted 1 = label; 3: predicted 1, label 0 -> 1 - k/4000
    assert rates == pytest.approx([1.0, 3100 / 4000, 2600 / 4000, 1 - 2100 / 4000])
    with_counts = [{"index": 0, "prediction": 1, "counts": [300, 3700], "top1_lower": 0.9}]
    assert sim.label_rates(with_counts, [0], 0.05) == pytest.approx([300 / 4000])


def test_unanimous_inputs_give_the_exact_certified_accuracy(sim):
    # one input always voted its label (certified at the largest radius, 6 at p_del 0.9), one never
    acc, se, samples = sim.simulate(np.array([1.0, 0.0]), 3, 0.05, 0.9, n0=50, n=4000, looks=[200, 500, 1500, 4000],
                                    alpha_weights=[0.05, 0.05, 0.1, 0.8], futility=0.2, candidate_pvalue=0.1)
    assert acc == pytest.approx([50.0] * 7) and se == pytest.approx([0.0] * 7)
    assert samples == pytest.approx(50 + 200)  # both stop at the first look


def test_oracle_samples_unanimous_input_matches_closed_form(sim) -> None:
    # k = n votes: the Clopper-Pearson lower bound is alpha ** (1 / n); radius 6 at p_del = 0.9 needs it
    # above 1.5 - 0.9 ** 6 (complement rule), so the fewest samples is the first n past log(alpha) / log(that).
    alpha, p_del = 0.05, 0.9
    expected = math.floor(math.log(alpha) / math.log(1.5 - p_del**6)) + 1
    out = sim.oracle_samples(np.array([1.0, 0.0, 0.5]), alpha, p_del)
    assert out.tolist() == [expected, expected, 0]  # either class unanimous; an even split abstains at any n
