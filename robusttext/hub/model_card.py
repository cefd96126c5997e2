"""A certification run's results as the model folder's Hugging Face card (``README.md``), and pushing it.

:func:`write_model_card` reads a run folder of ``robusttext certify`` (``summary.json``,
``certified_accuracy.png``) and writes, into the certified model's folder:

- ``model-index`` metadata built with ``huggingface_hub`` (``EvalResult``): task ``text-classification``, the
  dataset's type, name, config and split, and the metrics clean accuracy (``accuracy``), smoothed accuracy,
  certified accuracy at each reported radius and the median certified radius, each with ``args`` naming the
  deletion unit, the rate schedule, n0, n, alpha, the top-2 rule and the seed;
- a human section: the guarantee in one sentence, the certified-accuracy table and curve, the command that
  reproduces the run and the robusttext version.

A card the user wrote is merged, never lost: only robusttext's section of this dataset and split (between
``<!-- robusttext:... -->`` markers) and robusttext's ``model-index`` entries of this dataset and split are
replaced (a second write replaces them, never duplicates them); results of other datasets or splits stay, and
every byte of the card outside the ``model-index`` block and robusttext's sections is kept.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from ..runs.distributed import process_state
from ..runs.report import UNIT_NAMES, certification_markdown
from ..version import __version__

#: ``metric_args["method"]`` of the model-index entries robusttext owns (and replaces).
METHOD = "robusttext randomized deletion"
CARD = "README.md"


def eval_results(summary: dict[str, Any]) -> list[Any]:
    """The ``huggingface_hub.EvalResult`` s of a certification summary (labelled runs only)."""
    from huggingface_hub import EvalResult

    p = summary["parameters"]
    if summary.get("certified_accuracy") is None:
        raise ValueError("model card: the run has no labels, so no accuracy to report; certify a labelled split")
    unit = summary.get("unit") or p.get("unit") or "word"
    args = {"method": METHOD, "unit": unit, "rate_schedule": rate_argument(p), "n0": p.get("n0"), "n": p.get("n"),
            "alpha": p.get("alpha"), "top2": p.get("top2"), "seed": p.get("seed"), "examples": summary["num_examples"]}
    dataset = {"task_type": "text-classification", "dataset_type": str(p.get("dataset")),
               "dataset_name": dataset_title(p), "dataset_config": p.get("dataset_config"),
               "dataset_split": p.get("split")}
    metrics = []
    if summary.get("clean_accuracy") is not None:
        metrics.append(("accuracy", "clean accuracy", summary["clean_accuracy"], args))
    metrics.append(("smoothed_accuracy", "smoothed accuracy", summary["smoothed_accuracy"], args))
    for radius, value in summary["certified_accuracy"].items():
        metrics.append(("certified_accuracy", f"certified accuracy at radius {radius}", value,
                        {**args, "radius": int(radius)}))
    metrics.append(("median_certified_radius", f"median certified radius ({unit}s)", summary["median_certified_radius"], args))
    return [EvalResult(**dataset, metric_type=t, metric_name=n, metric_value=v, metric_args=a) for t, n, v, a in metrics]


def rate_argument(params: dict[str, Any]) -> str:
    """The run's deletion rate in ``robusttext certify``'s own syntax (``--p-del`` value or ``--rate-schedule``)."""
    if params.get("p_del") is not None:
        return f"fixed:{params['p_del']:g}"
    sched = dict(params.get("rate_schedule") or {})
    kind = sched.pop("kind", "?")
    text = lambda v: "|".join(f"{x:g}" for x in v) if isinstance(v, list) else f"{v:g}"  # noqa: E731
    return f"{kind}:" + ",".join(f"{k}={text(v)}" for k, v in sched.items())


def dataset_title(params: dict[str, Any]) -> str:
    """The dataset's name as shown on the Hub: its id or file name, with its config."""
    name = Path(str(params.get("dataset"))).name or str(params.get("dataset"))
    return f"{name} ({params['dataset_config']})" if params.get("dataset_config") else name


def reproduce_command(params: dict[str, Any]) -> str:
    """The ``robusttext certify`` command line of a run (the model and dataset as they were named)."""
    parts = ["robusttext certify", f"--model {params.get('model')}", f"--dataset {params.get('dataset')}"]
    if params.get("dataset_config"):
        parts.append(f"--dataset-config {params['dataset_config']}")
    parts.append(f"--split {params.get('split')}")
    parts.append(f"--p-del {params['p_del']:g}" if params.get("p_del") is not None else f"--rate-schedule {rate_argument(params)}")
    parts += [f"--unit {params.get('unit')}", f"--n0 {params.get('n0')}", f"--n {params.get('n')}",
              f"--alpha {params.get('alpha')}", f"--top2 {params.get('top2')}", f"--seed {params.get('seed')}"]
    for key in ("max_examples", "max_length"):
        if params.get(key) is not None:
            parts.append(f"--{key.replace('_', '-')} {params[key]}")
    return " ".join(parts)


def section_key(params: dict[str, Any]) -> str:
    """What one section and one set of model-index entries are about: dataset, config and split."""
    return f"{params.get('dataset')}|{params.get('dataset_config') or ''}|{params.get('split')}"


def human_section(summary: dict[str, Any], image: str | None) -> str:
    """robusttext's Markdown section of the card, between its markers."""

    p, unit = summary["parameters"], summary.get("unit") or summary["parameters"].get("unit", "word")
    key = section_key(p)
    heading, table = certification_markdown(summary, unit).rstrip("\n").split("\n", 1)
    lines = [
        f"<!-- robusttext:start {key} -->",
        heading,
        "",
        f"**Guarantee.** For each input certified at radius r, with probability at least {1 - float(p['alpha']):g} over "
        f"the Monte Carlo samples, the smoothed classifier returns the same class for every text within Levenshtein "
        f"distance r of it, counted in {UNIT_NAMES.get(unit, unit)} (randomized deletion, {rate_argument(p)}).",
        table,
        "",
    ]
    if image:
        lines += [f"![certified accuracy on {dataset_title(p)} {p.get('split')}]({image})", ""]
    lines += ["Reproduce:", "", "```bash", reproduce_command(p), "```", "",
              f"Written by robusttext {__version__}.", f"<!-- robusttext:end {key} -->"]
    return "\n".join(lines) + "\n"


def split_front_matter(text: str) -> tuple[str, str]:
    """``(front matter between the --- lines, without them; the rest)``; ``("", text)`` without front matter."""
    m = re.match(r"---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(\r?\n|$)", text, flags=re.S)
    if not m:
        return "", text
    return m.group(1) or "", text[m.end():]


def replace_model_index(front: str, model_index: list[dict]) -> str:
    """``front`` (YAML text) with its top-level ``model-index`` block replaced by ``model_index`` (appended
    when absent); every other line is kept as it was."""
    lines = front.splitlines(keepends=True)
    block = yaml.safe_dump({"model-index": model_index}, sort_keys=False, allow_unicode=True, width=10_000)
    start = next((i for i, line in enumerate(lines) if re.match(r"model-index\s*:", line)), None)
    if start is None:
        return front + ("" if not front or front.endswith("\n") else "\n") + block
    end = start + 1
    while end < len(lines) and (lines[end][:1] in (" ", "\t", "-", "#") or not lines[end].strip()):
        end += 1
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1  # blank lines and comments before the next key belong to it
    return "".join(lines[:start]) + block + "".join(lines[end:])


def merged_model_index(front: str, summary: dict[str, Any], default_name: str) -> list[dict]:
    """The card's model-index with robusttext's entries of this run's dataset and split replaced by the run's."""
    from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

    data = yaml.safe_load(front) if front.strip() else {}
    existing = (data or {}).get("model-index") if isinstance(data, dict) else None
    name, kept = default_name, []
    if existing:
        name, results = model_index_to_eval_results(existing)
        key = section_key(summary["parameters"])
        kept = [r for r in results if not (
            (r.metric_args or {}).get("method") == METHOD
            and f"{r.dataset_type}|{r.dataset_config or ''}|{r.dataset_split}" == key)]
    return eval_results_to_model_index(name or default_name, kept + eval_results(summary))


def merge_card(text: str, summary: dict[str, Any], image: str | None, default_name: str) -> str:
    """The card ``text`` with robusttext's model-index entries and section of this run replaced (or added)."""
    front, body = split_front_matter(text)
    if not text:
        front = yaml.safe_dump({"library_name": "transformers", "pipeline_tag": "text-classification",
                                "tags": ["robusttext", "certified-robustness", "randomized-deletion"]}, sort_keys=False)
        body = f"\n# {default_name}\n\n"
    front = replace_model_index(front, merged_model_index(front, summary, default_name))
    key = re.escape(section_key(summary["parameters"]))
    section = human_section(summary, image)
    pattern = re.compile(rf"<!-- robusttext:start {key} -->.*?<!-- robusttext:end {key} -->\r?\n?", re.S)
    if pattern.search(body):
        body = pattern.sub(lambda _m: section, body, count=1)
    else:
        body += "" if not body or body.endswith("\n\n") else ("\n" if body.endswith("\n") else "\n\n")
        body += section
    return f"---\n{front}---\n{body}"


def write_model_card(run_dir: str | Path, model_dir: str | Path | None = None) -> Path:
    """Merge the results of the ``robusttext certify`` run in ``run_dir`` into ``model_dir/README.md``
    (default: the run's model, when it is a local folder); returns the card's path. The curve is copied
    beside it as ``robusttext_certified_accuracy_<dataset>_<split>.png``. ValueError (naming the folder and the
    fix) when the run or the model folder is missing."""
    run = Path(run_dir)
    if not (run / "summary.json").is_file():
        raise ValueError(f"{run}: no summary.json; give the output folder of a finished robusttext certify run")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    for curve in ("certified_accuracy", "certified_fraction"):  # JSON sorted the radii as text: 0, 1, 10, 2, ...
        if summary.get(curve):
            summary[curve] = dict(sorted(summary[curve].items(), key=lambda kv: float(kv[0])))
    params = summary.get("parameters") or {}
    folder = Path(model_dir) if model_dir else Path(str(params.get("model")))
    if not folder.is_dir():
        raise ValueError(f"model card: the run's model {params.get('model')!r} is not a local folder; pass --model-dir "
                         "(the folder whose README.md to write)")
    image = None
    if (run / "certified_accuracy.png").is_file():
        slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{dataset_title(params)}_{params.get('split')}").strip("_")
        image = f"robusttext_certified_accuracy_{slug}.png"
        shutil.copyfile(run / "certified_accuracy.png", folder / image)
    card = folder / CARD
    text = ""
    if card.is_file():
        with open(card, encoding="utf-8", newline="") as f:
            text = f.read()
    merged = merge_card(text, summary, image, default_name=folder.resolve().name)
    with open(card, "w", encoding="utf-8", newline="") as f:
        f.write(merged)
    return card


def hub_token(repo_id: str) -> str:
    """The token to push ``repo_id`` with (``HF_TOKEN`` or the login cache; never written anywhere). ValueError,
    before anything is written, when offline, without a token or with a malformed repo id."""
    import os

    from huggingface_hub import constants, get_token
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except Exception as err:  # HFValidationError
        raise ValueError(f"--push-to-hub {repo_id!r}: not a repository id (e.g. user/model-name): {err}") from None
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        raise ValueError(f"--push-to-hub {repo_id}: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it "
                         "(nothing was written)")
    token = get_token()
    if not token:
        raise ValueError(f"--push-to-hub {repo_id}: no Hugging Face token; set HF_TOKEN or run `hf auth login` "
                         "(nothing was written)")
    return token


def push_model_folder(folder: str | Path, repo_id: str, token: str | None = None) -> str:
    """Upload ``folder`` (model, tokenizer, card) to the Hub model repository ``repo_id`` (created if
    missing); returns the commit URL. ValueError with one line when the Hub cannot be reached or refuses."""
    from huggingface_hub import HfApi

    token = token or hub_token(repo_id)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                                 commit_message="robusttext: certified results in the model card")
    except Exception as err:  # network, permission, quota: one line, the folder is unchanged
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"--push-to-hub {repo_id}: the upload failed ({type(err).__name__}: {first})") from None
    return str(getattr(info, "commit_url", info))


def card_for_run(run_dir: str | Path, model_dir: str | Path | None = None, push_to_hub: str | None = None,
                 token: str | None = None) -> str:
    """``robusttext card`` / ``certify --update-model-card``: write the card (on the main process) and, with
    ``push_to_hub``, upload the folder (the token is checked before the card is written); returns what was done."""

    if push_to_hub and token is None:
        token = hub_token(push_to_hub)
    if not process_state().is_main_process:
        return ""
    card = write_model_card(run_dir, model_dir)
    done = f"wrote {card}"
    if push_to_hub:
        done += f"\npushed {card.parent} to {push_to_hub}: {push_model_folder(card.parent, push_to_hub, token)}"
    return done
