"""A file of interactions: (user, item, timestamp[, rating]) events as CSV, TSV or JSON Lines.

Read for the export stage (training and evaluation splits) and for `edgerec prior` (an app's own
counts). Bad data is refused with the line it is on: a timestamp or rating that does not parse, a
missing field. Events naming items the catalogue lacks are counted and dropped, unless they are more
than ``max_unknown_share`` of the events (then the files do not belong together).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping

from .errors import EventsError

# Above this share of events naming unknown items, the interactions are refused.
MAX_UNKNOWN_SHARE = 0.05

# Each user's kept events: (time in seconds, item row), in file order.
UserEvents = dict[str, list[tuple[float, int]]]


@dataclass(frozen=True)
class EventColumns:
    user: str = "user"
    item: str = "item"
    timestamp: str = "timestamp"
    rating: str | None = None     # with min_rating: events rated below it are left out


@dataclass(frozen=True)
class EventsReport:
    events: int                   # lines read
    kept: int                     # events of catalogue items, rated high enough
    unknown_items: int            # events naming an item the catalogue lacks (dropped)
    below_min_rating: int
    users: int                    # users with a kept event


def read_events(path: str | Path, row_of: Mapping[str, int], columns: EventColumns = EventColumns(), *,
                min_rating: float | None = None, max_unknown_share: float = MAX_UNKNOWN_SHARE
                ) -> tuple[UserEvents, EventsReport]:
    """Each user's kept events in ``path``, items named by their row in ``row_of`` (item id -> row)."""
    path = Path(path)
    if min_rating is not None and columns.rating is None:
        raise EventsError("min_rating needs the rating column's name")
    per_user: UserEvents = {}
    events = unknown = low = 0
    first_unknown = None
    for line, record in _records(path):
        events += 1
        user, item = _field(record, columns.user, path, line), _field(record, columns.item, path, line)
        when = _timestamp(_field(record, columns.timestamp, path, line), path, line)
        if columns.rating is not None and min_rating is not None:
            if _number(_field(record, columns.rating, path, line), "rating", path, line) < min_rating:
                low += 1
                continue
        row = row_of.get(item)
        if row is None:
            unknown += 1
            first_unknown = first_unknown or (line, item)
            continue
        per_user.setdefault(user, []).append((when, row))
    if events == 0:
        raise EventsError(f"{path}: no events")
    if unknown > max_unknown_share * events:
        line, item = first_unknown  # type: ignore[misc]
        raise EventsError(
            f"{path}: {unknown:,} of {events:,} events ({unknown / events:.1%}) name items the catalogue lacks, "
            f"e.g. {item!r} on line {line}; above {max_unknown_share:.0%} the two files do not belong together")
    return per_user, EventsReport(events, events - unknown - low, unknown, low, len(per_user))


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every event line; the header is line 1 of CSV and TSV."""
    suffix = path.suffix.lower()
    try:
        handle = open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise EventsError(f"{path}: cannot be read ({exc.strerror})") from None
    with handle:
        try:
            if suffix in (".jsonl", ".ndjson"):
                for number, text in enumerate(handle, start=1):
                    if not text.strip():
                        continue
                    try:
                        record = json.loads(text)
                    except ValueError:
                        raise EventsError(f"{path}, line {number}: not a JSON object") from None
                    if not isinstance(record, dict):
                        raise EventsError(f"{path}, line {number}: not a JSON object")
                    yield number, record
            elif suffix in (".csv", ".tsv"):
                reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
                for record in reader:
                    yield reader.line_num, record
            else:
                raise EventsError(f"{path}: give a .csv, .tsv or .jsonl file")
        except UnicodeDecodeError:
            raise EventsError(f"{path}: not UTF-8 text") from None


def _field(record: dict[str, Any], name: str, path: Path, line: int) -> str:
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise EventsError(f"{path}, line {line}: no {name!r} (fields: {', '.join(map(str, record))})")
    return str(value).strip()


def _number(text: str, what: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise EventsError(f"{path}, line {line}: the {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise EventsError(f"{path}, line {line}: the {what} {text!r} is not a finite number")
    return value


def _timestamp(text: str, path: Path, line: int) -> float:
    """Seconds: a number as it is (Unix time or any increasing count), or an ISO 8601 date and time."""
    try:
        return _number(text, "timestamp", path, line)
    except EventsError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise EventsError(f"{path}, line {line}: the timestamp {text!r} is neither a number nor an ISO 8601 "
                                "date (e.g. 2024-05-01T12:00:00)") from None
