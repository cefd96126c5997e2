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
from pathlib import Path
from typing import Any

from ..certificate.protocol import CertifyProtocol
from ..cli.arguments import AttackArguments, CertifyArguments, EvaluateArguments, ModelDataArguments, SmoothingArguments
from ..runs.results import read_jsonl, write_json

logger = logging.getLogger("robusttext")


def attack_targets(ev: EvaluateArguments) -> list[str]:
    """The attack targets of ``--attack-target``."""
    if ev.attack_target not in ("smoothed", "base", "both"):
        raise ValueError(f"--attack-target must be smoothed, base or both, got {ev.attack_target!r}")
    return ["smoothed", "base"] if ev.attack_target == "both" else [ev.attack_target]


def validate_evaluate_args(
    data: ModelDataArguments, smooth: SmoothingArguments, cert: CertifyArguments, attack: AttackArguments,
    ev: EvaluateArguments,
) -> tuple[Any, CertifyProtocol, dict[str, Any]]:
    """Check every stage's options before anything is loaded; returns the certification rate and protocol and
    each attack target's :class:`~robusttext.evaluation.attacks.AttackConfig`."""
    from ..cli.convert import attack_config, certify_setup

    rate, protocol = certify_setup(data, smooth, cert)
    configs = {target: attack_config(attack, cert, smoothed=target == "smoothed",
                                     recipes=ev.smoothed_recipes if target == "smoothed" else None)
               for target in attack_targets(ev)}
    if not (0.0 < ev.significance < 1.0):
        raise ValueError(f"--significance must be in (0, 1), got {ev.significance}")
    if ev.confirm_n < 1:
        raise ValueError(f"--confirm-n must be >= 1, got {ev.confirm_n}")
    return rate, protocol, configs


def evaluate_model(
    data: ModelDataArguments,
    smooth: SmoothingArguments,
    cert: CertifyArguments,
    attack: AttackArguments,
    ev: EvaluateArguments,
) -> dict[str, Any]:
    """Certify, attack, cross-check and report; returns ``evaluation_summary.json``'s content.

    ``data.max_examples`` examples are certified; the first ``attack.num_examples`` of them (default:
    all) are attacked. ``ev.attack_target`` decides which classifier the attacks target (the smoothed
    wrapper uses ``attack.attack_n`` Monte Carlo samples per query, default ``cert.n``; it runs
    ``ev.smoothed_recipes`` on the first ``ev.smoothed_num_examples`` examples when those are set).
    """
    from .attacks import run_attacks
    from ..runs.distributed import process_state
    from ..cli.convert import data_spec, smoothed_classifier
    from ..runs.certify import certify_dataset

    rate, protocol, configs = validate_evaluate_args(data, smooth, cert, attack, ev)
    alpha = protocol.alpha
    state = process_state()
    out = Path(cert.output_dir)
    timings: dict[str, float] = {}
    clf = smoothed_classifier(data, smooth, cert, rate, device=state.device)  # one model for every stage
    start = time.perf_counter()
    cert_summary = certify_dataset(clf, data_spec(data), out / "certify", protocol, chunk_size=cert.chunk_size,
                                   overwrite=cert.overwrite_output_dir, model=data.model)
    timings["certify_seconds"] = time.perf_counter() - start
    num_attacked = attack.num_examples if attack.num_examples is not None else data.max_examples
    attack_summaries: dict[str, dict] = {}
    for target, config in configs.items():
        start = time.perf_counter()
        num = (ev.smoothed_num_examples or num_attacked) if target == "smoothed" else num_attacked
        attack_summaries[target] = run_attacks(clf, data_spec(data, num), out / f"attack_{target}", config,
                                               overwrite=cert.overwrite_output_dir, model=data.model)
        timings[f"attack_{target}_seconds"] = time.perf_counter() - start
    if state.is_main_process:
        report_evaluation(data, smooth, ev, clf, alpha, out, cert_summary, attack_summaries, timings)
    state.wait_for_everyone()
    return json.loads((out / "evaluation_summary.json").read_text())


def report_evaluation(
    data: ModelDataArguments, smooth: SmoothingArguments, ev: EvaluateArguments, clf: Any, alpha: float, out: Path,
    cert_summary: dict, attack_summaries: dict[str, dict], timings: dict[str, float],
) -> None:
    """Cross-check the certified records against the attacks' and write the summary, report and figures."""
    from .attacks import text_index
    from .crosscheck import crosscheck

    start = time.perf_counter()
    cert_records = read_jsonl(out / "certify" / "results.jsonl")
    attack_records = [r for t in attack_summaries for r in read_jsonl(out / f"attack_{t}" / "attack_results.jsonl")]

    def confirm(texts: list[str]) -> list[int]:
        preds = clf.predict(texts, n=ev.confirm_n, alpha=alpha, indices=[text_index(t) for t in texts])
        return [p.prediction for p in preds]

    cc = crosscheck(
        cert_records, attack_records, smooth.unit, alpha, confirm=confirm, confirm_alpha=alpha,
        significance=ev.significance, tokenizer=clf.tokenizer,
    )
    timings["crosscheck_seconds"] = time.perf_counter() - start
    summary = build_summary(data, smooth, ev, cert_summary, attack_summaries, cc, timings)
    if not cc["sound"]:
        logger.error(cc["message"])
    write_json(out / "evaluation_summary.json", summary)
    write_json(out / "crosscheck.json", cc)
    shutil.copyfile(out / "certify" / "certified_accuracy.png", out / "certified_accuracy.png")
    plot_attack_accuracy(summary, out / "attack_accuracy.png")
    (out / "robustness_report.md").write_text(robustness_markdown(summary, cert_summary, cc), encoding="utf-8")


def build_summary(
    data: ModelDataArguments,
    smooth: SmoothingArguments,
    ev: EvaluateArguments,
    cert_summary: dict,
    attack_summaries: dict[str, dict],
    cc: dict,
    timings: dict[str, float],
) -> dict[str, Any]:
    """Headline numbers: the certification summary's accuracies, the attacks' accuracies under attack."""
    under_attack = {
        target: {name: s["accuracy_under_attack"] for name, s in summ["recipes"].items()}
        for target, summ in attack_summaries.items()
    }
    return {
        "model": data.model,
        "dataset": data.dataset,
        "split": data.split,
        "num_examples": cert_summary["num_examples"],
        "num_attacked": {t: next(iter(s["recipes"].values()))["num_examples"] for t, s in attack_summaries.items() if s["recipes"]},
        "unit": smooth.unit,
        "p_del": smooth.p_del,
        "alpha": cert_summary["parameters"]["alpha"],
        "clean_accuracy": cert_summary["clean_accuracy"],
        "smoothed_accuracy": cert_summary["smoothed_accuracy"],
        "certified_accuracy": cert_summary["certified_accuracy"],
        "median_certified_radius": cert_summary["median_certified_radius"],
        "accuracy_under_attack": under_attack,
        "attacks": {t: s["recipes"] for t, s in attack_summaries.items()},
        "attack_parameters": {t: s["parameters"] for t, s in attack_summaries.items()},
        "crosscheck": {k: v for k, v in cc.items() if k != "violations"},
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "certify_parameters": cert_summary["parameters"],
        "evaluate_parameters": {"attack_target": ev.attack_target, "confirm_n": ev.confirm_n, "significance": ev.significance},
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
    from ..runs.report import certification_markdown

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
