"""`edgerec build` without --text-fields: every field holding words makes the text, and it says which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgerec.cli import main
from edgerec.errors import CatalogError
from edgerec.update.build import build_from_catalog
from edgerec.update.catalog import value_kind


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("The Hobbit", "text"),
        (["fantasy", "adventure"], "text"),
        (["", "drama"], "text"),
        ("1937", "numbers"),
        (" -12.5e3 ", "numbers"),
        (1937, "numbers"),
        (True, "numbers"),
        ("https://example.org/b1", "links"),
        ("www.example.org", "links"),
        (["http://a", "http://b"], "links"),
        ({"a": 1}, "other"),
        ([1, 2], "other"),
    ],
)
def test_value_kind(value, kind):
    assert value_kind(value) == kind


BOOKS = [
    {"id": "b1", "title": "The Hobbit", "author": "J.R.R. Tolkien", "tags": ["fantasy", "adventure"], "year": 1937,
     "isbn": "9780261102217", "url": "https://example.org/b1"},
    {"id": "b2", "title": "Dune", "author": "Frank Herbert", "tags": ["science fiction"], "year": 1965,
     "isbn": "9780441013593", "url": "https://example.org/b2"},
    {"id": "b3", "title": "Neuromancer", "author": "William Gibson", "tags": [], "year": 1984,
     "isbn": "9780441569595", "url": "https://example.org/b3"},
]


def catalogue(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_every_text_field_by_default_and_said_on_stderr(tiny_bundle, tmp_path):
    result = CliRunner().invoke(main, ["build", str(catalogue(tmp_path / "books.jsonl", BOOKS)), "--out",
                                       str(tmp_path / "b"), "--bundle", str(tiny_bundle), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert ("text from every field holding words: title, author, tags; not year (numbers), isbn (numbers), "
            "url (links) (choose with --text-fields)") in result.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["items"]["text_fields"] == ["title", "author", "tags"]


def test_text_fields_chosen_are_kept(tiny_bundle, tmp_path):
    built = build_from_catalog(catalogue(tmp_path / "books.jsonl", BOOKS), tmp_path / "b", base=tiny_bundle,
                               text_fields=["title", "year"], threads=1)
    assert built.items.text_fields == ("title", "year")


def test_a_catalogue_without_text_is_refused_naming_its_fields(tiny_bundle, tmp_path):
    records = [{"id": "p1", "price": 3.5, "url": "https://x/p1"}, {"id": "p2", "price": "4", "url": "https://x/p2"}]
    with pytest.raises(CatalogError, match=r"no field holds text \(the fields: id, price, url; price \(numbers\), "
                                           r"url \(links\)\); say which"):
        build_from_catalog(catalogue(tmp_path / "p.jsonl", records), tmp_path / "b", base=tiny_bundle, threads=1)
    assert not (tmp_path / "b").exists()


def test_items_without_text_in_the_chosen_fields_are_refused_before_writing(tiny_bundle, tmp_path):
    records = [*BOOKS, {"id": "b4", "year": 2001, "url": "https://example.org/b4"}]
    with pytest.raises(CatalogError, match="1 item has no text in \\['title', 'author', 'tags'\\], e.g. id 'b4'"):
        build_from_catalog(catalogue(tmp_path / "books.jsonl", records), tmp_path / "b", base=tiny_bundle, threads=1)
    assert not (tmp_path / "b").exists()
