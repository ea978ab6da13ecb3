"""A small typed wrapper around an hnswlib index of item vectors.

hnswlib checks neither the width of a query nor k against the item count,
and stores neither space nor ef: this class does, from the manifest's facts.
Labels are item-table row numbers (0 .. count-1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import BundleError, InputError
from .manifest import IndexSpec

DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF = 64
_ADD_CHUNK = 4096


class ItemIndex:
    """Nearest-neighbour search over unit item vectors (inner-product space)."""

    def __init__(self, native, spec: IndexSpec) -> None:  # native: hnswlib.Index
        self._native = native
        self.spec = spec
        native.set_ef(max(spec.ef, 1))

    @classmethod
    def load(cls, path: Path, spec: IndexSpec) -> "ItemIndex":
        import hnswlib

        native = hnswlib.Index(space=spec.space, dim=spec.dim)
        try:
            native.load_index(str(path), max_elements=spec.count)
        except Exception as exc:
            raise BundleError(f"{path}: hnswlib cannot load the index ({exc})") from None
        if native.get_current_count() != spec.count or native.dim != spec.dim:
            raise BundleError(
                f"{path}: index holds {native.get_current_count()} vectors of dim {native.dim}, "
                f"the manifest says {spec.count} of dim {spec.dim}"
            )
        return cls(native, spec)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef: int = DEFAULT_EF,
        threads: int = 0,
        seed: int = 100,
        progress: Callable[[int], None] | None = None,
    ) -> "ItemIndex":
        import hnswlib

        count, dim = vectors.shape
        spec = IndexSpec(space="ip", dim=dim, m=m, ef_construction=ef_construction, ef=ef, count=count)
        native = hnswlib.Index(space=spec.space, dim=dim)
        native.init_index(max_elements=count, M=m, ef_construction=ef_construction, random_seed=seed)
        native.set_num_threads(threads if threads > 0 else -1)
        for start in range(0, count, _ADD_CHUNK):
            block = np.ascontiguousarray(vectors[start : start + _ADD_CHUNK], dtype=np.float32)
            native.add_items(block, np.arange(start, start + len(block)))
            if progress is not None:
                progress(len(block))
        return cls(native, spec)

    def save(self, path: Path) -> None:
        self._native.save_index(str(path))
        # hnswlib reports no write errors: check something real landed.
        if not path.is_file() or path.stat().st_size == 0:
            raise BundleError(f"{path}: hnswlib failed to write the index (disk full or not writable?)")

    def vectors(self, labels: Iterable[int]) -> np.ndarray:
        return np.asarray(self._native.get_items(list(labels)), dtype=np.float32)

    def search(self, vector: np.ndarray, k: int, exclude: Iterable[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (labels, similarities) for one vector, best first, without ``exclude``."""
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.spec.dim:
            raise InputError(f"query vector has {query.shape[1]} dims, the index holds {self.spec.dim}")
        if not np.isfinite(query).all():
            raise InputError("query vector contains NaN or infinity")
        skip = set(exclude)
        wanted = min(k + len(skip), self.spec.count)
        if wanted <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        # Over-fetch and drop excluded labels: faster than hnswlib's filter callback.
        # hnswlib searches with max(ef, k), so ef needs no per-call change.
        labels, distances = self._native.knn_query(query, k=wanted)
        labels, distances = labels[0].astype(np.int64), distances[0]
        keep = np.array([label not in skip for label in labels], dtype=bool)
        labels, scores = labels[keep][:k], (1.0 - distances[keep][:k]).astype(np.float32)
        return labels, scores
