"""Descriptive queries: a second, contextual model beside the encoder (export/stages/descriptions.py makes it).

The bundled encoder is a bag of word pieces: it answers titles, genres and
"movies like X" well, and topic words that titles carry ("christmas",
"superman"), but it cannot compose a sentence: "heist" is `he ##ist`, so "a
heist movie with a clever twist" finds Heinlein and A Simple Twist of Fate.
The description model has transformer layers, trained to read a whole query
the way all-mpnet-base-v2 does, and writes that reading straight into the
index's space. Its vector, times ``weight``, is added to the encoder's and
the sum is searched: the encoder keeps what it matched, the description model
pulls the list toward what the sentence means.

It runs only when the encoder's own answer is weak, judged by two cheap
checks, both needed:
- its best score leads its 10th by less than ``max_margin`` (no clear match);
- the top item's title holds less than ``min_title_cover`` of the query's
  words (the query is not a title, nor "something like <title>").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .bundle.manifest import DescriptionSpec
from .bundle.reader import Bundle
from .encoder import TextEncoder
from .pooling import l2_normalize

# The encoder's scores the take-part rule compares: the best and the 10th best.
ROUTE_PROBE = 10
_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, in any script


def content_words(text: str, stopwords: frozenset[str]) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in stopwords}


class DescriptionModel:
    """A bundle's description model and the rule for when it takes part."""

    def __init__(self, spec: DescriptionSpec, model: TextEncoder) -> None:
        self.spec = spec
        self.model = model
        self._stopwords = frozenset(spec.stopwords)

    @classmethod
    def load(cls, model_path: Path, tokenizer_path: Path, spec: DescriptionSpec, *,
             threads: int | None = None, device: str = "cpu", encoder: TextEncoder | None = None,
             ) -> "DescriptionModel":
        """Open the model (open_bundle has verified its size and sha256 already); it shares the
        bundle's tokenizer, and ``encoder``'s loaded one when both cut texts at the same length
        (parsing tokenizer.json again costs ~35 ms of start-up)."""
        shared = encoder.tokenizer if encoder is not None and encoder.spec.max_length == spec.model.max_length else None
        return cls(spec, TextEncoder(model_path, tokenizer_path, spec.model, threads=threads, device=device,
                                     tokenizer=shared))

    @classmethod
    def of_bundle(cls, bundle: Bundle, *, threads: int | None = None, device: str = "cpu",
                  encoder: TextEncoder | None = None) -> "DescriptionModel | None":
        """The bundle's description model, or None when it has none (``encoder``: the bundle's own)."""
        spec = bundle.manifest.descriptions
        if spec is None:
            return None
        own = "descriptions_tokenizer" in bundle.manifest.files  # whole-word tokens (export/stages/whole_words.py)
        return cls.load(bundle.path("descriptions"), bundle.path("descriptions_tokenizer" if own else "tokenizer"),
                        spec, threads=threads, device=device, encoder=None if own else encoder)

    def probe_size(self, k: int, count: int) -> int:
        """How many of the encoder's results the rule needs to see (its 10th best), for a query of ``k``."""
        return min(max(k, ROUTE_PROBE), count)

    def refine(self, text: str, encoded: np.ndarray, scores: np.ndarray,
               top_item: Mapping[str, Any]) -> np.ndarray | None:
        """The vector to search again for ``text`` when the encoder's answer (its vector ``encoded``,
        ``scores`` best first, its best item ``top_item``) is weak; None when that answer stands."""
        if not self.take_part(text, scores, str(top_item.get(self.spec.title_field, ""))):
            return None
        return self.blend(encoded, self.read(text))

    def take_part(self, text: str, scores: np.ndarray, top_title: str) -> bool:
        """The rule: whether the encoder's answer (``scores`` best first, ``top_title`` of its best item)
        is weak enough for the description model to take part in answering ``text``."""
        if len(scores) == 0:
            return False
        margin = float(scores[0] - scores[min(ROUTE_PROBE, len(scores)) - 1])
        if margin >= self.spec.max_margin:
            return False
        words = content_words(text, self._stopwords)
        if not words:  # nothing to describe ("a movie"): the encoder's answer stands
            return False
        cover = len(words & content_words(top_title, self._stopwords)) / len(words)
        return cover < self.spec.min_title_cover

    def read(self, text: str) -> np.ndarray:
        """The model's unit vector for ``text``, in the index's space."""
        return self.model.encode_one(text)

    def blend(self, encoded: np.ndarray, reading: np.ndarray) -> np.ndarray:
        """The vector to search for a query the model takes part in: the encoder's vector
        ``encoded`` plus ``weight`` times the model's ``reading``, unit length."""
        return l2_normalize((encoded + self.spec.weight * reading)[None])[0].astype(np.float32)
