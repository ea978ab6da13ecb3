"""A small typed wrapper around an hnswlib index of item vectors.

hnswlib checks neither the width of a query nor k against the item count,
and stores neither space nor ef: this class does, from the manifest's facts.
Labels are item-table row numbers (0 .. count-1).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import BundleError, InputError
from .manifest import IndexSpec

DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF = 64
_ADD_CHUNK = 4096
# hnswlib's saveIndex header: six size_t, int maxlevel, uint enterpoint,
# size_t maxM, maxM0, M, double mult, size_t ef_construction (96 bytes).
_HEADER = struct.Struct("<6QiI3QdQ")


def check_header(path: Path, spec: IndexSpec) -> None:
    """Refuse an index file whose header does not fit the manifest, before hnswlib reads it.

    hnswlib trusts these fields blindly: a wrong dim reads past each vector, a
    count above max_elements or an entry point out of range corrupts the heap.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEADER.size)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the index ({exc.strerror})") from None
    if len(head) < _HEADER.size:
        raise BundleError(f"{path}: too short for an hnswlib index ({len(head)} bytes)")
    (offset_level0, max_elements, count, size_per_element, label_offset, offset_data,
     max_level, entry_point, _max_m, max_m0, m, _mult, ef_construction) = _HEADER.unpack(head)
    problems = []
    if count != spec.count:
        problems.append(f"holds {count} items, the manifest says {spec.count}")
    if label_offset - offset_data != 4 * spec.dim:
        problems.append(f"stores {(label_offset - offset_data) // 4}-d vectors, the manifest says {spec.dim}")
    if m != spec.m or max_m0 != 2 * m or ef_construction != spec.ef_construction:
        problems.append(f"was built with M={m}, ef_construction={ef_construction}, the manifest says "
                        f"M={spec.m}, ef_construction={spec.ef_construction}")
    if (offset_level0 != 0 or max_elements < count or entry_point >= max(count, 1) or max_level < 0
            or size_per_element != label_offset + 8 or offset_data != 4 + 4 * max_m0):
        problems.append("has an inconsistent header")
    if path.stat().st_size < _HEADER.size + count * size_per_element + 4 * count:
        problems.append("is shorter than its header says")
    if problems:
        raise BundleError(f"{path}: the index {'; '.join(problems)}; rebuild the bundle")


class ItemIndex:
    """Nearest-neighbour search over unit item vectors (inner-product space)."""

    def __init__(self, native, spec: IndexSpec) -> None:  # native: hnswlib.Index
        self._native = native
        self.spec = spec
        self._all_vectors: np.ndarray | None = None  # read on the first exact search
        native.set_ef(max(spec.ef, 1))

    @classmethod
    def load(cls, path: Path, spec: IndexSpec) -> "ItemIndex":
        import hnswlib

        check_header(path, spec)
        native = hnswlib.Index(space=spec.space, dim=spec.dim)
        try:
            native.load_index(str(path), max_elements=spec.count)
        except Exception as exc:
            raise BundleError(f"{path}: hnswlib cannot load the index ({exc})") from None
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
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
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
        try:
            labels, distances = self._native.knn_query(query, k=wanted)
            labels, distances = labels[0].astype(np.int64), distances[0]
        except RuntimeError:
            # hnswlib gives up ("Cannot return the results in a contiguous 2D array") when
            # its graph walk finds fewer than k items, as it does for k near the item count.
            labels, distances = self._exact_search(query[0], wanted)
        keep = np.array([label not in skip for label in labels], dtype=bool)
        labels, scores = labels[keep][:k], (1.0 - distances[keep][:k]).astype(np.float32)
        return labels, scores

    def _exact_search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (labels, ip distances) by brute force: the fallback when hnswlib cannot return k items."""
        if self._all_vectors is None:
            # Read once and kept; two threads racing here both store the same array.
            self._all_vectors = self.vectors(range(self.spec.count))
        distances = 1.0 - self._all_vectors @ query
        order = np.argsort(distances, kind="stable")[:k]
        return order.astype(np.int64), distances[order]
