"""Items: the bundle's item table, user catalogues, and the text made from an item.

The item table is JSON Lines, one object per item, in label order (label i is
line i). ``item_text`` is the single rule for turning an item into the text
the encoder reads, used by the export stage and by ``edgerec build`` alike.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

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


@dataclass(frozen=True)
class ItemTable:
    """Item records in label order, with a fast id -> label lookup."""

    id_field: str
    records: tuple[Mapping[str, Any], ...]
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
        records = []
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
                records.append(record)
        if len(records) != spec.count:
            raise BundleError(f"{path}: {len(records)} items, the manifest says {spec.count}")
        try:
            return cls.from_records(records, spec.id_field)
        except CatalogError as exc:
            raise BundleError(f"{path}: {exc}") from None

    def serialized(self, lines_per_chunk: int = 1024) -> Iterator[bytes]:
        """The items file, JSON Lines in label order, as chunks of UTF-8 bytes."""
        for start in range(0, len(self.records), lines_per_chunk):
            block = self.records[start : start + lines_per_chunk]
            yield "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in block).encode("utf-8")

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


def read_catalog(path: str | Path, *, id_field: str = "id") -> list[dict[str, Any]]:
    """Read a JSONL or CSV/TSV catalogue; every record gets a string id. Errors name the line."""
    path = Path(path)
    kind = CATALOG_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise CatalogError(f"{path}: unknown catalogue type; use .jsonl, .csv or .tsv")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CatalogError(f"{path}: is a directory, not a catalogue file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CatalogError(f"{path}: line {line} is not UTF-8 text; save the file as UTF-8") from None
    rows = _jsonl_rows(path, text) if kind == "jsonl" else _csv_rows(path, text, "\t" if kind == "tsv" else ",")
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, record in rows:
        value = record.get(id_field)
        if value is None or str(value).strip() == "":
            raise CatalogError(f"{path}: line {number} has no {id_field!r} field (choose the id field with --id-field)")
        item_id = str(value).strip()
        if item_id in seen:
            raise CatalogError(f"{path}: line {number} repeats id {item_id!r} first seen on line {seen[item_id]}")
        seen[item_id] = number
        records.append({**record, id_field: item_id})
    if not records:
        raise CatalogError(f"{path}: no items")
    return records


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    # split("\n"), not splitlines(): JSON strings may hold U+2028 or U+0085, which splitlines() breaks at.
    for number, line in enumerate(text.split("\n"), start=1):
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


def _csv_rows(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
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
    fields = tuple(f for f in preferred if f in present and f != id_field)
    if not fields:
        raise CatalogError(
            f"none of the text fields {list(preferred)} is in the catalogue (it has {list(present)}); "
            "say which fields make the item text with --text-fields"
        )
    return fields
