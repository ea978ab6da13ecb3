"""Items: the bundle's item table, and the text made from an item.

The item table is JSON Lines, one object per item, in label order (label i is
line i). ``item_text`` is the single rule for turning an item into the text
the encoder reads, used by the export stage and by ``edgerec build`` alike.

A loaded item table keeps where each line starts and an id -> label map, and
parses a record when it is asked for: a million records as dicts would take
~0.9 GB.
"""

from __future__ import annotations

import json
import operator
import os
import weakref
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, overload

import numpy as np

from .bundle.manifest import ItemsSpec
from .errors import BundleError, CatalogError


def item_text(record: Mapping[str, Any], fields: Sequence[str]) -> str:
    """Join the chosen fields into one text: lists become "a, b", parts are joined by ". "."""
    parts = []
    for name in fields:
        value = record.get(name)
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value if v not in (None, ""))
        elif value is not None:
            value = str(value)
        if value and value.strip():
            parts.append(value.strip())
    return ". ".join(parts)


def jsonl_bytes(records: Iterable[Mapping[str, Any]]) -> bytes:
    """Records as lines of the items file: the one serialisation of an item."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")


@dataclass(frozen=True)
class ItemTable:
    """Item records in label order, with a fast id -> label lookup."""

    id_field: str
    records: Sequence[Mapping[str, Any]]
    labels: Mapping[str, int]

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], id_field: str) -> "ItemTable":
        labels: dict[str, int] = {}
        for label, record in enumerate(records):
            item_id = record[id_field]
            if item_id in labels:
                raise CatalogError(f"duplicate item id {item_id!r} (items {labels[item_id] + 1} and {label + 1})")
            labels[item_id] = label
        return cls(id_field=id_field, records=tuple(records), labels=labels)

    @classmethod
    def load(cls, path: Path, spec: ItemsSpec) -> "ItemTable":
        """Check every line of the items file; keep only where each starts and the id -> label map."""
        starts = array("q")
        labels: dict[str, int] = {}
        duplicate = ""
        position = 0
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    record = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    raise BundleError(f"{path}: line {number} is not UTF-8; rebuild the bundle") from None
                except (ValueError, RecursionError):  # ValueError: also integers of >4300 digits
                    raise BundleError(f"{path}: line {number} is not JSON; rebuild the bundle") from None
                if not isinstance(record, dict) or not isinstance(record.get(spec.id_field), str):
                    raise BundleError(f"{path}: line {number} lacks a string {spec.id_field!r}")
                item_id = record[spec.id_field]
                if item_id in labels:
                    duplicate = duplicate or f"duplicate item id {item_id!r} (items {labels[item_id] + 1} and {number})"
                else:
                    labels[item_id] = number - 1
                starts.append(position)
                position += len(raw)
            # Records are read later through this same open file, whatever happens to the path meanwhile.
            fd = os.dup(handle.fileno())
        starts.append(position)
        records = JsonlRecords(path, fd, np.frombuffer(starts, dtype=np.int64), spec.id_field, labels)
        if len(records) != spec.count:
            raise BundleError(f"{path}: {len(records)} items, the manifest says {spec.count}")
        if duplicate:
            raise BundleError(f"{path}: {duplicate}")
        return cls(id_field=spec.id_field, records=records, labels=labels)

    def serialized(self, lines_per_chunk: int = 1024) -> Iterator[bytes]:
        """The items file, JSON Lines in label order, as chunks of UTF-8 bytes."""
        for start in range(0, len(self.records), lines_per_chunk):
            yield jsonl_bytes(self.records[start : start + lines_per_chunk])

    def write(self, path: Path) -> None:
        with open(path, "wb") as handle:
            for chunk in self.serialized():
                handle.write(chunk)

    def __len__(self) -> int:
        return len(self.records)

    def columns(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for record in self.scan():
            seen.update(dict.fromkeys(record))
        return tuple(seen)

    def scan(self, lines_per_chunk: int = 4096) -> Iterator[Mapping[str, Any]]:
        """Every record once, in label order: for tables built over all items (names, filters). A loaded
        table parses its file a chunk at a time, leaving the cache of records parsed for answers alone."""
        records = self.records
        if not isinstance(records, JsonlRecords):
            yield from records
            return
        for start in range(0, len(records), lines_per_chunk):
            chunk = records.raw_lines(start, min(start + lines_per_chunk, len(records)))
            for line in chunk.split(b"\n")[:-1]:  # raw_lines ends with a newline
                yield json.loads(line)


# Parsed records a JsonlRecords keeps (a few MB at most).
PARSED_KEPT = 4096


class JsonlRecords(Sequence[Mapping[str, Any]]):
    """The records of a checked items file, each parsed when it is asked for.

    The file stays open for the table's lifetime and is read with os.pread
    (thread-safe, no shared position), so a bundle version that a newer one
    replaced and removed is still read correctly. A record whose id does not
    map back to its line means the file was changed in place after loading.
    The last PARSED_KEPT records parsed are kept (answers repeat items; parsing
    ten records is a sixth of a query's time): treat records as read-only.
    """

    def __init__(self, path: Path, fd: int, starts: np.ndarray, id_field: str, labels: Mapping[str, int]) -> None:
        """Takes ownership of ``fd``, the open items file (closed when this object goes)."""
        self.path = path
        self._fd = fd
        weakref.finalize(self, os.close, fd)
        self._starts = starts  # len(records) + 1 offsets: line i is bytes starts[i]:starts[i + 1]
        self._id_field = id_field
        self._labels = labels
        self._parsed: dict[int, Mapping[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._starts) - 1

    def raw_lines(self, start: int, stop: int) -> bytes:
        """Lines ``start`` to ``stop`` (exclusive) as the file holds them, unparsed (they were checked at
        load); the file's last line gets the newline it may lack."""
        first, end = int(self._starts[start]), int(self._starts[stop])
        raw = os.pread(self._fd, end - first, first)
        if len(raw) != end - first:
            raise BundleError(f"{self.path}: shorter than when it was loaded; load it again")
        return raw if raw.endswith(b"\n") or not raw else raw + b"\n"

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[Mapping[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> Mapping[str, Any] | list[Mapping[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        label = operator.index(index)
        if label < 0:
            label += len(self)
        if not 0 <= label < len(self):
            raise IndexError(f"item label {index} out of range (0..{len(self) - 1})")
        kept = self._parsed.get(label)
        if kept is not None:
            return kept
        start, end = int(self._starts[label]), int(self._starts[label + 1])
        raw = os.pread(self._fd, end - start, start)
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            record = None
        item_id = record.get(self._id_field) if isinstance(record, dict) else None
        if not isinstance(item_id, str) or self._labels.get(item_id) != label:
            raise BundleError(f"{self.path}: line {label + 1} changed after the bundle was loaded; load it again")
        if len(self._parsed) >= PARSED_KEPT:
            self._parsed.clear()  # simpler than an LRU, and as good for a working set below the bound
        self._parsed[label] = record
        return record
