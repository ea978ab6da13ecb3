"""hnswlib's index file format: its header, its validation, and reading vectors straight from it.

hnswlib trusts every byte of the file it loads, so the bundle contract checks
the file before hnswlib sees it (``validate_index_file``). The layout follows
``HierarchicalNSW::saveIndex``: a 96-byte header, the level-0 block (links,
vector and label per item), then each item's upper link lists.
"""

from __future__ import annotations

import mmap
import os
import struct
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping, NoReturn

import numpy as np

from ..errors import BundleError
from .manifest import IndexSpec

# hnswlib's saveIndex header: six size_t, int maxlevel, uint enterpoint,
# size_t maxM, maxM0, M, double mult, size_t ef_construction (96 bytes).
HEADER = struct.Struct("<6QiI3QdQ")
# hnswlib draws levels with mult = 1/ln(M): level 32 would need ~M**32 items.
_MAX_LEVEL = 32
CHECK_BLOCK = 16384  # level-0 rows checked at a time: 27 MB at 384 dims


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
    with open_index_file(path) as handle:
        header, levels, starts, upper = read_layout(path, handle, spec)
        handle.seek(HEADER.size)
        labels = np.empty(header.count, dtype=np.uint64)
        # Level 0 (vectors and links, 1.7 GB for a million 384-d items) is checked a block at a time,
        # so that checking costs little memory next to the index hnswlib loads afterwards.
        for first in range(0, header.count, CHECK_BLOCK):
            rows = min(CHECK_BLOCK, header.count - first)
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
    with open_index_file(path) as handle:
        read_layout(path, handle, spec)


@contextmanager
def open_index_file(path: Path) -> Iterator[BinaryIO]:
    """The index file, open for reading; any OSError while it is read becomes a BundleError."""
    try:
        with open(path, "rb") as handle:
            yield handle
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the index ({exc.strerror}); check the file's permissions") from None


def read_layout(path: Path, handle: BinaryIO,
                 spec: IndexSpec) -> tuple["Header", np.ndarray, list[tuple[int, int]], bytes]:
    """Header, each item's level, where its upper link lists start, and the upper link-list bytes."""
    file_size = os.fstat(handle.fileno()).st_size
    head = handle.read(HEADER.size)
    if len(head) < HEADER.size:
        raise BundleError(f"{path}: too short for an hnswlib index ({len(head)} bytes); rebuild the bundle")
    header = Header(*HEADER.unpack(head))
    _check_header(path, header, spec, file_size)
    handle.seek(HEADER.size + header.count * header.size_per_element)
    upper = handle.read()
    levels, starts = _walk_link_lists(path, header, upper)
    return header, levels, starts, upper


@dataclass(frozen=True)
class Header:
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


def _check_header(path: Path, h: Header, spec: IndexSpec, file_size: int) -> None:
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
    if file_size < HEADER.size + h.count * (h.size_per_element + 4):
        _refuse(path, "is shorter than its header says")


def _walk_link_lists(path: Path, h: Header, upper: bytes) -> tuple[np.ndarray, list[tuple[int, int]]]:
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


def _check_level0(path: Path, h: Header, level0: bytes, levels: np.ndarray, dim: int) -> np.ndarray:
    """Check a block of whole level-0 rows (links, vectors); return their labels."""
    words = np.frombuffer(level0, dtype="<u4").reshape(-1, h.size_per_element // 4)
    _check_links(path, words[:, : 1 + h.max_m0], h.max_m0, levels, 0)
    if not np.isfinite(words[:, h.offset_data // 4 : h.offset_data // 4 + dim].view("<f4")).all():
        _refuse(path, "holds vectors with NaN or infinity")
    rows = np.frombuffer(level0, dtype=np.uint8).reshape(-1, h.size_per_element)
    return np.ascontiguousarray(rows[:, h.label_offset : h.label_offset + 8]).view("<u8").ravel()


def _check_upper_links(path: Path, h: Header, upper: bytes, starts: list[tuple[int, int]],
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
    replacing the bundle later changes nothing) is memory-mapped and rows are
    gathered with numpy: a million vectors in seconds. A bulk read maps the
    file for that read only, so no file pages stay mapped afterwards; small
    reads (a query's few dozen candidates) share one mapping kept open, since
    mapping the file costs more than reading them.
    """

    def __init__(self, path: Path, spec: IndexSpec, row_labels: np.ndarray) -> None:
        """``row_labels``: each level-0 row's label, as ``validate_index_file`` returns them."""
        with open_index_file(path) as handle:
            self._header = Header(*HEADER.unpack(handle.read(HEADER.size)))
            self._fd = os.dup(handle.fileno())
        weakref.finalize(self, os.close, self._fd)
        self._path, self._size, self._dim = path, os.fstat(self._fd).st_size, spec.dim
        self._row_labels = row_labels
        self._row_of_label: np.ndarray | None = None  # made on the first read, not at every load
        self._kept: tuple[mmap.mmap, np.ndarray] | None = None  # the mapping small reads share

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
        if len(rows) <= SMALL_READ:
            if self._kept is None:
                mapped = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
                self._kept = (mapped, self._rows_of(mapped))
                weakref.finalize(self, _close_mapping, self._kept)
            gathered = self._kept[1][rows, h.offset_data : h.offset_data + 4 * self._dim]  # a copy
        else:
            with mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ) as mapped:
                table = self._rows_of(mapped)
                gathered = table[rows, h.offset_data : h.offset_data + 4 * self._dim]  # a copy
                del table  # the mapping closes only once no array looks into it
        return gathered.view("<f4").astype(np.float32, copy=False)

    def _rows_of(self, mapped: mmap.mmap) -> np.ndarray:
        h = self._header
        return np.frombuffer(mapped, dtype=np.uint8, count=h.count * h.size_per_element,
                             offset=HEADER.size).reshape(h.count, h.size_per_element)


# Reads of at most this many vectors use the mapping StoredVectors keeps open.
SMALL_READ = 1024


def _close_mapping(kept: tuple[mmap.mmap, np.ndarray]) -> None:
    mapped, view = kept
    del view
    try:
        mapped.close()
    except BufferError:  # an array still looks into it: it closes when that goes
        pass


@dataclass(frozen=True)
class IndexFile:
    """An index already written in hnswlib's file format (edgerec.update.prune writes one), to go into a
    bundle as it is, without loading it into hnswlib and saving it again."""

    path: Path
    spec: IndexSpec




def serialize_state(state: Mapping[str, Any]) -> Iterator[bytes]:
    """The index file's bytes from hnswlib's in-memory state (``Index.__getstate__()[0]``), in chunks;
    the layout mirrors ``HierarchicalNSW::saveIndex`` (tested byte for byte)."""
    count, per_element = state["cur_element_count"], state["size_data_per_element"]
    yield HEADER.pack(
        state["offset_level0"], state["max_elements"], count, per_element, state["label_offset"],
        state["offset_data"], state["max_level"], state["enterpoint_node"], state["max_M"], state["max_M0"],
        state["M"], state["mult"], state["ef_construction"],
    )
    level0 = np.asarray(state["data_level0"]).view(np.uint8)
    if level0.size < count * per_element:
        raise BundleError(f"hnswlib returned {level0.size} bytes of level-0 data for {count} items")
    for start in range(0, count, CHECK_BLOCK):
        yield level0[start * per_element : min(count, start + CHECK_BLOCK) * per_element].tobytes()
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
