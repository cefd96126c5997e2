"""The certification protocol: every choice that decides how one input is certified, in one frozen object.

A :class:`CertifyProtocol` says how many noisy samples select the class (``n0``), how many at most
estimate its probability (``n``), at which confidence (``alpha``), at which sample sizes the engine looks
at the estimate (``looks``) and how ``alpha`` is split over those looks, when an input may stop early
(``futility``), how much of the noise distribution is enumerated exactly (``exact_budget``), when an
ambiguous selection keeps several candidate classes (``candidate_pvalue``) and how the runner-up class is
bounded (``top2``). Command-line arguments become a protocol once (:meth:`CertifyProtocol.from_arguments`);
the engine, text and vision take a protocol; every run records it whole (:meth:`CertifyProtocol.record`).

The guarantee does not depend on any of these choices: whatever the protocol, with probability at least
``1 - alpha`` over the Monte Carlo samples the reported bounds hold (union bound over looks and candidate
classes; see :meth:`robusttext.certificate.engine.MonteCarloEngine.certify`). They decide cost and how tight the
radius is. The defaults are the text defaults; ``docs/benchmarks.md`` holds the simulations and runs that
chose them, each with its command. :meth:`CertifyProtocol.fixed_sample` is Cohen et al.'s CERTIFY (one
look, no extensions), which the vision sidecar uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

from .stats import split_alpha_weighted

#: ``looks`` values: "auto" (:func:`default_looks`), "none" (one look at n), or explicit sample sizes.
LOOKS_AUTO, LOOKS_NONE = "auto", "none"


def default_looks(n: int) -> list[int]:
    """The default sequential schedule for ``n`` estimation samples: looks at n/20, n/8, n/4, 3n/8, n/2,
    3n/4 and n (200, 500, 1000, 1500, 2000, 3000, 4000 for n = 4000).

    At p_del = 0.9 and alpha = 0.05 the RS-Del radius saturates (r = 6) once the top-class lower bound
    exceeds 0.969, which 200 unanimous samples reach at the first look's level (5% of alpha, see
    :func:`default_alpha_weights`); so unanimous inputs stop at the first look, inputs whose radius is
    settled early stop at one of the next, and only inputs close to a radius threshold pay for all ``n``.
    """
    return sorted({max(1, round(n * f)) for f in (1 / 20, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1)})


def default_alpha_weights(looks: Sequence[int]) -> list[float]:
    """How ``alpha`` is split over the default ``looks`` (Bonferroni weights, summing to 1).

    The last look gets 80% (its bound is then almost as tight as one look at ``alpha``), the look before
    it 10%, the first look 5% and the looks between share 5%: they only need to certify inputs that are
    (nearly) unanimous or far from the next radius threshold. The first look keeps 5% because that is
    what a unanimous input needs to reach the largest radius at n/20 samples (at n = 4000, p_del = 0.9,
    alpha = 0.05: 200 votes give a lower bound of 0.0025 ** (1/200) = 0.9705 > 0.9686).
    """
    k = len(looks)
    if k == 1:
        return [1.0]
    if k == 2:
        return [0.2, 0.8]
    if k == 3:
        return [0.1, 0.1, 0.8]
    return [0.05] + [0.05 / (k - 3)] * (k - 3) + [0.1, 0.8]


def parse_looks(value: Any) -> str | tuple[int, ...]:
    """``looks`` as given (``"auto"``, ``"none"``/None, ``"200,1000,4000"`` or a sequence) -> normal form."""
    if value is None:
        return LOOKS_NONE
    if isinstance(value, str):
        text = value.strip().lower()
        if text in (LOOKS_AUTO, LOOKS_NONE, ""):
            return text or LOOKS_NONE
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError as err:
            raise ValueError(f"looks must be 'auto', 'none' or comma-separated integers, got {value!r}") from err
    return tuple(int(v) for v in value)


@dataclass(frozen=True)
class CertifyProtocol:
    """How CERTIFY spends its samples and its error budget on one input.

    Attributes:
        n0: selection samples (the majority class of these is certified), integer >= 1.
        n: estimation samples at most (separate from the selection samples), integer >= 1.
        alpha: failure probability of each certificate, in (0, 1).
        looks: ``"auto"`` (:func:`default_looks` with :func:`default_alpha_weights`), ``"none"`` (one look
            at ``n``: the fixed-sample protocol) or increasing sample sizes ending at ``n`` (equal split).
        futility: in [0, 1); stop an input once its radius would not grow even if its remaining votes came
            at the (1 - futility) upper confidence bound of its rate (0: stop only when it cannot grow).
        exact_budget: integer >= 0; classify at most this many of an input's likeliest noisy copies with
            their exact probabilities and sample only the rest (0: plain sampling).
        candidate_pvalue: in [0, 1); classes whose selection votes a two-sided binomial test at this level
            does not separate from the majority's stay candidates (0: the selection majority only).
        top2: ``"complement"`` (top2_upper = 1 - top1_lower) or ``"bonferroni"`` (CERT-ED; see
            :class:`robusttext.certificate.stats._Certificate`).
        alpha_weights: Bonferroni weights of the looks, one positive number per look (None:
            :func:`default_alpha_weights` for ``"auto"``, equal otherwise).
    """

    n0: int = 50
    n: int = 4000
    alpha: float = 0.05
    looks: str | tuple[int, ...] = LOOKS_AUTO
    futility: float = 0.1
    exact_budget: int = 256
    candidate_pvalue: float = 0.1
    top2: str = "complement"
    alpha_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "looks", parse_looks(self.looks))
        for name in ("n0", "n"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (0.0 < float(self.alpha) < 1.0):
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}; e.g. alpha=0.05 for 95% confidence")
        if not (0.0 <= float(self.futility) < 1.0):
            raise ValueError(f"futility must be in [0, 1) (0 disables futility stopping), got {self.futility!r}")
        if isinstance(self.exact_budget, bool) or int(self.exact_budget) != self.exact_budget or self.exact_budget < 0:
            raise ValueError(f"exact_budget must be an integer >= 0 (0 disables exact strata), got {self.exact_budget!r}")
        if not (0.0 <= float(self.candidate_pvalue) < 1.0):
            raise ValueError(
                f"candidate_pvalue must be in [0, 1) (0: the selection majority only), got {self.candidate_pvalue!r}"
            )
        if self.top2 not in ("complement", "bonferroni"):
            raise ValueError(f"top2 must be 'complement' or 'bonferroni', got {self.top2!r}")
        if isinstance(self.looks, tuple):
            sizes = self.looks
            if not sizes or sorted(set(sizes)) != list(sizes) or sizes[0] < 1 or sizes[-1] != self.n:
                raise ValueError(f"looks must be increasing sample sizes in [1, n] ending at n={self.n}, got {list(sizes)}")
        if self.alpha_weights is not None:
            weights = tuple(float(w) for w in self.alpha_weights)
            object.__setattr__(self, "alpha_weights", weights)
            if len(weights) != len(self.look_sizes()) or not all(w > 0 for w in weights):
                raise ValueError(
                    f"alpha_weights needs one positive weight per look ({len(self.look_sizes())}), got {list(weights)}"
                )

    @classmethod
    def fixed_sample(cls, n0: int, n: int, alpha: float, top2: str = "complement") -> "CertifyProtocol":
        """Cohen et al.'s CERTIFY (ICML 2019, Alg. 2): one look at ``n``, no early stopping, no strata,
        the selection majority only."""
        return cls(n0=n0, n=n, alpha=alpha, looks=LOOKS_NONE, futility=0.0, exact_budget=0, candidate_pvalue=0.0,
                   top2=top2)

    @classmethod
    def from_arguments(cls, args: Any) -> "CertifyProtocol":
        """The protocol of parsed ``CertifyArguments`` (fields left None take the defaults above)."""
        given = {name: getattr(args, name, None) for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in given.items() if v is not None})

    def with_budget(self, **changes: Any) -> "CertifyProtocol":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def look_sizes(self) -> list[int]:
        """Cumulative estimation sample sizes at which the engine looks (the last is ``n``)."""
        if self.looks == LOOKS_AUTO:
            return default_looks(self.n)
        if self.looks == LOOKS_NONE:
            return [self.n]
        return list(self.looks)

    def look_alphas(self) -> list[float]:
        """The level of each look's bound: ``alpha * w_k / sum(w)`` (they sum to ``alpha``)."""
        sizes = self.look_sizes()
        if self.alpha_weights is not None:
            weights = list(self.alpha_weights)
        else:
            weights = default_alpha_weights(sizes) if self.looks == LOOKS_AUTO else [1.0] * len(sizes)
        return split_alpha_weighted(self.alpha, weights)

    def record(self) -> dict[str, Any]:
        """Everything that decides the results, resolved (look sizes and weights), for a run's parameters."""
        out = asdict(self)
        out["looks"] = self.looks if isinstance(self.looks, str) else ",".join(map(str, self.looks))
        out["look_sizes"] = self.look_sizes()
        out["alpha_weights"] = None if self.alpha_weights is None else list(self.alpha_weights)
        return out
