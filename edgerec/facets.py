"""Descriptive queries: a genre head beside the encoder (export/facets.py makes it).

The bundled encoder matches word pieces: it answers titles, genres and "movies
like X" well, and topic words that titles carry ("christmas", "superman"), but
for a description its scores come out flat and its list drifts to whatever
shares a word with the query. A small head reads the token ids (the mean of one
row per token) and gives a score per genre, trained to match how
all-mpnet-base-v2 reads the whole query; a softmax turns the scores into
weights, which mix the genres' centroids into one vector in the index's space.
That vector, times ``weight``, is added to the encoder's: the encoder keeps the
topic, the facets pull the list toward the genres the query describes.

When the facets take part is two cheap checks on the encoder's own answer,
both needed:
- its best score leads its 10th by less than ``max_margin`` (no clear match);
- the top item's title holds less than ``min_title_cover`` of the query's
  words (the query is not a title, nor "something like <title>").
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import BundleError
from .manifest import FacetSpec
from .pooling import l2_normalize

# The encoder's scores the take-part rule compares: the best and the 10th best.
ROUTE_PROBE = 10
_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, in any script


def content_words(text: str, stopwords: frozenset[str]) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in stopwords}


def _unit(vector: np.ndarray) -> np.ndarray:
    return l2_normalize(vector[None])[0].astype(np.float32)


class QueryFacets:
    """The head and centroids of a bundle's facets file."""

    def __init__(self, spec: FacetSpec, weights: np.ndarray, bias: np.ndarray, centroids: np.ndarray) -> None:
        self.spec = spec
        self.weights = weights      # (vocab_size, facets)
        self.bias = bias            # (facets,)
        self.centroids = centroids  # (facets, dim), unit rows
        self._stopwords = frozenset(spec.stopwords)

    @classmethod
    def load(cls, path: Path, spec: FacetSpec) -> "QueryFacets":
        """Read and check the file (open_bundle has verified its size and sha256 already)."""
        data = np.fromfile(path, dtype="<f4")
        if data.size * 4 != spec.file_size:
            raise BundleError(f"{path}: {data.size * 4} bytes, the facets section needs {spec.file_size}; "
                              "rebuild the bundle")
        if not np.isfinite(data).all():
            raise BundleError(f"{path}: holds NaN or infinite values; rebuild the bundle")
        count, vocab = len(spec.names), spec.vocab_size
        weights = data[: vocab * count].reshape(vocab, count)
        bias = data[vocab * count : vocab * count + count]
        centroids = data[vocab * count + count :].reshape(count, spec.dim)
        norms = np.linalg.norm(centroids, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            raise BundleError(f"{path}: the centroids are not unit vectors; the file is not a facets file. "
                              "Rebuild the bundle")
        return cls(spec, weights, bias, centroids)

    def take_part(self, text: str, scores: np.ndarray, top_title: str) -> bool:
        """Whether the encoder's answer (``scores`` best first, ``top_title`` of its best item) is weak
        enough for the facets to take part in answering ``text``."""
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

    def scores(self, token_ids: np.ndarray) -> np.ndarray:
        """The head's score per facet for a text's token ids."""
        return self.weights[token_ids].mean(axis=0) + self.bias

    def mix(self, scores: np.ndarray) -> np.ndarray:
        """The unit vector for per-facet scores: the centroids weighted by a softmax of the scores."""
        weights = np.exp((scores - scores.max()) / self.spec.temperature)
        return _unit((weights / weights.sum()) @ self.centroids)

    def blend(self, encoded: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
        """The vector to search for a query the facets take part in (``encoded``: the encoder's vector)."""
        return _unit(encoded + self.spec.weight * self.mix(self.scores(token_ids)))
