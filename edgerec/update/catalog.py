"""User catalogues: JSON Lines, CSV or TSV files of items, read one record at a time.

A build never holds the whole catalogue (``CatalogFile`` can be read twice:
once to survey, once to encode); only the ids are kept, to refuse duplicates.
Errors name the file and the line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Sequence

from ..errors import CatalogError
from ..items import item_text

CATALOG_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}


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
            # The decoder's line is always 1 (one line is parsed): name the file's line and the column.
            if isinstance(exc, json.JSONDecodeError):  # "Expecting value", "Unterminated string starting at"
                reason = f"{exc.msg}{'' if exc.msg.endswith(' at') else ' at'} column {exc.colno}"
            else:
                reason = f"{type(exc).__name__}: {exc}"
            raise CatalogError(f"{path}: line {number} is not valid JSON: {reason}") from None
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
    text_like: tuple[str, ...] = ()  # fields (not the id) whose values are mostly words: the default text
    not_text: Mapping[str, str] = field(default_factory=dict)  # the other fields -> what they hold
    # Which fields hold text, by item: each distinct set of fields -> (items with it, the first one's id).
    filled: Mapping[frozenset[str], tuple[int, str]] = field(default_factory=dict)

    def without_text_in(self, fields: Sequence[str]) -> tuple[int, str | None]:
        """(items with no text in any of ``fields``, the first one's id or None)."""
        wanted = set(fields)
        empty = [(count, first) for filled, (count, first) in self.filled.items() if not filled & wanted]
        return sum(count for count, _ in empty), (empty[0][1] if empty else None)


def survey_catalog(catalog: CatalogFile, candidate_fields: Sequence[str] = (),
                   progress: Callable[[int], None] | None = None) -> CatalogSurvey:
    """Read and check every record once, keeping only counts, column names, what kind of values each
    field holds, and the ids.

    Whichever of ``candidate_fields`` the build then keeps, an item's text is
    the same: a candidate no item has adds nothing to any text. So empty texts
    can be counted here, before the text fields are chosen; ``filled`` counts
    them for any choice of fields.
    """
    columns: dict[str, None] = {}
    kinds: dict[str, Counter[str]] = {}
    filled: dict[frozenset[str], tuple[int, str]] = {}
    count = without_text = 0
    first_without_text = None
    candidates = [f for f in candidate_fields if f != catalog.id_field]
    for _, record in catalog.records(progress=progress):
        count += 1
        columns.update(dict.fromkeys(record))
        item_id = record[catalog.id_field]
        with_text = frozenset(f for f in record if f != catalog.id_field and item_text(record, [f]))
        seen, first = filled.get(with_text, (0, item_id))
        filled[with_text] = (seen + 1, first)
        for name in with_text:
            kinds.setdefault(name, Counter())[value_kind(record[name])] += 1
        if candidates and not item_text(record, candidates):
            without_text += 1
            first_without_text = first_without_text or item_id
    if count == 0:
        raise CatalogError(f"{catalog.path}: no items")
    if catalog.sha256 is None:
        raise RuntimeError(f"{catalog.path}: the pass over the catalogue ended early")
    text_like = tuple(f for f in columns if f in kinds and kinds[f]["text"] * 2 > sum(kinds[f].values()))
    not_text = {f: max((k for k in kinds[f] if k != "text"), key=kinds[f].__getitem__) for f in columns
                if f in kinds and f not in text_like}
    return CatalogSurvey(count=count, columns=tuple(columns), without_text=without_text,
                         first_without_text=first_without_text, sha256=catalog.sha256, text_like=text_like,
                         not_text=not_text, filled=filled)


_NUMBER = re.compile(r"^\s*[-+]?(\d+[.,]?\d*|[.,]\d+)([eE][-+]?\d+)?\s*$")
_LINK = re.compile(r"^\s*(https?://|www\.|mailto:)", re.IGNORECASE)


def value_kind(value: Any) -> str:
    """What a non-empty field value holds: "text" (words), "numbers", "links" or "other" (objects)."""
    if isinstance(value, str):
        return "numbers" if _NUMBER.match(value) else "links" if _LINK.match(value) else "text"
    if isinstance(value, (bool, int, float)):
        return "numbers"
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        found = [value_kind(v) for v in value if v.strip()]
        return "text" if "text" in found else (found[0] if found else "other")
    return "other"
