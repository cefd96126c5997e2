"""Bad inputs to the real command line: each exits 2 with one stderr line naming the field or file, and no
traceback. Every case runs ``python -m robusttext.cli`` as a subprocess on tiny local files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from _signals import sigint_default

ROOT = Path(__file__).resolve().parents[1]


def cli(*argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-m", "robusttext.cli", *argv], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one-line error of a refused run (asserting exit code 2 and no traceback)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("robusttext ") and ": error: " in last, proc.stderr
    return last


LATIN = "text\tlabel\ngood\t1\ncaf\xe9 cr\xe8me\t0\n".encode("latin-1")
#: file name -> contents, written into each test's folder.
FILES = {
    "good.tsv": b"text\tlabel\ngood film\t1\nbad film\t0\n",
    "latin.tsv": LATIN,
    "header_only.tsv": b"sentence\tlabel\n",
    "empty.jsonl": b"",
    "bad_line.jsonl": b'{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c", label: 1}\n',
    "no_text.jsonl": b'{"body": "a", "label": 1}\n',
    "bad.yaml": b"n0: [1, 2\n",
    "list.yaml": b"- n0\n",
}
OFFSET = LATIN.index(b"\xe9")  # the first byte that is not UTF-8

#: (case, argv after `robusttext`, pieces the error line must hold). "{d}" is the test's folder, "{m}" the tiny
#: model; certify options keep the run tiny in case a refusal regresses.
CASES = [
    ("missing model (relative)", ["certify", "--model", "runs/nope", "--dataset", "{d}/good.tsv"],
     ["--model runs/nope: no such folder, and not a Hub id reachable offline"]),
    ("missing model (absolute)", ["certify", "--model", "{d}/nope", "--dataset", "{d}/good.tsv"],
     ["--model {d}/nope: no such folder"]),
    ("model folder without config", ["certify", "--model", "{d}", "--dataset", "{d}/good.tsv"],
     ["--model {d}: the folder holds no config.json"]),
    ("malformed JSONL line", ["certify", "--model", "{m}", "--dataset", "{d}/bad_line.jsonl"],
     ["{d}/bad_line.jsonl line 3: not valid JSON"]),
    ("not UTF-8", ["certify", "--model", "{m}", "--dataset", "{d}/latin.tsv"],
     [f"{{d}}/latin.tsv: not UTF-8 (byte 0xe9 at offset {OFFSET}); convert it or pass --encoding latin-1"]),
    ("unknown encoding", ["certify", "--model", "{m}", "--dataset", "{d}/latin.tsv", "--encoding", "nope"],
     ["--encoding 'nope': unknown encoding"]),
    ("header-only dataset", ["certify", "--model", "{m}", "--dataset", "{d}/header_only.tsv"],
     ["--dataset {d}/header_only.tsv", "no examples"]),
    ("empty dataset", ["certify", "--model", "{m}", "--dataset", "{d}/empty.jsonl"], ["--dataset {d}/empty.jsonl", "no examples"]),
    ("missing dataset", ["certify", "--model", "{m}", "--dataset", "{d}/nope.tsv"], ["--dataset {d}/nope.tsv: no such file"]),
    ("no text column", ["certify", "--model", "{m}", "--dataset", "{d}/no_text.jsonl"], ["--text-column"]),
    ("missing label column", ["certify", "--model", "{m}", "--dataset", "{d}/good.tsv", "--label-column", "stars"],
     ["--label-column 'stars'"]),
    ("argument check of another module", ["certify", "--model", "{m}", "--dataset", "{d}/good.tsv", "--p-del", "1.5"],
     ["p_del"]),
    ("library check named as its flag", ["certify", "--model", "{m}", "--dataset", "{d}/good.tsv", "--chunk-size", "0"],
     ["--chunk-size must be >= 1, got 0"]),
    ("classifier check named as its flag", ["certify", "--model", "{m}", "--dataset", "{d}/good.tsv", "--max-length", "2"],
     ["--max-length must be >= 3, got 2"]),
    ("missing config", ["certify", "--config", "{d}/nope.yaml"], ["--config {d}/nope.yaml: no such file"]),
    ("config not YAML", ["certify", "--config", "{d}/bad.yaml"], ["--config {d}/bad.yaml: not valid YAML"]),
    ("config not a mapping", ["certify", "--config", "{d}/list.yaml"], ["--config {d}/list.yaml must hold a mapping"]),
    ("missing vision model", ["vision", "certify", "--model-dir", "{d}/nope", "--dataset", "digits", "--split", "test"],
     ["{d}/nope: no vision_model.json"]),
]


@pytest.mark.parametrize("argv, pieces", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(argv, pieces, tmp_path, tiny_model_dir):
    if argv[0] == "vision" and "vision" not in {ep.name for ep in entry_points(group="robusttext.commands")}:
        pytest.skip("the vision entry point is not installed (pip install -e .)")
    for name, content in FILES.items():
        (tmp_path / name).write_bytes(content)
    fill = {"d": str(tmp_path), "m": tiny_model_dir}
    argv = [a.format(**fill) for a in argv] + ["--n0", "4", "--n", "8", "--output-dir", str(tmp_path / "out")]
    if "--config" in argv:
        argv = argv[:3]  # the refusal comes before any other option is read
    line = error_line(cli(*argv, cwd=tmp_path))
    for piece in pieces:
        assert piece.format(**fill) in line


def test_untrained_head_is_refused_with_the_fix(tmp_path, minilm_path):
    (tmp_path / "good.tsv").write_bytes(FILES["good.tsv"])
    proc = cli("certify", "--model", "embedded:minilm-l6", "--dataset", "good.tsv", "--n0", "4", "--n", "8", cwd=tmp_path)
    line = error_line(proc)
    assert "--model embedded:minilm-l6" in line and "newly initialised" in line and "train it first" in line
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_encoding_flag_reads_the_file(tmp_path, tiny_model_dir):
    (tmp_path / "latin.tsv").write_bytes(LATIN)
    proc = cli("certify", "--model", tiny_model_dir, "--dataset", "latin.tsv", "--encoding", "latin-1", "--n0", "4",
               "--n", "8", "--looks", "none", "--output-dir", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "examples=2" in proc.stdout


def test_vision_missing_data_folder_names_it_and_the_variable(tmp_path):
    nodata = tmp_path / "nodata"
    if "vision" in {ep.name for ep in entry_points(group="robusttext.commands")}:
        argv = ["vision", "linear"]
    else:
        pytest.skip("the vision entry point is not installed (pip install -e .)")
    proc = cli(*argv, "--config", str(ROOT / "configs" / "vision_linear.yaml"), "--output_dir", str(tmp_path / "o"),
               cwd=tmp_path, ROBUSTTEXT_DATA=str(nodata))
    line = error_line(proc)
    assert str(nodata / "mnist") in line and "ROBUSTTEXT_DATA" in line and "--split" not in line


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    proc = cli("certify", "--model", "runs/nope", "--dataset", "x.tsv", "--debug", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("no such folder, and not a Hub id reachable offline")


def test_a_bug_still_prints_its_traceback(tmp_path):
    # a ValueError raised inside numpy (not by a raise statement of ours) is a bug: full traceback, exit 1
    code = ("import sys, numpy; from robusttext.errors import run_command; "
            "sys.exit(run_command('p', lambda argv: numpy.zeros(2).reshape(3), []))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "reshape" in proc.stderr
    assert ": error: " not in proc.stderr


def test_which_errors_are_the_users(tmp_path, monkeypatch):
    """The rule of robusttext.errors: a UserError, or a validation type raised by a raise statement of our
    packages; a failing operation in our code, or a raise elsewhere, is a bug."""
    import importlib.util

    from robusttext import errors

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    source = "def check(x):\n    raise ValueError(f'--x must be > 0, got {x}')\n\n\ndef buggy():\n    return int('x')\n"
    modules = {}
    for folder in (ours, theirs):
        folder.mkdir()
        (folder / "mod.py").write_text(source)
        spec = importlib.util.spec_from_file_location(f"mod_{folder.name}", folder / "mod.py")
        modules[folder.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[folder.name])
    monkeypatch.setattr(errors, "OUR_PACKAGES", (ours,))

    def caught(fn, *args):
        try:
            fn(*args)
        except Exception as err:  # noqa: BLE001 - the test inspects it
            return err
        raise AssertionError("no exception")

    assert errors.is_user_error(caught(modules["ours"].check, 0))
    assert not errors.is_user_error(caught(modules["ours"].buggy))
    assert not errors.is_user_error(caught(modules["theirs"].check, 0))
    assert errors.is_user_error(errors.UserError("anywhere"))
    assert not errors.is_user_error(KeyError("k"))


def test_interruptions_exit_130(capsys):
    from robusttext.errors import RunInterrupted, run_command

    def interrupted(argv):
        raise RunInterrupted(3, 10)

    def ctrl_c(argv):
        raise KeyboardInterrupt

    assert run_command("robusttext certify", interrupted, []) == 130
    assert capsys.readouterr().err == (
        "robusttext certify: interrupted after 3 of 10 inputs; rerun the same command to resume\n"
    )
    assert run_command("robusttext certify", ctrl_c, []) == 130
    assert capsys.readouterr().err == "robusttext certify: interrupted; rerun the same command to resume\n"


def test_version_is_the_package_version(tmp_path):
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = cli("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"robusttext {version}"


def test_ctrl_c_exits_130_with_the_resume_hint(tmp_path, tiny_model_dir):
    words = [f"word{i}" for i in range(997)]  # 60 distinct words a line: far too many deletions to enumerate
    lines = "".join(" ".join(words[(7 * i + j * 13) % 997] for j in range(60)) + f"\t{i % 2}\n" for i in range(400))
    (tmp_path / "many.tsv").write_text("text\tlabel\n" + lines)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "robusttext.cli", "certify", "--model", tiny_model_dir, "--dataset", "many.tsv",
         "--n", "100000", "--chunk-size", "1", "--output-dir", "out"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default,
    )
    deadline = time.monotonic() + 600
    while not (tmp_path / "out" / "run_config.json").exists():  # the command is running (imports done)
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("robusttext certify: interrupted") and last.endswith("rerun the same command to resume")
