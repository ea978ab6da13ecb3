"""Items: the bundle's item table, user catalogues, and the text made from an item.

The item table is JSON Lines, one object per item, in label order (label i is
line i). ``item_text`` is the single rule for turning an item into the text
the encoder reads, used by the export stage and by ``edgerec build`` alike.

Catalogues are read one record at a time (``CatalogFile``), so a build never
holds all of them; only the ids are kept, to refuse duplicates. A loaded item
table keeps where each line starts and an id -> label map, and parses a
record when it is asked for: a million records as dicts would take ~0.9 GB.
"""

from __future__ import annotations

import csv
import hashlib
import json
import operator
import os
import re
import weakref
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Sequence, overload

import numpy as np

from .errors import BundleError, CatalogError
from .manifest import ItemsSpec

CATALOG_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}


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
        for record in self.records:
            seen.update(dict.fromkeys(record))
        return tuple(seen)


class JsonlRecords(Sequence[Mapping[str, Any]]):
    """The records of a checked items file, each parsed when it is asked for.

    The file stays open for the table's lifetime and is read with os.pread
    (thread-safe, no shared position), so a bundle version that a newer one
    replaced and removed is still read correctly. A record whose id does not
    map back to its line means the file was changed in place after loading.
    """

    def __init__(self, path: Path, fd: int, starts: np.ndarray, id_field: str, labels: Mapping[str, int]) -> None:
        """Takes ownership of ``fd``, the open items file (closed when this object goes)."""
        self.path = path
        self._fd = fd
        weakref.finalize(self, os.close, fd)
        self._starts = starts  # len(records) + 1 offsets: line i is bytes starts[i]:starts[i + 1]
        self._id_field = id_field
        self._labels = labels

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
        start, end = int(self._starts[label]), int(self._starts[label + 1])
        raw = os.pread(self._fd, end - start, start)
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            record = None
        item_id = record.get(self._id_field) if isinstance(record, dict) else None
        if not isinstance(item_id, str) or self._labels.get(item_id) != label:
            raise BundleError(f"{self.path}: line {label + 1} changed after the bundle was loaded; load it again")
        return record


class UpdatedItems:
    """The item table of a bundle-home update: rows that are labels of the old table are copied from
    its file byte for byte (neither parsed nor serialised again), the others are new records.

    ``columns`` is the old table's columns plus the new records' fields: a superset when an update
    removed the last item with some field, never too few.
    """

    def __init__(self, old: ItemTable, old_columns: Sequence[str], rows: Sequence[int | Mapping[str, Any]]) -> None:
        if not isinstance(old.records, JsonlRecords):
            raise TypeError("UpdatedItems copies lines from a loaded items file (ItemTable.load)")
        self.id_field = old.id_field
        self._old = old.records
        self._old_columns = tuple(old_columns)
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def columns(self) -> tuple[str, ...]:
        seen = dict.fromkeys(self._old_columns)
        for row in self._rows:
            if not isinstance(row, int):
                seen.update(dict.fromkeys(row))
        return tuple(seen)

    def serialized(self, lines_per_chunk: int = 1024) -> Iterator[bytes]:
        """The items file, as ``ItemTable.serialized`` gives it: runs of consecutive old lines are read
        with one pread each, new records are serialised."""
        run_start = run_stop = -1
        fresh: list[Mapping[str, Any]] = []
        for row in self._rows:
            if isinstance(row, int):
                if fresh:
                    yield jsonl_bytes(fresh)
                    fresh = []
                if row == run_stop and run_stop - run_start < lines_per_chunk:
                    run_stop += 1
                    continue
                if run_start >= 0:
                    yield self._old.raw_lines(run_start, run_stop)
                run_start, run_stop = row, row + 1
            else:
                if run_start >= 0:
                    yield self._old.raw_lines(run_start, run_stop)
                    run_start = run_stop = -1
                fresh.append(row)
                if len(fresh) >= lines_per_chunk:
                    yield jsonl_bytes(fresh)
                    fresh = []
        if run_start >= 0:
            yield self._old.raw_lines(run_start, run_stop)
        if fresh:
            yield jsonl_bytes(fresh)


def read_catalog(path: str | Path, *, id_field: str = "id") -> list[dict[str, Any]]:
    """Read a JSONL or CSV/TSV catalogue; every record gets a string id. Errors name the line."""
    records = [record for _, record in CatalogFile(path, id_field=id_field).records()]
    if not records:
        raise CatalogError(f"{path}: no items")
    return records


class CatalogFile:
    """A catalogue file read one record at a time, as often as needed (a streaming build reads it twice).

    ``sha256`` is the hash of the bytes the last complete pass read: two
    passes that read the same bytes saw the same records.
    """

    def __init__(self, path: str | os.PathLike[str], *, id_field: str = "id") -> None:
        self.path = Path(path)
        self.id_field = id_field
        kind = CATALOG_SUFFIXES.get(self.path.suffix.lower())
        if kind is None:
            raise CatalogError(f"{self.path}: unknown catalogue type; use .jsonl, .csv or .tsv")
        self.kind = kind
        self.sha256: str | None = None

    def count_lines(self) -> int:
        """Lines in the file, counted without decoding: the total for progress while records are read."""
        lines, last = 0, b"\n"
        with self._open() as handle:
            while block := handle.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        return lines + (last != b"\n")

    def records(self, *, unique: bool = True,
                progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, record) in file order; each record's id is a stripped str.

        With ``unique``, a repeated id is refused: that needs every id seen so
        far (about 120 bytes each, 120 MB for a million items), the one thing
        kept across the whole pass. ``progress(line)`` is called every few
        thousand lines.
        """
        seen: dict[str, int] = {}
        digest = hashlib.sha256()
        self.sha256 = None
        with self._open() as handle:
            lines = _decoded_lines(self.path, handle, digest.update)
            rows = _jsonl_rows(self.path, lines) if self.kind == "jsonl" else \
                _csv_rows(self.path, lines, "\t" if self.kind == "tsv" else ",")
            for count, (number, record) in enumerate(rows, start=1):
                value = record.get(self.id_field)
                if value is None or str(value).strip() == "":
                    raise CatalogError(f"{self.path}: line {number} has no {self.id_field!r} field "
                                       "(choose the id field with --id-field)")
                item_id = str(value).strip()
                if unique:
                    if item_id in seen:
                        raise CatalogError(f"{self.path}: line {number} repeats id {item_id!r} "
                                           f"first seen on line {seen[item_id]}")
                    seen[item_id] = number
                if progress is not None and count % _PROGRESS_EVERY == 0:
                    progress(number)
                yield number, {**record, self.id_field: item_id}
            # The digest covers every byte only once the reader has reached the end of the file.
            for _ in lines:
                pass
        self.sha256 = digest.hexdigest()

    def _open(self) -> BinaryIO:
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise CatalogError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise CatalogError(f"{self.path}: is a directory, not a catalogue file") from None


_PROGRESS_EVERY = 8192
# A lone carriage return ends a line for the csv module (as in a file opened with newline="").
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


def _decoded_lines(path: Path, handle: BinaryIO, hash_update: Callable[[bytes], None]) -> Iterator[str]:
    """The file's lines as text, line ends kept; a line that is not UTF-8 is refused by number."""
    for number, raw in enumerate(handle, start=1):
        hash_update(raw)
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a byte-order mark, as "utf-8-sig" drops it
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CatalogError(f"{path}: line {number} is not UTF-8 text; save the file as UTF-8") from None


def _jsonl_rows(path: Path, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    # Lines end at "\n" only: JSON strings may hold U+2028 or U+0085, which str.splitlines() breaks at.
    for number, line in enumerate(lines, start=1):
        line = line[:-1] if line.endswith("\n") else line
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:  # ValueError also covers integers of >4300 digits
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
            raise CatalogError(f"{path}: line {number} is not valid JSON ({reason})") from None
        if not isinstance(record, dict):
            raise CatalogError(f"{path}: line {number} is not a JSON object")
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a "\\ud800" escape decodes to a lone surrogate, which UTF-8 cannot hold
            raise CatalogError(f"{path}: line {number} holds an invalid \\u escape (a lone surrogate)") from None
        yield number, record


def _csv_rows(path: Path, lines: Iterable[str], delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    split = (part for line in lines for part in _LONE_CR.split(line) if part)
    reader = csv.DictReader(split, delimiter=delimiter)
    try:
        for record in reader:
            if None in record:
                raise CatalogError(f"{path}: line {reader.line_num} has more fields than the header")
            yield reader.line_num, {k: v for k, v in record.items() if v is not None}
    except csv.Error as exc:
        raise CatalogError(f"{path}: line {reader.line_num + 1} is not valid CSV ({exc})") from None


def choose_text_fields(records: Iterable[Mapping[str, Any]], preferred: Sequence[str], id_field: str) -> tuple[str, ...]:
    """The preferred text fields that the catalogue actually has (checked on all records)."""
    present: dict[str, None] = {}
    for record in records:
        present.update(dict.fromkeys(record))
    return text_fields_among(tuple(present), preferred, id_field)


def text_fields_among(columns: Sequence[str], preferred: Sequence[str], id_field: str) -> tuple[str, ...]:
    """The preferred text fields among a catalogue's ``columns`` (every field some item has)."""
    fields = tuple(f for f in preferred if f in columns and f != id_field)
    if not fields:
        raise CatalogError(
            f"none of the text fields {list(preferred)} is in the catalogue (it has {list(columns)}); "
            "say which fields make the item text with --text-fields"
        )
    return fields


@dataclass(frozen=True)
class CatalogSurvey:
    """What a first pass over a catalogue learns, so that the build can plan without keeping records."""

    count: int
    columns: tuple[str, ...]  # every field some item has, in order of first appearance
    without_text: int  # items with no text in any of the candidate text fields
    first_without_text: str | None  # the id of the first such item
    sha256: str


def survey_catalog(catalog: CatalogFile, candidate_fields: Sequence[str],
                   progress: Callable[[int], None] | None = None) -> CatalogSurvey:
    """Read and check every record once, keeping only counts, column names and the ids.

    Whichever of ``candidate_fields`` the build then keeps, an item's text is
    the same: a candidate no item has adds nothing to any text. So empty texts
    can be counted here, before the text fields are chosen.
    """
    columns: dict[str, None] = {}
    count = without_text = 0
    first_without_text = None
    candidates = [f for f in candidate_fields if f != catalog.id_field]
    for _, record in catalog.records(progress=progress):
        count += 1
        columns.update(dict.fromkeys(record))
        if not item_text(record, candidates):
            without_text += 1
            first_without_text = first_without_text or record[catalog.id_field]
    if count == 0:
        raise CatalogError(f"{catalog.path}: no items")
    if catalog.sha256 is None:
        raise RuntimeError(f"{catalog.path}: the pass over the catalogue ended early")
    return CatalogSurvey(count=count, columns=tuple(columns), without_text=without_text,
                         first_without_text=first_without_text, sha256=catalog.sha256)
