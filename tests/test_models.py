"""Safe model loading: no model's own code runs unless asked, and an untrained head is refused for inference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robusttext.errors import RemoteCodeRefused, UntrainedHeadError, UserError
from robusttext.certificate.models import load_classifier

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def custom_code_model(tmp_path, tiny_model_dir) -> tuple[Path, Path]:
    """A model folder whose config maps the Auto classes to its own ``custom.py`` (``auto_map``); importing
    that module writes a marker file. Returns ``(folder, marker)``."""
    folder, marker = tmp_path / "custom_model", tmp_path / "MARKER"
    folder.mkdir()
    for name in os.listdir(tiny_model_dir):  # the tiny model's tokenizer files (and weights, never used)
        if name != "config.json":
            (folder / name).write_bytes((Path(tiny_model_dir) / name).read_bytes())
    (folder / "config.json").write_text(json.dumps({
        "model_type": "robusttext-custom",
        "auto_map": {"AutoConfig": "custom.CustomConfig", "AutoModelForSequenceClassification": "custom.CustomModel"},
    }))
    (folder / "custom.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('custom code ran')\n"
        "from transformers import PretrainedConfig\n\n\nclass CustomConfig(PretrainedConfig):\n"
        "    model_type = 'robusttext-custom'\n"
    )
    return folder, marker


def cli(*argv: str, cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-m", "robusttext.cli", *argv], cwd=cwd, env=full_env, input=stdin,
                          capture_output=True, text=True, timeout=900)


def test_custom_code_is_refused_even_with_yes_on_stdin(custom_code_model, tmp_path):
    folder, marker = custom_code_model
    data = tmp_path / "d.tsv"
    data.write_text("text\tlabel\ngood\t1\n")
    args = ("certify", "--model", str(folder), "--dataset", str(data), "--output-dir", str(tmp_path / "out"))
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules")}  # where transformers would copy the model's code
    proc = cli(*args, cwd=tmp_path, stdin="y\ny\n", **env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("robusttext certify: error: --model ") and "--trust-remote-code" in last
    assert not marker.exists()
    # the control: opting in does run the folder's code (so the marker would have shown it above)
    cli(*args, "--trust-remote-code", cwd=tmp_path, **env)
    assert marker.read_text() == "custom code ran"


def test_custom_code_is_refused_in_python(custom_code_model):
    folder, marker = custom_code_model
    with pytest.raises(RemoteCodeRefused, match="--trust-remote-code"):
        load_classifier(str(folder))
    assert not marker.exists()


@pytest.fixture(scope="module")
def bare_encoder(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny BERT saved without its classification head (like the embedded MiniLM as it ships)."""
    from transformers import AutoTokenizer, BertModel

    out = tmp_path_factory.mktemp("bare")
    BertModel.from_pretrained(tiny_model_dir).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def test_untrained_head_is_refused_for_inference(bare_encoder):
    with pytest.raises(UntrainedHeadError, match=r"classifier\.bias, classifier\.weight .*train it first"):
        load_classifier(str(bare_encoder))


def test_untrained_head_is_accepted_for_training_and_on_request(bare_encoder, tiny_model_dir):
    import torch

    model, _ = load_classifier(str(bare_encoder), label_names=["neg", "pos"])  # training: a new head
    assert model.config.id2label == {0: "neg", 1: "pos"}
    opted, _ = load_classifier(str(bare_encoder), allow_untrained_head=True)
    assert opted.classifier.weight.shape[0] == opted.config.num_labels
    trained, _ = load_classifier(tiny_model_dir)  # every weight from the checkpoint: no refusal
    saved = __import__("safetensors.torch", fromlist=["_"]).load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    assert torch.equal(trained.classifier.weight, saved["classifier.weight"])


def test_embedded_minilm_as_it_ships_is_refused_for_certification(minilm_path):
    with pytest.raises(UntrainedHeadError, match="embedded:minilm-l6"):
        load_classifier("embedded:minilm-l6")


@pytest.mark.parametrize(
    "name, message",
    [
        ("runs/nope", "--model runs/nope: no such folder, and not a Hub id reachable offline"),
        ("./runs/nope", "--model ./runs/nope: no such folder"),
    ],
)
def test_missing_model_is_one_line(name, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as info:
        load_classifier(name)
    assert str(info.value) == message


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_classifier(str(tmp_path))
