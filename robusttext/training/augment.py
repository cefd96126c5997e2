"""Adversarial data augmentation on the fly: a collator wrapper that perturbs training texts with
TextAttack augmenters before the inner collator (e.g. :class:`~robusttext.certificate.deletion.DeletionCollator`)
encodes them.

``robusttext train --augment deepwordbug`` (and ``experiments/train_text.py``, which also sets the rates, e.g.
``--augment-rate 0.5``) replaces each training example's text,
with probability ``augment_rate`` and freshly every time the example is drawn, by one TextAttack
augmentation changing about ``augment_words_pct`` of its words. Only training batches are augmented
(the wrapper is inactive while the model is in eval mode).
"""

from __future__ import annotations

import random
from typing import Any, Callable

import numpy as np

from ..runs.textattack_env import import_textattack, require_textattack, require_wordnet

from dataclasses import dataclass

#: Augmenters that run offline: name -> (TextAttack augmentation recipe, needs WordNet).
AUGMENTERS: dict[str, tuple[str, bool]] = {
    "deepwordbug": ("CharSwapAugmenter", False),  # DeepWordBug's 4 character edits + its edit-distance limit
    "charswap": ("CharSwapAugmenter", False),
    "swap": ("SwapAugmenter", False),
    "deletion": ("DeletionAugmenter", False),
    "wordnet": ("WordNetAugmenter", True),
    "eda": ("EasyDataAugmenter", True),
}
#: Augmenters that need downloads: name -> what is missing offline.
UNAVAILABLE_AUGMENTERS: dict[str, str] = {
    "embedding": "counter-fitted word embeddings (TextAttack downloads 'paragramcf')",
    "checklist": "the `checklist` package and its downloaded lexicons",
    "clare": "the distilroberta-base masked LM (Hugging Face Hub) and the Universal Sentence Encoder",
    "back_trans": "MarianMT translation models (Hugging Face Hub)",
    "back_transcription": "text-to-speech and speech recognition models (Hugging Face Hub)",
}


@dataclass(frozen=True)
class Augmentation:
    """TextAttack augmentation of training texts (checked here, once).

    Args:
        augment: the augmenter, one of :data:`AUGMENTERS` (offline ones).
        augment_rate: probability that a training example is augmented, in [0, 1].
        augment_words_pct: share of an example's words an augmentation changes, in (0, 1].
    """

    augment: str
    augment_rate: float = 0.5
    augment_words_pct: float = 0.1

    def __post_init__(self) -> None:
        if self.augment in UNAVAILABLE_AUGMENTERS:
            raise ValueError(
                f"--augment {self.augment}: cannot run offline, it needs {UNAVAILABLE_AUGMENTERS[self.augment]}. "
                f"Offline augmenters: {', '.join(AUGMENTERS)}"
            )
        if self.augment not in AUGMENTERS:
            raise ValueError(f"--augment {self.augment!r}: unknown augmenter; choose from {', '.join(AUGMENTERS)}")
        if not (0.0 <= self.augment_rate <= 1.0):
            raise ValueError(f"--augment-rate must be in [0, 1], got {self.augment_rate}")
        if not (0.0 < self.augment_words_pct <= 1.0):
            raise ValueError(f"--augment-words-pct must be in (0, 1], got {self.augment_words_pct}")
        require_textattack()


def build_augmenter(name: str, words_pct: float) -> Any:
    """The TextAttack ``Augmenter`` ``name`` (checked by :class:`Augmentation`) producing one augmentation per text."""
    cls_name, needs_wordnet = AUGMENTERS[name]
    if needs_wordnet:
        require_wordnet(f"--augment {name}")
    import_textattack()
    import textattack.augmentation as aug

    kwargs: dict[str, Any] = {"pct_words_to_swap": words_pct, "transformations_per_example": 1}
    if name == "deepwordbug":
        from textattack.constraints.overlap import LevenshteinEditDistance
        from textattack.constraints.pre_transformation import RepeatModification, StopwordModification

        # DeepWordBug (Gao et al. 2018) as built by TextAttack's recipe: the 4 character edits, no
        # stopwords, no word twice, total edit distance <= 30 characters.
        return aug.Augmenter(
            aug.CharSwapAugmenter().transformation,
            constraints=[RepeatModification(), StopwordModification(), LevenshteinEditDistance(30)], **kwargs,
        )
    return getattr(aug, cls_name)(**kwargs)


class AugmentingCollator:
    """Wraps a collator: each feature's text is replaced, with probability ``rate``, by an augmentation.

    Args:
        collator: the inner collator (receives the features with augmented texts).
        augment: an :class:`Augmentation` (augmenter name, rate, share of words changed).
        text_column: the raw text field of each feature.
        seed: seeds which examples are augmented and TextAttack's random choices.
        active: returns False when augmentation should pause (default: always on); the Trainer hook
            passes ``lambda: model.training`` so evaluation batches stay clean.
    """

    def __init__(
        self,
        collator: Callable[[list[dict]], Any],
        augment: Augmentation,
        text_column: str = "text",
        seed: int = 0,
        active: Callable[[], bool] | None = None,
    ) -> None:
        self.collator = collator
        self.rate = float(augment.augment_rate)
        self.text_column = text_column
        self.rng = np.random.default_rng(seed)
        self.active = active or (lambda: True)
        self.augmenter = build_augmenter(augment.augment, augment.augment_words_pct)
        self.augmented = 0  # texts changed so far

    def augment_text(self, text: str) -> str:
        """One augmentation of ``text`` (the text itself when TextAttack finds no valid change)."""
        # TextAttack draws from the global `random` and `numpy.random`: seed both from our stream, then
        # restore them so the Trainer's own random state is untouched.
        state, np_state = random.getstate(), np.random.get_state()
        seed = int(self.rng.integers(2**31))
        random.seed(seed)
        np.random.seed(seed)
        try:
            out = self.augmenter.augment(text) if text.strip() else []
        finally:
            random.setstate(state)
            np.random.set_state(np_state)
        return out[0] if out else text

    def __call__(self, features: list[dict]) -> Any:
        if self.augmenter is not None and self.rate > 0 and self.active():
            picked = self.rng.random(len(features)) < self.rate
            new = []
            for f, p in zip(features, picked):
                if p and self.text_column in f:
                    text = self.augment_text(f[self.text_column])
                    self.augmented += int(text != f[self.text_column])
                    f = {**f, self.text_column: text}
                new.append(f)
            features = new
        return self.collator(features)
