"""`robusttext predict` (texts as arguments, on stdin, or in --dataset) and `certify` on unlabelled data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from robusttext.cli import main


def run_predict(capsys, *argv: str) -> list[dict]:
    assert main(["predict", *map(str, argv)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_predict_texts_and_stdin_agree_with_the_certify_run(tiny_model_dir, tmp_path, capsys, monkeypatch):
    texts = ["a gripping , funny film", "", "dull"]
    args = ["--model", tiny_model_dir, "--n", "200", "--n0", "20", "--seed", "3"]
    plain = run_predict(capsys, *args, *texts)
    assert [r["index"] for r in plain] == [0, 1, 2] and [r["text"] for r in plain] == texts
    for r in plain:
        assert sum(r["counts"]) == 200 and 0 <= r["pvalue"] <= 1
    # "" has one noisy copy ("" itself): unanimous votes, one forward pass
    assert max(plain[1]["counts"]) == 200 and plain[1]["n_queries"] == 1 and plain[1]["prediction"] >= 0

    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts[:1] + texts[2:]) + "\n"))
    piped = run_predict(capsys, *args)
    assert [r["text"] for r in piped] == [texts[0], texts[2]]  # blank lines are skipped
    assert piped[0]["counts"] == plain[0]["counts"]  # same stream (seed, index 0)

    certified = run_predict(capsys, *args, *texts, "--certify")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": 0}) + "\n" for t in texts))
    assert main(["certify", "--dataset", str(data), *args, "--output-dir", str(tmp_path / "c")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "c" / "results.jsonl").read_text().splitlines()]
    assert [r["radius"] for r in certified] == [r["radius"] for r in rows]
    assert [r["prediction"] for r in certified] == [r["prediction"] for r in rows]
    # --dataset names the texts too (any dataset spec, here a file; labels not needed): the same answers
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    assert run_predict(capsys, *args, "--dataset", str(unlabelled), "--certify") == certified
    assert main(["predict", *args, "--dataset", str(unlabelled), "dull"]) == 2
    assert "not both" in capsys.readouterr().err


def test_certify_on_unlabelled_data_reports_radii_without_accuracy(tiny_model_dir, tmp_path, capsys):
    texts = ["good fun", "awful , awful film", "fine"]
    labelled, unlabelled = tmp_path / "l.jsonl", tmp_path / "u.jsonl"
    labelled.write_text("".join(json.dumps({"text": t, "label": 1}) + "\n" for t in texts))
    unlabelled.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    common = ["certify", "--model", tiny_model_dir, "--n0", "20", "--n", "200"]
    assert main([*common, "--dataset", str(labelled), "--output-dir", str(tmp_path / "l")]) == 0
    assert main([*common, "--dataset", str(unlabelled), "--output-dir", str(tmp_path / "u")]) == 0
    summary = json.loads((tmp_path / "u" / "summary.json").read_text())
    assert summary["labelled"] is False
    assert summary["smoothed_accuracy"] is None and summary["certified_accuracy"] is None
    rows = [json.loads(line) for line in (tmp_path / "u" / "results.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (tmp_path / "l" / "results.jsonl").read_text().splitlines()]
    assert [r["radius"] for r in rows] == [r["radius"] for r in ref]
    assert all(r["label"] is None and r["correct"] is None for r in rows)
    expected = {str(k): sum(r["radius"] >= k for r in ref) / 3 for k in range(7)}
    assert summary["certified_fraction"] == pytest.approx(expected)
    assert "certified fraction (no labels)" in capsys.readouterr().out


def test_predict_without_texts_is_refused(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["predict", "--model", tiny_model_dir]) == 2
    assert "no texts given" in capsys.readouterr().err
