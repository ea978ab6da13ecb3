"""Pooling and normalisation: pure numpy, so they can be tested alone."""

from __future__ import annotations

import numpy as np


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Average the token vectors of each text, ignoring padding.

    hidden: (batch, tokens, dim); attention_mask: (batch, tokens) of 0/1.
    """
    mask = attention_mask.astype(hidden.dtype)[:, :, None]
    summed = (hidden * mask).sum(axis=1)
    counts = np.maximum(mask.sum(axis=1), 1e-9)
    return summed / counts


def cls_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """The vector of the first ([CLS]) token of each text."""
    return hidden[:, 0, :]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length; all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


POOLERS = {"mean": mean_pool, "cls": cls_pool}


def pool_one(hidden: np.ndarray, pooling: str) -> np.ndarray:
    """One unpadded text's vector from its token vectors (tokens, dim): what ``POOLERS`` give for a
    batch of one, without the mask arithmetic (a visible share of a ~0.5 ms query)."""
    return hidden[0] if pooling == "cls" else hidden.mean(axis=0)


def unit_vector(vector: np.ndarray) -> np.ndarray:
    """One vector scaled to unit length; an all-zero vector stays zero."""
    return vector / max(float(np.sqrt(vector @ vector)), 1e-12)
