"""``robusttext evaluate``: certified and empirical robustness of one model in one report.

For the first N examples of a split: certify with RS-Del (:func:`robusttext.runs.certify.certify_dataset`:
clean accuracy, smoothed accuracy, certified-accuracy curve), attack with TextAttack recipes
(:func:`robusttext.evaluation.attacks.run_attacks`, against the smoothed and/or the base classifier), cross-check
the two (:func:`robusttext.evaluation.crosscheck.crosscheck`: successful attacks inside a certified radius,
confirmed by the smoothed PREDICT), and write ``robustness_report.md``, ``evaluation_summary.json``,
``certified_accuracy.png`` and ``attack_accuracy.png`` in ``output_dir``. The model is loaded once and
serves every stage; accuracies come from the certification summary. Every stage resumes (each writes its own
incremental results under ``output_dir``), and every stage shards over ``accelerate`` processes.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..certificate.protocol import CertifyProtocol
from ..certificate.smoothing import SmoothedTextClassifier
from ..hub.model_card import write_model_card
from ..runs.certify import certify_dataset, load_examples
from ..runs.data import DataSpec, TextData
from ..runs.distributed import process_state
from ..runs.report import certification_markdown
from ..runs.results import read_jsonl, write_json
from .attacks import AttackConfig, run_attacks, text_index
from .crosscheck import crosscheck

logger = logging.getLogger("robusttext")

#: ``EvaluateConfig.attack_target`` values.
ATTACK_TARGETS = ("smoothed", "base", "both")


@dataclass(frozen=True)
class EvaluateConfig:
    """What :func:`evaluate_model` runs besides certification (checked here, once).

    Args:
        attack_target: the classifier the attacks target: ``"smoothed"``, ``"base"`` or ``"both"``.
        num_attacked: attack the first N examples of the data (integer >= 1; None: every certified example).
        smoothed_recipes: recipes run against the smoothed target (None: the attack configuration's); each
            smoothed query costs the attack configuration's ``n`` noisy copies.
        smoothed_num_examples: attack only the first N examples through the smoothed target (integer >= 1;
            None: ``num_attacked``).
        confirm_n: noisy copies of the smoothed PREDICT that confirms a cross-check violation (integer >= 1).
        significance: flag the cross-check when its binomial-tail p-value is below this, in (0, 1).
    """

    attack_target: str = "smoothed"
    num_attacked: int | None = None
    smoothed_recipes: str | None = None
    smoothed_num_examples: int | None = None
    confirm_n: int = 1000
    significance: float = 0.05

    def __post_init__(self) -> None:
        if self.attack_target not in ATTACK_TARGETS:
            raise ValueError(f"attack_target must be smoothed, base or both, got {self.attack_target!r}")
        for name in ("num_attacked", "smoothed_num_examples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 (None: all), got {value!r}")
        if not (0.0 < float(self.significance) < 1.0):
            raise ValueError(f"significance must be in (0, 1), got {self.significance}")
        if isinstance(self.confirm_n, bool) or int(self.confirm_n) != self.confirm_n or self.confirm_n < 1:
            raise ValueError(f"confirm_n must be an integer >= 1, got {self.confirm_n!r}")

    @property
    def targets(self) -> list[str]:
        """The attack targets, in the order they run."""
        return ["smoothed", "base"] if self.attack_target == "both" else [self.attack_target]

    def attack_configs(self, attack: AttackConfig) -> dict[str, AttackConfig]:
        """Each target's attack configuration: ``attack`` against that target (the smoothed one runs
        ``smoothed_recipes`` when set)."""
        return {t: replace(attack, smoothed=t == "smoothed",
                           recipes=(self.smoothed_recipes or attack.recipes) if t == "smoothed" else attack.recipes)
                for t in self.targets}

    def examples(self, target: str) -> int | None:
        """How many of the first examples ``target`` is attacked on (None: all)."""
        return (self.smoothed_num_examples or self.num_attacked) if target == "smoothed" else self.num_attacked


def first_examples(data: Any, num: int | None, classifier: SmoothedTextClassifier) -> Any:
    """The first ``num`` examples of ``data`` (None: all): a :class:`DataSpec` with ``max_examples = num`` (so
    its runs record it as before), anything else loaded and cut."""
    if num is None:
        return data
    if isinstance(data, DataSpec):
        return replace(data, max_examples=num)
    ds = load_examples(data, classifier)
    return TextData(ds.dataset.select(range(min(num, len(ds)))), ds.label_names, ds.source, ds.split)


def evaluate_model(
    classifier: "SmoothedTextClassifier | str",
    data: Any,
    output_dir: str | Path,
    protocol: CertifyProtocol | None = None,
    attack: AttackConfig | None = None,
    config: EvaluateConfig | None = None,
    *,
    chunk_size: int = 32,
    overwrite: bool = False,
    model: str | None = None,
    update_model_card: bool = False,
    model_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Certify, attack, cross-check and report; returns ``evaluation_summary.json``'s content (every process).

    Args:
        classifier: a :class:`SmoothedTextClassifier`, or a model's Hub id or folder (smoothed at its folder's
            ``rate_schedule.json``, else ``p_del`` 0.9), serving every stage.
        data: the examples, as :func:`robusttext.runs.certify.certify_dataset` takes them (a ``DataSpec``, a
            ``datasets.Dataset``, a ``(texts, labels)`` pair, ...); every one is certified.
        output_dir: the folder of ``robustness_report.md``, ``evaluation_summary.json``, ``crosscheck.json``,
            the figures, and each stage's resumable run (``certify/``, ``attack_<target>/``).
        protocol: the certification protocol (default ``CertifyProtocol()``); its ``alpha`` is the cross-check's.
        attack: the recipes, smoothed queries' ``n`` and query budget (default ``AttackConfig()``).
        config: targets, attacked examples and the cross-check (default ``EvaluateConfig()``).
        chunk_size, overwrite, model: as in ``certify_dataset`` (inputs per block; start fresh; the model's name).
        update_model_card: merge the certified results (the ``certify/`` run) into ``model_dir/README.md``
            (default: the model's folder), as ``robusttext card`` does.
    """
    config = EvaluateConfig() if config is None else config
    configs = config.attack_configs(AttackConfig() if attack is None else attack)  # checked before any loading
    protocol = CertifyProtocol() if protocol is None else protocol
    state = process_state()
    if not isinstance(classifier, SmoothedTextClassifier):
        model = str(classifier) if model is None else model
        classifier = SmoothedTextClassifier.from_pretrained(str(classifier), device=state.device)
    clf, out, timings = classifier, Path(output_dir), {}
    start = time.perf_counter()
    cert_summary = certify_dataset(clf, data, out / "certify", protocol, chunk_size=chunk_size, overwrite=overwrite,
                                   model=model)
    timings["certify_seconds"] = time.perf_counter() - start
    attack_summaries: dict[str, dict] = {}
    for target, attack_config in configs.items():
        start = time.perf_counter()
        attack_summaries[target] = run_attacks(clf, first_examples(data, config.examples(target), clf),
                                               out / f"attack_{target}", attack_config, overwrite=overwrite, model=model)
        timings[f"attack_{target}_seconds"] = time.perf_counter() - start
    if state.is_main_process:
        report_evaluation(clf, config, protocol.alpha, out, cert_summary, attack_summaries, timings, model)
        if update_model_card:
            write_model_card(out / "certify", model_dir)
    state.wait_for_everyone()
    return json.loads((out / "evaluation_summary.json").read_text())


def report_evaluation(
    clf: SmoothedTextClassifier, config: EvaluateConfig, alpha: float, out: Path, cert_summary: dict,
    attack_summaries: dict[str, dict], timings: dict[str, float], model: str | None = None,
) -> None:
    """Cross-check the certified records against the attacks' and write the summary, report and figures."""
    start = time.perf_counter()
    cert_records = read_jsonl(out / "certify" / "results.jsonl")
    attack_records = [r for t in attack_summaries for r in read_jsonl(out / f"attack_{t}" / "attack_results.jsonl")]

    def confirm(texts: list[str]) -> list[int]:
        preds = clf.predict(texts, n=config.confirm_n, alpha=alpha, indices=[text_index(t) for t in texts])
        return [p.prediction for p in preds]

    cc = crosscheck(
        cert_records, attack_records, clf.unit, alpha, confirm=confirm, confirm_alpha=alpha,
        significance=config.significance, tokenizer=clf.tokenizer,
    )
    timings["crosscheck_seconds"] = time.perf_counter() - start
    identity = {"model": model if model is not None else clf.name_or_path, "unit": clf.unit, "p_del": clf.p_del}
    summary = build_summary(identity, config, cert_summary, attack_summaries, cc, timings)
    if not cc["sound"]:
        logger.error(cc["message"])
    write_json(out / "evaluation_summary.json", summary)
    write_json(out / "crosscheck.json", cc)
    shutil.copyfile(out / "certify" / "certified_accuracy.png", out / "certified_accuracy.png")
    plot_attack_accuracy(summary, out / "attack_accuracy.png")
    (out / "robustness_report.md").write_text(robustness_markdown(summary, cert_summary, cc), encoding="utf-8")


def build_summary(
    identity: dict[str, Any],
    config: EvaluateConfig,
    cert_summary: dict,
    attack_summaries: dict[str, dict],
    cc: dict,
    timings: dict[str, float],
) -> dict[str, Any]:
    """Headline numbers: the certification summary's accuracies, the attacks' accuracies under attack.
    ``identity``: the model as named, the deletion unit and the constant ``p_del`` (None for a schedule)."""
    under_attack = {
        target: {name: s["accuracy_under_attack"] for name, s in summ["recipes"].items()}
        for target, summ in attack_summaries.items()
    }
    params = cert_summary["parameters"]
    return {
        "model": identity["model"],
        "dataset": params.get("dataset"),
        "split": params.get("split"),
        "num_examples": cert_summary["num_examples"],
        "num_attacked": {t: next(iter(s["recipes"].values()))["num_examples"] for t, s in attack_summaries.items() if s["recipes"]},
        "unit": identity["unit"],
        "p_del": identity["p_del"],
        "alpha": params["alpha"],
        "clean_accuracy": cert_summary["clean_accuracy"],
        "smoothed_accuracy": cert_summary["smoothed_accuracy"],
        "certified_accuracy": cert_summary["certified_accuracy"],
        "median_certified_radius": cert_summary["median_certified_radius"],
        "accuracy_under_attack": under_attack,
        "attacks": {t: s["recipes"] for t, s in attack_summaries.items()},
        "attack_parameters": {t: s["parameters"] for t, s in attack_summaries.items()},
        "crosscheck": {k: v for k, v in cc.items() if k != "violations"},
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "certify_parameters": params,
        "evaluate_parameters": {"attack_target": config.attack_target, "confirm_n": config.confirm_n,
                                "significance": config.significance},
        "versions": cert_summary.get("versions"),
    }


def plot_attack_accuracy(summary: dict, path: str | Path) -> None:
    """Bar chart: clean, smoothed, certified (r >= 1) accuracy and accuracy under each attack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["clean", "smoothed", "certified r>=1"]
    values = [summary["clean_accuracy"], summary["smoothed_accuracy"], summary["certified_accuracy"].get("1", 0.0)]
    for target, recipes in summary["accuracy_under_attack"].items():
        for recipe, acc in recipes.items():
            names.append(f"{recipe}\n({target})")
            values.append(acc or 0.0)
    fig, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(names)), 3.6), dpi=120)
    ax.bar(range(len(names)), values, color=["#4c72b0"] * 3 + ["#dd8452"] * (len(names) - 3))
    ax.set_xticks(range(len(names)), names, fontsize=7)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Accuracy: clean, certified, under attack")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def robustness_markdown(summary: dict, cert_summary: dict, cc: dict) -> str:
    """``robustness_report.md``: a model-card section with certified and empirical robustness."""

    lines = [
        f"# Robustness report: `{summary['model']}`",
        "",
        f"Dataset `{summary['dataset']}` split `{summary['split']}`, {summary['num_examples']} examples. "
        f"Wall time: {sum(summary['timings'].values()):.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in summary['timings'].items())}).",
        "",
        "| clean accuracy | smoothed accuracy | certified accuracy (r >= 1) | median certified radius |",
        "|---|---|---|---|",
        f"| {_pct(summary['clean_accuracy'])} | {_pct(summary['smoothed_accuracy'])} | "
        f"{_pct(summary['certified_accuracy'].get('1'))} | {summary['median_certified_radius']:g} {summary['unit']}s |",
        "",
        certification_markdown(cert_summary, summary["unit"]),
        "![certified accuracy](certified_accuracy.png)",
        "",
        "## Empirical robustness (TextAttack)",
        "",
        "| target | recipe | examples | original accuracy | accuracy under attack | attack success rate | "
        "avg perturbed words | avg word edits | avg queries |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for target, recipes in summary["attacks"].items():
        for recipe, s in recipes.items():
            lines.append(
                f"| {target} | {recipe} | {s['num_examples']} | {_pct(s['original_accuracy'])} | "
                f"{_pct(s['accuracy_under_attack'])} | {_pct(s['attack_success_rate'])} | "
                f"{_num(s['avg_perturbed_words_pct'])}% | {_num(s['avg_word_edits'])} | {_num(s['avg_num_queries'])} |"
            )
    params = summary.get("attack_parameters", {}).get("smoothed")
    if params:
        lines += ["", f"The smoothed target answers each query with class frequencies of {params.get('attack_n')} "
                  f"deletion samples (p_del = {params.get('p_del')}, seed {params.get('seed')}, fixed per text)."]
    lines += [
        "",
        "Input reduction removes words while the prediction stays the same: its accuracy under attack is the "
        "original accuracy, and its perturbed-words share says how much of each input the model ignores.",
        "",
        "![accuracy under attack](attack_accuracy.png)",
        "",
        "## Cross-check: certificates vs attacks",
        "",
        ("**" + cc["message"] + "**") if not cc["sound"] else cc["message"],
        "",
        f"Certified inputs: {cc['n_certified']}; successful attacks within the certified radius ({cc['unit']} edits): "
        f"{cc['n_candidates']}; confirmed by the smoothed PREDICT: {cc['n_violations']} inputs "
        f"(allowed at alpha: {cc['allowed']}, p = {cc['pvalue']:.3g}).",
        "",
        "| recipe | successful attacks on certified inputs | within radius | confirmed violations |",
        "|---|---|---|---|",
    ]
    for recipe, c in cc["per_recipe"].items():
        lines.append(f"| {recipe} | {c['successful_on_certified']} | {c['candidates']} | {c['violations']} |")
    lines.append("")
    return "\n".join(lines)
