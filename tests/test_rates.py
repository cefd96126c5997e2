"""Deletion-rate schedules (robusttext.certificate.rates): values against closed forms, every command-line spelling,
the JSON round trip (``rate_schedule.json`` as the code writes it), and bad inputs with errors naming the
field (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robusttext.certificate.rates import (
    FILENAME,
    AdaptiveRate,
    BinnedRate,
    CallableRate,
    FixedRate,
    UniformKeep,
    UniformRate,
    as_schedule,
    from_dict,
    load,
    parse_rate_schedule,
)

LENGTHS = [0, 1, 2, 3, 5, 13, 19, 20, 21, 49, 50, 99, 100, 101, 130, 131, 200, 1000, 10**6]


# ---------------------------------------------------------------------------------------------
# Values against closed forms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_fixed_rate_is_the_same_at_every_length(p):
    s = FixedRate(p)
    assert all(s(n) == p for n in LENGTHS)
    assert s.constant() == p and as_schedule(p) == s


@pytest.mark.parametrize(
    "k,p_lb,expected",
    [
        # AdaptDel's setting: short inputs (L <= k / (1 - p_lb) = 130) at the floor, longer ones keep ~k units
        (13, 0.9, {0: 0.9, 1: 0.9, 20: 0.9, 130: 0.9, 131: 1 - 13 / 131, 200: 1 - 13 / 200, 1000: 0.987}),
        (2, 0.3, {0: 0.3, 1: 0.3, 2: 0.3, 3: 1 - 2 / 3, 4: 0.5, 10: 0.8, 10**6: 1 - 2e-6}),
        (0.5, 0.6, {0: 0.6, 1: 0.6, 2: 0.75, 5: 0.9}),
    ],
)
def test_adaptive_rate_closed_form_at_short_and_long_lengths(k, p_lb, expected):
    s = AdaptiveRate(k=k, p_lb=p_lb)
    for n, want in expected.items():
        assert s(n) == pytest.approx(want, rel=1e-12), n
    for n in LENGTHS:
        assert s(n) == pytest.approx(p_lb if n == 0 else max(p_lb, 1 - k / n), rel=1e-15)
        assert p_lb <= s(n) < 1
    assert s.constant() is None


def test_binned_rate_per_bin():
    s = BinnedRate(edges=(20, 50, 100), values=(0.5, 4, 8, 13))
    want_bin = {0: 0, 1: 0, 19: 0, 20: 1, 21: 1, 49: 1, 50: 2, 99: 2, 100: 3, 101: 3, 10**6: 3}
    for n, b in want_bin.items():
        assert s.bin_of(n) == b, n
        v = s.values[b]
        assert s(n) == pytest.approx(1 - v / max(n, 1), rel=1e-15), n
    assert s(0) == s(1) == 0.5  # the empty input gets bin 0's rate at L = 1
    assert s(20) == pytest.approx(0.8) and s(50) == pytest.approx(0.84) and s(100) == pytest.approx(0.87)
    # every length of every bin gets a rate in (0, 1)
    assert all(0 < s(n) < 1 for n in range(0, 500))


def test_callable_rate_and_uniform_rate():
    s = CallableRate(lambda n: 0.5 + 0.4 * (n % 2), name="odd-even")
    assert s(2) == 0.5 and s(3) == pytest.approx(0.9)
    u = UniformRate(0.7, 0.99)
    rng = np.random.default_rng(0)
    draws = np.array([u.sample(10, rng) for _ in range(2000)])
    assert 0.7 <= draws.min() and draws.max() <= 0.99 and abs(draws.mean() - 0.845) < 0.01
    with pytest.raises(ValueError, match="training-only"):
        u(10)
    # deterministic schedules sample their value without touching the random stream
    rng = np.random.default_rng(1)
    state = rng.bit_generator.state
    assert AdaptiveRate(k=2, p_lb=0.3).sample(10, rng) == 0.8
    assert rng.bit_generator.state == state


def test_uniform_keep_draws_the_units_kept():
    s = UniformKeep(5, 25, 0.9)
    rng = np.random.default_rng(0)
    # up to low / (1 - p_lb) = 50 units every draw is p_lb, as for a fixed-rate model
    assert {s.sample(n, rng) for n in (0, 1, 30, 50) for _ in range(50)} == {0.9}
    # at 500 units, 1 - p is k / 500 with k ~ U[5, 25]: p in [0.95, 0.99], mean units kept 15
    kept = np.array([500 * (1 - s.sample(500, rng)) for _ in range(4000)])
    assert 5 - 1e-9 <= kept.min() and kept.max() <= 25 + 1e-9 and abs(kept.mean() - 15) < 0.3
    # at 100 units: p = max(0.9, 1 - k/100), so draws with k >= 10 (3/4 of them) give 0.9
    at100 = np.array([s.sample(100, rng) for _ in range(4000)])
    assert abs((at100 == 0.9).mean() - 0.75) < 0.03 and at100.max() <= 0.95 + 1e-12
    with pytest.raises(ValueError, match="training-only"):
        s(100)
    assert not s.certifiable


def test_schedules_are_hashable_values():
    assert AdaptiveRate(k=13, p_lb=0.9) == AdaptiveRate(k=13.0, p_lb=0.9)
    assert hash(AdaptiveRate(k=13, p_lb=0.9)) == hash(AdaptiveRate(k=13.0, p_lb=0.9))
    assert hash(BinnedRate([20, 50], [0.5, 4, 8])) == hash(BinnedRate((20, 50), (0.5, 4.0, 8.0)))
    assert len({FixedRate(0.9), FixedRate(0.9), AdaptiveRate(1, 0.9)}) == 2


# ---------------------------------------------------------------------------------------------
# Command-line spellings and the JSON round trip
# ---------------------------------------------------------------------------------------------

SPELLINGS = [
    ("0.9", FixedRate(0.9)),
    ("  0.9 ", FixedRate(0.9)),
    ("0", FixedRate(0.0)),
    ("fixed:0.9", FixedRate(0.9)),
    ("FIXED: 0.9", FixedRate(0.9)),
    ("adaptive:k=13,p_lb=0.9", AdaptiveRate(13, 0.9)),
    ("adaptive: k = 13 , p_lb = 0.9", AdaptiveRate(13, 0.9)),
    ("adaptive:p_lb=0.9,k=13", AdaptiveRate(13, 0.9)),
    ("Adaptive:k=2.5,p_lb=1e-1", AdaptiveRate(2.5, 0.1)),
    ("binned:edges=20|50|100,values=0.5|4|8|13", BinnedRate((20, 50, 100), (0.5, 4, 8, 13))),
    ("binned:values=0.5|4,edges=20", BinnedRate((20,), (0.5, 4))),
    ("binned: edges = 3 , values = 0.2 | 1.5", BinnedRate((3,), (0.2, 1.5))),
    ("uniform:0.7,0.99", UniformRate(0.7, 0.99)),
    ("uniform: 0, 0.5", UniformRate(0.0, 0.5)),
    ("uniform_keep:low=5,high=25,p_lb=0.9", UniformKeep(5, 25, 0.9)),
    ("uniform_keep: p_lb = 0.5, high = 3, low = 1", UniformKeep(1, 3, 0.5)),
]


@pytest.mark.parametrize("text,want", SPELLINGS, ids=[t for t, _ in SPELLINGS])
def test_every_accepted_spelling_parses(text, want):
    got = parse_rate_schedule(text)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("schedule", sorted({w for _, w in SPELLINGS}, key=repr), ids=repr)
def test_round_trip_through_dict_json_file_and_folder(schedule, tmp_path):
    d = schedule.to_dict()
    assert d["kind"] == schedule.kind
    assert from_dict(d) == schedule
    assert from_dict(json.loads(json.dumps(d))) == schedule
    path = schedule.save(tmp_path)
    assert path == tmp_path / FILENAME == tmp_path / "rate_schedule.json"
    assert json.loads(path.read_text(encoding="utf-8")) == d  # what the code writes is the to_dict form
    assert load(tmp_path) == schedule
    assert parse_rate_schedule(str(tmp_path)) == schedule  # a model folder
    assert parse_rate_schedule(str(path)) == schedule  # the JSON file itself
    # the saved form parses back as the same schedule at every length (deterministic kinds)
    if schedule.certifiable:
        assert all(load(tmp_path)(n) == schedule(n) for n in LENGTHS)


def test_rate_schedule_json_format_as_written():
    """The exact files the code writes (these are what model folders carry)."""
    assert FixedRate(0.9).to_dict() == {"kind": "fixed", "p": 0.9}
    assert AdaptiveRate(13, 0.9).to_dict() == {"kind": "adaptive", "k": 13.0, "p_lb": 0.9}
    assert BinnedRate((20, 50), (0.5, 4, 8)).to_dict() == {"kind": "binned", "edges": [20, 50], "values": [0.5, 4.0, 8.0]}
    assert UniformRate(0.7, 0.99).to_dict() == {"kind": "uniform", "low": 0.7, "high": 0.99}
    assert UniformKeep(5, 25, 0.9).to_dict() == {"kind": "uniform_keep", "low": 5.0, "high": 25.0, "p_lb": 0.9}


def test_folder_without_a_schedule(tmp_path):
    assert load(tmp_path) is None
    with pytest.raises(ValueError, match="has no rate_schedule.json"):
        parse_rate_schedule(str(tmp_path))


def test_callable_schedule_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="cannot be saved as JSON"):
        CallableRate(lambda n: 0.5, name="mine").save(tmp_path)


# ---------------------------------------------------------------------------------------------
# Bad inputs: each a ValueError naming the field
# ---------------------------------------------------------------------------------------------

BAD_SPECS = [
    # k <= 0 (and not a number / not finite)
    ("adaptive:k=0,p_lb=0.9", r"k must be a number > 0"),
    ("adaptive:k=-3,p_lb=0.9", r"k must be a number > 0"),
    ("adaptive:k=inf,p_lb=0.9", r"k must be a number > 0"),
    ("adaptive:k=nan,p_lb=0.9", r"k must be a number > 0"),
    ("adaptive:k=abc,p_lb=0.9", r"^k in rate schedule"),
    # p_lb outside (0, 1)
    ("adaptive:k=13,p_lb=0", r"p_lb must be in \(0, 1\)"),
    ("adaptive:k=13,p_lb=1", r"p_lb must be in \(0, 1\)"),
    ("adaptive:k=13,p_lb=1.5", r"p_lb must be in \(0, 1\)"),
    ("adaptive:k=13,p_lb=-0.1", r"p_lb must be in \(0, 1\)"),
    ("adaptive:k=13,p_lb=nan", r"p_lb must be in \(0, 1\)"),
    ("adaptive:k=13", r"missing p_lb"),
    ("adaptive:p_lb=0.9", r"missing k"),
    ("adaptive:k=13,p_lb=0.9,q=1", r"expected k=\.\.\., p_lb=\.\.\., got 'q=1'"),
    # bin edges not increasing (or not integers >= 1)
    ("binned:edges=50|20,values=0.5|4|8", r"edges must be strictly increasing integers >= 1"),
    ("binned:edges=20|20,values=0.5|4|8", r"edges must be strictly increasing integers >= 1"),
    ("binned:edges=0|20,values=0.5|4|8", r"edges must be strictly increasing integers >= 1"),
    ("binned:edges=2.5,values=0.5|1", r"edges must be strictly increasing integers >= 1"),
    ("binned:edges=20|x,values=0.5|4|8", r"^edges in rate schedule"),
    ("binned:edges=20|50,values=0.5|4", r"values must have len\(edges\) \+ 1 = 3 entries"),
    # a bin value that gives p outside (0, 1) for some length of its bin
    ("binned:edges=20,values=1|4", r"values\[0\]=1\.0 gives p = 1 - v/L outside \(0, 1\) for length 1 of its bin \[1, 20\)"),
    ("binned:edges=20,values=0.5|20", r"values\[1\]=20\.0 gives p = 1 - v/L outside \(0, 1\) for length 20 of its bin \[20, inf\)"),
    ("binned:edges=20|50,values=0.5|25|8", r"values\[1\]=25\.0 .* for length 20 of its bin \[20, 50\)"),
    ("binned:edges=20,values=0|4", r"values\[0\]=0\.0 gives p"),
    ("binned:edges=20,values=-1|4", r"values\[0\]=-1\.0 gives p"),
    # fixed / uniform
    ("1.5", r"p must be in \[0, 1\)"),
    ("1", r"p must be in \[0, 1\)"),
    ("-0.1", r"p must be in \[0, 1\)"),
    ("fixed:1.0", r"p must be in \[0, 1\)"),
    ("fixed:abc", r"^p in rate schedule"),
    ("uniform:0.99,0.7", r"low must be < high"),
    ("uniform:0.7", r"uniform needs low,high"),
    ("uniform:0.7,1.0", r"high must be in \[0, 1\)"),
    ("uniform_keep:low=25,high=5,p_lb=0.9", r"low must be < high"),
    ("uniform_keep:low=0,high=5,p_lb=0.9", r"low must be a number > 0"),
    ("uniform_keep:low=1,high=5,p_lb=1", r"p_lb must be in \(0, 1\)"),
    ("uniform_keep:low=1,high=5", r"is missing p_lb"),
    # not a schedule at all
    ("", r"rate schedule is empty"),
    ("gaussian:0.5", r"not a number, a known kind"),
    ("no/such/file.json", r"not a number, a known kind"),
]


@pytest.mark.parametrize("text,message", BAD_SPECS, ids=[t or "<empty>" for t, _ in BAD_SPECS])
def test_bad_spec_is_a_clear_error_naming_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        parse_rate_schedule(text)


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", r"does not parse as JSON"),
        ("", r"does not parse as JSON"),
        ('["adaptive", 13, 0.9]', r"must be a JSON object with a 'kind'"),
        ('{"k": 13, "p_lb": 0.9}', r"kind must be one of"),
        ('{"kind": "adaptive", "k": 0, "p_lb": 0.9}', r"k must be a number > 0"),
        ('{"kind": "adaptive", "k": 13, "p_lb": 1.2}', r"p_lb must be in \(0, 1\)"),
        ('{"kind": "adaptive", "k": 13}', r"bad parameters for a adaptive rate schedule"),
        ('{"kind": "adaptive", "k": 13, "p_lb": 0.9, "extra": 1}', r"bad parameters"),
        ('{"kind": "binned", "edges": [50, 20], "values": [0.5, 4, 8]}', r"edges must be strictly increasing"),
        ('{"kind": "binned", "edges": [20], "values": [0.5, 30]}', r"values\[1\]=30\.0 gives p"),
        ('{"kind": "fixed", "p": "0.9"}', r"p must be in \[0, 1\)"),
        ('{"kind": "fixed", "p": true}', r"p must be in \[0, 1\)"),
    ],
)
def test_bad_schedule_file_is_a_clear_error_naming_the_file_and_field(tmp_path, content, message):
    path = tmp_path / FILENAME
    path.write_text(content, encoding="utf-8")
    for load_it in (lambda: load(tmp_path), lambda: parse_rate_schedule(str(path)), lambda: parse_rate_schedule(str(tmp_path))):
        with pytest.raises(ValueError, match=message) as err:
            load_it()
        assert str(path) in str(err.value)  # the file is named


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: AdaptiveRate(k=0, p_lb=0.9), r"k must be a number > 0"),
        (lambda: AdaptiveRate(k=True, p_lb=0.9), r"k must be a number > 0"),
        (lambda: AdaptiveRate(k="13", p_lb=0.9), r"k must be a number > 0"),
        (lambda: AdaptiveRate(k=13, p_lb=0.0), r"p_lb must be in \(0, 1\)"),
        (lambda: AdaptiveRate(k=13, p_lb=1.0), r"p_lb must be in \(0, 1\)"),
        (lambda: BinnedRate(edges=(), values=(0.5,)), r"edges must be strictly increasing"),
        (lambda: BinnedRate(edges=(5, 3), values=(0.5, 1, 2)), r"edges must be strictly increasing"),
        (lambda: BinnedRate(edges=("a",), values=(0.5, 1)), r"edges must be integers and values numbers"),
        (lambda: BinnedRate(edges=(5,), values=(0.5, float("nan"))), r"values\[1\]=nan gives p"),
        (lambda: BinnedRate(edges=(5,), values=(0.5, 5)), r"values\[1\]=5\.0 gives p .* need 0 < values\[1\] < 5"),
        (lambda: FixedRate(1.0), r"p must be in \[0, 1\)"),
        (lambda: FixedRate(float("nan")), r"p must be in \[0, 1\)"),
        (lambda: UniformRate(0.5, 0.5), r"low must be < high"),
        (lambda: UniformRate(-0.1, 0.5), r"low must be in \[0, 1\)"),
        (lambda: UniformKeep(1, float("inf"), 0.9), r"high must be a number > 0"),
        (lambda: CallableRate(0.5), r"fn must be callable"),
        (lambda: from_dict({"kind": "callable", "name": "x"}), r"kind must be one of"),
        (lambda: as_schedule("0.9"), r"rate must be a number in \[0, 1\) or a RateSchedule"),
    ],
)
def test_bad_constructor_arguments_name_the_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("length", [-1, 2.5, True, "3", None])
def test_bad_length_is_a_clear_error(length):
    for s in (FixedRate(0.9), AdaptiveRate(13, 0.9), BinnedRate((20,), (0.5, 4)), CallableRate(lambda n: 0.5)):
        with pytest.raises(ValueError, match="length must be an integer >= 0"):
            s(length)


def test_callable_values_outside_the_unit_interval_are_refused_when_used():
    s = CallableRate(lambda n: 1.0 if n > 3 else 0.5, name="bad-tail")
    assert s(3) == 0.5
    with pytest.raises(ValueError, match=r"'bad-tail' gave p_del=1\.0 for length 4"):
        s(4)


def test_certification_refuses_a_zero_rate_but_training_accepts_it():
    from robusttext.certificate.stats import variable_rate_radius

    assert FixedRate(0.0)(5) == 0.0
    with pytest.raises(ValueError, match=r"p_del=0\.0 at length 5; certification needs p_del in \(0, 1\)"):
        variable_rate_radius(0.9, 0.1, 5, FixedRate(0.0))
    # a plain function that is 0 next door: refused when the certificate reaches that length
    with pytest.raises(ValueError, match=r"p_del=0\.0 at length [0-9]+; certification needs p_del in \(0, 1\)"):
        variable_rate_radius(0.99, 0.01, 5, _zero_next_door)


def _zero_next_door(n: int) -> float:
    return 0.9 if n == 5 else 0.0
