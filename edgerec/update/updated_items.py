"""The item table of a bundle-home update, written without parsing the kept items again."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from ..items import ItemTable, JsonlRecords, jsonl_bytes


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

    def iter_records(self) -> Iterator[Mapping[str, Any]]:
        """Every record in label order, old ones parsed (for what must read them all: BM25's postings)."""
        for row in self._rows:
            yield self._old[row] if isinstance(row, int) else row

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


