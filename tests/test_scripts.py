"""Every script under scripts/ runs: each is called through its command line at a tiny size (a tiny model,
a few inputs, a few steps) and its printed and written output is checked for shape and, where the numbers
have an exact value, for that value (recomputed here from the files the script wrote).

Also: docs/cli.md is what ``scripts/gen_cli_docs.py`` generates now, and it names every option each
subcommand's own ``--help`` lists.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
EXPERIMENTS = REPO / "experiments"  # experiments/bench_rates.py is tested here too
TEXTS = [("a gripping , funny film", 1), ("dull and lifeless", 0), ("the best movie this year", 1),
         ("a waste of time", 0), ("warm and wise", 1), ("painfully slow and boring", 0)]


def run_script(name: str, *args: str, cwd: Path, check: bool = True, folder: Path = SCRIPTS) -> subprocess.CompletedProcess:
    """``python scripts/NAME ARGS`` (or ``folder``/NAME) in ``cwd`` with this checkout first on the path, offline."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(folder / name), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        pytest.fail(f"{name} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture()
def text_data(tmp_path) -> Path:
    """A folder with train.tsv and test.tsv of six labelled sentences each."""
    write_tsv(tmp_path / "data" / "train.tsv", TEXTS)
    write_tsv(tmp_path / "data" / "test.tsv", TEXTS)
    return tmp_path / "data"


def test_script_list_is_covered():
    # a new script must get a smoke test here
    tested = {"bench_certify.py", "bench_fishr.py", "bench_host.py", "bench_vision.py", "certify_hub_model.py",
              "evaluate_hub_model.py", "gpu_check.py",
              "finetune_rsdel.py", "gen_cli_docs.py", "setup_nltk_data.py", "simulate_certify.py"}
    assert {p.name for p in SCRIPTS.glob("*.py")} == tested


# --------------------------------------------------------------------------- text certification
def test_certify_hub_model(tmp_path, tiny_model_dir, text_data):
    out = tmp_path / "cert"
    proc = run_script("certify_hub_model.py", "--model", tiny_model_dir, "--dataset", str(text_data), "--split", "test",
                      "--max_examples", "3", "--n0", "10", "--n", "100", "--output_dir", str(out), cwd=tmp_path)
    assert {"results.jsonl", "summary.json", "report.md", "certified_accuracy.png"} <= {p.name for p in out.iterdir()}
    records = read_jsonl(out / "results.jsonl")
    assert [r["index"] for r in records] == [0, 1, 2]
    assert [r["label"] for r in records] == [y for _, y in TEXTS[:3]]
    summary = json.loads((out / "summary.json").read_text())
    # certified accuracy at r = fraction of inputs correct with radius >= r, from the records themselves
    for r, value in summary["certified_accuracy"].items():
        assert value == pytest.approx(sum(x["correct"] and x["radius"] >= int(r) for x in records) / 3)
    assert summary["num_examples"] == 3 and list(summary["certified_accuracy"]) == [str(r) for r in range(7)]
    headline = r"^examples=3 clean_accuracy=\S+ smoothed_accuracy=\S+ abstain_rate=\S+ median_certified_radius=\S+ \(word\)$"
    assert re.search(headline, proc.stdout, re.M)
    assert f"wrote {out}/summary.json" in proc.stdout


def test_finetune_rsdel_from_yaml(tmp_path, tiny_model_dir, text_data):
    out = tmp_path / "model"
    config = tmp_path / "train.yaml"
    config.write_text(f"model: {tiny_model_dir}\ndataset: {text_data}\nsplit: train\np_del: 0.9\nmax_steps: 2\n"
                      f"per_device_train_batch_size: 3\noutput_dir: {out}\n")
    proc = run_script("finetune_rsdel.py", str(config), cwd=tmp_path)
    assert re.search(r"'train_loss': [0-9.]+", proc.stdout) and "'epoch': 1.0" in proc.stdout  # 2 steps of 3 = 6 rows
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()


@pytest.mark.skipif(importlib.util.find_spec("textattack") is None,
                    reason="textattack not installed (the [attacks] extra needs transformers<5: .ci/constraints.txt)")
def test_evaluate_hub_model(tmp_path, tiny_model_dir, text_data):
    out = tmp_path / "eval"
    proc = run_script("evaluate_hub_model.py", "--model", tiny_model_dir, "--dataset", str(text_data), "--split", "test",
                      "--max_examples", "2", "--max_length", "64", "--n0", "10", "--n", "50", "--recipes", "deepwordbug",
                      "--attack_target", "base", "--output_dir", str(out), cwd=tmp_path)
    summary = json.loads((out / "evaluation_summary.json").read_text())
    assert summary["num_examples"] == 2 and (out / "robustness_report.md").is_file()
    assert summary["accuracy_under_attack"].keys() == {"base"}
    assert summary["accuracy_under_attack"]["base"].keys() == {"deepwordbug"}
    # exit status 0 = the cross-check found the certificates consistent, and says so on one line
    passed = re.search(r"^cross-check passed: (\d+) of (\d+) certified inputs have a confirmed attack", proc.stdout, re.M)
    assert passed and int(passed.group(1)) <= int(passed.group(2)) <= 2
    headline = r"^clean accuracy [0-9.]+, smoothed [0-9.]+, certified \{.*\}, under attack \{'base': \{'deepwordbug': "
    assert re.search(headline, proc.stdout, re.M)
    assert f"wrote {out}/robustness_report.md" in proc.stdout


# --------------------------------------------------------------------------- certification benchmarks
def test_bench_certify(tmp_path, tiny_model_dir, text_data):
    out = tmp_path / "bench"
    proc = run_script("bench_certify.py", "--model", tiny_model_dir, "--dataset", str(text_data), "--compare_examples", "2",
                      "--full", "false", "--arms", "published,robusttext", "--output_dir", str(out), cwd=tmp_path)
    published, ours = read_jsonl(out / "published" / "results.jsonl"), read_jsonl(out / "robusttext" / "results.jsonl")
    assert [r["index"] for r in published] == [0, 1] == [r["index"] for r in ours]
    assert [r["n_queries"] for r in published] == [5000, 5000]  # the published protocol: n0 = 1000 + n = 4000
    assert all(sum(r["counts"]) == 4000 for r in published)
    for arm in ("published", "robusttext"):
        line = rf"^{arm} +n=2 +wall= *[0-9.]+s .* fwd= *\d+ .* certacc%\[r=0\.\.\]=( +[0-9.]+){{7}}$"
        assert re.search(line, proc.stdout, re.M)
    ratio = re.search(r"^ratios published/robusttext on the same 2 inputs: wall time [0-9.]+x, CPU time [0-9.]+x, "
                      r"forward passes ([0-9.]+)x, peak RSS [0-9.]+x$", proc.stdout, re.M)
    assert ratio, proc.stdout
    expected = sum(r["n_queries"] for r in published) / sum(r["n_queries"] for r in ours)
    assert float(ratio.group(1)) == pytest.approx(expected, abs=0.051)
    assert re.search(r"^plain-sampling floor: \d+ samples/input reach the published radii", proc.stdout, re.M)
    summary = json.loads((out / "bench_summary.json").read_text())
    assert set(summary) == {"published", "robusttext"} and summary["published"]["forward_passes"] == 10000


def test_simulate_certify_exact_on_unanimous_inputs(tmp_path):
    # input 0 always votes its label 1, input 1 never votes its label 0: certified accuracy is exactly 50% at
    # every radius for any protocol; the published protocol draws n0 + n = 5000; the default looks stop both
    # at the first look (n0 + n/20 = 50 + 200); plain sampling needs the closed form of the unanimous case.
    write_tsv(tmp_path / "data" / "test.tsv", [("fine film", 1), ("bad film", 0)])
    (tmp_path / "bench" / "published").mkdir(parents=True)
    record = {"prediction": 1, "radius": 6, "counts": [0, 4000], "top1_lower": 0.999}
    (tmp_path / "bench" / "published" / "results.jsonl").write_text(
        "".join(json.dumps({"index": i, **record}) + "\n" for i in (0, 1)))
    proc = run_script("simulate_certify.py", "--bench_dir", "bench", "--dataset", "data", "--n0", "50", "--futility", "0.1",
                      "--candidate_pvalue", "0.1", "--reps", "2", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("2 inputs; label rates: median 0.500")
    assert re.fullmatch(r"published +samples/input +5000  certacc%\[r=0\.\.\]( +50\.0){7}", lines[1])
    floor = math.floor(math.log(0.05) / math.log(1.5 - 0.9**6)) + 1
    assert re.match(rf"oracle plain sampling \(knows each rate, one look\) samples/input +{floor} ", lines[2])
    assert re.match(r"n0=50 n=4000 fut=0\.1 cand=0\.1 looks=\[200, 500, 1000, 1500, 2000, 3000, 4000\] samples/input +250 "
                    r" certacc%\[r=0\.\.\]( +50\.0){7} +vs published( +\+0\.0){7}", lines[3])
    assert len(lines) == 4


def test_bench_rates(tmp_path, tiny_model_dir, text_data):
    out = tmp_path / "bench"
    proc = run_script("bench_rates.py", "--model", tiny_model_dir, "--dataset", str(text_data), "--certify_examples", "3",
                      "--max_steps", "1", "--val_fraction", "0.5", "--n0", "10", "--n", "60", "--tune_n", "30",
                      "--tune_per_bin", "2", "--tune_iterations", "1", "--edges", "3|4", "--max_length", "32",
                      "--output_dir", str(out), cwd=tmp_path, folder=EXPERIMENTS)
    for arm in ("fixed", "adaptive", "adaptive_plus"):
        records = read_jsonl(out / arm / "certify" / "results.jsonl")
        assert [r["index"] for r in records] == [0, 1, 2]
        summary = json.loads((out / arm / "certify" / "summary.json").read_text())
        line = re.search(rf"^{arm} +clean ([0-9.]+) \| cert acc r0=([0-9.]+) .* fwd/input (\d+) .* \| certificate "
                         r"[0-9.]+% of certify wall$", proc.stdout, re.M)
        assert line, proc.stdout
        assert float(line.group(2)) == pytest.approx(sum(r["correct"] and r["radius"] >= 0 for r in records) / 3, abs=5e-4)
        assert int(line.group(3)) == round(sum(r["n_queries"] for r in records) / 3)
        assert summary["num_examples"] == 3
    # each arm certifies with the schedule its model folder records
    assert json.loads((out / "fixed" / "model" / "rate_schedule.json").read_text())["kind"] == "fixed"
    assert json.loads((out / "adaptive" / "model" / "rate_schedule.json").read_text())["kind"] == "adaptive"
    assert json.loads((out / "adaptive_plus" / "model" / "rate_schedule.json").read_text())["kind"] == "binned"
    assert re.search(r"^adaptive vs fixed: median radius \S+x, mean radius \S+x, certified accuracy at r=0 [+-][0-9.]+ points$",
                     proc.stdout, re.M)
    assert set(json.loads((out / "bench_rates.json").read_text())) == {"fixed", "adaptive", "adaptive_plus"}
    training = json.loads((out / "adaptive_plus" / "model" / "robusttext_training.json").read_text())["rate_schedule"]
    assert training == {"kind": "uniform", "low": 0.7, "high": 0.99}
    # a finished arm is never reused for another training recipe
    again = run_script("bench_rates.py", "--model", tiny_model_dir, "--dataset", str(text_data), "--arms", "adaptive_plus",
                       "--plus_training", "uniform_keep:low=1,high=3,p_lb=0.5", "--output_dir", str(out), cwd=tmp_path, check=False,
                       folder=EXPERIMENTS)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip().endswith("not uniform_keep:low=1,high=3,p_lb=0.5; use another --output_dir"), again.stderr
    # nor for consistency training (TrainingRecipe.noise_copies), whose record a plain arm lacks
    again = run_script("bench_rates.py", "--model", tiny_model_dir, "--dataset", str(text_data), "--arms", "fixed",
                       "--noise_copies", "2", "--output_dir", str(out), cwd=tmp_path, check=False, folder=EXPERIMENTS)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip().endswith("not fixed:0.9 with 2 noise copies, consistency weight 0.0, entropy weight 0.0; "
                                         "use another --output_dir"), again.stderr


def test_bench_rates_holds_out_the_same_share_of_every_domain(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_rates", EXPERIMENTS / "bench_rates.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_rates"] = bench  # dataclasses look their module up
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules["bench_rates"]
    folder = tmp_path / "domains"
    folder.mkdir()
    for domain, size in (("books", 20), ("dvd", 10)):
        (folder / f"{domain}.jsonl").write_text("".join(
            json.dumps({"text": f"{domain} review {i}", "label": i % 2}) + "\n" for i in range(size)))
    args = bench.BenchRatesArguments(dataset=str(folder), train_split="all", holdout=0.2, val_fraction=0.25)
    train, val, test, split = bench.write_splits(args, tmp_path)
    rows = {name: read_jsonl(Path(path)) for name, path in (("train", train), ("val", val), ("test", test))}
    assert split == "test" and [len(rows[k]) for k in ("train", "val", "test")] == [18, 6, 6]
    assert sorted(r["domain"] for r in rows["test"]) == ["books"] * 4 + ["dvd"] * 2  # 20% of each domain
    texts = [r["text"] for part in rows.values() for r in part]
    assert sorted(texts) == sorted(f"{d} review {i}" for d, n in (("books", 20), ("dvd", 10)) for i in range(n))


def test_bench_fishr(tmp_path, tiny_model_dir):
    folder = tmp_path / "reviews"
    folder.mkdir()
    for domain in ("books", "dvd"):
        rows = [{"text": f"{domain} review {i} " + "good plot " * (i % 5), "label": i % 2, "domain": domain}
                for i in range(16)]
        (folder / f"{domain}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "fishr.json"
    proc = run_script("bench_fishr.py", "--model", tiny_model_dir, "--dataset", str(folder), "--steps", "2", "--warmup", "1",
                      "--batch-size", "8", "--max-length", "32", "--output", str(out), cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["domains"] == ["books", "dvd"] and result["steps"] == 2 and result["batch_size"] == 8
    assert result["ratio"] == pytest.approx(result["fishr_median_s"] / result["erm_median_s"])
    assert re.search(rf"^Fishr / ERM = {result['ratio']:.3f}x  \(target <= 1\.10x\)$", proc.stdout, re.M)
    assert re.search(r"^median step time  ERM: [0-9.]+ ms   Fishr: [0-9.]+ ms$", proc.stdout, re.M)


# --------------------------------------------------------------------------- vision
@pytest.fixture()
def vision_model(tmp_path, data_dir) -> Path:
    """A randomly initialised MNIST CNN saved as ``robusttext vision train`` saves one."""
    if not (data_dir / "mnist").is_dir():
        pytest.skip(f"MNIST not found in {data_dir}/mnist")
    import torch

    from robusttext_vision.models import build_model, save_model

    torch.manual_seed(0)
    config = {"arch": "cnn", "in_channels": 1, "num_classes": 10, "image_size": 28}
    save_model(build_model("cnn", 1, 10, 28), tmp_path / "cnn", config)
    return tmp_path / "cnn"


def _ratio_ok(ratio: str, a: str, b: str) -> bool:
    """A printed ratio a/b agrees with its printed parts (each rounded as printed)."""
    return float(ratio) == pytest.approx(float(a) / float(b), rel=0.05, abs=0.011)


def test_bench_vision_pgd(tmp_path, vision_model):
    # torchattacks is installed beside our set with `pip install --no-deps torchattacks` (CI does this);
    # without it the PGD benchmark must stop with that instruction, after its header.
    has_torchattacks = importlib.util.find_spec("torchattacks") is not None
    proc = run_script("bench_vision.py", "--only", "pgd", "--model-dir", str(vision_model), "--robust-model-dir",
                      str(tmp_path / "none"), "--images", "4", "--steps", "2", "--repeats", "1", cwd=tmp_path,
                      check=has_torchattacks)
    assert "== PGD, 4 MNIST images, 2 steps, step 2.5*eps/steps, random start ==" in proc.stdout, proc.stderr[-2000:]
    if not has_torchattacks:
        assert proc.returncode != 0 and "pip install --no-deps torchattacks" in proc.stderr
        return
    row = r"^normal +(linf|l2) +([0-9.]+) +(True|False) +([0-9.]+) +([0-9.]+) +([0-9.]+)x +([0-9.]+) +([0-9.]+)$"
    rows = re.findall(row, proc.stdout, re.M)
    assert [(r[0], r[2]) for r in rows] == [("linf", "True"), ("linf", "False"), ("l2", "True"), ("l2", "False")]
    for _, _, _, ours, theirs, ratio, s_ours, s_ta in rows:
        assert _ratio_ok(ratio, ours, theirs)
        assert float(s_ours) * 4 == pytest.approx(round(float(s_ours) * 4)) and 0 <= float(s_ours) <= 1  # k of 4 images
        assert float(s_ta) * 4 == pytest.approx(round(float(s_ta) * 4)) and 0 <= float(s_ta) <= 1


def test_bench_vision_certify(tmp_path, vision_model):
    proc = run_script("bench_vision.py", "--only", "certify", "--model-dir", str(vision_model), "--robust-model-dir",
                      str(tmp_path / "none"), "--certify-images", "2", "--n0", "10", "--n", "20",
                      "--batch-sizes", "10", "30", cwd=tmp_path)
    assert "== CERTIFY, 2 MNIST images, sigma=0.5, n0=10, n=20, alpha=0.001 ==" in proc.stdout
    assert "== PGD" not in proc.stdout
    row = r"^(cnn|linear) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) +([0-9.]+)x +([0-9.]+)x +([0-9.]+)x +([0-9.]+) +([0-9.]+)$"
    rows = re.findall(row, proc.stdout, re.M)
    assert [(r[0], r[1]) for r in rows] == [("cnn", "10"), ("cnn", "30"), ("linear", "10"), ("linear", "30")]
    for _, _, engine, eager, loop, loop_frozen, ratio, batching, frozen, agree, _ in rows:
        # ratios of the printed samples/s (times of the same sample count), each rounded as printed
        assert _ratio_ok(ratio, engine, loop) and _ratio_ok(batching, eager, loop) and _ratio_ok(frozen, engine, loop_frozen)
        assert float(agree) in (0.0, 0.5, 1.0)  # agreement on 2 images


# --------------------------------------------------------------------------- setup
def test_setup_nltk_data(tmp_path):
    proc = run_script("setup_nltk_data.py", "--dest", str(tmp_path / "nltk"), cwd=tmp_path)
    dest = re.escape(str(tmp_path / "nltk"))
    match = re.fullmatch(rf"NLTK data in {dest}: stopwords ok, wordnet (ok|MISSING)\n", proc.stdout)
    assert match, proc.stdout
    words = (tmp_path / "nltk" / "corpora" / "stopwords" / "english").read_text().split()
    assert {"the", "and", "not"} <= set(words)
    if match.group(1) == "MISSING":
        assert "PWWS and the WordNet augmenters will refuse to run" in proc.stderr
    else:
        assert (tmp_path / "nltk" / "corpora" / "wordnet" / "data.noun").is_file()


def test_setup_nltk_data_rejects_a_wordnet_folder_without_wordnet(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_script("setup_nltk_data.py", "--dest", str(tmp_path / "nltk"), "--wordnet-dir", str(tmp_path / "empty"),
                      cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("setup_nltk_data: error: wordnet_dir") and proc.stderr.count("\n") == 1


# --------------------------------------------------------------------------- the CLI reference
def test_cli_docs_are_current(tmp_path):
    proc = run_script("gen_cli_docs.py", "--check", cwd=tmp_path, check=False)
    assert proc.returncode == 0, (
        "docs/cli.md is out of date with the subcommands' arguments: regenerate it with "
        "`python scripts/gen_cli_docs.py` and commit docs/cli.md\n" + proc.stderr[-2000:])


def _help_options(main, argv: list[str], capsys) -> set[str]:
    """Every --option the subcommand's own argparse --help prints."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    return set(re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*)", capsys.readouterr().out)) - {"--help"}


def _doc_sections() -> dict[str, str]:
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    parts = re.split(r"^### `([^`]+)`$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_cli_docs_list_every_option_of_every_subcommand(capsys, monkeypatch):
    import dataclasses

    monkeypatch.setenv("COLUMNS", "100000")  # argparse wraps help text at hyphens otherwise

    from transformers import TrainingArguments

    import robusttext.cli as core
    import robusttext_vision.cli as vis

    sections = _doc_sections()
    names = [f.name for f in dataclasses.fields(TrainingArguments)]  # listed once, not per subcommand
    inherited = {f"--{pre}{spell}" for name in names for pre in ("", "no_", "no-")
                 for spell in (name, name.replace("_", "-"))}
    for prog, main, commands in (("robusttext", core.main, core.COMMANDS), ("robusttext vision", vis.main, vis.COMMANDS)):
        for name in commands:
            title = f"{prog} {name}"
            assert title in sections, f"docs/cli.md has no section for `{title}`: run `python scripts/gen_cli_docs.py`"
            documented = set(re.findall(r"`(--[\w-]+)`", sections[title]))
            missing = _help_options(main, [name, "--help"], capsys) - documented - inherited
            assert not missing, f"`{title}` options missing from docs/cli.md: {sorted(missing)}"


# --------------------------------------------------------------------------- host pipeline and the GPU check
def test_bench_host(tmp_path, data_dir):
    out = tmp_path / "host.json"
    proc = run_script("bench_host.py", "--inputs", "3", "--n0", "10", "--n", "50", "--repeats", "1", "--datasets", "sst2,amazon",
                      "--rates", "0.9,adaptive", "--data_dir", str(data_dir), "--json_out", str(out), cwd=tmp_path)
    rows = json.loads(out.read_text())
    assert [(r["dataset"], r["rate"]) for r in rows] == [("sst2", "0.9"), ("sst2", "adaptive"), ("amazon", "0.9"), ("amazon", "adaptive")]
    for r in rows:
        # every arm handles every copy; both engine paths classify the same distinct copies
        assert r["floor_copies"] == r["per-copy_copies"] == r["arrays_copies"] == 3 * 60
        assert r["per-copy_rows"] == r["arrays_rows"] <= r["floor_rows"]
        assert r["arrays_ratio"] == pytest.approx(r["arrays_copies_per_s"] / r["floor_copies_per_s"])
    assert len(re.findall(r"x floor", proc.stdout)) == 2 * 4
    bad = run_script("bench_host.py", "--datasets", "imdb", "--data_dir", str(data_dir), cwd=tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["bench_host: --datasets: unknown dataset 'imdb'; use sst2, amazon, bbc"]


def test_gpu_check_tiny_runs_on_cpu_without_datasets(tmp_path, monkeypatch):
    # the GPU machine has no `datasets`: an import of it fails the run
    (tmp_path / "block" / "datasets").mkdir(parents=True)
    (tmp_path / "block" / "datasets" / "__init__.py").write_text("raise ImportError('datasets is not installed here')\n")
    out = tmp_path / "gpu.json"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "block"), os.environ.get("PYTHONPATH")])))
    proc = run_script("gpu_check.py", "--tiny", "--json_out", str(out), cwd=tmp_path)
    report = json.loads(out.read_text())
    assert proc.stdout.startswith("device: CPU (no GPU)")
    for name in ("sst2", "amazon"):
        arms = {arm: report["certify"][f"{name} {arm}"] for arm in ("fp32", "bf16", "bf16 no prefetch", "bf16 per-copy")}
        # the same draws everywhere: 4 inputs x (n0 + n) copies, the same distinct rows on every path and precision
        assert {a["copies"] for a in arms.values()} == {4 * 110}
        assert len({a["rows"] for a in arms.values()}) == 1
        # the array path, with or without prefetch, certifies exactly as the per-copy path
        assert arms["bf16"]["radii"] == arms["bf16 no prefetch"]["radii"] == arms["bf16 per-copy"]["radii"]
        assert all(0.0 < a["device_busy"] <= 1.0 for a in arms.values())
        assert 0.0 <= report["agreement"][name] <= 1.0
    assert set(report["train_step_s"]) == {"fp32", "bf16"} and all(v > 0 for v in report["train_step_s"].values())
    assert report["vision"]["images"] == 2
    assert len(re.findall(r"^certify ", proc.stdout, re.M)) == 8
