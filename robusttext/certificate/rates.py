"""Deletion-rate schedules: the deletion probability of an input as a function of its length.

One concept shared by training (:class:`~robusttext.certificate.deletion.DeletionCollator`), the noise of
certification (:class:`~robusttext.certificate.deletion.DeletionMechanism`) and the certificate
(:func:`robusttext.certificate.stats.variable_rate_radius`). ``schedule(length)`` is the probability, in (0, 1),
that each unit of an input of ``length`` units (the smoothing unit: words, characters or tokens) is
deleted; ``schedule.sample(length, rng)`` is the rate the training collator uses for one example.

* :class:`FixedRate` ``p``: RS-Del / CERT-ED (Huang et al., NeurIPS 2023; Findings of EMNLP 2024).
* :class:`AdaptiveRate` ``(k, p_lb)``: AdaptDel (Huang, Marchant, Ohrimenko, Rubinstein, NeurIPS 2025,
  arXiv 2511.09316): ``p(L) = max(p_lb, 1 - k / L)``, so a long input keeps about ``k`` units on average
  and a short one falls back to ``p_lb``.
* :class:`BinnedRate` ``(edges, values)``: AdaptDel+: bin ``i`` uses ``p(L) = 1 - values[i] / L``
  (bin ``i`` keeps ``values[i]`` units on average).
* :class:`CallableRate` ``(fn, name)``: any Python function of the length (not saved to JSON).
* :class:`UniformRate` ``(low, high)``: AdaptDel+'s training recipe, a rate drawn uniformly per example.
  It has no certificate: calling it raises; only :meth:`UniformRate.sample` works.
* :class:`UniformKeep` ``(low, high, p_lb)``: a training recipe drawing the units kept, ``k ~ U[low, high]``,
  then ``max(p_lb, 1 - k / L)``; training only, like :class:`UniformRate`.

Every schedule is a frozen, hashable dataclass (the certificate caches per ``(schedule, length)``),
round-trips through :meth:`RateSchedule.to_dict` / :func:`from_dict`, is saved beside a model's
``config.json`` as ``rate_schedule.json`` (:meth:`RateSchedule.save`, :func:`load`), and is parsed
from a command line by :func:`parse_rate_schedule`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

FILENAME = "rate_schedule.json"
#: RS-Del / CERT-ED's deletion probability: the rate used when neither the caller nor the model folder names one.
DEFAULT_P_DEL = 0.9


class RateSchedule:
    """Base class: ``self(length) -> p_del`` in (0, 1) for an input of ``length >= 0`` units.

    ``certifiable`` says whether a certificate can be computed for the schedule (False only for the
    training recipes :class:`UniformRate` and :class:`UniformKeep`). ``sample(length, rng)`` is the training
    collator's rate for one example; for a deterministic schedule it is ``self(length)`` and does not touch
    ``rng``.
    """

    kind: ClassVar[str] = ""
    certifiable: ClassVar[bool] = True

    def __call__(self, length: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, length: int, rng: np.random.Generator) -> float:
        """The deletion probability for one training example of ``length`` units."""
        return self(length)

    def constant(self) -> float | None:
        """The rate when it is the same for every length (a :class:`FixedRate`), else None."""
        return None

    def params(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict:
        """JSON-ready ``{"kind": ..., <parameters>}``; :func:`from_dict` inverts it."""
        return {"kind": self.kind, **self.params()}

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, model_dir: str | Path) -> Path:
        """Write ``rate_schedule.json`` into ``model_dir`` (beside ``config.json``); returns its path."""
        path = Path(model_dir) / FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def _check_length(length: int) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise ValueError(f"length must be an integer >= 0 (units of the input), got {length!r}")
    return int(length)


def _no_certificate(schedule: RateSchedule) -> ValueError:
    return ValueError(
        f"{schedule.describe()} is a training-only schedule with no certificate; "
        "certify with a fixed, adaptive or binned schedule (--rate-schedule)"
    )


def _check_low_high(schedule: Any, in_range: Callable[[float], bool], what: str) -> None:
    """Validate and store as floats the ``low`` < ``high`` fields of a training recipe (``what``: their range, in
    words, for the error)."""
    for name in ("low", "high"):
        v = getattr(schedule, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not in_range(float(v)):
            raise ValueError(f"{name} must be {what}, got {v!r}; {schedule._hint}")
        object.__setattr__(schedule, name, float(v))
    if not schedule.low < schedule.high:
        raise ValueError(f"low must be < high, got low={schedule.low!r}, high={schedule.high!r}; {schedule._hint}")


def _check_open_unit(name: str, value: float, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {value!r}; {hint}")
    return float(value)


@dataclass(frozen=True)
class FixedRate(RateSchedule):
    """The same deletion probability ``p`` for every length (RS-Del). ``p`` in [0, 1); 0 means no noise,
    which training accepts and certification rejects."""

    p: float
    kind: ClassVar[str] = "fixed"

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not (0.0 <= float(self.p) < 1.0):
            raise ValueError(f"p must be in [0, 1), got {self.p!r}; RS-Del/CERT-ED use fixed:0.9")
        object.__setattr__(self, "p", float(self.p))

    def __call__(self, length: int) -> float:
        _check_length(length)
        return self.p

    def constant(self) -> float:
        return self.p

    def params(self) -> dict:
        return {"p": self.p}

    def describe(self) -> str:
        return f"fixed p_del={self.p:g}"


@dataclass(frozen=True)
class AdaptiveRate(RateSchedule):
    """AdaptDel: ``p(L) = max(p_lb, 1 - k / L)`` for ``L >= 1`` units, ``p(0) = p_lb``.

    ``k > 0`` is the mean number of units kept by long inputs; ``p_lb`` in (0, 1) the floor used by short
    ones (lengths ``L <= k / (1 - p_lb)``). Every value is in [p_lb, 1). The authors use k=13, p_lb=0.9.
    """

    k: float
    p_lb: float
    kind: ClassVar[str] = "adaptive"

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, float)) or not (0.0 < float(self.k) < math.inf):
            raise ValueError(f"k must be a number > 0 (units kept on average), got {self.k!r}; e.g. adaptive:k=13,p_lb=0.9")
        object.__setattr__(self, "k", float(self.k))
        object.__setattr__(self, "p_lb", _check_open_unit("p_lb", self.p_lb, "e.g. adaptive:k=13,p_lb=0.9"))

    def __call__(self, length: int) -> float:
        length = _check_length(length)
        return self.p_lb if length == 0 else max(self.p_lb, 1.0 - self.k / length)

    def params(self) -> dict:
        return {"k": self.k, "p_lb": self.p_lb}

    def describe(self) -> str:
        return f"adaptive p_del=max({self.p_lb:g}, 1 - {self.k:g}/L)"


@dataclass(frozen=True)
class BinnedRate(RateSchedule):
    """AdaptDel+: length bins, bin ``i`` with ``p(L) = 1 - values[i] / L``, or ``max(p_lb, 1 - values[i] / L)``
    with a floor ``p_lb`` in (0, 1).

    ``edges`` are ``n >= 1`` strictly increasing integers >= 1 and ``values`` has ``n + 1`` entries. Bin 0
    holds lengths ``L < edges[0]``, bin ``i`` (1 <= i < n) holds ``edges[i-1] <= L < edges[i]``, bin ``n``
    holds ``L >= edges[-1]``. Without a floor (``p_lb = 0``, the paper's form) each value must give a rate
    in (0, 1) for every length of its bin, i.e. ``0 < values[i] <`` the bin's smallest length (1 for bin
    0; ``edges[i-1]`` otherwise). With a floor any ``values[i] > 0`` is valid, and a value of at least
    ``(1 - p_lb) * L`` for every length L of a bin gives that bin the fixed rate ``p_lb`` (so RS-Del's fixed
    0.9 is one of the schedules a floor of 0.9 allows, also for bins of short texts). The empty input
    (L = 0) gets the rate at L = 1 (it has no unit to delete; the rate only enters the certificates of
    its neighbours).
    """

    edges: tuple[int, ...]
    values: tuple[float, ...]
    p_lb: float = 0.0
    kind: ClassVar[str] = "binned"

    def __post_init__(self) -> None:
        try:
            edges = tuple(int(e) for e in self.edges)
            values = tuple(float(v) for v in self.values)
        except (TypeError, ValueError):
            raise ValueError(f"edges must be integers and values numbers, got {self.edges!r} / {self.values!r}") from None
        if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])) or any(
            e != float(r) for e, r in zip(edges, self.edges)
        ):
            raise ValueError(f"edges must be strictly increasing integers >= 1, got {list(self.edges)!r}; e.g. edges=20|50|100")
        if len(values) != len(edges) + 1:
            raise ValueError(f"values must have len(edges) + 1 = {len(edges) + 1} entries (one per bin), got {len(values)}")
        p_lb = 0.0 if self.p_lb == 0 else _check_open_unit("p_lb", self.p_lb, "the floor of every bin's rate, e.g. p_lb=0.9")
        for i, v in enumerate(values):
            low = 1 if i == 0 else edges[i - 1]
            if p_lb > 0.0 and not 0.0 < v < math.inf:
                raise ValueError(f"values[{i}]={v!r} must be > 0 (units kept on average in bin {i})")
            if p_lb == 0.0 and not (0.0 < v < low):
                span = f"[{low}, {edges[i]})" if i < len(edges) else f"[{low}, inf)"
                raise ValueError(
                    f"values[{i}]={v!r} gives p = 1 - v/L outside (0, 1) for length {low} of its bin {span}; "
                    f"need 0 < values[{i}] < {low}, or a floor p_lb"
                )
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "p_lb", p_lb)

    def bin_of(self, length: int) -> int:
        """Index of the bin holding ``length`` (0 for the empty input)."""
        length = _check_length(length)
        return int(np.searchsorted(self.edges, length, side="right"))

    def __call__(self, length: int) -> float:
        length = _check_length(length)
        return max(self.p_lb, 1.0 - self.values[self.bin_of(length)] / max(1, length))

    def params(self) -> dict:
        return {"edges": list(self.edges), "values": list(self.values), **({"p_lb": self.p_lb} if self.p_lb else {})}

    def describe(self) -> str:
        bounds = ["0", *map(str, self.edges)]
        bins = [f"[{a},{b})" for a, b in zip(bounds, bounds[1:])] + [f"[{bounds[-1]},inf)"]
        rule = f"max({self.p_lb:g}, 1 - v/L)" if self.p_lb else "1 - v/L"
        return f"binned p_del={rule}, " + ", ".join(f"{b}: v={v:g}" for b, v in zip(bins, self.values))


@dataclass(frozen=True)
class CallableRate(RateSchedule):
    """Any function ``fn(length) -> p_del`` (advanced use). Each value is checked to lie in (0, 1) when
    it is used. ``name`` labels it in logs; it cannot be saved to or loaded from JSON."""

    fn: Callable[[int], float]
    name: str = "callable"
    kind: ClassVar[str] = "callable"

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ValueError(f"fn must be callable (length -> p_del), got {self.fn!r}")

    def __call__(self, length: int) -> float:
        length = _check_length(length)
        p = self.fn(length)
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not (0.0 < float(p) < 1.0):
            raise ValueError(f"rate schedule {self.name!r} gave p_del={p!r} for length {length}; it must be in (0, 1)")
        return float(p)

    def params(self) -> dict:
        return {"name": self.name}

    def to_dict(self) -> dict:
        raise ValueError(f"callable rate schedule {self.name!r} cannot be saved as JSON; use fixed, adaptive or binned")

    def describe(self) -> str:
        return f"callable {self.name}"


@dataclass(frozen=True)
class UniformRate(RateSchedule):
    """AdaptDel+'s training recipe: each example's rate drawn uniformly from [low, high], 0 <= low < high < 1.

    A training-only schedule: there is no certificate for a random rate, so ``self(length)`` raises and
    only :meth:`sample` works. Certify the model with a fixed, adaptive or binned schedule.
    """

    low: float
    high: float
    kind: ClassVar[str] = "uniform"
    certifiable: ClassVar[bool] = False
    _hint: ClassVar[str] = "e.g. uniform:0.7,0.99 (AdaptDel+)"

    def __post_init__(self) -> None:
        _check_low_high(self, lambda v: 0.0 <= v < 1.0, "in [0, 1)")

    def __call__(self, length: int) -> float:
        raise _no_certificate(self)

    def sample(self, length: int, rng: np.random.Generator) -> float:
        _check_length(length)
        return float(rng.uniform(self.low, self.high))

    def params(self) -> dict:
        return {"low": self.low, "high": self.high}

    def describe(self) -> str:
        return f"uniform p_del~U[{self.low:g}, {self.high:g}] (training only)"


@dataclass(frozen=True)
class UniformKeep(RateSchedule):
    """A training recipe that draws the number of units kept instead of the rate: each example draws
    ``k ~ U[low, high]`` and uses AdaptDel's ``p(L) = max(p_lb, 1 - k / L)`` (``p(0) = p_lb``), 0 < low < high.

    Inputs up to ``low / (1 - p_lb)`` units always train at ``p_lb`` (as a fixed-rate model does); a long
    input keeps between ``low`` and ``high`` units on average. Unlike :class:`UniformRate`, a short input
    never trains at rates that leave it almost nothing (U[0.7, 0.99] keeps 0.3-9 of 30 words). Training
    only: ``self(length)`` raises; certify with a fixed, adaptive or binned schedule.
    """

    low: float
    high: float
    p_lb: float
    kind: ClassVar[str] = "uniform_keep"
    certifiable: ClassVar[bool] = False
    _hint: ClassVar[str] = "e.g. uniform_keep:low=5,high=25,p_lb=0.9"

    def __post_init__(self) -> None:
        _check_low_high(self, lambda v: 0.0 < v < math.inf, "a number > 0 (units kept on average)")
        object.__setattr__(self, "p_lb", _check_open_unit("p_lb", self.p_lb, self._hint))

    def __call__(self, length: int) -> float:
        raise _no_certificate(self)

    def sample(self, length: int, rng: np.random.Generator) -> float:
        length = _check_length(length)
        k = float(rng.uniform(self.low, self.high))
        return self.p_lb if length == 0 else max(self.p_lb, 1.0 - k / length)

    def params(self) -> dict:
        return {"low": self.low, "high": self.high, "p_lb": self.p_lb}

    def describe(self) -> str:
        return f"p_del=max({self.p_lb:g}, 1 - k/L), k~U[{self.low:g}, {self.high:g}] (training only)"


_KINDS: dict[str, type] = {"fixed": FixedRate, "adaptive": AdaptiveRate, "binned": BinnedRate, "uniform": UniformRate,
                           "uniform_keep": UniformKeep}


def from_dict(data: dict) -> RateSchedule:
    """The schedule of a :meth:`RateSchedule.to_dict` dictionary (``{"kind": ..., <parameters>}``)."""
    if not isinstance(data, dict):
        raise ValueError(f"a rate schedule must be a JSON object with a 'kind', got {data!r}")
    kind = data.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    params = {k: v for k, v in data.items() if k != "kind"}
    try:
        return _KINDS[kind](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for a {kind} rate schedule: {params!r} ({err})") from None


def as_schedule(rate: "RateSchedule | float | int") -> RateSchedule:
    """A schedule from a schedule or a plain number (a number means :class:`FixedRate`)."""
    if isinstance(rate, RateSchedule):
        return rate
    if isinstance(rate, (int, float, np.floating)) and not isinstance(rate, bool):
        return FixedRate(float(rate))
    raise ValueError(f"rate must be a number in [0, 1) or a RateSchedule, got {rate!r}")


def load(model_dir: str | Path) -> RateSchedule | None:
    """The schedule saved in ``model_dir/rate_schedule.json``, or None when the folder has none."""
    path = Path(model_dir) / FILENAME
    if not path.is_file():
        return None
    return _load_file(path)


def _load_file(path: Path) -> RateSchedule:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"rate schedule file {str(path)!r} does not parse as JSON ({err})") from None
    try:
        return from_dict(data)
    except ValueError as err:
        raise ValueError(f"rate schedule file {str(path)!r}: {err}") from None


def _numbers(text: str, field_name: str, spec: str) -> list[float]:
    try:
        return [float(v) for v in text.split("|")]
    except ValueError:
        raise ValueError(f"{field_name} in rate schedule {spec!r} must be numbers separated by '|', got {text!r}") from None


def _keywords(body: str, spec: str, allowed: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in allowed + optional:
            names = [a + "=..." for a in allowed] + [f"[{a}=...]" for a in optional]
            raise ValueError(f"rate schedule {spec!r}: expected {', '.join(names)}, got {part!r}")
        out[key.strip()] = value.strip()
    missing = [a for a in allowed if a not in out]
    if missing:
        raise ValueError(f"rate schedule {spec!r} is missing {', '.join(missing)}")
    return out


def parse_rate_schedule(text: str) -> RateSchedule:
    """A schedule from its command-line form.

    Accepted forms (spaces ignored)::

        0.9                                   fixed rate (same as fixed:0.9)
        fixed:0.9
        adaptive:k=13,p_lb=0.9                AdaptDel
        binned:edges=20|50|100,values=0.5|4|8|13    AdaptDel+ (len(values) = len(edges) + 1)
        binned:edges=20|50,values=2|5|13,p_lb=0.9   AdaptDel+ with a floor: max(0.9, 1 - v/L)
        uniform:0.7,0.99                      training only (AdaptDel+ recipe)
        uniform_keep:low=5,high=25,p_lb=0.9   training only: k ~ U[5, 25] units kept, max(0.9, 1 - k/L)
        path/to/schedule.json                 a to_dict() JSON file
        path/to/model_dir                     the folder's rate_schedule.json

    Raises ValueError naming the bad field, or the file that does not parse.
    """
    spec = str(text).strip()
    if not spec:
        raise ValueError("rate schedule is empty; use e.g. 0.9, fixed:0.9 or adaptive:k=13,p_lb=0.9")
    try:
        return FixedRate(float(spec))
    except ValueError as err:
        if "p must be" in str(err):
            raise
    kind, sep, body = spec.partition(":")
    kind = kind.strip().lower()
    if sep and kind in _KINDS:
        body = body.replace(" ", "")
        if kind == "fixed":
            return FixedRate(_numbers(body, "p", spec)[0] if "|" not in body else math.nan)
        if kind == "uniform":
            parts = body.split(",")
            if len(parts) != 2:
                raise ValueError(f"rate schedule {spec!r}: uniform needs low,high, e.g. uniform:0.7,0.99")
            return UniformRate(*(_numbers(p, name, spec)[0] for p, name in zip(parts, ("low", "high"))))
        if kind == "uniform_keep":
            kw = _keywords(body, spec, ("low", "high", "p_lb"))
            return UniformKeep(*(_numbers(kw[name], name, spec)[0] for name in ("low", "high", "p_lb")))
        if kind == "adaptive":
            kw = _keywords(body, spec, ("k", "p_lb"))
            return AdaptiveRate(_numbers(kw["k"], "k", spec)[0], _numbers(kw["p_lb"], "p_lb", spec)[0])
        kw = _keywords(body, spec, ("edges", "values"), optional=("p_lb",))
        edges = _numbers(kw["edges"], "edges", spec)
        p_lb = _numbers(kw["p_lb"], "p_lb", spec)[0] if "p_lb" in kw else 0.0
        return BinnedRate(tuple(edges), tuple(_numbers(kw["values"], "values", spec)), p_lb)
    path = Path(spec)
    if path.is_dir():
        found = load(path)
        if found is None:
            raise ValueError(f"rate schedule folder {spec!r} has no {FILENAME}")
        return found
    if path.is_file():
        return _load_file(path)
    raise ValueError(
        f"rate schedule {spec!r} is not a number, a known kind ({', '.join(sorted(_KINDS))}) or an existing JSON file; "
        "use e.g. 0.9, adaptive:k=13,p_lb=0.9 or binned:edges=20|50,values=0.5|4|8"
    )
