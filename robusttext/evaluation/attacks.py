"""TextAttack glue: model wrappers for the base and the smoothed classifier, recipes, resumable runs.

``run_attacks`` is what ``robusttext attack`` runs. It attacks the first N examples of a split with
TextAttack recipes, either the **base** model (softmax of the clean text) or the **smoothed**
classifier. The smoothed wrapper returns the class frequencies of ``n`` randomized-deletion samples
drawn by :class:`robusttext.certificate.engine.MonteCarloEngine` from a stream seeded by ``(seed, stable hash of
the text)``, so the attack sees a deterministic function: the same text always gets the same
frequencies, in any batch, process or run.

Outputs in ``output_dir``: ``attack_results.jsonl`` (one line per (recipe, example): original and
perturbed text, result, queries, edits in words and characters) and ``attack_summary.json`` (per
recipe: attack success rate, accuracy under attack, average perturbed words %, average queries).
Each recipe writes to ``recipes/<name>/`` as it goes; rerunning the same command resumes.

TextAttack is an optional dependency (``pip install 'robusttext[attacks]'``); it is imported only
when an attack is built, through :func:`robusttext.runs.textattack_env.import_textattack` (offline NLTK).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..certificate.deletion import unit_edits
from ..certificate.protocol import CertifyProtocol
from ..certificate.smoothing import SmoothedTextClassifier
from ..runs.certify import load_examples, run_identity
from ..runs.distributed import process_state
from ..runs.results import Run, versions, write_json
from ..runs.textattack_env import require_textattack

logger = logging.getLogger("robusttext")

#: Recipes that run offline: name -> (TextAttack recipe class, what it needs besides TextAttack).
RECIPES: dict[str, tuple[str, str | None]] = {
    "deepwordbug": ("DeepWordBugGao2018", None),
    "pruthi": ("Pruthi2019", None),
    "pwws": ("PWWSRen2019", "wordnet"),
    "input-reduction": ("InputReductionFeng2018", None),
}

#: Recipes that need resources TextAttack downloads at run time: name -> what is missing offline.
UNAVAILABLE: dict[str, str] = {
    "textfooler": "counter-fitted word embeddings (TextAttack downloads 'paragramcf') and the Universal "
    "Sentence Encoder (TensorFlow Hub; needs tensorflow + tensorflow_hub)",
    "bae": "the bert-base-uncased masked LM (Hugging Face Hub) and the Universal Sentence Encoder "
    "(TensorFlow Hub; needs tensorflow + tensorflow_hub)",
    "textbugger": "GloVe word embeddings (TextAttack downloads them) and the Universal Sentence Encoder "
    "(TensorFlow Hub; needs tensorflow + tensorflow_hub)",
    "checklist": "the `checklist` package with its downloaded lexicons and the counter-fitted word embeddings",
}

def parse_recipes(spec: str | Sequence[str]) -> list[str]:
    """Recipe names from ``"a,b"`` or a list; unknown or offline-unavailable names raise a clear error."""
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise ValueError(f"--recipes is empty; choose from {', '.join(RECIPES)}")
    for name in names:
        if name in UNAVAILABLE:
            raise ValueError(
                f"--recipes {name}: cannot run offline, it needs {UNAVAILABLE[name]}. "
                f"Offline recipes: {', '.join(RECIPES)}"
            )
        if name not in RECIPES:
            raise ValueError(f"--recipes {name!r}: unknown recipe; choose from {', '.join(RECIPES)}")
    return list(dict.fromkeys(names))


def text_index(text: str) -> int:
    """A stable 63-bit index of ``text`` (BLAKE2b), naming its Monte Carlo stream in every process."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big") >> 1


class BaseModelWrapper:
    """TextAttack model wrapper of the base classifier: softmax probabilities of the clean text.

    Encodes exactly as certification does (``SmoothedTextClassifier.mechanism``, same truncation) and
    pads each batch to its longest input.
    """

    def __init__(self, clf: Any, batch_size: int = 64) -> None:
        self.clf = clf
        self.model = clf.model  # TextAttack checks the model's class
        self.batch_size = int(batch_size)

    def __call__(self, text_input_list: Sequence[str]) -> np.ndarray:
        mech = self.clf.mechanism
        encoded = [mech.encode_clean(mech.prepare(t)) for t in text_input_list]
        out = []
        for start in range(0, len(encoded), self.batch_size):
            logits = self.clf.logits(encoded[start : start + self.batch_size])
            out.append(logits.softmax(dim=-1).cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.clf.num_classes))


class SmoothedModelWrapper:
    """TextAttack model wrapper of the smoothed classifier: class frequencies over ``n`` deletion samples.

    Frequencies are Monte Carlo estimates of p_c(x) = P[f(delete(x)) = c] from the engine
    (:meth:`MonteCarloEngine.count`), drawn from ``input_rng(seed, text_index(x))``: a deterministic
    function of the text for a given ``seed`` and ``n``. Each call costs ``n`` base-model samples per
    text (fewer forward passes after deduplication of identical noisy copies).
    """

    def __init__(self, clf: Any, n: int = 1000, seed: int | None = None) -> None:
        if int(n) < 1:
            raise ValueError(f"--attack-n (Monte Carlo samples per smoothed query) must be >= 1, got {n}")
        self.clf = clf
        self.model = clf.model
        self.n = int(n)
        self.seed = clf.seed if seed is None else int(seed)

    def __call__(self, text_input_list: Sequence[str]) -> np.ndarray:
        texts = list(text_input_list)
        if not texts:
            return np.zeros((0, self.clf.num_classes))
        mech = self.clf.mechanism
        prepared = [mech.prepare(t) for t in texts]
        counts = self.clf.engine.count(prepared, mech, self.n, seed=self.seed, indices=[text_index(t) for t in texts])
        return np.stack(counts).astype(np.float64) / self.n


def seed_example(seed: int, recipe: str, index: int) -> None:
    """Seed the global ``random`` / ``numpy.random`` TextAttack draws from (e.g. DeepWordBug's character
    edits) from (seed, recipe, example index), so an example's attack does not depend on which process
    runs it or on what ran before (1 process and N processes give the same records)."""
    import random

    s = text_index(f"{seed}:{recipe}:{index}") % (2**32)
    random.seed(s)
    np.random.seed(s)


def build_attack(recipe: str, wrapper: Any, query_budget: int | None = None) -> Any:
    """The TextAttack ``Attack`` of ``recipe`` against ``wrapper`` (offline; see :data:`RECIPES`)."""
    from ..runs.textattack_env import import_textattack, require_wordnet

    (name,) = parse_recipes([recipe])
    cls_name, needs = RECIPES[name]
    if needs == "wordnet":
        require_wordnet(f"recipe {name}")
    import_textattack()
    import textattack.attack_recipes as recipes

    attack = getattr(recipes, cls_name).build(wrapper)
    if query_budget is not None:
        attack.goal_function.query_budget = int(query_budget)
    return attack


def result_record(result: Any, index: int, recipe: str, target: str, label: int, seconds: float) -> dict:
    """One ``attack_results.jsonl`` line from a TextAttack ``AttackResult``."""
    kind = type(result).__name__.replace("AttackResult", "").lower()  # successful/failed/skipped/maximized
    orig = result.original_result
    pert = result.perturbed_result
    original_text = orig.attacked_text.text
    perturbed_text = pert.attacked_text.text
    modified = len(orig.attacked_text.all_words_diff(pert.attacked_text)) if kind != "skipped" else 0
    return {
        "index": int(index),
        "recipe": recipe,
        "target": target,
        "label": int(label),
        "result": kind,
        "original_text": original_text,
        "perturbed_text": perturbed_text,
        "original_prediction": int(orig.output),
        "perturbed_prediction": int(pert.output),
        "num_queries": int(pert.num_queries),
        "words_modified": int(modified),
        "perturbed_words_pct": 100.0 * modified / max(1, orig.attacked_text.num_words),
        "word_edits": unit_edits(original_text, perturbed_text, "word"),
        "char_edits": unit_edits(original_text, perturbed_text, "char"),
        "seconds": round(float(seconds), 4),
    }


def summarize_recipe(records: Sequence[dict]) -> dict[str, Any]:
    """TextAttack's attack summary for one recipe's records.

    ``original_accuracy`` = (total - skipped) / total; ``accuracy_under_attack`` = failed / total (for
    input reduction, which never flips, = (failed + maximized) / total); ``attack_success_rate`` =
    successful / (successful + failed); ``avg_perturbed_words_pct`` and mean edits over successful
    attacks; ``avg_num_queries`` over attacked (non-skipped) examples.
    """
    total = len(records)
    by = {k: [r for r in records if r["result"] == k] for k in ("successful", "failed", "skipped", "maximized")}
    n_succ, n_fail, n_skip, n_max = (len(by[k]) for k in ("successful", "failed", "skipped", "maximized"))
    attacked = [r for r in records if r["result"] != "skipped"]
    succ = by["successful"]

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "num_examples": total,
        "successful": n_succ,
        "failed": n_fail,
        "skipped": n_skip,
        "maximized": n_max,
        "original_accuracy": (total - n_skip) / total if total else None,
        "accuracy_under_attack": (n_fail + n_max) / total if total else None,
        "attack_success_rate": n_succ / (n_succ + n_fail) if n_succ + n_fail else None,
        "avg_perturbed_words_pct": mean([r["perturbed_words_pct"] for r in succ]),
        "avg_word_edits": mean([r["word_edits"] for r in succ]),
        "avg_char_edits": mean([r["char_edits"] for r in succ]),
        "avg_num_queries": mean([r["num_queries"] for r in attacked]),
        "seconds": float(sum(r.get("seconds", 0.0) for r in records)),
    }


@dataclass(frozen=True)
class AttackConfig:
    """Which attacks to run and against what (checked here, once).

    Args:
        recipes: offline TextAttack recipes, ``"a,b"`` or a list (see :data:`RECIPES`).
        smoothed: attack the smoothed classifier (class frequencies of ``n`` noisy copies per query) instead of
            the base model (softmax of the clean text).
        n: Monte Carlo samples per smoothed query (>= 1; None: ``CertifyProtocol().n``).
        query_budget: stop an attack after this many model queries (>= 1; None: no limit).
    """

    recipes: Any = "deepwordbug,pruthi,pwws,input-reduction"
    smoothed: bool = False
    n: int | None = None
    query_budget: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipes", tuple(parse_recipes(self.recipes)))
        require_textattack()
        if self.n is not None and self.n < 1:
            raise ValueError(f"--attack-n must be >= 1, got {self.n}")
        if self.query_budget is not None and self.query_budget < 1:
            raise ValueError(f"--query-budget must be >= 1, got {self.query_budget}")

    @property
    def samples(self) -> int:
        """Monte Carlo samples per smoothed query."""
        return int(self.n or CertifyProtocol().n)


def run_attacks(
    classifier: SmoothedTextClassifier, data: Any, output_dir: str | Path, config: AttackConfig | None = None, *,
    overwrite: bool = False, model: str | None = None,
) -> dict:
    """Attack every example of ``data`` (a :class:`~robusttext.runs.data.DataSpec`, ``TextData``,
    ``datasets.Dataset`` or ``(texts, labels)``) with every recipe of ``config`` (default ``AttackConfig()``);
    returns the summary.

    Each recipe is one :class:`robusttext.runs.results.Run` in ``output_dir/recipes/<name>/``: examples sharded over
    the processes of ``accelerate launch``/``torchrun`` (every example's attack is seeded by :func:`seed_example`
    from the classifier's seed, so the records do not depend on the sharding), records appended as they finish,
    resumed on rerun, a folder of other parameters or content refused (``overwrite``: start fresh). The main
    process then writes ``attack_results.jsonl`` and ``attack_summary.json`` in ``output_dir``. ``model``: the
    model's name as recorded (default: ``classifier.name_or_path``).
    """
    clf, out = classifier, Path(output_dir)
    config = AttackConfig() if config is None else config
    state = process_state()
    ds = load_examples(data, clf)
    target = "smoothed" if config.smoothed else "base"
    seed = clf.seed
    wrapper = (SmoothedModelWrapper(clf, n=config.samples, seed=seed) if config.smoothed
               else BaseModelWrapper(clf, clf.engine.batch_size))
    base_params = {
        **run_identity("attack", clf, ds, data, model),
        "target": target,
        "query_budget": config.query_budget,
        **({"p_del": clf.p_del, "rate_schedule": clf.rate.to_dict(), "unit": clf.unit, "attack_n": config.samples,
            "seed": seed} if config.smoothed else {}),
    }
    records: list[dict] = []
    for recipe in config.recipes:
        run = Run(out / "recipes" / recipe, {**base_params, "recipe": recipe}, overwrite=overwrite, state=state)
        records += attack_recipe(run, recipe, wrapper, ds.texts, ds.labels, target, seed, config.query_budget)
    if state.is_main_process:
        write_attack_outputs(records, list(config.recipes), out,
                             {"target": target, "parameters": base_params, "versions": versions()})
    state.wait_for_everyone()
    return json.loads((out / "attack_summary.json").read_text())


def attack_recipe(
    run: Any, recipe: str, wrapper: Any, texts: list[str], gold: list[int], target: str, seed: int,
    query_budget: int | None,
) -> list[dict]:
    """One recipe over every example, on the run skeleton (one example per chunk); the merged records on the
    main process, [] on the others."""
    built: list[Any] = []  # built on first use: a resumed, finished recipe loads nothing

    def attack_one(idx: list[int], tick: Any) -> list[dict]:
        if not built:
            built.append(build_attack(recipe, wrapper, query_budget))
        out = []
        for i in idx:
            start = time.perf_counter()
            seed_example(seed, recipe, i)
            result = built[0].attack(texts[i], int(gold[i]))
            out.append(result_record(result, i, recipe, target, gold[i], time.perf_counter() - start))
            tick()
        return out

    return run.execute(len(texts), attack_one, chunk_size=1, desc=recipe, unit="examples") or []


def write_attack_outputs(records: list[dict], recipes: list[str], out: Path, header: dict[str, Any]) -> None:
    """``attack_results.jsonl`` (every recipe's records) and ``attack_summary.json`` (per recipe)."""
    summary = {**header, "recipes": {r: summarize_recipe([x for x in records if x["recipe"] == r]) for r in recipes}}
    tmp = out / "attack_results.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
    tmp.replace(out / "attack_results.jsonl")
    write_json(out / "attack_summary.json", summary)
