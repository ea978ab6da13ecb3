"""Items: the text rule, user catalogues (JSONL/CSV/TSV) and the bundle's item table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgerec.errors import BundleError, CatalogError
from edgerec.bundle.manifest import ItemsSpec
from edgerec.items import ItemTable, item_text
from edgerec.update.catalog import choose_text_fields, read_catalog


# -- item_text ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("record", "fields", "expected"),
    [
        ({"title": "Alien", "genres": ["Horror", "Sci-Fi"]}, ["title", "genres"], "Alien. Horror, Sci-Fi"),
        ({"title": "Alien", "genres": ("Horror",)}, ["genres", "title"], "Horror. Alien"),
        ({"title": "  Alien  ", "plot": "", "tags": None}, ["title", "plot", "tags"], "Alien"),
        ({"title": "Alien", "plot": "   "}, ["plot", "title"], "Alien"),
        ({"genres": ["", None, "Drama"]}, ["genres"], "Drama"),
        ({"genres": [], "title": "X"}, ["genres", "title"], "X"),
        ({"year": 1979, "rating": 0}, ["year", "rating"], "1979. 0"),
        ({"title": "Alien"}, ["missing", "title"], "Alien"),
        ({"title": None}, ["title"], ""),
    ],
    ids=["list", "tuple-order", "empty-and-none", "blank", "list-skips-empty", "empty-list", "numbers",
         "absent-field", "nothing"],
)
def test_item_text(record: dict, fields: list[str], expected: str) -> None:
    assert item_text(record, fields) == expected


# -- read_catalog ------------------------------------------------------------

def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_read_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path, "items.jsonl",
                 '{"id": "a", "title": "Alien", "genres": ["Horror"]}\n\n{"id": 7, "title": "Heat"}\n')
    assert read_catalog(path) == [
        {"id": "a", "title": "Alien", "genres": ["Horror"]},
        {"id": "7", "title": "Heat"},
    ]


@pytest.mark.parametrize(("name", "sep"), [("items.csv", ","), ("items.tsv", "\t"), ("ITEMS.CSV", ",")])
def test_read_csv_and_tsv(tmp_path: Path, name: str, sep: str) -> None:
    text = sep.join(["sku", "title", "plot"]) + "\r\n"
    text += sep.join(["s1", "Alien", "in space"]) + "\r\n"
    text += sep.join([" s2 ", "Heat", ""]) + "\r\n"
    path = write(tmp_path, name, text)
    assert read_catalog(path, id_field="sku") == [
        {"sku": "s1", "title": "Alien", "plot": "in space"},
        {"sku": "s2", "title": "Heat", "plot": ""},
    ]


def test_csv_quoted_field_with_separator_and_newline(tmp_path: Path) -> None:
    path = write(tmp_path, "items.csv", 'id,title\n1,"Heat, the film\nsecond line"\n')
    assert read_catalog(path) == [{"id": "1", "title": "Heat, the film\nsecond line"}]


@pytest.mark.parametrize(
    ("name", "data"),
    [("items.jsonl", '\ufeff{"id": "a", "title": "Alien"}\n'), ("items.csv", "\ufeffid,title\na,Alien\n"),
     ("items.tsv", "\ufeffid\ttitle\na\tAlien\n")],
)
def test_bom_at_start_is_accepted(tmp_path: Path, name: str, data: str) -> None:
    assert read_catalog(write(tmp_path, name, data)) == [{"id": "a", "title": "Alien"}]


REFUSALS = [
    ("items.jsonl", '{"id": "a"}\n{"id": "b",\n', "line 2 is not valid JSON"),
    ("items.jsonl", '{"id": "a"}\n\n["b"]\n', "line 3 is not a JSON object"),
    ("items.jsonl", '{"id": "a"}\n{"title": "no id"}\n', "line 2 has no 'id' field"),
    ("items.jsonl", '{"id": "a"}\n{"id": "  "}\n', "line 2 has no 'id' field"),
    ("items.jsonl", '{"id": "a"}\n{"id": null}\n', "line 2 has no 'id' field"),
    ("items.jsonl", '{"id": "a"}\n{"id": "b"}\n{"id": "a"}\n', "line 3 repeats id 'a' first seen on line 1"),
    ("items.jsonl", '{"id": 1}\n{"id": "1"}\n', "line 2 repeats id '1' first seen on line 1"),
    ("items.csv", "id,title\na,Alien\n,Heat\n", "line 3 has no 'id' field"),
    ("items.csv", "id,title\na,Alien\na,Heat\n", "line 3 repeats id 'a' first seen on line 2"),
    ("items.tsv", "id\ttitle\na\tAlien\nb\tHeat\textra\n", "line 3 has more fields than the header"),
    ("items.csv", "title\nAlien\n", "line 2 has no 'id' field"),
    ("items.jsonl", "", "no items"),
    ("items.csv", "id,title\n", "no items"),
    ("items.xml", "<items/>", "unknown catalogue type"),
    ("items", '{"id": "a"}\n', "unknown catalogue type"),
    ("items.jsonl", b'{"id": "a", "title": "\xff"}\n', "not UTF-8"),
    ("items.csv", b"id,title\na,caf\xe9\n", "not UTF-8"),
]


@pytest.mark.parametrize(("name", "data", "fragment"), REFUSALS, ids=[f"{n}:{f}" for n, _, f in REFUSALS])
def test_bad_catalogue_is_refused(tmp_path: Path, name: str, data: str | bytes, fragment: str) -> None:
    with pytest.raises(CatalogError, match=fragment):
        read_catalog(write(tmp_path, name, data))


def test_missing_catalogue_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no such file"):
        read_catalog(tmp_path / "absent.jsonl")


def test_directory_catalogue_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(CatalogError, match="is a directory"):
        read_catalog(tmp_path / "dir.csv")


def test_invalid_utf8_deep_in_the_file_names_its_line(tmp_path: Path) -> None:
    lines = [json.dumps({"id": str(i), "title": "x" * 50}).encode() + b"\n" for i in range(400)]
    path = write(tmp_path, "items.jsonl", b"".join(lines) + b'{"id": "z", "title": "\xff"}\n')
    with pytest.raises(CatalogError, match="line 401"):
        read_catalog(path)


@pytest.mark.parametrize(
    ("name", "data"),
    [("items.csv", "id,title\na," + "x" * 200_000 + "\n"),
     ("items.jsonl", '{"id": "a"}\n' + "[" * 100_000 + "\n"),
     ("items.jsonl", '{"id": "a"}\n{"id": "b", "n": ' + "1" * 5000 + "}\n")],
    ids=["csv-field-limit", "deep-nesting", "huge-int"],
)
def test_unreadable_line_is_a_catalog_error(tmp_path: Path, name: str, data: str) -> None:
    with pytest.raises(CatalogError, match="line 2"):
        read_catalog(write(tmp_path, name, data))


# -- choose_text_fields ------------------------------------------------------

def test_choose_text_fields_keeps_preferred_order_of_present_fields() -> None:
    records = [{"id": "1", "title": "A"}, {"id": "2", "plot": "B", "year": 1999}]
    assert choose_text_fields(records, ["plot", "genres", "title", "id"], "id") == ("plot", "title")


def test_choose_text_fields_refuses_when_none_present() -> None:
    with pytest.raises(CatalogError, match="none of the text fields"):
        choose_text_fields([{"id": "1", "year": 1999}], ["title", "id"], "id")


# -- ItemTable ---------------------------------------------------------------

RECORDS = [
    {"id": "a", "title": "Amélie", "genres": ["Comedy", "Romance"]},
    {"id": "b", "title": "Line\nbreak \u2028 sep", "year": 1995},
    {"id": "c", "title": "Heat"},
]


def spec(count: int = 3) -> ItemsSpec:
    return ItemsSpec(count=count, id_field="id", text_fields=("title",), columns=("id", "title", "genres", "year"))


def test_from_records_maps_ids_to_labels() -> None:
    table = ItemTable.from_records(RECORDS, "id")
    assert table.labels == {"a": 0, "b": 1, "c": 2}
    assert len(table) == 3
    assert table.columns() == ("id", "title", "genres", "year")


def test_from_records_refuses_duplicate_id() -> None:
    with pytest.raises(CatalogError, match=r"duplicate item id 'a' \(items 1 and 3\)"):
        ItemTable.from_records([{"id": "a"}, {"id": "b"}, {"id": "a"}], "id")


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    ItemTable.from_records(RECORDS, "id").write(path)
    assert path.read_bytes().count(b"\n") == 3  # one line per item, even with a newline in a value
    loaded = ItemTable.load(path, spec())
    assert list(loaded.records) == RECORDS
    assert loaded.labels == {"a": 0, "b": 1, "c": 2}
    assert loaded.id_field == "id"


@pytest.mark.parametrize("count", [2, 4])
def test_load_refuses_count_mismatch(tmp_path: Path, count: int) -> None:
    path = tmp_path / "items.jsonl"
    ItemTable.from_records(RECORDS, "id").write(path)
    with pytest.raises(BundleError, match=f"3 items, the manifest says {count}"):
        ItemTable.load(path, spec(count))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [('{"id": "a"}\nnot json\n{"id": "c"}\n', "line 2 is not JSON"),
     ('{"id": "a"}\n{"id": 2}\n{"id": "c"}\n', "line 2 lacks a string 'id'"),
     ('{"id": "a"}\n["b"]\n{"id": "c"}\n', "line 2 lacks a string 'id'"),
     ('{"id": "a"}\n{"id": "b"}\n{"id": "a"}\n', "duplicate item id 'a'")],
    ids=["not-json", "numeric-id", "not-object", "duplicate"],
)
def test_load_refuses_damaged_table(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BundleError, match=fragment):
        ItemTable.load(path, spec())


def test_csv_lines_may_end_with_a_lone_carriage_return(tmp_path: Path) -> None:
    # As when the whole file was decoded and split with newline="": old Mac line ends still work.
    path = write(tmp_path, "items.csv", 'id,title\ra,Alien\rb,"Heat\r\nagain"\r')
    assert read_catalog(path) == [{"id": "a", "title": "Alien"}, {"id": "b", "title": "Heat\r\nagain"}]


def test_the_first_error_in_the_file_is_the_one_reported(tmp_path: Path) -> None:
    # The catalogue is read line by line: bad JSON on line 2 is found before bad UTF-8 on line 3.
    path = write(tmp_path, "items.jsonl", b'{"id": "a"}\nnot json\n{"id": "b", "title": "\xff"}\n')
    with pytest.raises(CatalogError, match="line 2 is not valid JSON"):
        read_catalog(path)


def test_catalog_file_hashes_what_a_complete_pass_read(tmp_path: Path) -> None:
    import hashlib

    from edgerec.update.catalog import CatalogFile

    data = '\ufeff{"id": "a"}\n\n{"id": "b"}'
    path = write(tmp_path, "items.jsonl", data)
    catalog = CatalogFile(path)
    assert catalog.count_lines() == 3
    rows = catalog.records()
    assert next(rows) == (1, {"id": "a"}) and catalog.sha256 is None  # not known until the end
    assert list(rows) == [(3, {"id": "b"})]
    assert catalog.sha256 == hashlib.sha256(data.encode("utf-8")).hexdigest()


# -- the loaded table reads records on demand ---------------------------------

@pytest.fixture
def loaded(tmp_path: Path) -> ItemTable:
    path = tmp_path / "items.jsonl"
    ItemTable.from_records(RECORDS, "id").write(path)
    return ItemTable.load(path, spec())


def test_loaded_table_is_a_sequence_of_records(loaded: ItemTable) -> None:
    from edgerec.items import JsonlRecords

    assert isinstance(loaded.records, JsonlRecords)  # offsets and ids in memory, not the records
    assert loaded.records[-1] == RECORDS[-1] and loaded.records[1:] == RECORDS[1:]
    assert loaded.records[np.int64(0)] == RECORDS[0]
    assert list(reversed(loaded.records)) == RECORDS[::-1]
    with pytest.raises(IndexError):
        loaded.records[3]
    with pytest.raises(TypeError):
        loaded.records["a"]  # type: ignore[call-overload]


def test_loaded_table_survives_its_file_being_replaced(loaded: ItemTable, tmp_path: Path) -> None:
    # A newer bundle version replaces and removes an old one while readers still hold it.
    path = tmp_path / "items.jsonl"
    path.rename(tmp_path / "moved.jsonl")
    (tmp_path / "moved.jsonl").unlink()
    path.write_text('{"id": "z"}\n')
    assert list(loaded.records) == RECORDS


def test_loaded_table_refuses_a_file_changed_in_place(loaded: ItemTable, tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    data = path.read_bytes()
    with open(path, "r+b") as handle:  # same inode, same size, another id on line 1
        handle.write(data.replace(b'"id": "a"', b'"id": "q"', 1))
    assert loaded.records[2] == RECORDS[2]
    with pytest.raises(BundleError, match="line 1 changed after the bundle was loaded"):
        loaded.records[0]


def test_an_update_copies_kept_lines_byte_for_byte_and_serialises_only_new_records(tmp_path):
    from edgerec.items import jsonl_bytes
    from edgerec.update.updated_items import UpdatedItems

    old_records = [{"id": f"i{n}", "title": f"Title {n}", "note": "é" * (n % 3)} for n in range(10)]
    path = tmp_path / "items.jsonl"
    body = jsonl_bytes(old_records)
    path.write_bytes(body[:-1])  # a last line without its newline still comes out whole
    spec = ItemsSpec(count=10, id_field="id", text_fields=("title",), columns=("id", "title", "note"))
    old = ItemTable.load(path, spec)
    new_record = {"id": "x", "title": "New", "year": 2001}
    rows = [0, 1, 2, new_record, 4, 9, 5, 6, 7, 8, {"id": "y", "title": "Other"}]
    updated = UpdatedItems(old, spec.columns, rows)
    expected = [old_records[r] if isinstance(r, int) else r for r in rows]
    assert b"".join(updated.serialized(lines_per_chunk=3)) == jsonl_bytes(expected)
    assert len(updated) == len(rows)
    assert updated.columns() == ("id", "title", "note", "year")
