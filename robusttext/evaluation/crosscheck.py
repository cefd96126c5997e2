"""Certified vs empirical: does any successful attack land inside a certified radius?

An RS-Del certificate for input x says: with probability >= 1 - alpha (over the Monte Carlo samples
that produced it), the smoothed classifier g returns the certified class c on every x' within
Levenshtein distance r of x, counted in the smoothing unit (Huang et al., RS-Del, NeurIPS 2023,
Thm. 1). An attack that changed a prediction with d <= r edits (in that unit) is a *candidate*
violation; it is a *confirmed* violation when g itself, evaluated at x' by Cohen et al.'s PREDICT
(abstain unless a binomial test is significant at ``confirm_alpha``), returns a class other than c.

Certificates of different inputs use independent random streams, so under soundness the number V
of certified inputs with a confirmed violation is stochastically at most Binomial(N, alpha +
confirm_alpha) (a confirmed violation needs the certificate or PREDICT to have failed). The
cross-check reports V, the largest count that rate allows at the chosen significance, and the
binomial-tail p-value P[Binomial(N, rate) >= V]; it is flagged (``sound = False``) when the p-value is
below ``significance``. Without a confirmation function every candidate counts, and the rate is alpha
(an attack on a Monte Carlo estimate can flip it without g flipping, so this is stricter).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from scipy import stats as scipy_stats

from ..certificate.deletion import unit_edits


def allowed_violations(n_certified: int, rate: float, significance: float) -> int:
    """Largest V with P[Binomial(n_certified, rate) >= V] >= significance (V at most this is not flagged)."""
    v = 0
    while v < n_certified and scipy_stats.binom.sf(v, n_certified, rate) >= significance:  # sf(v) = P[X >= v+1]
        v += 1
    return v


def attacks_within_radius(
    certified: dict[int, dict], attack_records: Sequence[dict], unit: str, tokenizer: Any = None
) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """Successful attacks on certified inputs whose edit distance (in ``unit``) is within the certified
    radius - the candidates for a violation - and counts per "recipe (target)"."""
    candidates: list[dict] = []
    per_recipe: dict[str, dict[str, int]] = {}
    for rec in attack_records:
        recipe = f"{rec['recipe']} ({rec['target']})" if rec.get("target") else rec["recipe"]
        counts = per_recipe.setdefault(recipe, {"successful_on_certified": 0, "candidates": 0, "violations": 0})
        cert = certified.get(int(rec["index"]))
        if cert is None or rec["result"] != "successful" or rec["perturbed_prediction"] == rec["original_prediction"]:
            continue
        counts["successful_on_certified"] += 1
        edits = unit_edits(rec["original_text"], rec["perturbed_text"], unit, tokenizer)
        if edits <= float(cert["radius"]):
            counts["candidates"] += 1
            candidates.append({
                "index": int(rec["index"]), "recipe": recipe, "target": rec.get("target"), "radius": cert["radius"],
                "edits": edits, "certified_prediction": int(cert["prediction"]), "perturbed_text": rec["perturbed_text"],
            })
    return candidates, per_recipe


def confirmed_violations(candidates: list[dict], confirm: Callable[[list[str]], Sequence[int]] | None) -> list[dict]:
    """The candidates whose perturbed text the smoothed PREDICT (``confirm``) gives another, non-abstained
    class than the certified one (every candidate without ``confirm``); marks each candidate."""
    preds = list(confirm([c["perturbed_text"] for c in candidates])) if confirm is not None and candidates else []
    for i, c in enumerate(candidates):
        if preds:
            c["smoothed_prediction"] = int(preds[i])
        c["confirmed"] = not preds or (int(preds[i]) >= 0 and int(preds[i]) != c["certified_prediction"])
    return [c for c in candidates if c["confirmed"]]


def crosscheck(
    cert_records: Sequence[dict],
    attack_records: Sequence[dict],
    unit: str,
    alpha: float,
    confirm: Callable[[list[str]], Sequence[int]] | None = None,
    confirm_alpha: float = 0.0,
    significance: float = 0.05,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Compare certificates with successful attacks on the same inputs.

    Args:
        cert_records: certification records with ``index``, ``prediction`` (-1 = abstain), ``radius``.
        attack_records: attack records with ``index``, ``recipe``, ``result``, ``original_text``,
            ``perturbed_text``, ``original_prediction``, ``perturbed_prediction``.
        unit: the certificate's unit (``word``, ``char`` or ``token``; token needs ``tokenizer``).
        alpha: the certificates' failure probability.
        confirm: maps perturbed texts to the smoothed classifier's PREDICT class (-1 = abstain).
        confirm_alpha: PREDICT's failure probability.
        significance: flag when the binomial-tail p-value is below this.

    Returns a dict with ``n_certified``, ``n_candidates``, ``n_violations`` (certified inputs with a
    confirmed violation), ``allowed`` (max consistent with alpha), ``pvalue``, ``sound`` and
    ``violations`` (one entry per violating attack), plus counts per "recipe (target)".
    """
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    certified = {int(r["index"]): r for r in cert_records if int(r["prediction"]) >= 0 and float(r["radius"]) >= 0}
    candidates, per_recipe = attacks_within_radius(certified, attack_records, unit, tokenizer)
    violations = confirmed_violations(candidates, confirm)
    for c in violations:
        per_recipe[c["recipe"]]["violations"] += 1
    violated_inputs = sorted({c["index"] for c in violations})
    n = len(certified)
    rate = min(1.0, alpha + (confirm_alpha if confirm is not None else 0.0))
    v = len(violated_inputs)
    pvalue = float(scipy_stats.binom.sf(v - 1, n, rate)) if n and v else 1.0
    allowed = allowed_violations(n, rate, significance) if n else 0
    sound = pvalue >= significance
    return {
        "unit": unit,
        "alpha": alpha,
        "confirm_alpha": confirm_alpha if confirm is not None else None,
        "confirmed_by_predict": confirm is not None,
        "significance": significance,
        "n_certified": n,
        "n_candidates": len(candidates),
        "n_violations": v,
        "violating_indices": violated_inputs,
        "allowed": allowed,
        "pvalue": pvalue,
        "sound": sound,
        "per_recipe": per_recipe,
        "violations": violations,
        "message": crosscheck_message(n, v, allowed, pvalue, rate, sound, unit),
    }


def crosscheck_message(n: int, v: int, allowed: int, pvalue: float, rate: float, sound: bool, unit: str) -> str:
    """One line for logs and reports; loud when the certificates look unsound."""
    if sound:
        return (
            f"cross-check passed: {v} of {n} certified inputs have a confirmed attack within their radius "
            f"({unit}s); up to {allowed} are consistent with the failure rate {rate:g} (p = {pvalue:.3g})."
        )
    return (
        f"!!! CROSS-CHECK FAILED: {v} of {n} certified inputs have a confirmed successful attack within "
        f"their certified radius ({unit}s), more than the {allowed} the failure rate {rate:g} allows "
        f"(binomial tail p = {pvalue:.3g}). The certificates are NOT sound as stated: check p_del, unit, "
        "alpha and the radius computation. !!!"
    )
