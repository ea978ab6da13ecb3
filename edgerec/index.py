"""A small typed wrapper around an hnswlib index of item vectors.

hnswlib checks neither the width of a query nor k against the item count,
and stores neither space nor ef: this class does, from the manifest's facts.
Labels are item-table row numbers (0 .. count-1).
"""

from __future__ import annotations

import mmap
import os
import struct
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, NoReturn

import numpy as np

from .errors import BundleError, InputError, one_line
from .manifest import IndexSpec

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
_ADD_CHUNK = 4096
# hnswlib's saveIndex header: six size_t, int maxlevel, uint enterpoint,
# size_t maxM, maxM0, M, double mult, size_t ef_construction (96 bytes).
_HEADER = struct.Struct("<6QiI3QdQ")
# hnswlib draws levels with mult = 1/ln(M): level 32 would need ~M**32 items.
_MAX_LEVEL = 32


def default_ef(count: int) -> int:
    """The search breadth a new bundle of ``count`` items gets unless one is chosen."""
    return next((ef for limit, ef in EF_BY_SIZE if count <= limit), LARGEST_EF)


_CHECK_BLOCK = 16384  # level-0 rows checked at a time: 27 MB at 384 dims


def validate_index_file(path: Path, spec: IndexSpec) -> np.ndarray:
    """Refuse an index file that hnswlib could misread, before hnswlib reads it; return each
    level-0 row's label.

    hnswlib trusts every field and link blindly: a wrong dim reads past each
    vector, a count above max_elements or an entry point out of range corrupts
    the heap, a neighbour id out of range segfaults during a search. So the
    whole file is checked here, as hnswlib's loader walks it: the header
    against the manifest, every link-list size, every neighbour id and its
    level, the labels, the exact file size. The sha256 already guards a bundle;
    this guards what hnswlib sees even when a manifest was rewritten to match a
    damaged file.
    """
    with _open_index(path) as handle:
        header, levels, starts, upper = _read_layout(path, handle, spec)
        handle.seek(_HEADER.size)
        labels = np.empty(header.count, dtype=np.uint64)
        # Level 0 (vectors and links, 1.7 GB for a million 384-d items) is checked a block at a time,
        # so that checking costs little memory next to the index hnswlib loads afterwards.
        for first in range(0, header.count, _CHECK_BLOCK):
            rows = min(_CHECK_BLOCK, header.count - first)
            block = handle.read(rows * header.size_per_element)
            if len(block) != rows * header.size_per_element:
                _refuse(path, "is shorter than its header says")
            labels[first : first + rows] = _check_level0(path, header, block, levels, spec.dim)
    # Label i is item-table row i, so the labels must be exactly 0 .. count-1.
    if not np.array_equal(np.sort(labels), np.arange(header.count, dtype=np.uint64)):
        _refuse(path, f"has labels that are not the item rows 0..{header.count - 1}")
    _check_upper_links(path, header, upper, starts, levels)
    return labels


def check_index_layout(path: Path, spec: IndexSpec) -> None:
    """The cheap part of ``validate_index_file``: the header against the manifest and every link-list
    size, which together fix the exact file size. Reads the header and the upper link lists only (a
    few MB for a million items): enough to tell whether hnswlib's own writer stopped short."""
    with _open_index(path) as handle:
        _read_layout(path, handle, spec)


@contextmanager
def _open_index(path: Path) -> Iterator[BinaryIO]:
    """The index file, open for reading; any OSError while it is read becomes a BundleError."""
    try:
        with open(path, "rb") as handle:
            yield handle
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the index ({exc.strerror}); check the file's permissions") from None


def _read_layout(path: Path, handle: BinaryIO,
                 spec: IndexSpec) -> tuple["_Header", np.ndarray, list[tuple[int, int]], bytes]:
    """Header, each item's level, where its upper link lists start, and the upper link-list bytes."""
    file_size = os.fstat(handle.fileno()).st_size
    head = handle.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise BundleError(f"{path}: too short for an hnswlib index ({len(head)} bytes); rebuild the bundle")
    header = _Header(*_HEADER.unpack(head))
    _check_header(path, header, spec, file_size)
    handle.seek(_HEADER.size + header.count * header.size_per_element)
    upper = handle.read()
    levels, starts = _walk_link_lists(path, header, upper)
    return header, levels, starts, upper


@dataclass(frozen=True)
class _Header:
    offset_level0: int
    max_elements: int
    count: int
    size_per_element: int
    label_offset: int
    offset_data: int
    max_level: int
    entry_point: int
    max_m: int
    max_m0: int
    m: int
    mult: float
    ef_construction: int


def _refuse(path: Path, problem: str) -> NoReturn:
    raise BundleError(f"{path}: the index {problem}; rebuild the bundle")


def _check_header(path: Path, h: _Header, spec: IndexSpec, file_size: int) -> None:
    problems = []
    if h.count != spec.count:
        problems.append(f"holds {h.count} items, the manifest says {spec.count}")
    if h.label_offset - h.offset_data != 4 * spec.dim:
        problems.append(f"stores {(h.label_offset - h.offset_data) // 4}-d vectors, the manifest says {spec.dim}")
    if h.m != spec.m or h.max_m != h.m or h.max_m0 != 2 * h.m or h.ef_construction != spec.ef_construction:
        problems.append(f"was built with M={h.m}, ef_construction={h.ef_construction}, the manifest says "
                        f"M={spec.m}, ef_construction={spec.ef_construction}")
    if (h.offset_level0 != 0 or h.max_elements < h.count or h.entry_point >= max(h.count, 1)
            or not 0 <= h.max_level <= _MAX_LEVEL or h.size_per_element != h.label_offset + 8
            or h.offset_data != 4 + 4 * h.max_m0):
        problems.append("has an inconsistent header")
    if problems:
        _refuse(path, "; ".join(problems))
    # After the level-0 block every item has at least a 4-byte link-list size.
    if file_size < _HEADER.size + h.count * (h.size_per_element + 4):
        _refuse(path, "is shorter than its header says")


def _walk_link_lists(path: Path, h: _Header, upper: bytes) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Each item's level and where its upper link lists start, walked like hnswlib's loader."""
    links_per_level = 4 + 4 * h.max_m
    levels = np.zeros(h.count, dtype=np.int64)
    starts: list[tuple[int, int]] = []
    position = 0
    for item in range(h.count):
        if position + 4 > len(upper):
            _refuse(path, "is shorter than its link lists say")
        (size,) = struct.unpack_from("<I", upper, position)
        position += 4
        if size:
            level, rest = divmod(size, links_per_level)
            if rest or level > h.max_level:
                _refuse(path, f"has a link list of {size} bytes for item {item}, which fits no level")
            levels[item] = level
            starts.append((item, position))
            position += size
    if position != len(upper):
        _refuse(path, f"is {len(upper) - position} bytes longer than its link lists say")
    if h.count and (int(levels.max()) != h.max_level or levels[h.entry_point] != h.max_level):
        _refuse(path, "has an entry point or top level that does not match its link lists")
    return levels, starts


def _check_links(path: Path, lists: np.ndarray, capacity: int, levels: np.ndarray, level: int) -> None:
    """lists: rows of [count word, capacity neighbour ids]; neighbours must exist at ``level``."""
    counts = lists[:, 0]
    # Low 16 bits: the count; the rest holds hnswlib's deletion mark, never set in a bundle.
    if (counts > capacity).any():
        _refuse(path, f"has a level-{level} link list longer than {capacity} or a deleted item")
    used = np.arange(capacity) < counts[:, None]
    neighbours = lists[:, 1:][used]
    if (neighbours >= len(levels)).any() or (levels[neighbours] < level).any():
        _refuse(path, f"has a level-{level} link to an item that does not exist at that level")


def _check_level0(path: Path, h: _Header, level0: bytes, levels: np.ndarray, dim: int) -> np.ndarray:
    """Check a block of whole level-0 rows (links, vectors); return their labels."""
    words = np.frombuffer(level0, dtype="<u4").reshape(-1, h.size_per_element // 4)
    _check_links(path, words[:, : 1 + h.max_m0], h.max_m0, levels, 0)
    if not np.isfinite(words[:, h.offset_data // 4 : h.offset_data // 4 + dim].view("<f4")).all():
        _refuse(path, "holds vectors with NaN or infinity")
    rows = np.frombuffer(level0, dtype=np.uint8).reshape(-1, h.size_per_element)
    return np.ascontiguousarray(rows[:, h.label_offset : h.label_offset + 8]).view("<u8").ravel()


def _check_upper_links(path: Path, h: _Header, upper: bytes, starts: list[tuple[int, int]],
                       levels: np.ndarray) -> None:
    if not starts:
        return
    words_per_level = 1 + h.max_m
    # One row per (item, level >= 1), gathered once so the checks run in numpy, not per item.
    rows = np.concatenate([
        np.frombuffer(upper, dtype="<u4", count=int(levels[item]) * words_per_level, offset=start)
        for item, start in starts
    ]).reshape(-1, words_per_level)
    row_levels = np.concatenate([np.arange(1, int(levels[item]) + 1) for item, _ in starts])
    for level in range(1, h.max_level + 1):
        _check_links(path, rows[row_levels == level], h.max_m, levels, level)


class StoredVectors:
    """The item vectors of a validated index file, read in bulk straight from the file by label.

    hnswlib's get_items costs ~25 us and a handful of Python objects per item:
    84 s and 20 GB of memory for a million. Here the file (held open, so
    replacing the bundle later changes nothing) is memory-mapped for the one
    read and rows are gathered with numpy: a million vectors in seconds, and
    no file pages stay mapped afterwards.
    """

    def __init__(self, path: Path, spec: IndexSpec, row_labels: np.ndarray) -> None:
        """``row_labels``: each level-0 row's label, as ``validate_index_file`` returns them."""
        with _open_index(path) as handle:
            self._header = _Header(*_HEADER.unpack(handle.read(_HEADER.size)))
            self._fd = os.dup(handle.fileno())
        weakref.finalize(self, os.close, self._fd)
        self._path, self._size, self._dim = path, os.fstat(self._fd).st_size, spec.dim
        self._row_labels = row_labels
        self._row_of_label: np.ndarray | None = None  # made on the first read, not at every load

    @classmethod
    def open(cls, path: Path, spec: IndexSpec) -> "StoredVectors":
        """The vectors of an index file, validated, without loading the graph into hnswlib."""
        return cls(path, spec, validate_index_file(path, spec))

    def read(self, labels: np.ndarray) -> np.ndarray:
        if self._row_of_label is None:
            row_of_label = np.empty(len(self._row_labels), dtype=np.int64)
            row_of_label[self._row_labels.astype(np.int64)] = np.arange(len(self._row_labels))
            self._row_of_label = row_of_label
        h, rows = self._header, self._row_of_label[np.asarray(labels, dtype=np.int64)]
        if os.fstat(self._fd).st_size != self._size:
            raise BundleError(f"{self._path}: changed after the bundle was loaded; load it again")
        with mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ) as mapped:
            table = np.frombuffer(mapped, dtype=np.uint8, count=h.count * h.size_per_element,
                                  offset=_HEADER.size).reshape(h.count, h.size_per_element)
            gathered = table[rows, h.offset_data : h.offset_data + 4 * self._dim]  # a copy
            del table  # the mapping closes only once no array looks into it
        return gathered.view("<f4").astype(np.float32, copy=False)


@dataclass(frozen=True)
class IndexFile:
    """An index already written in hnswlib's file format (edgerec.prune writes one), to go into a
    bundle as it is, without loading it into hnswlib and saving it again."""

    path: Path
    spec: IndexSpec


class ItemIndex:
    """Nearest-neighbour search over unit item vectors (inner-product space)."""

    def __init__(self, native: Any, spec: IndexSpec) -> None:  # native: hnswlib.Index
        self._native = native
        self.spec = spec
        self._all_vectors: np.ndarray | None = None  # read on the first exact search
        self._stored: StoredVectors | None = None  # set for an index loaded from a file
        native.set_ef(max(spec.ef, 1))

    @classmethod
    def load(cls, path: Path, spec: IndexSpec, *, room_for: int | None = None) -> "ItemIndex":
        """``room_for``: the item count the loaded index may grow to with ``upsert``."""
        import hnswlib

        row_labels = validate_index_file(path, spec)
        native = hnswlib.Index(space=spec.space, dim=spec.dim)
        try:
            native.load_index(str(path), max_elements=max(spec.count, room_for or 0))
        except Exception as exc:
            raise BundleError(f"{path}: hnswlib cannot load the index ({one_line(exc)})") from None
        index = cls(native, spec)
        index._stored = StoredVectors(path, spec, row_labels)
        return index

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
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
        Only for scratch files that are checked afterwards (edgerec.build.write_index)."""
        self._native.save_index(str(path))

    def upsert(self, vectors: np.ndarray, labels: np.ndarray, *, threads: int = 0) -> None:
        """Replace the vectors of existing labels and add new labels (the next ones: count, count + 1, ...),
        linking just those into the graph instead of building it again."""
        labels = np.asarray(labels, dtype=np.int64)
        count = max(self.spec.count, int(labels.max()) + 1) if len(labels) else self.spec.count
        if len(labels) and (labels.min() < 0 or len(np.union1d(np.arange(self.spec.count), labels)) != count):
            raise ValueError(f"labels must be existing ones or the next ones after {self.spec.count - 1}")
        if len(labels):
            self._native.add_items(np.ascontiguousarray(vectors, dtype=np.float32), labels,
                                   num_threads=threads if threads > 0 else -1)
        self.spec = replace(self.spec, count=count)
        self._stored = self._all_vectors = None  # the file and the cached copy no longer match

    def release(self) -> None:
        """Free hnswlib's memory now, not when the last reference goes; nothing can be searched afterwards."""
        self._native = None

    def serialized(self) -> Iterator[bytes]:
        """The bytes of hnswlib's index file format, produced in Python.

        hnswlib's own ``save_index`` reports no write error (disk full, missing
        directory) and overwrites in place; writing these chunks ourselves
        surfaces every OSError. The layout mirrors ``HierarchicalNSW::saveIndex``
        (tested byte for byte). It costs a copy of the whole graph (hnswlib's
        ``__getstate__``), so bundles are written by ``edgerec.build.write_index``
        instead, which checks what ``save_index`` wrote.
        """
        state = self._native.__getstate__()[0]
        count, per_element = state["cur_element_count"], state["size_data_per_element"]
        yield _HEADER.pack(
            state["offset_level0"], state["max_elements"], count, per_element, state["label_offset"],
            state["offset_data"], state["max_level"], state["enterpoint_node"], state["max_M"], state["max_M0"],
            state["M"], state["mult"], state["ef_construction"],
        )
        level0 = np.asarray(state["data_level0"]).view(np.uint8)
        if level0.size < count * per_element:
            raise BundleError(f"hnswlib returned {level0.size} bytes of level-0 data for {count} items")
        for start in range(0, count, _ADD_CHUNK):
            yield level0[start * per_element : min(count, start + _ADD_CHUNK) * per_element].tobytes()
        link_sizes = np.asarray(state["element_levels"], dtype=np.int64) * state["size_links_per_element"]
        links = np.asarray(state["link_lists"]).view(np.uint8)
        block = bytearray()
        offset = 0
        for size in link_sizes.tolist():
            block += struct.pack("<I", size)
            block += links[offset : offset + size].tobytes()
            offset += size
            if len(block) >= 1 << 20:
                yield bytes(block)
                block.clear()
        yield bytes(block)

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
        self._native.set_ef(int(ef))

    def vectors(self, labels: Iterable[int]) -> np.ndarray:
        """The stored vectors of ``labels`` (valid labels), one row each."""
        wanted = np.fromiter(labels, dtype=np.int64)
        if self._stored is not None and len(wanted) > _ADD_CHUNK:
            return self._stored.read(wanted)
        # hnswlib builds Python objects per item: a chunk at a time keeps that bounded.
        parts = [np.asarray(self._native.get_items(wanted[start : start + _ADD_CHUNK]), dtype=np.float32)
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
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef: int | None = None,
        threads: int = 0,
        seed: int = 100,
    ) -> None:
        """``ef``: the search breadth recorded for the bundle; None: ``default_ef(capacity)``."""
        import hnswlib

        ef = default_ef(capacity) if ef is None else ef
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
