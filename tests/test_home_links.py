"""Versions of a bundle home share unchanged files as hard links (edgerec.bundle.home_links), and the
reader accepts a link only when all of its names are inside that one home."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

import edgerec.bundle.writer
from edgerec import Recommender
from edgerec.bundle.reader import open_bundle
from edgerec.errors import IntegrityError
from edgerec.update.store import Store

NEW_ITEMS = [{"id": f"new-{i}", "title": f"Robot Space Adventure {i}", "year": 2000 + i, "genres": ["Sci-Fi"]}
             for i in range(3)]


@pytest.fixture
def home(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Store.create(tmp_path / "home", tiny_bundle).home


def _add(home: Path, tmp_path: Path, item: dict) -> None:
    catalog = tmp_path / f"{item['id']}.jsonl"
    catalog.write_text(json.dumps(item) + "\n")
    Store(home).add(catalog, threads=1)


def _same_file(a: Path, b: Path) -> bool:
    return os.stat(a).st_ino == os.stat(b).st_ino and os.stat(a).st_dev == os.stat(b).st_dev


def test_an_update_links_the_unchanged_model_files(home: Path, tmp_path: Path) -> None:
    _add(home, tmp_path, NEW_ITEMS[0])
    for name in ("encoder.onnx", "tokenizer.json"):
        assert _same_file(home / "v000001" / name, home / "v000002" / name)
    for name in ("index.hnsw", "items.jsonl", "manifest.json"):  # these changed: new files
        assert not _same_file(home / "v000001" / name, home / "v000002" / name)
    rec = Recommender.load(home)
    assert rec.bundle.version == "v000002" and "new-0" in rec.items.labels
    # A version opened by its own path is still a version of its home: its links are accepted.
    assert open_bundle(home / "v000002").manifest.items.count == 121


def test_tidying_old_versions_leaves_the_current_one_whole(home: Path, tmp_path: Path) -> None:
    for item in NEW_ITEMS:
        _add(home, tmp_path, item)
    assert Store(home).versions() == ["v000003", "v000004"]  # keep=2: v000001 and v000002 removed
    encoder = home / "v000004" / "encoder.onnx"
    assert os.stat(encoder).st_nlink == 2 and _same_file(encoder, home / "v000003" / "encoder.onnx")
    rec = Recommender.load(home)
    assert len(rec) == 123 and rec.query("robot space", k=1)


def test_a_plain_bundle_with_a_hard_link_is_still_refused(home: Path, tmp_path: Path) -> None:
    _add(home, tmp_path, NEW_ITEMS[0])
    plain = tmp_path / "plain"
    plain.mkdir()
    for entry in (home / "v000002").iterdir():  # like `cp -al`: every file a second name of the version's
        os.link(entry, plain / entry.name)
    with pytest.raises(IntegrityError, match="not a version of a bundle home"):
        open_bundle(plain)


def test_a_version_file_also_linked_from_outside_the_home_is_refused(home: Path, tmp_path: Path) -> None:
    _add(home, tmp_path, NEW_ITEMS[0])
    os.link(home / "v000002" / "tokenizer.json", tmp_path / "someone-elses-tokenizer.json")
    with pytest.raises(IntegrityError, match="tokenizer.json.*outside its bundle home"):
        Recommender.load(home)
    (tmp_path / "someone-elses-tokenizer.json").unlink()
    assert Recommender.load(home).bundle.version == "v000002"


def test_a_version_linked_from_another_home_is_refused(home: Path, tmp_path: Path) -> None:
    _add(home, tmp_path, NEW_ITEMS[0])
    other = tmp_path / "other-home"
    other.mkdir()
    shutil.copy(home / "current", other / "current")
    for version in ("v000001", "v000002"):
        (other / version).mkdir()
        for entry in (home / version).iterdir():
            os.link(entry, other / version / entry.name)
    with pytest.raises(IntegrityError, match="outside its bundle home"):
        Recommender.load(other)


def test_a_writers_staging_link_does_not_stop_readers(home: Path, tmp_path: Path) -> None:
    _add(home, tmp_path, NEW_ITEMS[0])
    staging = home / ".v000003.staging-test"  # what a running update holds
    staging.mkdir()
    os.link(home / "v000002" / "encoder.onnx", staging / "encoder.onnx")
    assert os.stat(home / "v000002" / "encoder.onnx").st_nlink == 3
    assert Recommender.load(home).bundle.version == "v000002"


def test_a_shared_file_damaged_is_caught_by_its_sha256(home: Path, tmp_path: Path) -> None:
    _add(home, tmp_path, NEW_ITEMS[0])
    with open(home / "v000002" / "encoder.onnx", "r+b") as handle:  # one byte, seen by both versions
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 1]))
    for version in ("v000001", "v000002"):
        with pytest.raises(IntegrityError, match="sha256"):
            open_bundle(home / version)


@pytest.mark.parametrize("error", [errno.EXDEV, errno.EPERM, errno.EMLINK])
def test_where_links_fail_the_files_are_copied(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              error: int) -> None:
    def no_links(source: object, target: object) -> None:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(edgerec.bundle.writer.os, "link", no_links)
    _add(home, tmp_path, NEW_ITEMS[0])
    for name in ("encoder.onnx", "tokenizer.json"):
        assert os.stat(home / "v000002" / name).st_nlink == 1
        assert (home / "v000002" / name).read_bytes() == (home / "v000001" / name).read_bytes()
    assert Recommender.load(home).bundle.version == "v000002"


def test_a_new_prior_links_items_and_index_too(home: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text("user,item,timestamp\n" + "".join(f"u{i % 3},item-{i:03d},{i}\n" for i in range(30)))
    Store(home).set_prior(events)
    for name in ("encoder.onnx", "tokenizer.json", "index.hnsw", "items.jsonl"):
        assert _same_file(home / "v000001" / name, home / "v000002" / name), name
    assert Recommender.load(home).bundle.manifest.prior is not None


def test_a_rebuild_links_the_model_files(home: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "all.jsonl"
    catalog.write_text("".join(json.dumps(item) + "\n" for item in NEW_ITEMS))
    Store(home).rebuild(catalog, threads=1)
    for name in ("encoder.onnx", "tokenizer.json"):
        assert _same_file(home / "v000001" / name, home / "v000002" / name), name
    assert len(Recommender.load(home)) == 3
