"""A small typed wrapper around an hnswlib index of item vectors.

hnswlib checks neither the width of a query nor k against the item count,
and stores neither space nor ef: this class does, from the manifest's facts.
Labels are item-table row numbers (0 .. count-1).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .bundle.hnsw_file import StoredVectors, serialize_state, validate_index_file
from .bundle.manifest import IndexSpec
from .errors import BundleError, InputError, one_line

DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF = 64
# A bundle's default search breadth by catalogue size, (up to this many items, ef): the
# smallest measured ef that keeps recall@10 of text queries near 0.95 or above on
# MovieLens-like titles, 512 at most (results/scale.md: 0.98 at 3,883 items with 64;
# 0.98 at 10,000 and 0.92 at 100,000 with 256; 0.87 at 1,000,000 with 512). Next to
# encoding a query (~0.3 ms) the wider search costs little: 1.7 ms at a million items.
EF_BY_SIZE = ((5_000, DEFAULT_EF), (100_000, 256))
LARGEST_EF = 512
# Catalogues up to this size get a denser graph (M=48, ef_construction=400). The general model's static
# vectors crowd together: over 3,883 items, text queries found 0.89 of the exact top 10 at M=16 and
# ef=64, and 0.94 at M=48 (answers after BM25 fusion: 0.935 -> 0.960 of exact search's) for about the
# same query time and a 1 MB larger file (results/hnsw-general.md). Below this size the extra 256 bytes
# an item and the slower build do not matter.
DENSE_GRAPH_UP_TO = 5_000
DENSE_M, DENSE_EF_CONSTRUCTION = 48, 400
# Catalogues of at most this many numbers (items x dims) are searched exactly: one matrix product over
# the vectors held in memory, as fast there as the graph walk at 1 thread and never missing an item (text
# queries over 1,000 x 384: ~45 us exact against ~55 us through HNSW, where the general model's graph
# finds 0.95-0.97 of the exact top 10; from ~2,000 items on the graph is faster: results/exact-search.md).
# Such an index is loaded into hnswlib only when the graph is needed (an update).
EXACT_UP_TO = 400_000
_ADD_CHUNK = 4096
# From this many labels on, reading vectors from the index file (StoredVectors: ~30 us a call) beats
# hnswlib's get_items (~15 us per item).
_STORED_READ_MIN = 3


def default_ef(count: int) -> int:
    """The search breadth a new bundle of ``count`` items gets unless one is chosen."""
    return next((ef for limit, ef in EF_BY_SIZE if count <= limit), LARGEST_EF)


def searches_exactly(count: int, dim: int) -> bool:
    """Whether an index of ``count`` items of ``dim`` numbers is searched exactly (EXACT_UP_TO)."""
    return count * dim <= EXACT_UP_TO


def default_graph(count: int) -> tuple[int, int]:
    """(M, ef_construction) a new index of ``count`` items gets unless they are chosen."""
    return (DENSE_M, DENSE_EF_CONSTRUCTION) if count <= DENSE_GRAPH_UP_TO else (DEFAULT_M, DEFAULT_EF_CONSTRUCTION)


class ItemIndex:
    """Nearest-neighbour search over unit item vectors (inner-product space): exact for small catalogues
    (``searches_exactly``), through the HNSW graph for the others."""

    def __init__(self, native: Any, spec: IndexSpec, *, load: Callable[[], Any] | None = None) -> None:
        """``native``: an hnswlib.Index, or None with ``load`` to make one when the graph is first needed."""
        self._native = native
        self._load = load
        self._loading = threading.Lock()
        self.spec = spec
        self._ef = max(spec.ef, 1)
        self._all_vectors: np.ndarray | None = None  # read on the first exact search
        self._stored: StoredVectors | None = None  # set for an index loaded from a file
        if native is not None:
            native.set_ef(self._ef)

    @classmethod
    def load(cls, path: Path, spec: IndexSpec, *, room_for: int | None = None) -> "ItemIndex":
        """``room_for``: the item count the loaded index may grow to with ``upsert``."""
        row_labels = validate_index_file(path, spec)

        def load_graph() -> Any:
            import hnswlib

            native = hnswlib.Index(space=spec.space, dim=spec.dim)
            try:
                native.load_index(str(path), max_elements=max(spec.count, room_for or 0))
            except Exception as exc:
                raise BundleError(f"{path}: hnswlib cannot load the index ({one_line(exc)})") from None
            return native

        exact = searches_exactly(spec.count, spec.dim)
        index = cls(None if exact else load_graph(), spec, load=load_graph)
        index._stored = StoredVectors(path, spec, row_labels)
        return index

    @property
    def exact(self) -> bool:
        """Whether ``search`` scores every item (``searches_exactly``) rather than walking the graph."""
        return searches_exactly(self.spec.count, self.spec.dim)

    @property
    def ef(self) -> int:
        """The graph search's breadth (no effect on an exact search)."""
        return self._ef

    def _graph(self) -> Any:
        """The hnswlib index, loaded from the file on first use where it was deferred."""
        if self._native is None:
            with self._loading:
                if self._native is None:
                    if self._load is None:
                        raise RuntimeError("the index was released")
                    native = self._load()
                    native.set_ef(self._ef)
                    self._native = native
        return self._native

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        m: int | None = None,
        ef_construction: int | None = None,
        ef: int | None = None,
        threads: int = 0,
        seed: int = 100,
        progress: Callable[[int], None] | None = None,
    ) -> "ItemIndex":
        count, dim = vectors.shape
        builder = IndexBuilder(count, dim, m=m, ef_construction=ef_construction, ef=ef, threads=threads, seed=seed)
        for start in range(0, count, _ADD_CHUNK):
            block = vectors[start : start + _ADD_CHUNK]
            builder.add(block)
            if progress is not None:
                progress(len(block))
        return builder.finish()

    def save_with_hnswlib(self, path: Path) -> None:
        """hnswlib's own ``save_index``: writes straight from the index's memory, where ``serialized``
        needs a copy of the whole graph (1.7 GB for a million 384-d items), but reports no write error.
        Only for scratch files that are checked afterwards (edgerec.update.build.write_index)."""
        self._graph().save_index(str(path))

    def upsert(self, vectors: np.ndarray, labels: np.ndarray, *, threads: int = 0) -> None:
        """Replace the vectors of existing labels and add new labels (the next ones: count, count + 1, ...),
        linking just those into the graph instead of building it again."""
        labels = np.asarray(labels, dtype=np.int64)
        count = max(self.spec.count, int(labels.max()) + 1) if len(labels) else self.spec.count
        if len(labels) and (labels.min() < 0 or len(np.union1d(np.arange(self.spec.count), labels)) != count):
            raise ValueError(f"labels must be existing ones or the next ones after {self.spec.count - 1}")
        if len(labels):
            self._graph().add_items(np.ascontiguousarray(vectors, dtype=np.float32), labels,
                                    num_threads=threads if threads > 0 else -1)
        self.spec = replace(self.spec, count=count)
        self._stored = self._all_vectors = None  # the file and the cached copy no longer match

    def release(self) -> None:
        """Free hnswlib's memory now, not when the last reference goes; nothing can be searched afterwards."""
        self._native = self._load = self._stored = self._all_vectors = None

    def serialized(self) -> Iterator[bytes]:
        """The bytes of hnswlib's index file format, produced in Python (``edgerec.bundle.hnsw_file``).

        hnswlib's own ``save_index`` reports no write error (disk full, missing
        directory) and overwrites in place; writing these chunks ourselves
        surfaces every OSError. It costs a copy of the whole graph (hnswlib's
        ``__getstate__``), so bundles are written by ``edgerec.update.build.write_index``
        instead, which checks what ``save_index`` wrote.
        """
        return serialize_state(self._graph().__getstate__()[0])

    def save(self, path: Path) -> None:
        """Write the index file (outside a bundle: tests and tools; bundles go through BundleWriter)."""
        with open(path, "wb") as handle:
            for chunk in self.serialized():
                handle.write(chunk)

    def set_ef(self, ef: int) -> None:
        """Search breadth: higher finds more of the true top k and takes longer (results/scale.md)."""
        if isinstance(ef, bool) or not isinstance(ef, (int, np.integer)):
            raise TypeError(f"ef must be an int, got {type(ef).__name__}")
        if ef < 1:
            raise InputError(f"ef must be at least 1, got {ef}")
        self._ef = int(ef)
        if self._native is not None:
            self._native.set_ef(self._ef)

    def vectors(self, labels: Iterable[int]) -> np.ndarray:
        """The stored vectors of ``labels`` (valid labels), one row each."""
        # An array of labels (a query's candidates) is taken as it is: iterating it costs ~0.1 us a label.
        wanted = labels.astype(np.int64, copy=False) if isinstance(labels, np.ndarray) else \
            np.fromiter(labels, dtype=np.int64)
        if self._all_vectors is not None:
            return self._all_vectors[wanted]
        if self._stored is not None and (len(wanted) >= _STORED_READ_MIN or self._native is None):
            return self._stored.read(wanted)
        # hnswlib builds Python objects per item: a chunk at a time keeps that bounded.
        parts = [np.asarray(self._graph().get_items(wanted[start : start + _ADD_CHUNK]), dtype=np.float32)
                 for start in range(0, len(wanted), _ADD_CHUNK)]
        return np.concatenate(parts) if parts else np.empty((0, self.spec.dim), dtype=np.float32)

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
        if self.exact:
            return self._exact_top(query[0], k, skip)
        wanted = min(k + len(skip), self.spec.count)
        if wanted <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        # Over-fetch and drop excluded labels: faster than hnswlib's filter callback.
        # hnswlib searches with max(ef, k), so ef needs no per-call change.
        try:
            labels, distances = self._graph().knn_query(query, k=wanted)
            labels, similarities = labels[0].astype(np.int64), 1.0 - distances[0]
        except RuntimeError:
            # hnswlib gives up ("Cannot return the results in a contiguous 2D array") when
            # its graph walk finds fewer than k items, as it does for k near the item count.
            return self._exact_top(query[0], k, skip)
        if skip:
            keep = np.array([label not in skip for label in labels], dtype=bool)
            labels, similarities = labels[keep], similarities[keep]
        return labels[:k], similarities[:k].astype(np.float32)

    def _exact_top(self, query: np.ndarray, k: int, skip: set[int]) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (labels, similarities) by scoring every item, best first, ties to the lower label."""
        if self._all_vectors is None:
            # Read once and kept; two threads racing here both store the same array.
            self._all_vectors = self.vectors(range(self.spec.count))
        scores = self._all_vectors @ query
        labels = np.arange(len(scores))
        if skip:
            keep = np.ones(len(scores), dtype=bool)
            keep[[label for label in skip if 0 <= label < len(scores)]] = False
            labels, scores = labels[keep], scores[keep]
        k = min(k, len(labels))
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if k < len(scores):  # the k best (and any tied with the k-th), then ordered
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            near = np.flatnonzero(scores >= kth)
            labels, scores = labels[near], scores[near]
        order = np.lexsort((labels, -scores))[:k]
        return labels[order].astype(np.int64), scores[order].astype(np.float32)


class IndexBuilder:
    """An hnswlib index filled chunk by chunk; labels are 0, 1, 2, ... in the order vectors arrive.

    hnswlib allocates for ``capacity`` items up front (``max_elements``), so a
    streaming build counts its items first; ``finish`` refuses an index that
    did not get exactly that many.
    """

    def __init__(
        self,
        capacity: int,
        dim: int,
        *,
        m: int | None = None,
        ef_construction: int | None = None,
        ef: int | None = None,
        threads: int = 0,
        seed: int = 100,
    ) -> None:
        """``ef``: the search breadth recorded for the bundle; None: ``default_ef(capacity)``. ``m``,
        ``ef_construction``: None: ``default_graph(capacity)``."""
        import hnswlib

        ef = default_ef(capacity) if ef is None else ef
        dense_m, dense_construction = default_graph(capacity)
        m = dense_m if m is None else m
        ef_construction = dense_construction if ef_construction is None else ef_construction
        self.spec = IndexSpec(space="ip", dim=dim, m=m, ef_construction=ef_construction, ef=ef, count=capacity)
        self._native = hnswlib.Index(space=self.spec.space, dim=dim)
        self._native.init_index(max_elements=capacity, M=m, ef_construction=ef_construction, random_seed=seed)
        self._native.set_num_threads(threads if threads > 0 else -1)
        self.count = 0

    def add(self, vectors: np.ndarray) -> None:
        block = np.ascontiguousarray(vectors, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.spec.dim:
            raise ValueError(f"vectors must have shape (n, {self.spec.dim}), got {block.shape}")
        if self.count + len(block) > self.spec.count:
            raise ValueError(f"the index was made for {self.spec.count} items; {self.count + len(block)} would not fit")
        self._native.add_items(block, np.arange(self.count, self.count + len(block)))
        self.count += len(block)

    def finish(self) -> ItemIndex:
        if self.count != self.spec.count:
            raise ValueError(f"the index was made for {self.spec.count} items but holds {self.count}")
        return ItemIndex(self._native, self.spec)
