"""Nearest neighbours among the items a filter keeps, k of them whenever k pass.

HNSW knows nothing of filters; hnswlib's filter callback calls Python for every
node it visits. Two cheaper ways:

- through HNSW: ask for 2 x k / (share passing) neighbours and keep those that
  pass; when fewer than k pass, ask again four times wider. A wide search in
  hnswlib runs with ef = max(ef, k), so it is as accurate as an unfiltered one;
- an exact scan: score the passing items, a matrix product over their stored
  vectors (~0.25 ms per 1,000 items).

HNSW is used while what it must return stays under a quarter of what passes
(HNSW_SHARE); past that, scanning the passing items costs less, and is exact.
A filter most items pass goes through HNSW ("genres!=Western": 21 neighbours
rather than 3,815 vectors); a selective one is scanned. So a scan reads at most
sqrt(8 k x count) vectors (about 9,000 for k = 10 in a million items).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .bundle.hnsw_file import SMALL_READ
from .index import ItemIndex

# HNSW while its fetch is at most this share of the passing items (see above).
HNSW_SHARE = 4.0
_WIDEN = 4


def search_allowed(index: ItemIndex, vector: np.ndarray, k: int, allowed: np.ndarray,
                   exclude: Iterable[int] = (), *, exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (labels, similarities) among labels where ``allowed`` (a bool per item) is True, without
    ``exclude``, best first; fewer than k only when fewer pass. ``exact``: True scans, False goes through
    HNSW (widening up to the whole catalogue before scanning), None chooses (module docstring)."""
    keep = allowed.copy()
    keep[np.fromiter(exclude, dtype=np.int64)] = False
    passing = int(keep.sum())
    k = min(k, passing)
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    count = index.spec.count
    fetch = min(count, math.ceil(2 * k * count / passing))
    limit = count if exact is False else passing / HNSW_SHARE
    while exact is not True and fetch <= limit:
        labels, scores = index.search(vector, fetch)
        ok = keep[labels]
        if int(ok.sum()) >= k:
            return labels[ok][:k], scores[ok][:k]
        if fetch >= count:
            break
        fetch = min(count, fetch * _WIDEN)
    return exact_among(index, vector, k, np.flatnonzero(keep))


def exact_among(index: ItemIndex, vector: np.ndarray, k: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of ``labels`` by exact cosine (inner product of unit vectors), ties to the lower label."""
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    # In reads of SMALL_READ: those share the mapping the index keeps open; a larger read maps the file
    # afresh and pays its page faults (8 ms for 1,200 MovieLens vectors, against 0.3 ms in chunks).
    scores = np.concatenate([index.vectors(labels[start : start + SMALL_READ]) @ query
                             for start in range(0, len(labels), SMALL_READ)])
    order = np.lexsort((labels, -scores))[:k]
    return labels[order].astype(np.int64), scores[order].astype(np.float32)
