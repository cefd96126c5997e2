"""Domain-balanced sampling, the domain collator, per-domain folders, the DG table and the
leave-one-domain-out sweep (tiny model, tiny data; the Amazon folder when the shared data is there)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from robusttext.dg.dg_tables import dg_markdown, dg_summary, mean_se, select_run, select_step
from robusttext.training.domain_data import (
    DOMAIN_KEY,
    DomainBalancedSampler,
    DomainCollator,
    check_heldout,
    safe_name,
    split_domains,
)
from robusttext.certificate.protocol import CertifyProtocol
from robusttext.dg.domains import run_name
from robusttext.training.hparams_registry import ALGORITHMS, default_hparams, parse_algorithms, random_hparams


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
    from robusttext.runs.data import load_text_dataset

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
    from robusttext.runs.data import load_text_dataset

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


def _run(algo, heldout, seed, accs, h=0):
    """A run record whose trace has one evaluation per (val, oracle, test) triple in ``accs``."""
    trace = [{"step": 10 * (i + 1), "val_accuracy": v, "oracle_accuracy": o, "test_accuracy": t} for i, (v, o, t) in enumerate(accs)]
    return {"algorithm": algo, "heldout": heldout, "seed": seed, "hparams_seed": h, "trace": trace}


def test_mean_se_closed_form():
    assert mean_se([0.5]) == (0.5, 0.0)
    m, se = mean_se([0.5, 0.7, 0.9])
    assert m == pytest.approx(0.7) and se == pytest.approx(0.2 / np.sqrt(3))  # sd 0.2, n 3


def test_selection_rules_pick_steps_and_trials_as_domainbed():
    a = _run("erm", "x", 0, [(0.9, 0.1, 0.30), (0.8, 0.2, 0.40)], h=0)
    b = _run("erm", "x", 0, [(0.7, 0.9, 0.50), (0.6, 0.3, 0.60)], h=1)
    val = select_run([a, b], "val")  # best validation over every trial and step: a's step 10
    assert (val["hparams_seed"], val["step"], val["test_accuracy"]) == (0, 10, 0.30)
    oracle = select_run([a, b], "oracle")  # last step of each trial, best oracle: b's step 20 (0.3 > 0.2)
    assert (oracle["hparams_seed"], oracle["step"], oracle["test_accuracy"]) == (1, 20, 0.60)
    tie = select_run([_run("erm", "x", 0, [(0.5, 0.5, 0.1)], h=2), _run("erm", "x", 0, [(0.5, 0.5, 0.2)], h=1)], "val")
    assert tie["hparams_seed"] == 1  # ties: the lowest trial
    with pytest.raises(ValueError, match="'val' or 'oracle'"):
        select_run([a], "test")


def test_dg_summary_and_markdown_tables():
    recs = [
        _run("erm", "a", 0, [(0.9, 0.0, 0.50)]), _run("erm", "a", 1, [(0.9, 0.0, 0.70)]),
        _run("erm", "b", 0, [(0.9, 0.0, 0.80)]), _run("erm", "b", 1, [(0.9, 0.0, 0.80)]),
        _run("fishr", "a", 0, [(0.9, 0.0, 0.60)]),
    ]
    s = dg_summary(recs, ["a", "b"], ["erm", "fishr"])
    t = s["tables"]["training-domain validation"]
    assert t["erm"]["a"]["mean"] == pytest.approx(0.6) and t["erm"]["a"]["se"] == pytest.approx(0.1) and t["erm"]["a"]["n"] == 2
    avg = t["erm"]["avg"]  # per-seed averages 0.65 and 0.75: mean 0.7, s.e. 0.05
    assert avg["mean"] == pytest.approx(0.7) and avg["se"] == pytest.approx(0.05)
    assert "avg" not in t["fishr"]  # fishr has no run for b
    md = dg_markdown(s, {"model": "m", "dataset": "d", "seeds": [0, 1]})
    assert "### Model selection: training-domain validation" in md and "### Model selection: test-domain validation (oracle)" in md
    assert "| Algorithm | a | b | Avg |" in md
    assert "| ERM | 60.0 ± 10.0 | 80.0 ± 0.0 | 70.0 ± 5.0 |" in md
    assert "| FISHR | 60.0 | - | - |" in md


def test_registry_defaults_and_reproducible_random_search():
    assert ALGORITHMS == ("erm", "fishr")
    from robusttext.training.fishr import FishrTrainingArguments

    d = default_hparams("fishr")
    args = FishrTrainingArguments(output_dir="unused", report_to="none")
    assert (args.fishr_lambda, args.fishr_ema, args.fishr_anneal_steps) == (d["fishr_lambda"], d["fishr_ema"], d["fishr_anneal_steps"])
    assert random_hparams("fishr", 0) == d
    r1, r2 = random_hparams("fishr", 1), random_hparams("fishr", 2)
    assert r1 == random_hparams("fishr", 1) and r1 != r2
    assert 10 <= r1["fishr_lambda"] <= 1e4 and 0.9 <= r1["fishr_ema"] <= 0.99 and 1e-5 <= r1["learning_rate"] <= 10 ** -3.5
    assert set(random_hparams("erm", 3)) == {"learning_rate", "weight_decay"}
    with pytest.raises(ValueError, match="--algorithm must be one of erm, fishr"):
        random_hparams("irm", 1)


def test_safe_name_keeps_runs_inside_the_folder(tmp_path):
    assert safe_name("books") == "books" and safe_name("kitchen_2-b.x") == "kitchen_2-b.x"
    for bad in ("../x", "..", "a/b", "/etc/passwd", "", "x\\..\\y", "é"):
        name = safe_name(bad)
        assert "/" not in name and "\\" not in name and not name.startswith(".") and name
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    assert safe_name("a/b") != safe_name("a_b") and safe_name("../x") != safe_name("__x")  # distinct stay distinct
    assert (tmp_path / "runs" / run_name("fishr", "../../x", 0, 1)).resolve().parent == (tmp_path / "runs").resolve()


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
        (path / f"file{j}.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_leave_one_domain_out_sweep_writes_tables_and_resumes(tiny_model_dir, tmp_path):
    from robusttext.cli import main

    data = _domain_folder(tmp_path / "data", ("a", "b", "../c"))
    out = tmp_path / "dg"
    argv = ["dg", "--model", tiny_model_dir, "--dataset", str(data), "--test-domains", "a", "../c",
            "--algorithms", "erm,fishr", "--max-steps", "2", "--eval-steps", "1", "--per-device-train-batch-size", "4",
            "--use-cpu", "--report-to", "none", "--output-dir", str(out), "--max-length", "16", "--disable-tqdm", "true",
            "--max-per-domain", "10", "--max-test-examples", "11", "--seeds", "2", "--logging-steps", "1"]
    assert main(argv) == 0
    res = json.loads((out / "dg_results.json").read_text())
    for r in res["runs"]:  # the penalty is logged every step; ERM's at weight 0 (what it would have been)
        assert [t["step"] for t in r["loss_trace"]] == [1, 2] and all(t["fishr_penalty"] >= 0 for t in r["loss_trace"])
        assert {t["fishr_weight"] for t in r["loss_trace"]} == ({0.0} if r["algorithm"] == "erm" else {1000.0})
    report = (out / "dg_report.md").read_text()
    assert "Fishr penalty on the training domains" in report and "wall time of this command" in report
    assert [(r["algorithm"], r["heldout"], r["seed"]) for r in res["runs"]] == [
        (a, d, s) for s in (42, 43) for d in ("a", "../c") for a in ("erm", "fishr")
    ]
    for r in res["runs"]:
        assert r["train_domains"] == sorted({"a", "b", "../c"} - {r["heldout"]})
        # 2 domains x (8 train + 2 val); held-out: the first 11 rows, 2 for the oracle and 9 for test
        assert (r["n_train"], r["n_val"], r["n_oracle"], r["n_test"]) == (16, 4, 2, 9)
        assert [t["step"] for t in r["trace"]] == [1, 2]
        assert r["hparams"]["fishr_lambda"] == (0.0 if r["algorithm"] == "erm" else 1000.0)
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 8 and all((out / "runs" / n).resolve().parent == (out / "runs").resolve() for n in runs)
    assert not (tmp_path / "c-h0-s42").exists() and not list(tmp_path.glob("*c*-s4*"))  # nothing escaped
    report = (out / "dg_report.md").read_text()
    assert "| Algorithm | a | ../c | Avg |" in report and "| FISHR |" in report and "(oracle)" in report
    cell = res["tables"]["training-domain validation"]["erm"]["a"]
    want = [max(r["trace"], key=lambda t: (t["val_accuracy"], -t["step"]))["test_accuracy"]
            for r in res["runs"] if r["algorithm"] == "erm" and r["heldout"] == "a"]
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(np.mean(want))
    assert main(argv) == 0  # resume: nothing left to train, same records
    again = json.loads((out / "dg_results.json").read_text())
    assert [r["seconds"] for r in again["runs"]] == [r["seconds"] for r in res["runs"]]
    assert main([*argv, "--hparams", '{"fishr_lambda": 5}']) == 2  # another run's folder is refused
    other = tmp_path / "dg2"  # the same seeds in another folder: identical tables
    assert main([*argv[:argv.index("--output-dir") + 1], str(other), *argv[argv.index("--output-dir") + 2:]]) == 0
    assert json.loads((other / "dg_results.json").read_text())["tables"] == res["tables"]


def test_erm_in_the_sweep_ignores_fishr_warmup(tiny_model_dir, tmp_path):
    # Fishr's warm-up re-initialises Adam at the switch; ERM must train the same with or without it
    from robusttext.cli import main

    data = _domain_folder(tmp_path / "data", ("a", "b", "c"))
    base = ["dg", "--model", tiny_model_dir, "--dataset", str(data), "--test-domains", "a", "--algorithms", "erm,fishr",
            "--max-steps", "4", "--eval-steps", "2", "--per-device-train-batch-size", "4", "--learning-rate", "1e-2",
            "--use-cpu", "--report-to", "none", "--max-length", "16", "--disable-tqdm", "true", "--max-per-domain", "10",
            "--seeds", "1", "--logging-steps", "1"]
    runs = {}
    for anneal in ("0", "2"):
        assert main([*base, "--hparams", f'{{"fishr_anneal_steps": {anneal}}}', "--output-dir", str(tmp_path / anneal)]) == 0
        res = json.loads((tmp_path / anneal / "dg_results.json").read_text())["runs"]
        runs[anneal] = {r["algorithm"]: [t["loss"] for t in r["loss_trace"]] for r in res}
    assert len(runs["0"]["erm"]) == 4 and runs["2"]["erm"] == runs["0"]["erm"]
    assert runs["2"]["fishr"][3] != runs["0"]["fishr"][3]  # the warm-up does change Fishr
    # a folder whose ERM runs took the warm-up (written without the key) is not resumed
    config = tmp_path / "2" / "run_config.json"
    old = {k: v for k, v in json.loads(config.read_text()).items() if k != "erm_anneal_steps"}
    config.write_text(json.dumps(old))
    assert main([*base, "--hparams", '{"fishr_anneal_steps": 2}', "--output-dir", str(tmp_path / "2")]) == 2
    assert main([*base, "--hparams", '{"fishr_anneal_steps": 0}', "--output-dir", str(tmp_path / "0")]) == 0  # resumes


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
    assert main([*base, "--hparams", '{"fishr_lambda": -2}']) == 2
    assert "--hparams: fishr_lambda must be a finite number >= 0" in capsys.readouterr().err
    assert main([*base, "--hparams", '{"fishr_lamda": 2}']) == 2  # a typo: one line naming the key and the valid ones
    err = capsys.readouterr().err
    assert "--hparams: unknown key 'fishr_lamda'; valid keys: fishr_anneal_steps, fishr_ema, fishr_lambda" in err
    assert len(err.strip().splitlines()) == 1
    assert main([*base, "--hparams", '{"fishr_anneal_steps": 1.5}']) == 2  # not the registry's type
    assert "--hparams: fishr_anneal_steps must be an int, got 1.5" in capsys.readouterr().err
    assert main([*base, "--hparams", "fishr_lambda=2"]) == 2
    assert "--hparams must be a JSON object" in capsys.readouterr().err


def test_dg_certify_reports_certified_accuracy_per_radius_for_each_algorithm(tiny_model_dir, tmp_path, capsys):
    from robusttext.cli import main

    data = _domain_folder(tmp_path / "data")
    out = tmp_path / "cert"
    argv = ["dg", "--model", tiny_model_dir, "--dataset", str(data), "--test-domains", "c", "--p-del", "0.9",
            "--certify", "--n", "40", "--max-test-examples", "4", "--update-model-card", "--max-steps", "1",
            "--per-device-train-batch-size", "4", "--use-cpu", "--report-to", "none", "--output-dir", str(out),
            "--max-length", "16", "--disable-tqdm", "true"]
    assert main(argv) == 0
    res = json.loads((out / "dg_results.json").read_text())
    table = res["certified"]["c"]
    assert set(table) == {"erm", "fishr"}
    for run in res["runs"]:
        folder = out / "runs" / run_name(run["algorithm"], "c", 0, run["seed"]) / "certify"
        records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
        assert len(records) == 3
        for radius, acc in run["certified_accuracy"].items():  # counted from the per-input certificates
            assert acc == sum(r["correct"] and r["radius"] >= int(radius) for r in records) / 3
            assert table[run["algorithm"]][radius][0] == acc  # one seed: the mean is the run's value
    assert "## Certified accuracy on the held-out domain" in (out / "dg_report.md").read_text()
    # --update-model-card: each run's model folder card holds that domain's certify summary (issue 31)
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    for run in res["runs"]:
        folder = out / "runs" / run_name(run["algorithm"], "c", 0, run["seed"])
        summary = json.loads((folder / "certify" / "summary.json").read_text())
        want = {("accuracy", None): summary["clean_accuracy"], ("smoothed_accuracy", None): summary["smoothed_accuracy"],
                ("median_certified_radius", None): summary["median_certified_radius"],
                **{("certified_accuracy", int(r)): v for r, v in summary["certified_accuracy"].items()}}
        assert {str(r): v for (t, r), v in want.items() if t == "certified_accuracy"} == run["certified_accuracy"]
        card = folder / "model" / "README.md"
        loaded = ModelCard.load(card).data.eval_results
        front = card.read_text().split("---\n")[1]
        _, parsed = model_index_to_eval_results(yaml.safe_load(front)["model-index"])
        for results in (loaded, parsed):
            assert {(r.metric_type, (r.metric_args or {}).get("radius")): r.metric_value for r in results} == want
            assert {r.dataset_split for r in results} == {"test"} and {r.metric_args["n"] for r in results} == {40}
    assert main([*argv[:argv.index("--p-del")], *argv[argv.index("--p-del") + 2:], "--output-dir", str(tmp_path / "x")]) == 2
    assert "--certify needs training under deletion noise" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["dg_amazon", "dg_sentiment"])
def test_dg_configs_parse(name):
    # Every key of a shipped dg config is an option of `robusttext dg` (a typo would only fail at run time).
    from robusttext.cli.arguments import DGArguments, HparamsArguments, ModelDataArguments, SmoothingArguments
    from robusttext.cli.convert_dg import fishr_arguments
    from robusttext.config import parse
    from robusttext.training.fishr import DomainTrainingArguments

    config = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
    data, smooth, dg, args, hp = parse(
        (ModelDataArguments, SmoothingArguments, DGArguments, DomainTrainingArguments, HparamsArguments),
        ["--config", str(config)], "robusttext dg",
    )
    assert dg.freeze_encoder is False
    assert args.output_dir.startswith("runs/")
    assert fishr_arguments(args, hp).fishr_lambda == 1000.0  # the YAML mapping is a valid --hparams


def test_python_twin_gives_the_cli_sweep(tiny_model_dir, tmp_path):
    # leave_one_domain_out takes library objects (a DataSpec, FishrTrainingArguments, a SweepConfig, a
    # TrainingRecipe): the same sweep as `robusttext dg`, the same tables
    from robusttext.cli import main
    from robusttext.dg.domains import SweepConfig, leave_one_domain_out
    from robusttext.runs.data import DataSpec
    from robusttext.training.fishr import FishrTrainingArguments
    from robusttext.training.trainer import TrainingRecipe

    data = _domain_folder(tmp_path / "data", ("a", "b", "c"))
    common = dict(max_steps=2, eval_steps=1, per_device_train_batch_size=4, use_cpu=True, report_to="none",
                  disable_tqdm=True, logging_steps=1, seed=42, learning_rate=5e-5)
    args = FishrTrainingArguments(output_dir=str(tmp_path / "py"), fishr_anneal_steps=1, **common)
    summary = leave_one_domain_out(tiny_model_dir, DataSpec(str(data), "all"), args,
                                   SweepConfig(test_domains=["a"], max_per_domain=10),
                                   TrainingRecipe(rate=0.0, max_length=16, algorithm="fishr"))
    argv = ["dg", "--model", tiny_model_dir, "--dataset", str(data), "--test-domains", "a", "--max-steps", "2",
            "--eval-steps", "1", "--per-device-train-batch-size", "4", "--use-cpu", "--report-to", "none",
            "--disable-tqdm", "true", "--logging-steps", "1", "--max-length", "16", "--max-per-domain", "10",
            "--hparams", '{"fishr_anneal_steps": 1}', "--output-dir", str(tmp_path / "cli")]
    assert main(argv) == 0
    cli = json.loads((tmp_path / "cli" / "dg_results.json").read_text())
    assert cli["tables"] == summary["tables"]
    assert [r["trace"] for r in cli["runs"]] == [r["trace"] for r in summary["runs"]]
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        SweepConfig(seeds=0)
    with pytest.raises(ValueError, match="update_model_card needs certify"):
        SweepConfig(update_model_card=True)
    with pytest.raises(ValueError, match="certify needs training under deletion noise"):
        leave_one_domain_out(tiny_model_dir, DataSpec(str(data), "all"), args, SweepConfig(certify=CertifyProtocol()))
