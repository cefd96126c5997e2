#!/usr/bin/env python
"""Expected certified accuracy and cost of certification protocols, simulated without a model.

Certified accuracy on a few dozen inputs moves by a whole input (2 points at 50 inputs) between two
runs of the *same* protocol with different seeds, so one benchmark run cannot tell whether a cheaper
protocol gives up accuracy. This script measures the expectation instead. Every input ``i`` becomes a
Bernoulli source: a noisy copy is classified as the input's label with probability ``mu_i`` and as the
other class otherwise, where ``mu_i`` is the published arm's estimate from its 4,000 estimation samples
(``scripts/bench_certify.py``; on a binary task the label's rate is ``k / 4000`` or ``1 - k / 4000``).
Each protocol - the published one and robusttext's with other ``n``, ``futility`` or looks - runs through
the real :meth:`robusttext.certificate.engine.MonteCarloEngine.certify` on these sources ``--reps`` times with
different seeds; the printed certified accuracy at each radius is the average over repetitions (its
standard error over the repetitions is printed), with the difference to the published protocol.

What it leaves out: deduplication and exact strata (robusttext's forward passes are fewer than the
samples printed here, by the factor the benchmark measures), and classes other than the top two.

    python scripts/simulate_certify.py --bench_dir runs/bench_sst2 --dataset ../shared/data/sst2 \
        --futility 0.05,0.2,0.5 --n 4000,6000 --reps 100
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import special
from transformers import HfArgumentParser

from robusttext.runs.data import load_text_dataset
from robusttext.certificate.engine import MonteCarloEngine
from robusttext.certificate.protocol import CertifyProtocol, default_alpha_weights, default_looks
from robusttext.certificate.stats import EditDistanceCertificate, max_edit_distance_radius, plain_samples_needed

#: The published protocol's budget (CERT-ED): n0 selection and n estimation samples, one look.
PUBLISHED_N0, PUBLISHED_N = 1000, 4000


@dataclass
class SimulateArguments:
    bench_dir: str = field(metadata={"help": "A bench_certify.py output folder with a 'published' arm."})
    dataset: str = field(metadata={"help": "The dataset the benchmark certified (for the labels)."})
    split: str = field(default="test", metadata={"help": "Its split."})
    futility: str = field(default="0.05,0.2,0.5", metadata={"help": "Comma-separated futility levels to simulate."})
    n: str = field(default="4000", metadata={"help": "Comma-separated estimation budgets."})
    looks: str = field(default="auto", metadata={"help": (
        "Semicolon-separated look schedules, each comma-separated fractions of n ending at 1 (e.g. "
        "'0.05,0.125,0.375,1;0.05,0.125,0.25,0.5,1'), or 'auto' for robusttext's default schedule; alpha is "
        "split over the looks by robusttext's default weights.")})
    n0: str = field(default="100", metadata={"help": "Comma-separated selection sample sizes to simulate."})
    candidate_pvalue: str = field(default="0", metadata={"help": "Comma-separated ambiguous-selection levels to simulate."})
    reps: int = field(default=100, metadata={"help": "Repetitions (seeds) per protocol."})
    alpha: float = field(default=0.05, metadata={"help": "Failure probability (as in the benchmark)."})
    p_del: float = field(default=0.9, metadata={"help": "Deletion probability (as in the benchmark)."})


def label_rates(records: list[dict], labels: list[int], alpha: float) -> np.ndarray:
    """Each input's estimated probability that a noisy copy is classified as its label.

    Uses the record's estimation ``counts`` when present; otherwise recovers the top-class count k from
    the reported Clopper-Pearson lower bound (strictly increasing in k, so the k is exact).
    """
    ks = np.arange(1, PUBLISHED_N + 1)
    lowers = special.betaincinv(ks, PUBLISHED_N - ks + 1, alpha)
    rates = []
    for rec in records:
        label = labels[rec["index"]]
        if "counts" in rec:
            rates.append(rec["counts"][label] / sum(rec["counts"]))
            continue
        lower = float(rec["top1_lower"])
        k = 0 if lower <= 0.0 else int(ks[np.argmin(np.abs(lowers - lower))])
        top = rec["prediction"] if rec["prediction"] >= 0 else rec.get("selected", label)
        rates.append(k / PUBLISHED_N if top == label else 1.0 - k / PUBLISHED_N)
    return np.asarray(rates)


class _Bernoulli:
    """A noise distribution whose copies are 1 (the label) with probability x and 0 otherwise."""

    def draw(self, x: float, n: int, rng: np.random.Generator) -> list[int]:
        return (rng.random(n) < x).astype(int).tolist()

    def key(self, sample: int) -> None:
        return None

    def cost(self, sample: int) -> int:
        return 0


def oracle_samples(rates: np.ndarray, alpha: float, p_del: float, n_max: int = PUBLISHED_N) -> np.ndarray:
    """A lower bound on what plain sampling must spend: per input, the fewest estimation samples with which
    one look at the full ``alpha`` certifies the radius that ``n_max`` samples certify, the top class's count
    at its expectation (:func:`robusttext.certificate.stats.plain_samples_needed`; the top class's rate is the larger of
    the label's and the other class's). An input that ``n_max`` samples abstain on counts 0. Only
    deduplication and exact strata take a protocol's forward passes below this (they are not plain sampling).
    """
    cert = EditDistanceCertificate(p_del=p_del)
    out = np.zeros(len(rates), dtype=np.int64)
    for i, rate in enumerate(rates):
        mu = max(float(rate), 1.0 - float(rate))
        radius = cert.bounds(np.array([n_max - round(mu * n_max), round(mu * n_max)]), 1, alpha).radius
        if radius >= 0:
            out[i] = plain_samples_needed(mu, radius, alpha, cert, n_max)
    return out


def schedule(fractions: str, n: int) -> list[int]:
    """Look sizes from comma-separated fractions of ``n`` (increasing, the last one 1)."""
    try:
        values = [float(v) for v in fractions.split(",")]
    except ValueError:
        raise SystemExit(f"--looks: expected comma-separated fractions of n such as 0.05,0.125,0.375,1, got {fractions!r}")
    if values != sorted(set(values)) or not 0.0 < values[0] or values[-1] != 1.0:
        raise SystemExit(f"--looks: fractions must increase from above 0 to exactly 1, got {fractions!r}")
    return sorted({max(1, round(v * n)) for v in values})


def simulate(
    rates: np.ndarray, reps: int, alpha: float, p_del: float, **certify_kw
) -> tuple[np.ndarray, np.ndarray, float]:
    """Certified accuracy (%) at radii 0..max, averaged over ``reps`` seeds, its standard error, and the mean
    samples per input."""
    engine = MonteCarloEngine(lambda batch: np.asarray(batch), 2, batch_size=1 << 14, dedup=False)
    cert = EditDistanceCertificate(p_del=p_del)
    radii = max_edit_distance_radius(p_del) + 1
    per_rep, samples = np.zeros((reps, radii)), 0
    protocol = CertifyProtocol.fixed_sample(certify_kw.pop("n0"), certify_kw.pop("n"), alpha).with_budget(**certify_kw)
    for rep in range(reps):
        for c in engine.certify(list(rates), _Bernoulli(), cert, protocol, seed=10_000 + rep):
            samples += c.n_samples
            if c.prediction == 1:
                per_rep[rep, : int(c.radius) + 1] += 1
    per_rep *= 100.0 / len(rates)
    return per_rep.mean(0), per_rep.std(0, ddof=1) / np.sqrt(reps), samples / (reps * len(rates))


def main() -> None:
    (args,) = HfArgumentParser(SimulateArguments).parse_args_into_dataclasses()
    path = Path(args.bench_dir) / "published" / "results.jsonl"
    if not path.is_file():
        raise SystemExit(f"--bench_dir: no {path}; run scripts/bench_certify.py with the 'published' arm first")
    records = sorted((json.loads(line) for line in path.open()), key=lambda r: r["index"])
    labels = load_text_dataset(args.dataset, args.split).labels
    if len(set(labels)) != 2:
        raise SystemExit("--dataset: the simulation models the label vs the other class; it needs a binary task")
    rates = label_rates(records, labels, args.alpha)
    print(f"{len(rates)} inputs; label rates: median {np.median(rates):.3f}, "
          f"{np.mean(np.abs(rates - 0.5) > 0.45):.0%} within 0.05 of unanimous")
    base, base_se, cost = simulate(rates, args.reps, args.alpha, args.p_del, n0=PUBLISHED_N0, n=PUBLISHED_N)

    def row(name: str, acc: np.ndarray, samples: float) -> str:
        return f"{name:<33} samples/input {samples:7.0f}  certacc%[r=0..] " + " ".join(f"{a:5.1f}" for a in acc)

    print(row("published", base, cost))
    oracle = oracle_samples(rates, args.alpha, args.p_del)
    print(f"oracle plain sampling (knows each rate, one look) samples/input {oracle.mean():7.0f}  "
          f"({cost / oracle.mean():.1f}x fewer than published: about the most plain sampling can save)")
    grid = [(int(n0), int(n), float(g), float(cp), sched) for n0 in args.n0.split(",") for n in args.n.split(",")
            for g in args.futility.split(",") for cp in args.candidate_pvalue.split(",") for sched in args.looks.split(";")]
    for n0, n, gamma, cp, sched in grid:
        looks = default_looks(n) if sched.strip() == "auto" else schedule(sched, n)
        acc, se, s = simulate(rates, args.reps, args.alpha, args.p_del, n0=n0, n=n, looks=looks,
                              alpha_weights=default_alpha_weights(looks), futility=gamma, candidate_pvalue=cp)
        diff = " ".join(f"{d:+5.1f}" for d in acc - base)
        diff += f" (s.e. <= {np.sqrt(se ** 2 + base_se ** 2).max():.1f})"
        print(row(f"n0={n0} n={n} fut={gamma:g} cand={cp:g} looks={looks}", acc, s) + f"   vs published {diff}  ({cost / s:.2f}x fewer samples)",
              flush=True)


if __name__ == "__main__":
    main()
