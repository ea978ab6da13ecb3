"""The user representation: what `recommend` searches with.

The normalised mean of the unit vectors of the user's most recent items. The
model in the default bundle is trained for exactly this (see export/stages/finetune.py),
and the window it was trained with is stored in the bundle's manifest.
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
