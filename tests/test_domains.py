"""Domain-balanced sampling, the domain collator, per-domain folders, the DG table and the
leave-one-domain-out sweep (tiny model, tiny data; the Amazon folder when the shared data is there)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from robusttext.domains import (
    DOMAIN_KEY,
    DomainBalancedSampler,
    DomainCollator,
    check_heldout,
    dg_markdown,
    dg_summary,
    parse_algorithms,
    select_step,
    split_domains,
)


# ----------------------------------------------------------------- sampler
def test_sampler_batches_hold_every_domain_in_fixed_shares():
    ids = [0] * 5 + [1] * 9 + [2] * 4 + [-1] * 3
    rng = np.random.default_rng(0)
    ids = list(rng.permutation(ids))
    s = DomainBalancedSampler(ids, batch_size=7, seed=3)
    assert s.shares == [3, 2, 2] and s.num_batches == 5  # ceil(9 / 2) batches cover the largest domain
    order = list(iter(s))
    assert len(order) == len(s) == 35
    for b in range(5):
        batch = order[b * 7 : (b + 1) * 7]
        assert Counter(ids[i] for i in batch) == {0: 3, 1: 2, 2: 2}
    assert {i for i in order if ids[i] == 1} == {i for i, d in enumerate(ids) if d == 1}  # every one drawn
    assert all(ids[i] >= 0 for i in order)
    assert order == list(iter(s))  # same epoch, same order
    s.set_epoch(1)
    assert order != list(iter(s))


def test_sampler_rejects_tiny_batches():
    with pytest.raises(ValueError, match="smaller than the number of domains"):
        DomainBalancedSampler([0, 1, 2], batch_size=2)
    with pytest.raises(ValueError, match="no example has a known domain"):
        DomainBalancedSampler([-1, -1], batch_size=2)


# ----------------------------------------------------------------- collator
def test_domain_collator_adds_ids_and_strips_column():
    seen = []

    def base(features):
        seen.append(features)
        return {"n": len(features)}

    col = DomainCollator(base, ["books", "dvd"], "source")
    out = col([{"text": "x", "source": "dvd"}, {"text": "y", "source": "kitchen"}, {"text": "z", "source": "books"}])
    assert out[DOMAIN_KEY].tolist() == [1, -1, 0] and out["n"] == 3
    assert all("source" not in f for f in seen[0])
    assert DomainCollator(col, ["a"]).collator is base  # wrapping twice does not nest
    with pytest.raises(KeyError, match="no domain column 'source'"):
        col([{"text": "x"}])


# ----------------------------------------------------------------- data: a folder of per-domain files
def test_folder_of_domain_files_loads_with_domain_column(tmp_path):
    from robusttext.data import load_text_dataset

    for name, label in (("apples", "pos"), ("pears", "neg")):
        (tmp_path / f"{name}.jsonl").write_text(
            "\n".join(json.dumps({"text": f"{name} {i}", "label": label}) for i in range(3)) + "\n"
        )
    data = load_text_dataset(str(tmp_path), "all", domain_column="domain")
    assert data.dataset["domain"] == ["apples"] * 3 + ["pears"] * 3
    assert data.label_names == ["neg", "pos"] and data.labels == [1, 1, 1, 0, 0, 0]
    assert len(load_text_dataset(str(tmp_path), "train")) == 6
    with pytest.raises(ValueError, match="--split all"):
        load_text_dataset(str(tmp_path), "test")
    with pytest.raises(ValueError, match="--domain-column 'site'"):
        load_text_dataset(str(tmp_path), "all", domain_column="site")


def test_amazon_multidomain_folder(data_dir):
    from robusttext.data import load_text_dataset

    data = load_text_dataset(str(data_dir / "amazon_multidomain"), "all", domain_column="domain")
    assert Counter(data.dataset["domain"]) == {"books": 2000, "dvd": 2000, "electronics": 2000, "kitchen": 2000}
    assert Counter(data.labels) == {0: 4000, 1: 4000}


# ----------------------------------------------------------------- protocol pieces
def test_split_domains_is_disjoint_and_capped():
    import datasets

    ds = datasets.Dataset.from_dict({"domain": ["a"] * 20 + ["b"] * 7})
    parts = split_domains(ds, 0.2, max_per_domain=10)
    assert len(parts["a"]["all"]) == 20 and len(parts["a"]["val"]) == 2 and len(parts["a"]["train"]) == 8
    assert len(parts["b"]["all"]) == 7 and len(parts["b"]["val"]) == 1 and len(parts["b"]["train"]) == 6
    for p in parts.values():
        assert not set(p["val"]) & set(p["train"])
        assert p["val"] + p["train"] == p["all"][: len(p["val"]) + len(p["train"])]  # the capped prefix
        assert sorted(p["all"]) == sorted(set(p["all"]))
    assert all(ds[i]["domain"] == "a" for i in parts["a"]["all"])
    assert parts == split_domains(ds, 0.2, max_per_domain=10)  # fixed data seed
    with pytest.raises(ValueError, match="--val-fraction"):
        split_domains(ds, 1.0)


def test_select_step_uses_validation_accuracy():
    trace = [
        {"step": 5, "val_accuracy": 0.7, "test_accuracy": 0.9},
        {"step": 10, "val_accuracy": 0.8, "test_accuracy": 0.6},
        {"step": 15, "val_accuracy": 0.8, "test_accuracy": 0.5},
    ]
    assert select_step(trace)["step"] == 10  # best validation, earliest on ties; test accuracy never looked at


def test_dg_summary_and_markdown_table():
    recs = [
        {"algorithm": "erm", "heldout": "a", "seed": 0, "test_accuracy": 0.50},
        {"algorithm": "erm", "heldout": "a", "seed": 1, "test_accuracy": 0.70},
        {"algorithm": "erm", "heldout": "b", "seed": 0, "test_accuracy": 0.80},
        {"algorithm": "erm", "heldout": "b", "seed": 1, "test_accuracy": 0.80},
        {"algorithm": "fishr", "heldout": "a", "seed": 0, "test_accuracy": 0.60},
    ]
    s = dg_summary(recs, ["a", "b"], ["erm", "fishr"])
    a = s["table"]["erm"]["a"]
    assert a["mean"] == pytest.approx(0.6) and a["std"] == pytest.approx(np.sqrt(0.02)) and a["n"] == 2
    avg = s["table"]["erm"]["avg"]  # per-seed averages 0.65 and 0.75
    assert avg["mean"] == pytest.approx(0.7) and avg["std"] == pytest.approx(np.sqrt(0.005))
    assert "avg" not in s["table"]["fishr"]  # fishr has no run for b
    md = dg_markdown(s, {"model": "m", "dataset": "d", "val_fraction": 0.2, "seeds": [0, 1]})
    assert "| algorithm | a | b | avg |" in md
    assert "| ERM | 60.0 ± 14.1 | 80.0 ± 0.0 | 70.0 ± 7.1 |" in md
    assert "| FISHR | 60.0 | - | - |" in md


def test_protocol_errors():
    with pytest.raises(ValueError, match="--test-domains \\['toys'\\] are not domains"):
        check_heldout(["a", "b", "c"], ["toys"])
    with pytest.raises(ValueError, match="at least 3 domains"):
        check_heldout(["a", "b"], None)
    with pytest.raises(ValueError, match="--algorithms"):
        parse_algorithms("erm,irm")
    assert parse_algorithms(" ERM, fishr ") == ["erm", "fishr"]


# ----------------------------------------------------------------- the sweep, end to end (tiny)
def _domain_folder(path, domains=("a", "b", "c"), n=12):
    path.mkdir()
    words = {0: ["bad", "awful", "dull"], 1: ["good", "great", "fun"]}
    for j, d in enumerate(domains):
        lines = [json.dumps({"text": f"{d} {words[i % 2][(i + j) % 3]} thing", "label": i % 2, "domain": d}) for i in range(n)]
        (path / f"{d}.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_leave_one_domain_out_sweep_writes_table_and_resumes(tiny_model_dir, tmp_path):
    from robusttext.cli import main

    data = _domain_folder(tmp_path / "data")
    out = tmp_path / "dg"
    argv = ["dg", "--model", tiny_model_dir, "--dataset", str(data), "--test-domains", "a", "c",
            "--algorithms", "erm,fishr", "--max-steps", "2", "--eval-steps", "1", "--per-device-train-batch-size", "4",
            "--use-cpu", "--report-to", "none", "--output-dir", str(out), "--max-length", "16", "--disable-tqdm", "true",
            "--max-per-domain", "10", "--max-test-examples", "11"]
    assert main(argv) == 0
    res = json.loads((out / "dg_results.json").read_text())
    assert [(r["algorithm"], r["heldout"]) for r in res["runs"]] == [("erm", "a"), ("fishr", "a"), ("erm", "c"), ("fishr", "c")]
    for r in res["runs"]:
        assert r["train_domains"] == sorted({"a", "b", "c"} - {r["heldout"]})
        assert (r["n_train"], r["n_val"], r["n_test"]) == (16, 4, 11)  # 2 domains x (8 + 2); test not capped by 10
        assert [t["step"] for t in r["trace"]] == [1, 2]
        best = max(r["trace"], key=lambda t: (t["val_accuracy"], -t["step"]))
        assert r["test_accuracy"] == best["test_accuracy"]
    report = (out / "dg_report.md").read_text()
    assert "| algorithm | a | c | avg |" in report and "| FISHR |" in report
    assert main(argv) == 0  # resume: nothing left to train, same records
    again = json.loads((out / "dg_results.json").read_text())
    assert [r["seconds"] for r in again["runs"]] == [r["seconds"] for r in res["runs"]]
    assert main([*argv, "--fishr-lambda", "5"]) == 2  # another run's folder is refused


def test_sweep_bad_input(tiny_model_dir, tmp_path, capsys):
    from robusttext.cli import main

    data = _domain_folder(tmp_path / "data")
    base = ["dg", "--model", tiny_model_dir, "--dataset", str(data), "--output-dir", str(tmp_path / "o"), "--report-to", "none"]
    assert main([*base, "--test-domains", "books"]) == 2
    assert "--test-domains ['books'] are not domains of the data" in capsys.readouterr().err
    assert main([*base, "--domain-column", "site"]) == 2
    assert "--domain-column 'site'" in capsys.readouterr().err
    two = _domain_folder(tmp_path / "two", ("a", "b"))
    assert main([*base[:4], str(two), *base[5:]]) == 2
    assert "at least 3 domains" in capsys.readouterr().err
    assert main([*base, "--fishr-lambda", "-2"]) == 2
    assert "--fishr-lambda must be a finite number >= 0" in capsys.readouterr().err
