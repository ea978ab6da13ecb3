"""An item prior for `recommend`: how popular each item is, added to the similarity.

A user's answer is ranked by cosine + weight x prior, the prior being log(1 + count) / log(1 + the
largest count): 1 for the most popular item, 0 for an item nobody chose. Counts come from interactions:
the export stage's training events, or an app's own (`edgerec prior`), optionally weighted by recency
(an event ``half_life_days`` old counts half). What is popular among an app's own users moves faster than
a model is retrained, and a new population's own popularity is a strong signal that the model's vectors
do not carry (results/prior.md).

The file (files.prior) holds the counts, float32, one per item label; the weight is in the manifest
(PriorSpec) and can be overridden per call.
"""

from __future__ import annotations

import io
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import BundleError
from .events import UserEvents

# The most popular items that join the encoder's candidates.
PRIOR_POOL = 100
# A prior's weight when none was chosen for the bundle: the best of log-count priors on MovieLens-1M
# validation HR@10 (results/prior.md).
DEFAULT_WEIGHT = 0.2
SECONDS_PER_DAY = 86_400.0


def event_counts(per_user: UserEvents, size: int, *, half_life_days: float | None = None) -> np.ndarray:
    """Each item row's event count (float32); with ``half_life_days``, an event that long before the last
    event of the file counts half, twice that long a quarter, and so on."""
    counts = np.zeros(size, dtype=np.float64)
    events = [pair for pairs in per_user.values() for pair in pairs]
    if not events:
        return counts.astype(np.float32)
    times = np.fromiter((t for t, _ in events), dtype=np.float64, count=len(events))
    rows = np.fromiter((r for _, r in events), dtype=np.int64, count=len(events))
    weights = (np.ones(len(events)) if half_life_days is None
               else 0.5 ** ((times.max() - times) / (half_life_days * SECONDS_PER_DAY)))
    np.add.at(counts, rows, weights)
    return counts.astype(np.float32)


class ItemPrior:
    """The prior of every item label, from its counts."""

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = np.asarray(counts, dtype=np.float32)
        largest = float(self.counts.max()) if len(self.counts) else 0.0
        self.scores = (np.log1p(self.counts) / np.log1p(largest) if largest > 0
                       else np.zeros_like(self.counts)).astype(np.float32)
        self.ranked = np.argsort(-self.scores, kind="stable")[:PRIOR_POOL]  # most popular first
        self._ranked = self.ranked.tolist()  # the per-call walk over them is in plain Python

    # -- the file ----------------------------------------------------------
    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, self.counts, allow_pickle=False)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, size: int, name: str = "prior file") -> "ItemPrior":
        """Read and check a file ``to_bytes`` wrote for a table of ``size`` items."""
        try:
            counts = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:  # numpy raises several kinds for a damaged .npy
            raise BundleError(f"{name}: not a readable item prior ({type(exc).__name__}); rebuild the bundle") from None
        if counts.dtype != np.float32 or counts.shape != (size,) or not np.isfinite(counts).all() or (counts < 0).any():
            raise BundleError(f"{name}: its counts do not fit the bundle's {size} items; rebuild the bundle")
        return cls(counts)

    # -- ranking -----------------------------------------------------------
    def rerank(self, labels: np.ndarray, similarities: np.ndarray, similarity_of: Callable[[np.ndarray], np.ndarray],
               weight: float, k: int, exclude: Iterable[int] = (), ceiling: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` by similarity + ``weight`` x prior over the search's candidates (``labels``,
        ``similarities``) and the most popular items not excluded (their similarity from ``similarity_of``).

        ``ceiling``: the most similar an item outside ``labels`` can be (the search's last cosine), if
        known; popular items whose prior cannot lift that past the k-th score so far are then not looked
        at, and the rest of the popular list (less popular still) with them.
        """
        skip = set(exclude)
        known = set(labels.tolist())
        scores = similarities.astype(np.float64) + weight * self.scores[labels]
        popular = [label for label in self._ranked if label not in known and label not in skip]
        if popular and ceiling is not None and len(scores) >= k:
            kth = float(np.partition(scores, len(scores) - k)[len(scores) - k])
            reach = self.scores[popular] * weight + ceiling > kth  # descending prior: a prefix can reach
            popular = popular[: int(np.argmin(reach)) if not reach.all() else len(popular)]
        if popular:
            extra = np.asarray(popular, dtype=np.int64)
            labels = np.concatenate([labels, extra])
            scores = np.concatenate([scores, np.asarray(similarity_of(extra), dtype=np.float64)
                                     + weight * self.scores[extra]])
        order = np.lexsort((labels, -scores))[:k]  # best first; ties to the lower label
        return labels[order], scores[order].astype(np.float32)


def remap_counts(counts: np.ndarray, old_label_of: Sequence[int | None]) -> np.ndarray:
    """Counts for a new item table whose row i was old label ``old_label_of[i]`` (None: a new item, 0)."""
    return np.asarray([0.0 if label is None else counts[label] for label in old_label_of], dtype=np.float32)
