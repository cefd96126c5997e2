"""Length-adaptive deletion end to end: per-input rates in the mechanism, the collator and certify."""

from __future__ import annotations

import json
import re
import math

import numpy as np
import pytest
from scipy import stats

from _experiments import load_experiment
from robusttext.cli import main
from robusttext.certificate.deletion import DeletionCollator, DeletionMechanism
from robusttext.certificate.rates import AdaptiveRate, BinnedRate, FixedRate, UniformKeep, UniformRate
from robusttext.evaluation.tuning import accuracy_at_zero, bin_range, bin_score, golden_section, mean_radius, pooled_choice, reach


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


#: Distinct English words that MiniLM's WordPiece vocabulary holds as one token each (kept words = tokens).
VOCAB = ("apple bread chair dance eagle fable giant honey island jelly knife lemon mango night ocean piano queen "
         "river stone table uncle voice water youth zebra album beach cable dream earth flame grape heart image "
         "juice kitchen laser money nurse orange paper radio salad tiger union video wheel yellow brain cloud "
         "delta engine forest garden hotel index jacket label metal novel office").split()


def words(n: int) -> str:
    return " ".join(VOCAB[:n])


def test_each_input_is_smoothed_at_its_own_length_rate(tokenizer):
    rate = AdaptiveRate(k=4, p_lb=0.6)  # 5 words: p = 0.6 (floor); 40 words: p = 0.9
    mech = DeletionMechanism(tokenizer, rate, "word")
    for n, p in ((5, 0.6), (40, 0.9)):
        x = mech.prepare(words(n))
        assert x.p_del == pytest.approx(p)
        assert len(x.unit_ids) == n and all(len(ids) == 1 for ids in x.unit_ids)  # one token per word
        kept = np.array([len(s) - 2 for s in mech.draw(x, 4000, np.random.default_rng(n))])  # [CLS] ... [SEP]
        assert abs(kept.mean() - n * (1 - p)) < 4 * math.sqrt(n * p * (1 - p) / 4000)
        st = mech.strata(x, 64)
        j = np.array([len(s) - 2 for s in st.samples])
        assert np.allclose(st.probs, (1 - p) ** j * p ** (n - j))  # exact probabilities at the input's rate
        assert st.residual_mass == pytest.approx(1 - st.probs.sum())


def test_collator_draws_each_example_at_its_schedule(tokenizer):
    feats = [{"text": words(5), "label": 0}, {"text": words(40), "label": 1}] * 300
    batch = DeletionCollator(tokenizer, AdaptiveRate(k=4, p_lb=0.6), "word", seed=1)(feats)
    kept = batch["attention_mask"].sum(1).numpy() - 2
    for n, p, rows in ((5, 0.6, kept[0::2]), (40, 0.9, kept[1::2])):
        assert abs(rows.mean() - n * (1 - p)) < 4 * math.sqrt(n * p * (1 - p) / len(rows))
    # AdaptDel+'s recipe: p ~ U[0.7, 0.99] per example, so the kept share of a 40-word text is ~U[0.01, 0.3]
    uni = DeletionCollator(tokenizer, UniformRate(0.7, 0.99), "word", seed=2)([{"text": words(40), "label": 0}] * 600)
    share = (uni["attention_mask"].sum(1).numpy() - 2) / 40
    assert abs(share.mean() - 0.155) < 0.01 and share.std() > 0.07  # a fixed p = 0.845 would give std 0.057
    # the keep-count recipe: k ~ U[2, 8] units kept of 40 (p = 1 - k/40 >= 0.8 > p_lb), i.e. 5 on average
    keep = DeletionCollator(tokenizer, UniformKeep(2, 8, 0.5), "word", seed=3)([{"text": words(40), "label": 0}] * 600)
    kept = keep["attention_mask"].sum(1).numpy() - 2
    assert abs(kept.mean() - 5) < 0.3 and kept.max() <= 20


def test_certify_uses_the_model_folder_schedule_and_certifies_beyond_the_fixed_rate_cap(tiny_model_dir, tmp_path, caplog):
    """A text the base model classifies the same whatever is kept (every copy of a 1-word text is "" or the
    word, both constant here) reaches the variable-rate radius of its exact bounds, above fixed p = 0.9's cap 6."""
    import shutil

    from robusttext.certificate.stats import max_edit_distance_radius, variable_rate_radius

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    AdaptiveRate(k=2, p_lb=0.9).save(model)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "", "label": 0}) + "\n" + json.dumps({"text": words(60), "label": 0}) + "\n")
    assert main(["certify", "--model", str(model), "--dataset", str(data), "--n0", "10", "--n", "400",
                 "--output-dir", str(tmp_path / "c")]) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["parameters"]["rate_schedule"] == {"kind": "adaptive", "k": 2.0, "p_lb": 0.9}
    rows = [json.loads(line) for line in (tmp_path / "c" / "results.jsonl").read_text().splitlines()]
    assert [r["length"] for r in rows] == [0, 60]
    for r in rows:
        want = variable_rate_radius(r["top1_lower"], r["top2_upper"], r["length"], AdaptiveRate(k=2, p_lb=0.9))
        assert r["radius"] == want
    assert rows[1]["radius"] > max_edit_distance_radius(0.9)  # the fixed rate's cap (6 words)
    assert summary["radius_by_length"][0]["inputs"] == 1
    assert (tmp_path / "c" / "radius_by_length.png").stat().st_size > 0
    # --p-del overrides the folder's schedule (and says so)
    assert main(["certify", "--model", str(model), "--dataset", str(data), "--n0", "10", "--n", "400", "--p-del", "0.9",
                 "--output-dir", str(tmp_path / "f")]) == 0
    fixed = [json.loads(line) for line in (tmp_path / "f" / "results.jsonl").read_text().splitlines()]
    assert max(r["radius"] for r in fixed) <= max_edit_distance_radius(0.9)
    assert any("smoothing with fixed p_del=0.9" in m and "adaptive" in m for m in caplog.messages)


def test_the_length_table_shows_each_bins_most_frequent_class_so_a_constant_prediction_stands_out():
    from robusttext.runs.report import certification_markdown, summarize_certification, summarize_lengths

    # lengths 30-39: class 1 for all three predicted inputs (one abstains); 60-69: classes 0, 1, 0, 0
    rows = [(30, 1, 40, True), (31, 1, 35, False), (32, -1, -1, False), (33, 1, 40, True),
            (60, 0, 2, True), (61, 1, 1, False), (62, 0, 3, True), (63, 0, 0, True)]
    records = [{"length": n, "prediction": y, "radius": r, "correct": c, "label": 0, "n_queries": 100}
               for n, y, r, c in rows]
    lengths = summarize_lengths(records, "word")
    table = {b["lengths"]: b for b in lengths["radius_by_length"]}
    assert table["20-49"]["top_class_share"] == 1.0 and table["50-99"]["top_class_share"] == 0.75
    assert summarize_lengths([{**records[2], "length": 5}], "word")["radius_by_length"][0]["top_class_share"] is None
    report = certification_markdown({**summarize_certification(records, {}, [0, 1]), **lengths}, "word")
    # radii (wrong or abstained = -1): 40, -1, -1, 40 -> mean and median 19.5, 2 of 4 certified, class 1 for 3 of 3
    assert "| 20-49 | 4 | 19.50 | 19.5 | 50.0% | 100.0% |" in report
    assert "| 50-99 | 4 | 1.00 | 1 | 75.0% | 75.0% |" in report


def test_training_records_the_schedule_and_refuses_to_certify_with_a_training_only_one(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"text": words(3 + i % 7), "label": i % 2}) + "\n" for i in range(16)))
    out = tmp_path / "m"
    assert main(["train", "--model", tiny_model_dir, "--dataset", str(data), "--split", "train", "--max_steps", "1",
                 "--rate-schedule", "adaptive:k=3,p_lb=0.8", "--save_strategy", "no", "--output_dir", str(out)]) == 0
    assert json.loads((out / "rate_schedule.json").read_text()) == {"kind": "adaptive", "k": 3.0, "p_lb": 0.8}
    capsys.readouterr()
    assert main(["certify", "--model", str(out), "--dataset", str(data), "--rate-schedule", "uniform:0.7,0.99",
                 "--output-dir", str(tmp_path / "c")]) == 2
    assert "training only" in capsys.readouterr().err


def test_golden_section_finds_the_maximum_of_a_unimodal_function():
    best, seen = golden_section(lambda v: -(math.log(v) - math.log(7.0)) ** 2, 0.5, 50.0, 12)
    assert abs(best - 7.0) / 7.0 < 0.05
    assert len(seen) <= 14


def test_a_floored_bin_is_searched_from_p_099_at_its_shortest_input_to_p_lb_at_its_longest():
    # first bin of articles 120-240 units long (edge 250): v = 1.2 is p = 0.99 at 120 units, v = 24 is
    # p = 0.9 at 240; the lower edge (1 unit) would start the search at v = 0.01, which keeps nothing
    assert bin_range((250, 350), 0, 0.9, longest=240, shortest=120) == pytest.approx((1.2, 24.0))
    # an inner bin whose inputs start above its edge: the same rule
    assert bin_range((250, 350), 1, 0.9, longest=340, shortest=300) == pytest.approx((3.0, 34.0))
    # no inputs seen: the lower edge for both ends
    assert bin_range((250, 350), 1, 0.9) == pytest.approx((2.5, 25.0))
    # no floor: p in [0.01, 0.99] at the bin's lower edge, whatever the inputs
    assert bin_range((250, 350), 1, 0.0, longest=340, shortest=300) == pytest.approx((2.5, 247.5))


def test_reach_is_the_largest_radius_with_accuracy_at_the_threshold():
    recs = [{"radius": r, "correct": c} for r, c in ((5, True), (3, True), (1, True), (2, False), (-1, False))]
    # certified accuracy at r = 0..5: 3/5, 3/5, 2/5, 2/5, 1/5, 1/5
    assert reach(recs, 0.6) == pytest.approx(1 + 0.3)
    assert reach(recs, 0.4) == pytest.approx(3 + 0.2)
    assert reach(recs, 0.8) == -1.0


def test_mean_radius_and_accuracy_at_zero_count_wrong_and_abstained_inputs_as_minus_one():
    # radii 5, 3, 0 correct; 2 wrong; abstained (-1) counted wrong whatever "correct" says
    recs = [{"radius": r, "correct": c} for r, c in ((5, True), (3, True), (0, True), (2, False), (-1, True))]
    assert mean_radius(recs) == pytest.approx((5 + 3 + 0 - 1 - 1) / 5)
    assert accuracy_at_zero(recs) == pytest.approx(3 / 5)


def test_the_guard_ranks_a_value_that_loses_accuracy_below_every_admissible_one():
    fixed = [{"radius": r, "correct": True} for r in (2, 2, 3, 3)] + [{"radius": 1, "correct": False}]  # acc0 4/5
    greedy = [{"radius": 40, "correct": True}] * 3 + [{"radius": -1, "correct": False}] * 2  # acc0 3/5, huge radii
    for objective in ("reach", "mean-radius"):
        unguarded = bin_score(greedy, objective, 0.5)
        assert unguarded > bin_score(fixed, objective, 0.5)  # without the guard, near-total deletion wins
        floor = accuracy_at_zero(fixed) - 0.1  # max_drop 0.1: 3/5 is 0.2 below 4/5
        assert bin_score(greedy, objective, 0.5, floor) == pytest.approx(-2.0 - 0.1)
        assert bin_score(fixed, objective, 0.5, floor) == bin_score(fixed, objective, 0.5) >= -1
        # a drop within max_drop is admissible and keeps its objective
        assert bin_score(greedy, objective, 0.5, accuracy_at_zero(fixed) - 0.2) == unguarded


def _recs(rows):  # two classes: a wrong prediction is the other class
    return [{"radius": r, "correct": c, "label": y, "prediction": y if c else 1 - y} for r, c, y in rows]


def test_balanced_accuracy_at_zero_is_the_mean_over_classes():
    # class 1: 3 of 4 certified correct (one abstained); class 0: 1 of 2
    recs = _recs([(2, True, 1), (0, True, 1), (5, True, 1), (-1, True, 1), (1, True, 0), (3, False, 0)])
    assert accuracy_at_zero(recs) == pytest.approx(4 / 6)
    assert accuracy_at_zero(recs, balanced=True) == pytest.approx((3 / 4 + 1 / 2) / 2)
    # one class for every input scores 1 / (number of classes) balanced, its class share plain
    constant = _recs([(40, y == 1, y) for y in (1, 1, 1, 0)])
    assert accuracy_at_zero(constant) == pytest.approx(0.75) and accuracy_at_zero(constant, balanced=True) == 0.5


# a bin where the fixed rate is barely above chance (6 of 10 right, balanced (4/6 + 2/4) / 2 = 0.583) and a value
# that predicts class 1 for every input (6 of 10 right, balanced 0.5) with radius 40
_NEAR_CHANCE = _recs([(1, True, 1)] * 4 + [(1, False, 1)] * 2 + [(1, True, 0)] * 2 + [(1, False, 0)] * 2)
_CONSTANT = _recs([(40, True, 1)] * 6 + [(40, False, 0)] * 4)


def test_the_balanced_guard_refuses_a_constant_prediction_that_the_plain_guard_admits():
    for balanced in (False, True):
        floor = accuracy_at_zero(_NEAR_CHANCE, balanced) - 0.05
        score = bin_score(_CONSTANT, "mean-radius", 0.5, floor, balanced)
        if balanced:
            assert score == pytest.approx(-2.0 - (floor - 0.5))  # 0.583 - 0.05 - 0.5 short of the floor
        else:  # no plain accuracy lost: admitted, and its radius beats the fixed rate's
            assert score == pytest.approx((6 * 40 - 4) / 10)
            assert score > bin_score(_NEAR_CHANCE, "mean-radius", 0.5, floor)


def test_the_pooled_choice_charges_a_constant_prediction_its_balanced_drop():
    from robusttext.evaluation.tuning import _choose_pooled

    for balanced, expected in ((False, 1.0), (True, 10.0)):  # 1.0: the constant value, 10.0: the fixed rate
        report = [{"bin": 0, "fixed_rate_accuracy_at_0": accuracy_at_zero(_NEAR_CHANCE, balanced)}]
        values = [10.0]
        _choose_pooled(report, {0: {10.0: _NEAR_CHANCE, 1.0: _CONSTANT}}, {0: 1.0}, values, 0.05, balanced)
        assert values == [expected] and report[0]["value"] == expected


def test_the_balanced_guard_refuses_one_class_for_every_input_whatever_the_budget():
    from robusttext.evaluation.tuning import _choose_pooled, one_class, refused_one_class

    assert one_class(_CONSTANT) and not one_class(_NEAR_CHANCE)
    assert one_class(_CONSTANT + _recs([(-1, False, 0)]))  # an abstention is no class
    assert not one_class(_recs([(3, True, 1), (2, True, 1)]))  # one label: nothing to tell apart
    assert refused_one_class({10.0: _NEAR_CHANCE, 1.0: _CONSTANT}, 10.0) == {1.0}
    assert refused_one_class({10.0: _CONSTANT, 1.0: _CONSTANT}, 10.0) == set()  # the fixed rate is no better
    # a budget of 0.2 balanced points admits the constant value's drop (0.083); balanced, it is refused anyway
    for balanced, expected in ((False, 1.0), (True, 10.0)):
        report = [{"bin": 0, "fixed_value": 10.0, "fixed_rate_accuracy_at_0": accuracy_at_zero(_NEAR_CHANCE, balanced)}]
        values = [10.0]
        _choose_pooled(report, {0: {10.0: _NEAR_CHANCE, 1.0: _CONSTANT}}, {0: 1.0}, values, 0.2, balanced)
        assert values == [expected]


def test_pooled_choice_is_the_best_combination_within_the_budget_by_enumeration():
    import itertools
    import random

    rng = random.Random(0)
    for case in range(300):
        bins = rng.randint(1, 4)
        # each bin: its fixed rate (loss 0) and 1-5 other values with losses in units of 1/20 (some negative)
        candidates = [[(0.0, 0.0, rng.uniform(-1, 2))] + [(float(v), rng.randint(-2, 6) / 20, rng.uniform(-1, 8))
                                                          for v in range(1, rng.randint(2, 6))] for _ in range(bins)]
        budget = rng.choice([0.0, 0.05, 0.1, 0.2])
        best = max((sum(c[2] for c in combo), -sum(c[1] for c in combo)) for combo in itertools.product(*candidates)
                   if sum(c[1] for c in combo) <= budget + 1e-12)
        values, loss, gain = pooled_choice(candidates, budget)
        assert (gain, -loss) == pytest.approx(best), case
        picked = [next(c for c in cands if c[0] == v) for cands, v in zip(candidates, values)]
        assert sum(c[1] for c in picked) == pytest.approx(loss) and sum(c[2] for c in picked) == pytest.approx(gain)


def test_the_pooled_guard_spends_the_drop_where_a_per_bin_guard_cannot():
    # two bins of equal weight, max_drop 0.03 over the split: bin 0 can buy 3 units of mean radius for a drop of
    # 0.05 in that bin (0.025 of the split); a per-bin guard at 0.03 refuses it, the pooled one takes it
    options = [[(10.0, 0.0, 0.5), (4.0, 0.5 * 0.05, 0.5 * 4.0)], [(20.0, 0.0, 0.5 * 2.0), (8.0, 0.5 * 0.04, 0.5 * 2.5)]]
    values, loss, gain = pooled_choice(options, 0.03)
    assert values == (4.0, 20.0) and loss == pytest.approx(0.025) and gain == pytest.approx(3.0)
    with pytest.raises(ValueError, match="fixed rate"):
        pooled_choice([[(1.0, 0.1, 5.0)]], 0.03)


def test_tune_rates_refuses_test_data_and_writes_a_valid_binned_schedule(tiny_model_dir, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    data = tmp_path / "v.jsonl"
    data.write_text("".join(json.dumps({"text": words(2 + 3 * i), "label": i % 2}) + "\n" for i in range(8)))
    product = ["tune-rates", "--model", str(model), "--dataset", str(data), "--edges", "5|12", "--n", "60",
               "--n0", "10", "--max-per-bin", "3", "--p-del", "0.9"]
    assert main([*product, "--split", "test"]) == 2
    assert "never on test data" in capsys.readouterr().err
    for bad in ("--guard", "--objective", "--max-drop", "--iterations"):  # TuneConfig's, set by experiments/tune_rates.py
        assert main([*product, "--split", "validation", bad, "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"unknown option {bad}" in err[0], err
    tune = load_experiment("tune_rates").main  # the product command's options plus every TuneConfig field
    common = [*product[1:], "--iterations", "2"]
    assert tune([*common, "--split", "test"]) == 2
    assert "never on test data" in capsys.readouterr().err
    for bad in (["--max-drop", "1.5"], ["--max-drop", "0.1", "--p-lb", "0"]):
        assert tune([*common, "--split", "validation", *bad]) == 2
        assert "--max-drop must be in [0, 1) and needs --p-lb > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # argparse's choices: exit 2, the option named
        tune([*common, "--split", "validation", "--objective", "area"])
    assert stop.value.code == 2 and "--objective" in capsys.readouterr().err
    for bad in (["--guard", "pooled"], ["--guard", "pooled", "--max-drop", "0.1"]):  # no drop; reach is no sum
        assert tune([*common, "--split", "validation", *bad]) == 2
        assert "--guard pooled needs --max-drop" in capsys.readouterr().err
    assert tune([*common, "--split", "validation", "--objective", "mean-radius", "--max-drop", "0.1",
                 "--guard", "pooled"]) == 0
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    # the progress bar moves per certified input: 7 inputs (at most 3 a bin), at most 2 + 2 values each
    counts = [int(m.group(1)) for line in bar if (m := re.search(r"^tune-rates: .*\| *(\d+)/\d+ \[", line))]
    assert counts and counts == sorted(counts) and 7 < counts[-1] <= 28 and len(set(counts)) > 7, bar
    pooled = json.loads((model / "tune_rates.json").read_text())
    weights = {int(b): w for b, w in pooled["weights"].items()}
    assert sum(weights.values()) == pytest.approx(1.0) and pooled["guard"] == "pooled"
    drop = sum(weights[b["bin"]] * (b["fixed_rate_accuracy_at_0"] - b["accuracy_at_0"]) for b in pooled["bins"] if b["inputs"])
    assert drop == pytest.approx(pooled["pooled_drop"]) and drop <= 0.1 + 1e-12
    assert [b["value"] for b in pooled["bins"]] == pytest.approx(pooled["schedule"]["values"])
    assert tune([*common, "--split", "validation", "--objective", "mean-radius", "--max-drop", "0",
                 "--guard-metric", "balanced"]) == 0
    balanced = json.loads((model / "tune_rates.json").read_text())
    assert balanced["guard_metric"] == "balanced"
    for b in balanced["bins"]:
        assert b["accuracy_at_0"] >= b["fixed_rate_accuracy_at_0"], b
    with pytest.raises(SystemExit) as stop:
        tune([*common, "--split", "validation", "--guard-metric", "macro"])
    assert stop.value.code == 2 and "--guard_metric" in capsys.readouterr().err
    assert tune([*common, "--split", "validation", "--objective", "mean-radius", "--max-drop", "0"]) == 0
    guarded = json.loads((model / "tune_rates.json").read_text())
    assert guarded["objective"] == "mean-radius" and guarded["max_drop"] == 0.0
    for b in guarded["bins"]:  # each chosen value keeps at least the fixed rate's accuracy at radius 0
        assert b["accuracy_at_0"] >= b["fixed_rate_accuracy_at_0"], b
    assert main([*product, "--split", "validation"]) == 0  # the product command: TuneConfig's defaults
    sched = json.loads((model / "rate_schedule.json").read_text())
    rate = BinnedRate(tuple(sched["edges"]), tuple(sched["values"]), sched["p_lb"])  # validates every bin's value
    assert rate.edges == (5, 12) and rate.p_lb == 0.9  # the default floor
    result = json.loads((model / "tune_rates.json").read_text())
    assert [b["bin"] for b in result["bins"]] == [0, 1, 2]
    assert FixedRate(0.9) != rate
    # every bin tried the fixed rate 0.9 over all its validation lengths: v = 0.1 * its longest input
    bin_lengths = {0: [2], 1: [5, 8, 11], 2: [14, 17, 20, 23]}
    for b in result["bins"]:
        fixed_end = max(0.1 * max(bin_lengths[b["bin"]]), 0.02 * (1, 5, 12)[b["bin"]])
        assert any(v == pytest.approx(fixed_end) for v, _ in b["evaluations"]), b
        assert all(max(0.9, 1 - fixed_end / n) == pytest.approx(0.9) for n in bin_lengths[b["bin"]])


def test_binned_floor_gives_the_fixed_rate_for_large_values_and_1_minus_v_over_L_above_it():
    rate = BinnedRate((10, 40), (0.5, 2.0, 13.0), p_lb=0.9)
    assert [rate(n) for n in (1, 5, 9)] == [0.9, 0.9, 1 - 0.5 / 9]  # 1 - v/L above the floor only at L = 9
    assert [rate(n) for n in (10, 20, 39)] == [0.9, 0.9, 1 - 2 / 39]
    assert rate(130) == 0.9 and rate(260) == pytest.approx(0.95)
    with pytest.raises(ValueError, match="values\\[0\\]=2.0 gives p = 1 - v/L outside"):
        BinnedRate((10, 40), (2.0, 2.0, 13.0))  # without the floor, bin 0 holds L = 1: p = 1 - 2 < 0

