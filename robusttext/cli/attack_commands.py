"""The ``robusttext attack`` and ``robusttext evaluate`` subcommands (registered in ``cli.COMMANDS``).

    robusttext attack   --model M --dataset D --recipes deepwordbug,pruthi --num-examples 100 [--smoothed --p-del 0.9 --n 1000]
    robusttext evaluate --model M --dataset D --max-examples 200 --output-dir runs/eval   (or --config configs/evaluate_sst2.yaml)

Each parses its dataclasses and calls one library function.
"""

from __future__ import annotations

from typing import Any, Sequence


def cmd_attack(argv: Sequence[str]) -> int:
    """TextAttack recipes against the base or the smoothed classifier (``robusttext.evaluation.attacks.run_attacks``)."""
    from .arguments import AttackArguments, CertifyArguments, ModelDataArguments, SmoothingArguments
    from .convert import attack_from_arguments
    from ..config import parse

    data, smooth, cert, attack = parse(
        (ModelDataArguments, SmoothingArguments, CertifyArguments, AttackArguments), argv, "robusttext attack",
        defaults={"n": 1000, "output_dir": "runs/attack"},
    )
    summary = attack_from_arguments(data, smooth, cert, attack)
    for name, s in summary["recipes"].items():
        print(
            f"{name:<16} target={summary['target']} examples={s['num_examples']} "
            f"original_accuracy={_fmt(s['original_accuracy'])} accuracy_under_attack={_fmt(s['accuracy_under_attack'])} "
            f"success_rate={_fmt(s['attack_success_rate'])} avg_perturbed_words_pct={_fmt(s['avg_perturbed_words_pct'], 1)} "
            f"avg_queries={_fmt(s['avg_num_queries'], 1)}"
        )
    print(f"wrote {cert.output_dir}/attack_results.jsonl, attack_summary.json")
    return 0


def cmd_evaluate(argv: Sequence[str]) -> int:
    """Certify + attack + cross-check + report (``robusttext.evaluation.evaluate.evaluate_model``); with
    ``--update-model-card`` / ``--push-to-hub``, the certified results into the model folder's Hub card."""
    from .arguments import (AttackArguments, CertifyArguments, CertifyCardArguments, EvaluateArguments,
                            ModelDataArguments, SmoothingArguments)
    from ..config import parse

    data, smooth, cert, attack, ev, card = parse(
        (ModelDataArguments, SmoothingArguments, CertifyArguments, AttackArguments, EvaluateArguments,
         CertifyCardArguments), argv, "robusttext evaluate", defaults={"output_dir": "runs/evaluate", "max_examples": 200},
    )
    return evaluate_and_report(data, smooth, cert, attack, ev, card)


def evaluate_and_report(data: Any, smooth: Any, cert: Any, attack: Any, ev: Any, card: Any = None, config: Any = None) -> int:
    """Run ``evaluate`` from its parsed argument dataclasses (``card``: ``CertifyCardArguments``; ``config``: an
    ``EvaluateConfig`` replacing ``ev``'s), print the headline numbers and write the card when asked; exit status 1
    when the cross-check flags the certificates."""
    from pathlib import Path

    from .convert import evaluate_from_arguments
    from ..hub.model_card import card_for_run, hub_token

    push = card.push_to_hub if card is not None else None
    token = hub_token(push) if push else None  # refused before anything is written
    s = evaluate_from_arguments(data, smooth, cert, attack, ev, config)
    curve = ", ".join(f"r>={r}: {v:.3f}" for r, v in s["certified_accuracy"].items())
    print(
        f"examples={s['num_examples']} clean_accuracy={s['clean_accuracy']:.4f} smoothed_accuracy={s['smoothed_accuracy']:.4f} "
        f"median_certified_radius={s['median_certified_radius']:g} ({s['unit']}s)\ncertified accuracy: {curve}"
    )
    for target, recipes in s["accuracy_under_attack"].items():
        print(f"accuracy under attack ({target}): " + ", ".join(f"{k}: {_fmt(v)}" for k, v in recipes.items()))
    print(s["crosscheck"]["message"])
    print(f"timings: {s['timings']}\nwrote {cert.output_dir}/robustness_report.md, evaluation_summary.json, *.png")
    if card is not None and (card.update_model_card or push):
        print(card_for_run(Path(cert.output_dir) / "certify", card.model_dir, push, token))
    return 0 if s["crosscheck"]["sound"] else 1


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
