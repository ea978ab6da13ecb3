"""Taking items out of an hnswlib index file without building the graph again.

Labels are item-table rows, so removing items moves every later item up a
row. Instead of rebuilding the graph (53 s for one item out of 100,000), the
file is rewritten: removed elements are dropped, links to them are cut, the
kept elements are renumbered in order and relabelled with their new rows. A
neighbour that loses a link keeps the rest of its list; hnswlib's own
deletion (a mark, with the element still in the graph) costs the same links
at search time. Cut links add up, so the store builds the graph again once
the items pruned since its last build pass PRUNE_LIMIT of the items.

The source file is validated first (edgerec.bundle.hnsw_file) and the result is an
ordinary index file, which is validated again when it is loaded.
"""

from __future__ import annotations

from dataclasses import astuple, replace
from pathlib import Path

import numpy as np

from ..bundle.hnsw_file import CHECK_BLOCK, HEADER, open_index_file, read_layout, validate_index_file
from ..bundle.manifest import IndexSpec

# Past this share of the items pruned since the graph was built, it is built again.
PRUNE_LIMIT = 0.05
_COUNT_MASK = 0xFFFF  # low 16 bits of a link list's first word: its length


def prune_index_file(source: Path, spec: IndexSpec, remove: np.ndarray, out: Path) -> IndexSpec:
    """Write to ``out`` the index of ``source`` without the labels in ``remove``; return its spec.

    Kept items are relabelled 0 .. kept-1 in their old order, as the item table is.
    """
    row_labels = validate_index_file(source, spec).astype(np.int64)
    removed_label = np.zeros(spec.count, dtype=bool)
    removed_label[np.asarray(remove, dtype=np.int64)] = True
    kept = spec.count - int(removed_label.sum())
    if kept < 1:
        raise ValueError("cannot remove every item of an index")
    new_label = np.cumsum(~removed_label) - 1
    gone = removed_label[row_labels]  # per hnswlib element, in file order
    new_id = np.where(gone, -1, np.cumsum(~gone) - 1)
    with open_index_file(source) as handle:
        h, levels, starts, upper = read_layout(source, handle, spec)
        entry, top = h.entry_point, h.max_level
        if gone[entry]:  # a new entry point: the first kept element of the highest level left
            top = int(levels[~gone].max())
            entry = int(np.flatnonzero(~gone & (levels == top))[0])
        header = replace(h, max_elements=kept, count=kept, max_level=top, entry_point=int(new_id[entry]))
        handle.seek(HEADER.size)
        with open(out, "wb") as target:
            target.write(HEADER.pack(*astuple(header)))
            for first in range(0, h.count, CHECK_BLOCK):
                rows = min(CHECK_BLOCK, h.count - first)
                keep = ~gone[first : first + rows]
                block = np.frombuffer(handle.read(rows * h.size_per_element), dtype=np.uint8)
                block = block.reshape(rows, h.size_per_element)[keep].copy()
                words = block.view("<u4")
                words[:, : 1 + h.max_m0] = _relink(words[:, : 1 + h.max_m0], new_id)
                labels = new_label[row_labels[first : first + rows][keep]].astype("<u8")
                block[:, h.label_offset : h.label_offset + 8] = labels.view(np.uint8).reshape(-1, 8)
                target.write(block.tobytes())
            target.write(_upper_links(h, levels, starts, upper, gone, new_id))
    return replace(spec, count=kept)


def _relink(lists: np.ndarray, new_id: np.ndarray) -> np.ndarray:
    """Link lists (rows of [length, ids...]) with removed neighbours cut and the rest renumbered."""
    capacity = lists.shape[1] - 1
    counts = (lists[:, 0] & _COUNT_MASK).astype(np.int64)
    used = np.arange(capacity) < counts[:, None]
    mapped = np.where(used, new_id[lists[:, 1:].astype(np.int64) * used], -1)
    valid = mapped >= 0
    # Kept neighbours first, in their old order: a stable sort on "not kept".
    order = np.argsort(~valid, axis=1, kind="stable")
    packed = np.take_along_axis(np.where(valid, mapped, 0), order, axis=1)
    out = np.zeros_like(lists)
    out[:, 0] = valid.sum(1)
    out[:, 1:] = packed
    return out


def _upper_links(h, levels: np.ndarray, starts: list[tuple[int, int]], upper: bytes,
                 gone: np.ndarray, new_id: np.ndarray) -> bytes:
    """The link lists above level 0 of the kept elements, in their new order."""
    words_per_level = 1 + h.max_m
    start_of = dict(starts)
    pieces = []
    for element in np.flatnonzero(~gone):
        level = int(levels[element])
        if level == 0:
            pieces.append(b"\0\0\0\0")
            continue
        lists = np.frombuffer(upper, dtype="<u4", count=level * words_per_level,
                              offset=start_of[int(element)]).reshape(level, words_per_level)
        body = _relink(lists, new_id).astype("<u4").tobytes()
        pieces.append(np.uint32(len(body)).astype("<u4").tobytes() + body)
    return b"".join(pieces)
