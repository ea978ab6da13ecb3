"""The user representation: what `recommend` searches with.

The normalised mean of the unit vectors of the user's most recent items. The
model in the default bundle is trained for exactly this (see export/stages/finetune.py),
and the window it was trained with is stored in the bundle's manifest.

Disliked items are never answered; by default ("exclude") that is all they do.
Two strategies move the answer away from them (the two qdrant's recommend API
offers): "average" searches with 2 x the liked mean minus the disliked mean;
"best_score" scores each candidate by its best cosine to a liked item, or minus
its best cosine to a disliked item when that is higher. On MovieLens-1M both
lower validation HR@10 (films rated low sit close to the ones liked), so
neither is the default (results/dislikes.md).
"""

from __future__ import annotations

import numpy as np

from .pooling import unit_vector


def user_vector(history_vectors: np.ndarray, window: int) -> np.ndarray:
    """``history_vectors``: one row per history item, oldest first. Only the last ``window`` count."""
    if len(history_vectors) == 0:
        raise ValueError("a user vector needs at least one history item")
    mean = np.asarray(history_vectors[-window:], dtype=np.float32).mean(axis=0)
    return unit_vector(mean)


STRATEGIES = ("exclude", "average", "best_score")


def away_from(vector: np.ndarray, disliked_vectors: np.ndarray) -> np.ndarray:
    """The "average" strategy: the search vector moved away from the disliked items' mean."""
    disliked = np.asarray(disliked_vectors, dtype=np.float32).mean(axis=0)
    return unit_vector(2.0 * vector - disliked)


def best_scores(candidates: np.ndarray, liked_vectors: np.ndarray, disliked_vectors: np.ndarray) -> np.ndarray:
    """The "best_score" strategy: one score per candidate row, from its best cosine to a liked and to a
    disliked item."""
    liked = (candidates @ np.asarray(liked_vectors, dtype=np.float32).T).max(axis=1)
    disliked = (candidates @ np.asarray(disliked_vectors, dtype=np.float32).T).max(axis=1)
    return np.where(liked >= disliked, liked, -disliked).astype(np.float32)
