"""The certified-vs-empirical cross-check: exact counting on hand-made records, the binomial tail against
a direct sum, and on real data: the real certificate passes, a deliberately unsound one (radius + 5) is
flagged."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from _attack_helpers import evaluated_run

if importlib.util.find_spec("rapidfuzz") is None:
    pytest.skip("textattack not installed: the cross-check tests need the [attacks] extra (transformers<5: pip install -c .ci/constraints.txt -e '.[all]')", allow_module_level=True)


def tail(v: int, n: int, p: float) -> float:
    """P[Binomial(n, p) >= v] by direct summation (the oracle)."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(v, n + 1))


def rec(index, text, pert, result="successful", orig=1, new=0, recipe="deepwordbug"):
    return {"index": index, "recipe": recipe, "target": "smoothed", "result": result, "original_text": text,
            "perturbed_text": pert, "original_prediction": orig, "perturbed_prediction": new}


def test_counts_candidates_and_confirmed_violations_exactly():
    from robusttext.evaluation.crosscheck import crosscheck

    certs = [
        {"index": 0, "prediction": 1, "radius": 2},
        {"index": 1, "prediction": 0, "radius": 0},
        {"index": 2, "prediction": -1, "radius": -1},  # abstained: not certified
        {"index": 3, "prediction": 1, "radius": 3},
        {"index": 4, "prediction": 1, "radius": 1},
    ]
    attacks = [
        rec(0, "a b c d e", "a x c y e"),  # 2 substitutions <= 2: candidate, g flips -> violation
        rec(0, "a b c d e", "x y z d e"),  # 3 > 2: not a candidate
        rec(1, "good film", "good flim", orig=0, new=1),  # 1 > 0
        rec(2, "a b", "a c"),  # abstained input
        rec(3, "a b c d", "a b c d", result="failed", new=1),  # failed attack
        rec(3, "a b c d", "a d", result="successful", new=1, recipe="input-reduction"),  # prediction kept
        rec(3, "a b c d", "b c d e"),  # delete a + insert e = 2 <= 3: candidate, g does not flip
        rec(4, "w1 w2 w3", "w1 w2 w3 w4"),  # insertion, 1 <= 1: candidate, g abstains -> not confirmed
    ]
    smoothed = {"a x c y e": 0, "b c d e": 1, "w1 w2 w3 w4": -1}
    out = crosscheck(certs, attacks, "word", alpha=0.05, confirm=lambda ts: [smoothed[t] for t in ts],
                     confirm_alpha=0.05, significance=0.05)
    assert out["n_certified"] == 4
    assert out["n_candidates"] == 3
    assert out["n_violations"] == 1 and out["violating_indices"] == [0]
    assert out["pvalue"] == pytest.approx(tail(1, 4, 0.1))
    assert out["sound"] and "passed" in out["message"]
    assert out["per_recipe"]["deepwordbug (smoothed)"] == {"successful_on_certified": 5, "candidates": 3, "violations": 1}

    # Without confirmation every candidate counts, at rate alpha.
    raw = crosscheck(certs, attacks, "word", alpha=0.05)
    assert raw["n_violations"] == 3 and raw["pvalue"] == pytest.approx(tail(3, 4, 0.05))
    assert not raw["sound"] and "CROSS-CHECK FAILED" in raw["message"]


def test_char_unit_and_token_unit_need_a_tokenizer():
    from robusttext.evaluation.crosscheck import crosscheck

    certs = [{"index": 0, "prediction": 1, "radius": 1}]
    atk = [rec(0, "good film", "good flim")]  # 2 character substitutions ("il" -> "li")
    assert crosscheck(certs, atk, "char", alpha=0.05)["n_candidates"] == 0
    certs[0]["radius"] = 2
    assert crosscheck(certs, atk, "char", alpha=0.05)["n_candidates"] == 1
    with pytest.raises(ValueError, match="tokenizer"):
        crosscheck(certs, atk, "token", alpha=0.05)


@pytest.mark.parametrize("n,rate,sig", [(10, 0.05, 0.05), (30, 0.1, 0.05), (200, 0.05, 0.01), (1, 0.5, 0.05), (50, 0.02, 0.2)])
def test_allowed_violations_matches_direct_tail(n, rate, sig):
    from robusttext.evaluation.crosscheck import allowed_violations

    expected = max(v for v in range(n + 1) if tail(v, n, rate) >= sig)
    assert allowed_violations(n, rate, sig) == expected


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir, data_dir):
    return evaluated_run(tmp_path_factory, tiny_model_dir, data_dir)


def test_real_certificate_passes_and_radius_plus_5_is_flagged(run):
    from robusttext.evaluation.attacks import text_index
    from robusttext.evaluation.crosscheck import crosscheck
    from robusttext.runs.results import read_jsonl
    from robusttext.certificate.smoothing import SmoothedTextClassifier

    out, model, p_del = run
    certs = read_jsonl(Path(out) / "certify" / "results.jsonl")
    attacks = [r for t in ("smoothed", "base") for r in read_jsonl(Path(out) / f"attack_{t}" / "attack_results.jsonl")]
    assert any(r["result"] == "successful" for r in attacks)
    clf = SmoothedTextClassifier.from_pretrained(model, p_del=p_del, max_length=64)

    def confirm(texts):
        return [p.prediction for p in clf.predict(texts, n=400, alpha=0.01, indices=[text_index(t) for t in texts])]

    real = crosscheck(certs, attacks, "word", 0.01, confirm=confirm, confirm_alpha=0.01)
    assert real["n_certified"] >= 20
    assert real["sound"], real["message"]
    unsound = [{**c, "radius": c["radius"] + 5} if c["radius"] >= 0 else c for c in certs]
    bad = crosscheck(unsound, attacks, "word", 0.01, confirm=confirm, confirm_alpha=0.01)
    assert not bad["sound"] and bad["n_violations"] > bad["allowed"], bad["message"]
    assert "CROSS-CHECK FAILED" in bad["message"]
    # every confirmed violation is an attack inside the (inflated) radius whose text g classifies differently
    for v in bad["violations"]:
        assert v["edits"] <= v["radius"] and v["smoothed_prediction"] not in (-1, v["certified_prediction"])
