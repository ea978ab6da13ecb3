"""A user's own interactions file (export/stages/interactions_file.py): formats, the split, and bad data
refused with the line it is on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.stages.interactions_file import InteractionColumns, InteractionsError, read_interactions

ITEMS = ["a", "b", "c", "d"]


def write_csv(path: Path, rows: list[str], header: str = "user,item,timestamp", sep: str = ",") -> Path:
    path.write_text("\n".join([header.replace(",", sep)] + [r.replace(",", sep) for r in rows]) + "\n")
    return path


def test_events_are_ordered_by_time_and_split_leave_last_out(tmp_path: Path) -> None:
    rows = ["u1,c,30", "u1,a,10", "u1,b,20", "u1,d,40", "u2,a,5", "u2,b,6", "u3,a,1"]
    split, report = read_interactions(write_csv(tmp_path / "events.csv", rows), ITEMS)
    assert split.users == 1 and split.item_count == 4
    assert split.train[0].tolist() == [0, 1] and split.valid.tolist() == [2] and split.test.tolist() == [3]
    assert report.users_dropped == 2 and report.events == 7 and report.kept == 7


def test_tsv_jsonl_iso_dates_and_other_column_names(tmp_path: Path) -> None:
    tsv = write_csv(tmp_path / "e.tsv", ["u,b,2024-05-02T00:00:00", "u,a,2024-05-01", "u,c,2024-05-03T00:00:00Z"],
                    header="who,what,when", sep="\t")
    columns = InteractionColumns(user="who", item="what", timestamp="when")
    split, _ = read_interactions(tsv, ITEMS, columns)
    assert split.train[0].tolist() == [0] and split.valid.tolist() == [1] and split.test.tolist() == [2]
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text("\n".join(json.dumps({"who": "u", "what": w, "when": t, "stars": s})
                               for w, t, s in (("a", 1, 5), ("b", 2, 1), ("c", 3, 4), ("d", 4, 5))) + "\n")
    rated = InteractionColumns(user="who", item="what", timestamp="when", rating="stars")
    split, report = read_interactions(jsonl, ITEMS, rated, min_rating=4)
    assert report.below_min_rating == 1 and np.concatenate([split.train[0], split.valid, split.test]).tolist() == [0, 2, 3]


@pytest.mark.parametrize(("rows", "fragment"), [
    (["u,a,yesterday"], "line 2: the timestamp 'yesterday' is neither a number nor an ISO 8601 date"),
    (["u,a,1", "u,,2"], "line 3: no 'item'"),
    (["u,a,nan"], "line 2"),
    ([], "no events"),
    (["u,a,1", "u,b,2"], "no user has 3 or more kept events"),
    (["u,a,1", "u,x,2", "u,b,3", "u,c,4"], "1 of 4 events (25.0%) name items the catalogue lacks, e.g. 'x' on line 3"),
])
def test_bad_data_is_refused_naming_the_line(tmp_path: Path, rows: list[str], fragment: str) -> None:
    with pytest.raises(InteractionsError) as caught:
        read_interactions(write_csv(tmp_path / "bad.csv", rows), ITEMS)
    assert fragment in str(caught.value)


def test_a_few_unknown_items_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [f"u,{'abcd'[i % 4]},{i}" for i in range(40)] + ["u,zzz,99"]
    split, report = read_interactions(write_csv(tmp_path / "e.csv", rows), ITEMS)
    assert report.unknown_items == 1 and report.kept == 40 and split.users == 1


def test_files_that_cannot_be_read_and_catalogues_with_repeated_ids(tmp_path: Path) -> None:
    (tmp_path / "e.txt").write_text("user,item,timestamp\n")
    with pytest.raises(InteractionsError, match="give a .csv, .tsv or .jsonl file"):
        read_interactions(tmp_path / "e.txt", ITEMS)
    (tmp_path / "latin.csv").write_bytes(b"user,item,timestamp\nu\xe9,a,1\n")
    with pytest.raises(InteractionsError, match="not UTF-8"):
        read_interactions(tmp_path / "latin.csv", ITEMS)
    with pytest.raises(InteractionsError, match="cannot be read"):
        read_interactions(tmp_path / "missing.csv", ITEMS)
    with pytest.raises(InteractionsError, match="'a' appears twice"):
        read_interactions(write_csv(tmp_path / "e.csv", ["u,a,1"]), ["a", "b", "a"])
    with pytest.raises(InteractionsError, match="min_rating needs the rating column"):
        read_interactions(write_csv(tmp_path / "e.csv", ["u,a,1"]), ITEMS, min_rating=4)
