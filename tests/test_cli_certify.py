"""End to end on real data: `robusttext train` then `robusttext certify`; resume; refusal; bad input; 2 processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _multiprocess import assert_two_shares, launch_two
from _signals import sigint_default
from robusttext.cli import main

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("seconds",)


def run_cli(*argv: str) -> int:
    return main([str(a) for a in argv])


def records(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sst2_model(tmp_path_factory, data_dir, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("sst2_model")
    code = run_cli(
        "train", "--model", tiny_model_dir, "--dataset", data_dir / "sst2", "--split", "train",
        "--max-examples", 64, "--max-steps", 3, "--p-del", 0.9, "--output-dir", out, "--save-strategy", "no",
    )
    assert code == 0
    assert (out / "config.json").exists() and (out / "robusttext_training.json").exists()
    return out


def certify_args(model: Path, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "certify", "--model", str(model), "--dataset", str(data_dir / "sst2"), "--split", "test",
        "--max-examples", "7", "--n0", "10", "--n", "60", "--chunk-size", "3", "--output-dir", str(out), *extra,
    ]


def test_train_then_certify_writes_all_outputs(sst2_model, data_dir, tmp_path, capsys):
    out = tmp_path / "cert"
    assert run_cli(*certify_args(sst2_model, data_dir, out)) == 0
    for name in ("results.jsonl", "summary.json", "certified_accuracy.png", "report.md", "run_config.json"):
        assert (out / name).exists(), name
    recs = records(out)
    assert [r["index"] for r in recs] == list(range(7))
    labels = [int(line.split("\t")[1]) for line in (data_dir / "sst2" / "test.tsv").read_text().splitlines()[1:8]]
    assert [r["label"] for r in recs] == labels
    for r in recs:
        assert r["correct"] == (r["prediction"] == r["label"])
        assert (r["radius"] == -1) == (r["prediction"] == -1)
        assert 0 < r["n_samples"] <= 10 + 60 and 0 <= r["exact_mass"] <= 1
        # forward passes: at most one per distinct sample, plus the enumerated likeliest deletions
        assert 0 < r["n_queries"] <= r["n_samples"] + (256 if r["exact_mass"] > 0 else 0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_examples"] == 7
    assert summary["parameters"]["p_del"] == 0.9 and summary["unit"] == "word"
    assert summary["parameters"]["futility"] == 0.1  # the library's default, recorded with the run
    looks = summary["parameters"]["look_sizes"]  # the resolved "auto" schedule, so a resume under another is refused
    assert looks == sorted(set(looks)) and looks[-1] == 60
    from robusttext.certificate.precision import cpu_supports_bf16

    # the run records the precision the base model ran in (precision=auto: bf16 where the CPU has it)
    assert summary["parameters"]["precision"] == ("bf16" if cpu_supports_bf16() else "fp32")
    assert summary["certified_accuracy"]["0"] == pytest.approx(sum(r["correct"] for r in recs) / 7)
    for r, v in summary["certified_accuracy"].items():
        assert v == pytest.approx(sum(x["correct"] and x["radius"] >= int(r) for x in recs) / 7)
    assert list(summary["certified_accuracy"]) == [str(r) for r in range(7)]  # 0..6 at p_del 0.9
    assert "words" in (out / "report.md").read_text()
    assert "certified accuracy" in capsys.readouterr().out


def test_resume_after_interrupt_gives_identical_results(sst2_model, data_dir, tmp_path):
    full = tmp_path / "full"
    assert run_cli(*certify_args(sst2_model, data_dir, full)) == 0
    # The state an interrupt leaves behind: a config, a part file with the first chunk and a torn line.
    part = tmp_path / "part"
    part.mkdir()
    shutil.copy(full / "run_config.json", part / "run_config.json")
    lines = (full / "results.jsonl").read_text().splitlines()
    (part / "results.part0.jsonl").write_text("\n".join(lines[:3]) + '\n{"index": 3, "lab')
    assert run_cli(*certify_args(sst2_model, data_dir, part)) == 0
    assert records(part) == records(full)
    # finished inputs were kept as written, not recomputed
    assert (part / "results.jsonl").read_text().splitlines()[:3] == lines[:3]
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (full, part))
    assert s1 == s2
    assert not list(part.glob("results.part*.jsonl"))


def test_output_dir_with_other_parameters_is_refused(sst2_model, data_dir, tmp_path, capsys):
    out = tmp_path / "cert"
    assert run_cli(*certify_args(sst2_model, data_dir, out)) == 0
    before = (out / "results.jsonl").read_text()
    assert run_cli(*certify_args(sst2_model, data_dir, out, "--p-del", "0.8")) == 2
    err = capsys.readouterr().err
    assert "p_del" in err and "--overwrite-output-dir" in err
    assert (out / "results.jsonl").read_text() == before  # nothing lost
    assert run_cli(*certify_args(sst2_model, data_dir, out, "--p-del", "0.8", "--overwrite-output-dir")) == 0


@pytest.mark.parametrize(
    "extra, field",
    [
        (["--p-del", "1.0"], "p_del"),
        (["--p-del", "0"], "p_del"),
        (["--alpha", "0"], "--alpha"),
        (["--alpha", "1.5"], "--alpha"),
        (["--n0", "0"], "--n0"),
        (["--n", "0"], "--n"),
        (["--text-column", "review"], "--text-column"),
        (["--label-column", "nope"], "--label-column"),
        (["--looks", "5,10"], "--looks"),
    ],
)
def test_bad_input_is_a_clear_error(sst2_model, data_dir, tmp_path, capsys, extra, field):
    assert run_cli(*certify_args(sst2_model, data_dir, tmp_path / "x", *extra)) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err


@pytest.mark.parametrize("change, field", [(dict(futility=1), "futility"), (dict(futility=-0.1), "futility"),
                                           (dict(candidate_pvalue=1), "candidate_pvalue"),
                                           (dict(exact_budget=-1), "exact_budget")])
def test_the_protocol_internals_are_library_fields_checked_where_they_enter(change, field, capsys):
    """futility, candidate_pvalue, exact_budget (and dedup) are CertifyProtocol's (SmoothedTextClassifier's), not
    options of the command line: a bad value is an exception naming the field; the option is unknown (exit 2)."""
    from robusttext import CertifyProtocol

    with pytest.raises(ValueError, match=f"^{field} must be"):
        CertifyProtocol(**change)
    flag = "--" + field.replace("_", "-")
    assert main(["certify", "--model", "x", flag, "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and "Traceback" not in err[0], err


def test_labels_the_model_does_not_know_are_refused(sst2_model, data_dir, tmp_path, capsys):
    # AG News labels (World, Sports, ...) are not classes of an SST-2 model.
    args = certify_args(sst2_model, data_dir, tmp_path / "x")
    args[args.index("--dataset") + 1] = str(data_dir / "agnews" / "test.tsv")
    assert run_cli(*args) == 2
    assert "not classes the model knows" in capsys.readouterr().err


def test_agnews_four_classes_end_to_end(data_dir, tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "ag"
    train = ["train", "--model", tiny_model_dir, "--dataset", data_dir / "agnews" / "dev.tsv", "--max-examples", 40,
             "--max-steps", 2, "--output-dir", model, "--save-strategy", "no"]
    assert run_cli(*train) == 2  # the tiny model has a 2-class head: a clear error says how to replace it
    assert "--ignore-mismatched-sizes" in capsys.readouterr().err
    assert run_cli(*train, "--ignore-mismatched-sizes") == 0
    out = tmp_path / "cert"
    assert run_cli("certify", "--model", model, "--dataset", data_dir / "agnews" / "test.tsv", "--max-examples", 4,
                   "--n0", 8, "--n", 40, "--unit", "char", "--p-del", 0.95, "--output-dir", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["label_names"] == ["Business", "Sci/Tech", "Sports", "World"]
    assert summary["unit"] == "char" and len(summary["certified_accuracy"]) == 14  # r_max(0.95) = 13


def test_empty_text_is_certified(tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "", "label": 1}\n{"text": "fine", "label": 0}\n')
    out = tmp_path / "cert"
    assert run_cli("certify", "--model", tiny_model_dir, "--dataset", data, "--n0", 5, "--n", 30, "--looks", "none", "--output-dir", out) == 0
    rec = records(out)[0]
    # every noisy copy of "" is "", so all estimation samples agree: lower bound = alpha^(1/n)
    assert rec["top1_lower"] == pytest.approx(0.05 ** (1 / 30))
    assert rec["n_queries"] == 1


@pytest.mark.multiprocess
def test_two_processes_give_the_same_results_as_one(sst2_model, data_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    script = str(ROOT / "scripts" / "certify_hub_model.py")
    args = certify_args(sst2_model, data_dir, one)[1:]
    subprocess.run([sys.executable, script, *args], check=True, env=env, cwd=ROOT, capture_output=True)
    args = certify_args(sst2_model, data_dir, two)[1:]
    proc = subprocess.run([*launch_two(), script, *args], env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_two_shares(two, len(records(one)))
    # whole blocks of --chunk-size 3 inputs, so each block's noisy copies are batched as in one process
    shares = {s["rank"]: s["indices"] for s in map(json.loads, (two / "shards.jsonl").read_text().splitlines())}
    assert shares == {0: [0, 1, 2, 6], 1: [3, 4, 5]}
    assert records(one) == records(two)
    assert not list(two.glob("results.part*.jsonl"))


def test_ctrl_c_keeps_finished_records_and_the_rerun_completes_them(tiny_model_dir, data_dir, tmp_path):
    """SIGINT mid-run: exit 130 with one line saying how far it got; the records written stay; the rerun
    finishes and equals an uninterrupted run."""
    import signal
    import time

    out, ref = tmp_path / "cut", tmp_path / "ref"
    args = ["certify", "--model", tiny_model_dir, "--dataset", str(data_dir / "sst2"), "--max-examples", "12",
            "--n0", "20", "--n", "3000", "--looks", "none", "--chunk-size", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "robusttext.cli", *args, "--output-dir", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)
    part = out / "results.part0.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not part.exists() or len(part.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    kept = part.read_text().splitlines()
    assert last == f"robusttext certify: interrupted after {len(kept)} of 12 inputs; rerun the same command to resume"
    assert 2 <= len(kept) < 12
    assert run_cli(*args, "--output-dir", out) == 0
    assert run_cli(*args, "--output-dir", ref) == 0
    assert records(out) == records(ref)
    merged = {r["index"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert all(merged[r["index"]] == r for r in map(json.loads, kept))  # the records written before stayed as they were


def test_resume_is_refused_when_the_model_or_the_data_changed(tiny_model_dir, tmp_path, capsys):
    """Resume is keyed on content: retraining into the same folder or editing the data file is refused
    (exit 2, one line), and the records already written stay as they were."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(["a b c", "d e", "f"])))
    out = tmp_path / "out"
    args = ["certify", "--model", model, "--dataset", data, "--n0", 10, "--n", 50, "--output-dir", out]
    assert run_cli(*args) == 0
    before = (out / "results.jsonl").read_text()

    m = AutoModelForSequenceClassification.from_pretrained(model)  # "retrain" into the same folder
    with torch.no_grad():
        m.classifier.bias.add_(1.0)
    m.save_pretrained(model)
    capsys.readouterr()
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the model's files changed" in err and "--overwrite-output-dir" in err
    assert (out / "results.jsonl").read_text() == before

    shutil.rmtree(model)
    shutil.copytree(tiny_model_dir, model)  # the original model again: resumes ...
    assert run_cli(*args) == 0
    data.write_text(data.read_text().replace("d e", "d x"))  # ... but not after the data file was edited
    capsys.readouterr()
    assert run_cli(*args) == 2
    assert "the examples changed" in capsys.readouterr().err
    assert (out / "results.jsonl").read_text() == before
    assert run_cli(*args, "--overwrite-output-dir") == 0


def test_the_quickstart_config_is_the_quickstart_defaults():
    # configs/quickstart.yaml says it holds the defaults of `robusttext quickstart`: every key must be an
    # option of the command and every value its default (the README's first command runs the defaults)
    from robusttext.config import parse
    from robusttext.cli import QuickstartArguments

    config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    (from_yaml,) = parse((QuickstartArguments,), ["--config", str(config)], "robusttext quickstart")
    assert from_yaml == QuickstartArguments()


def test_the_printed_curve_runs_in_radius_order_past_radius_9(capsys):
    from robusttext.cli import print_summary

    curve = {"0": 0.95, "1": 0.9, "10": 0.5, "11": 0.4, "2": 0.8}  # as summary.json's sorted string keys give it
    print_summary({"num_examples": 60, "clean_accuracy": 0.95, "smoothed_accuracy": 0.95, "abstain_rate": 0.0,
                   "median_certified_radius": 9.5, "unit": "word", "certified_accuracy": curve}, "out")
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("certified accuracy"))
    assert line == "certified accuracy: r>=0: 0.950, r>=1: 0.900, r>=2: 0.800, r>=10: 0.500, r>=11: 0.400"
