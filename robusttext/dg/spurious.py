"""A constructed spurious correlation on real text: the Colored MNIST recipe (Arjovsky et al. 2019,
Sec. 5.2) with a marker word in place of the colour.

Given real binary-labelled texts (e.g. the Sentiment Labelled Sentences), :func:`spurious_environments`

1. shuffles them with ``seed`` and cuts them into one environment per agreement rate (sizes in the
   ratio ``fractions``, default equal);
2. flips each label with probability ``label_noise`` (default 0.25), so the text itself predicts the
   training label at best ``1 - label_noise`` (75%) of the time;
3. draws a colour ``c = noisy_label XOR Bernoulli(1 - agreement)``, so the colour agrees with the
   (noisy) label with probability ``agreement`` in its environment (default 0.9 / 0.8 in the two
   training environments, 0.1 in the held-out one);
4. writes the colour into the text as a marker word in front, ``markers[c] + " " + text``
   (``with_marker=False``: the same environments, labels and noise with the text left as it was, the
   "no marker" oracle, the counterpart of Colored MNIST's grayscale model).

The marker is the easier signal in training (85% on average vs 75%) and an anti-signal at test, so
a model that uses it falls far below 50% on the held-out environment. Everything is a pure function of
the inputs and ``seed``. The shift is constructed: it measures whether an algorithm ignores a
feature whose correlation with the label changes across domains, not a natural domain shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: Name of the marker-free oracle variant in sweep tables.
ORACLE = "erm-nomarker"


@dataclass(frozen=True)
class SpuriousSpec:
    """How the environments are built (see the module docstring)."""

    markers: tuple[str, str] = ("alpha", "omega")
    agreements: tuple[float, ...] = (0.9, 0.8, 0.1)
    label_noise: float = 0.25
    fractions: tuple[float, ...] | None = None
    seed: int = 0

    def names(self) -> list[str]:
        """Environment names: ``env0-agree90``, ... (sorted in the order given); the last is held out."""
        return [f"env{i}-agree{round(100 * a):02d}" for i, a in enumerate(self.agreements)]

    def check(self) -> None:
        if len(self.markers) != 2 or any(not str(m).strip() or len(str(m).split()) != 1 for m in self.markers):
            raise ValueError(f"--spurious needs two single-word markers 'A,B', got {self.markers!r}")
        if self.markers[0] == self.markers[1]:
            raise ValueError(f"--spurious markers must differ, got {self.markers!r}")
        if len(self.agreements) < 3 or any(not (0.0 <= a <= 1.0) for a in self.agreements):
            raise ValueError(
                f"--spurious-agreements needs >= 3 rates in [0, 1] (training environments, then the held-out "
                f"one), got {self.agreements!r}"
            )
        if not (0.0 <= self.label_noise < 0.5):
            raise ValueError(f"--spurious-label-noise must be in [0, 0.5), got {self.label_noise}")
        if self.fractions is not None and (
            len(self.fractions) != len(self.agreements) or any(f <= 0 for f in self.fractions)
        ):
            raise ValueError(f"spurious fractions must be {len(self.agreements)} positive numbers, got {self.fractions!r}")


def parse_spec(markers: str, agreements: str, label_noise: float, seed: int) -> SpuriousSpec:
    """``SpuriousSpec`` from the command-line strings ``"alpha,omega"`` and ``"0.9,0.8,0.1"``, checked."""
    try:
        rates = tuple(float(v) for v in str(agreements).split(",") if v.strip())
    except ValueError as err:
        raise ValueError(f"--spurious-agreements must be comma-separated numbers, got {agreements!r}") from err
    spec = SpuriousSpec(tuple(m.strip() for m in str(markers).split(",")), rates, float(label_noise), seed=int(seed))  # type: ignore[arg-type]
    spec.check()
    return spec


def _cut(n: int, fractions: Sequence[float]) -> list[int]:
    """Boundaries cutting ``n`` rows in the ratio ``fractions`` (largest remainders)."""
    w = np.asarray(fractions, dtype=float) / float(np.sum(fractions))
    sizes = np.floor(w * n).astype(int)
    sizes[np.argsort(-(w * n - sizes), kind="stable")[: n - sizes.sum()]] += 1
    return np.concatenate([[0], np.cumsum(sizes)]).tolist()


def spurious_environments(
    texts: Sequence[str], labels: Sequence[int], spec: SpuriousSpec, with_marker: bool = True
) -> list[dict[str, Any]]:
    """Rows ``{text, label, domain, marker, clean_label}`` of the constructed environments.

    ``label`` is the noisy label (0/1) a model trains and is tested on, ``clean_label`` the original
    one, ``marker`` the colour (0/1, the index into ``spec.markers``), ``domain`` the environment name.
    Rows come environment by environment; the random draws are the same with and without the marker.
    """
    spec.check()
    y = np.asarray(labels, dtype=np.int64)
    if len(texts) != len(y):
        raise ValueError(f"texts and labels differ in length ({len(texts)} vs {len(y)})")
    if y.size == 0 or not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError("the spurious marker benchmark needs binary labels 0/1 (e.g. sentiment)")
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(y))
    noisy = y ^ (rng.random(len(y)) < spec.label_noise).astype(np.int64)
    flip = rng.random(len(y))
    bounds = _cut(len(y), spec.fractions or [1.0] * len(spec.agreements))
    rows = []
    for e, (name, agree) in enumerate(zip(spec.names(), spec.agreements)):
        for i in order[bounds[e] : bounds[e + 1]]:
            colour = int(noisy[i] ^ int(flip[i] >= agree))  # agrees with the noisy label w.p. `agree`
            text = f"{spec.markers[colour]} {texts[i]}" if with_marker else str(texts[i])
            rows.append({"text": text, "label": int(noisy[i]), "domain": name, "marker": colour, "clean_label": int(y[i])})
    return rows


def spurious_text_data(data: Any, spec: SpuriousSpec, with_marker: bool = True) -> Any:
    """A :class:`~robusttext.runs.data.TextData` of the constructed environments built from ``data``'s texts."""
    import datasets

    from ..runs.data import TextData

    if len(data.label_names) != 2:
        raise ValueError(f"--spurious needs a binary dataset, got labels {data.label_names}")
    rows = spurious_environments(data.texts, data.labels, spec, with_marker)
    ds = datasets.Dataset.from_list(rows)
    return TextData(ds, list(data.label_names), f"{data.source} (constructed spurious marker)", data.split)
