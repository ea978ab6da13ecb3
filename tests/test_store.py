"""Bundle homes: versioned updates that survive kills, full disks, read-only directories and rival writers.

The guarantee under test: after any interruption of an update, loading the
home gives the previous complete version or the new one, answering exactly as
that version does; never a mix, never an error. Leftovers are removed by the
next writer.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

import edgerec.bundle.writer
import edgerec.update.store
from bundle_damage import REPO, child_env
from edgerec import Recommender
from edgerec.bundle.reader import open_bundle
from edgerec.cli import main
from edgerec.errors import (
    BundleError,
    CatalogError,
    InputError,
    ManifestError,
    StoreBusyError,
    UnknownItemError,
    WriteError,
)
from edgerec.bundle.faults import FAULT_AT_ENV, FAULT_LOG_ENV
from edgerec.bundle.home import POINTER_NAME, Pointer, is_home, read_pointer
from edgerec.update.store import LOCK_NAME, Store

QUERY = "space alien robot movie"
# New items and changed ones: item-003 gets a new text (re-encoded), item-004 only new metadata
# (its text fields are unchanged, so its vector is copied).
UPDATE = [
    {"id": "new-1", "title": "Space Robot Heist", "year": 2001, "genres": ["Sci-Fi"]},
    {"id": "new-2", "title": "Haunted House Of Love", "year": 1977, "genres": ["Horror", "Romance"]},
    {"id": "item-003", "title": "Changed Title Of War", "year": 1990, "genres": ["Drama"]},
]
# Every step an update passes, in order (edgerec.bundle.faults). Killing the writer at each one is tested below.
UPDATE_STEPS = [
    "after-create:staging",
    "after-link:encoder.onnx",  # unchanged model files are hard links to the previous version's
    "after-link:tokenizer.json",
    *(f"{when}:{name}" for name in ("index.hnsw", "items.jsonl", "manifest.json")
      for when in ("before-write", "after-write", "after-fsync")),
    "after-fsync:staging",
    "after-rename:bundle",
    "after-fsync:parent",
    "after-verify",
    "before-write:.current.tmp",
    "after-write:.current.tmp",
    "after-fsync:.current.tmp",
    "after-rename:current",
    "after-fsync:home",
    "after-tidy",
]
SWITCH_STEP = "after-rename:current"  # from here on, readers get the new version


def answers(rec: Recommender) -> tuple:
    """Everything the tests compare between versions: size, a text query and an item query, ids and scores."""
    query = tuple((r.item_id, r.score) for r in rec.query(QUERY, k=8))
    similar = tuple((r.item_id, r.score) for r in rec.similar("item-010", k=8))
    return len(rec), query, similar


def load_answers(path: Path) -> tuple:
    return answers(Recommender.load(path, threads=1))


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "update.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in UPDATE))
    return path


@pytest.fixture(scope="module")
def template_home(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("template") / "home"
    Store.create(home, tiny_bundle)
    return home


@pytest.fixture
def home(template_home: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template_home, tmp_path / "home"))


@pytest.fixture(scope="module")
def golden(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Answers of the home before and after the UPDATE (made in a copy, single-threaded: deterministic)."""
    work = tmp_path_factory.mktemp("golden")
    home = Path(shutil.copytree(template_home, work / "home"))
    catalog = work / "update.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in UPDATE))
    old = load_answers(home)
    Store(home).add(catalog, threads=1)
    return {"old": old, "new": load_answers(home)}


def leftovers(home: Path) -> list[str]:
    return sorted(n for n in os.listdir(home) if n.startswith(".") and n != LOCK_NAME)


# -- layout and plain use ----------------------------------------------------------------------------

def test_a_new_home_holds_one_verified_copy(tiny_bundle: Path, tmp_path: Path) -> None:
    store = Store.create(tmp_path / "home", tiny_bundle)
    assert sorted(os.listdir(store.home)) == sorted([LOCK_NAME, POINTER_NAME, "v000001"])
    assert store.pointer() == Pointer("v000001", None)
    assert is_home(store.home) and not is_home(tiny_bundle)
    opened = open_bundle(store.home)
    assert (opened.home, opened.version, opened.root) == (store.home, "v000001", store.home / "v000001")
    original = open_bundle(tiny_bundle)
    assert {r: e.sha256 for r, e in opened.manifest.files.items()} == {
        r: e.sha256 for r, e in original.manifest.files.items()}
    assert load_answers(store.home) == load_answers(tiny_bundle)


def test_a_home_is_only_made_in_a_new_or_empty_directory(tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "photo.jpg").write_bytes(b"precious")
    with pytest.raises(InputError, match="not empty"):
        Store.create(tmp_path / "busy", tiny_bundle)
    assert os.listdir(tmp_path / "busy") == ["photo.jpg"]


def test_add_appends_new_items_and_replaces_changed_ones(home: Path, catalog: Path) -> None:
    before = Recommender.load(home, threads=1)
    report = Store(home).add(catalog, threads=1)
    after = Recommender.load(home, threads=1)
    assert (report.version, report.previous, report.count) == ("v000002", "v000001", 122)
    assert (report.added, report.replaced, report.removed, report.encoded) == (2, 1, 0, 3)
    assert after.bundle.version == "v000002" and len(after) == 122
    ids = [r["id"] for r in after.items.records]
    assert ids == [r["id"] for r in before.items.records] + ["new-1", "new-2"]  # old order kept, new ones last
    assert after.items.records[3]["title"] == "Changed Title Of War"
    # Unchanged items keep their vectors bit for bit: copied from the old index, not re-encoded.
    unchanged = [label for label in range(120) if label != 3]
    assert np.array_equal(after.index.vectors(unchanged), before.index.vectors(unchanged))
    assert not np.array_equal(after.index.vectors([3]), before.index.vectors([3]))
    # The new items' vectors are what the encoder makes of their text (batched, so up to INT8 noise).
    fresh = after.encode(["Space Robot Heist. 2001. Sci-Fi"])[0]
    assert float(after.index.vectors([120])[0] @ fresh) > 0.9
    assert after.similar("new-1", k=1)[0].item_id != "new-1"
    assert after.bundle.manifest.provenance["update"]["from_version"] == "v000001"
    # Nothing was removed, so the old graph was grown, not built again; every changed or new item
    # is linked in: searching with its own vector finds it first.
    assert after.bundle.manifest.provenance["update"]["index"] == "grown"
    for label in (3, 120, 121):
        assert after.index.search(after.index.vectors([label])[0], 1)[0][0] == label


def test_metadata_only_change_copies_the_vector(home: Path, tmp_path: Path) -> None:
    before = Recommender.load(home, threads=1)
    record = dict(before.items.records[4], rating="R")  # not a text field
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps(record) + "\n")
    report = Store(home).add(path, threads=1)
    assert (report.replaced, report.encoded) == (1, 0)
    after = Recommender.load(home, threads=1)
    assert after.items.records[4]["rating"] == "R"
    assert np.array_equal(after.index.vectors(range(120)), before.index.vectors(range(120)))


def test_remove_drops_items_and_renumbers_labels(home: Path) -> None:
    before = Recommender.load(home, threads=1)
    report = Store(home).remove(["item-000", "item-050"], threads=1)
    after = Recommender.load(home, threads=1)
    assert (report.count, report.removed, report.encoded) == (118, 2, 0)
    kept = [r["id"] for r in before.items.records if r["id"] not in ("item-000", "item-050")]
    assert [r["id"] for r in after.items.records] == kept
    for item_id in ("item-001", "item-051", "item-119"):
        assert np.array_equal(after.index.vectors([after.items.labels[item_id]]),
                              before.index.vectors([before.items.labels[item_id]]))
    # 2 of 120 is under PRUNE_LIMIT: the graph was rewritten without them, not built again.
    assert after.bundle.manifest.provenance["update"]["index"] == "pruned"
    with pytest.raises(UnknownItemError):
        after.similar("item-000")
    vectors = after.index.vectors(range(len(after)))
    assert [int(after.index.search(v, 1)[0][0]) for v in vectors] == list(range(len(after)))
    assert leftovers(home) == []


def test_a_full_disk_while_pruning_is_a_clear_error_and_changes_nothing(home: Path, monkeypatch) -> None:
    def full(source, spec, remove, out):
        Path(out).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    monkeypatch.setattr(edgerec.update.store, "prune_index_file", full)
    with pytest.raises(WriteError, match="No space left"):
        Store(home).remove(["item-003"])
    assert Store(home).versions() == ["v000001"] and leftovers(home) == []
    assert "item-003" in Recommender.load(home, threads=1).items.labels


def test_a_pruning_remove_never_loads_the_graph(home: Path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the pruned file should be copied in, not loaded into hnswlib")

    monkeypatch.setattr(edgerec.update.store.ItemIndex, "load", refuse)
    Store(home).remove(["item-040"], threads=1)
    monkeypatch.undo()
    after = Recommender.load(home, threads=1)
    assert after.bundle.manifest.provenance["update"]["index"] == "pruned" and "item-040" not in after.items.labels


def test_small_removes_add_up_to_a_rebuild(home: Path, tmp_path: Path) -> None:
    """Cut links accumulate, so what was pruned since the last build counts, not just this update."""
    store, seen = Store(home), []
    new_item = tmp_path / "new.jsonl"
    new_item.write_text(json.dumps(dict(Recommender.load(home).items.records[4], id="item-new")) + "\n")

    def step(update: Callable[[], object]) -> None:
        update()
        last = Recommender.load(home, threads=1).bundle.manifest.provenance["update"]
        seen.append((last["index"], last["pruned_since_build"]))

    step(lambda: store.remove(["item-010", "item-011"], threads=1))
    step(lambda: store.add(new_item, threads=1))  # adding cuts no links: the count carries on
    step(lambda: store.remove(["item-020", "item-021"], threads=1))
    step(lambda: store.remove(["item-030", "item-031"], threads=1))  # 6 > 5% of 117
    assert seen == [("pruned", 2), ("grown", 2), ("pruned", 4), ("rebuilt", 0)]


def test_removing_many_items_builds_the_graph_again(home: Path) -> None:
    before = Recommender.load(home, threads=1)
    gone = [f"item-{i:03d}" for i in range(0, 120, 10)]  # 12 of 120: over PRUNE_LIMIT
    Store(home).remove(gone, threads=1)
    after = Recommender.load(home, threads=1)
    assert after.bundle.manifest.provenance["update"]["index"] == "rebuilt"
    assert [r["id"] for r in after.items.records] == [r["id"] for r in before.items.records if r["id"] not in gone]
    assert np.array_equal(after.index.vectors([after.items.labels["item-119"]]),
                          before.index.vectors([before.items.labels["item-119"]]))


@pytest.mark.parametrize(("ids", "error"), [(["item-001", "no-such-item"], UnknownItemError),
                                            ([f"item-{i:03d}" for i in range(120)], CatalogError)],
                         ids=["unknown-id", "every-item"])
def test_a_refused_remove_writes_nothing(home: Path, ids: list[str], error: type[Exception]) -> None:
    with pytest.raises(error):
        Store(home).remove(ids)
    assert Store(home).versions() == ["v000001"] and leftovers(home) == []


def test_updates_keep_the_current_and_the_previous_version(home: Path, catalog: Path) -> None:
    store = Store(home)
    for item_id in ("item-001", "item-002", "item-003"):
        store.remove([item_id], threads=1)
    assert store.versions() == ["v000003", "v000004"]
    assert store.pointer() == Pointer("v000004", "v000003")
    assert leftovers(home) == []


def test_updates_need_a_home_not_a_plain_bundle(tiny_bundle: Path, catalog: Path) -> None:
    before = sorted(os.listdir(tiny_bundle))
    with pytest.raises(InputError, match="edgerec init"):
        Store(tiny_bundle).add(catalog)
    assert sorted(os.listdir(tiny_bundle)) == before  # not even a lock file


# -- readers: a running Recommender keeps its version; reload() moves on -----------------------------

def test_a_loaded_recommender_keeps_answering_from_its_version(home: Path, catalog: Path,
                                                              golden: dict[str, tuple]) -> None:
    rec = Recommender.load(home, threads=1)
    store = Store(home)
    store.add(catalog, threads=1)
    store.remove(["item-001"], threads=1)
    store.remove(["item-002"], threads=1)
    assert not (home / "v000001").exists()  # its files are gone; it answers from memory
    assert answers(rec) == golden["old"]
    assert rec.reload() is not rec and rec.reload().bundle.version == "v000004"


def test_reload_switches_to_the_current_version_and_reuses_the_encoder(home: Path, catalog: Path,
                                                                      golden: dict[str, tuple]) -> None:
    rec = Recommender.load(home, threads=1)
    assert rec.reload() is rec  # nothing changed
    Store(home).add(catalog, threads=1)
    newer = rec.reload()
    assert newer.bundle.version == "v000002" and newer.encoder is rec.encoder
    assert answers(newer) == golden["new"] and answers(rec) == golden["old"]


def test_a_recommender_made_from_its_parts_can_reload(home: Path, catalog: Path) -> None:
    # edgerec bench makes Recommenders this way; they reload with the defaults.
    loaded = Recommender.load(home)
    rec = Recommender(loaded.bundle, loaded.encoder, loaded.index, loaded.items)
    Store(home).add(catalog, threads=1)
    assert rec.reload().bundle.version == "v000002"


def test_readers_during_updates_see_whole_versions_only(home: Path) -> None:
    seen: dict[str, set[tuple]] = {}
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                rec = Recommender.load(home, threads=1)
                seen.setdefault(rec.bundle.version or "", set()).add(answers(rec))
            except BaseException as exc:  # noqa: BLE001 - any error at all fails the test
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        store = Store(home)
        for item_id in ("item-001", "item-002", "item-003", "item-004"):
            store.remove([item_id], threads=1)
            time.sleep(0.05)
    finally:
        done.set()
        reader.join()
    assert errors == []
    assert len(seen) >= 2, "the reader should have seen more than one version"
    assert all(len(found) == 1 for found in seen.values()), "one version, one set of answers"
    assert seen["v000005"] == {load_answers(home)}


# -- the pointer and the versions are checked too -----------------------------------------------------

@pytest.mark.parametrize(("content", "fragment"), [
    (b"{not json", "not valid JSON"),
    (b'{"format": "other", "current": "v000001"}', "format"),
    (b'{"format": "edgerec-home", "current": "../elsewhere"}', "current must name a version"),
    (b'{"format": "edgerec-home", "current": "v000001", "previous": "/tmp"}', "previous must name"),
    (b'{"format": "edgerec-home", "current": "v000009"}', "missing"),
], ids=["invalid-json", "other-format", "escaping-name", "escaping-previous", "missing-version"])
def test_a_damaged_pointer_is_a_bundle_error_naming_it(home: Path, content: bytes, fragment: str) -> None:
    (home / POINTER_NAME).write_bytes(content)
    with pytest.raises(BundleError, match=fragment) as caught:
        Recommender.load(home)
    assert str(home) in str(caught.value)


def test_a_symlinked_version_is_refused(home: Path, tmp_path: Path) -> None:
    (home / "v000001").rename(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", home / "v000001")
    with pytest.raises(BundleError, match="not a link"):
        Recommender.load(home)


def test_a_home_without_its_pointer_keeps_its_versions(home: Path, catalog: Path) -> None:
    (home / POINTER_NAME).unlink()
    with pytest.raises(BundleError):
        Store(home).add(catalog)
    assert os.path.isdir(home / "v000001")


# -- leftovers of killed writers ------------------------------------------------------------------------

def test_the_next_writer_removes_leftovers_and_orphans(home: Path, catalog: Path) -> None:
    (home / ".v000002.staging-abc123").mkdir()
    (home / ".v000002.staging-abc123" / "index.hnsw").write_bytes(b"half")
    (home / ".v000001.old-999").mkdir()
    (home / ".current.tmp").write_text("{")
    shutil.copytree(home / "v000001", home / "v000007")  # published but never switched to: an orphan
    (home / "notes.txt").write_text("the user's own file")
    report = Store(home).add(catalog, threads=1)
    assert report.version == "v000002"  # the orphan's number is free again: no reader ever saw it
    assert sorted(os.listdir(home)) == sorted([LOCK_NAME, POINTER_NAME, "notes.txt", "v000001", "v000002"])


# -- one writer at a time -----------------------------------------------------------------------------

_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, b"%d\\n" % os.getpid(), 0)
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def rival_writer(home: Path):
    """Another process holding the home's lock, as a running `edgerec add` would."""
    process = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(home / LOCK_NAME)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.wait()


def test_a_second_writer_is_refused_at_once(home: Path, catalog: Path, rival_writer: subprocess.Popen) -> None:
    started = time.perf_counter()
    with pytest.raises(StoreBusyError, match=f"pid {rival_writer.pid}"):
        Store(home).add(catalog)
    assert time.perf_counter() - started < 2.0
    assert Store(home).versions() == ["v000001"]
    result = CliRunner().invoke(main, ["remove", "item-001", "--bundle", str(home)])
    assert result.exit_code == StoreBusyError.exit_code == 5
    assert "another edgerec process" in result.output and result.output.count("\n") == 1


def test_two_writers_started_together_never_corrupt_the_home(home: Path, catalog: Path) -> None:
    script = "import sys; from edgerec.update.store import Store; Store(sys.argv[1]).remove([sys.argv[2]], threads=1)"
    writers = [subprocess.Popen([sys.executable, "-c", script, str(home), item_id], env=child_env(), cwd=REPO,
                                stderr=subprocess.PIPE, text=True) for item_id in ("item-001", "item-002")]
    results = [(w.wait(timeout=120), w.stderr.read() if w.stderr else "") for w in writers]
    assert all(code == 0 or "StoreBusyError" in err for code, err in results), results
    succeeded = sum(code == 0 for code, _ in results)
    assert succeeded >= 1
    rec = Recommender.load(home, threads=1)
    assert len(rec) == 120 - succeeded and rec.bundle.version == f"v{1 + succeeded:06d}"


# -- disk full, read-only, short writes ---------------------------------------------------------------

def _failing_os_write(budget: int, error: int) -> Callable[[int, bytes], int]:
    """os.write that writes ``budget`` bytes in all, then fails with ``error`` (as a full disk does)."""
    real_write = os.write
    left = [budget]

    def write(fd: int, data: bytes) -> int:
        if left[0] <= 0:
            raise OSError(error, os.strerror(error))
        data = memoryview(data)[: left[0]]
        left[0] -= len(data)
        return real_write(fd, data)
    return write


@pytest.fixture(scope="module")
def bytes_per_file(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, int]]:
    """(file name, bytes) in the order an update writes them, measured on a copy."""
    work = tmp_path_factory.mktemp("measure")
    home = Path(shutil.copytree(template_home, work / "home"))
    catalog = work / "update.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in UPDATE))
    real_write = os.write
    written: list[tuple[str, int]] = []

    def counting_write(fd: int, data: bytes) -> int:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if not written or written[-1][0] != name:
            written.append((name, 0))
        count = real_write(fd, data)
        written[-1] = (name, written[-1][1] + count)
        return count

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(edgerec.bundle.writer.os, "write", counting_write)
        Store(home).add(catalog, threads=1)
    return written


def test_an_update_writes_every_file_through_one_checked_writer(bytes_per_file: list[tuple[str, int]]) -> None:
    names = [name for name, _ in bytes_per_file]
    # encoder.onnx and tokenizer.json are unchanged: linked, not written (test_home_links.py)
    assert names == ["index.hnsw", "items.jsonl", "manifest.json", ".current.tmp"]


@pytest.mark.parametrize("where", ["first-byte", "index.hnsw", "items.jsonl", "manifest.json", ".current.tmp"])
def test_disk_full_fails_clearly_and_keeps_the_old_version(home: Path, catalog: Path, golden: dict[str, tuple],
                                                          bytes_per_file: list[tuple[str, int]],
                                                          monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    # The disk fills up halfway through the named file (or before the first byte).
    budget = 0
    for name, size in bytes_per_file:
        if name == where:
            budget += size // 2
            break
        budget += size
    else:
        assert where == "first-byte"
        budget = 0
    monkeypatch.setattr(edgerec.bundle.writer.os, "write", _failing_os_write(budget, errno.ENOSPC))
    with pytest.raises(WriteError, match="No space left on device.*free some disk space") as caught:
        Store(home).add(catalog, threads=1)
    assert "\n" not in str(caught.value)
    if where != "first-byte":
        assert where in str(caught.value)
    monkeypatch.undo()
    assert read_pointer(home) == Pointer("v000001", None)
    assert load_answers(home) == golden["old"]
    assert leftovers(home) == [] and Store(home).versions() == ["v000001"]
    Store(home).add(catalog, threads=1)  # and once there is space again, the update goes through
    assert load_answers(home) == golden["new"]


def test_a_write_that_silently_drops_bytes_is_never_published(home: Path, catalog: Path,
                                                               golden: dict[str, tuple],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Like hnswlib's save_index on a full disk: the write "succeeds" but fewer bytes land.
    real_write = os.write

    def lying_write(fd: int, data: bytes) -> int:
        view = memoryview(data)
        real_write(fd, view[: max(0, len(view) - 1)])
        return len(view)

    monkeypatch.setattr(edgerec.bundle.writer.os, "write", lying_write)
    with pytest.raises(WriteError, match="reads back as"):
        Store(home).add(catalog, threads=1)
    monkeypatch.undo()
    assert load_answers(home) == golden["old"] and leftovers(home) == []


@pytest.mark.parametrize("error", [errno.EROFS, errno.EACCES], ids=["read-only", "no-permission"])
def test_an_unwritable_home_fails_clearly(home: Path, catalog: Path, golden: dict[str, tuple],
                                          monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    # Tests run as root, where chmod stops nothing: refuse writes the way the kernel would.
    real_open, real_mkdir = os.open, os.mkdir

    def refusing_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).startswith(str(home)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(error, os.strerror(error), str(path))
        return real_open(path, flags, *args, **kwargs)

    def refusing_mkdir(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).startswith(str(home)):
            raise OSError(error, os.strerror(error), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(os, "mkdir", refusing_mkdir)
    with pytest.raises(WriteError, match="write somewhere else"):
        Store(home).add(catalog, threads=1)
    monkeypatch.undo()
    assert load_answers(home) == golden["old"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the monkeypatched test covers this")
def test_a_read_only_home_by_permissions(home: Path, catalog: Path) -> None:
    os.chmod(home, 0o555)
    try:
        with pytest.raises(WriteError):
            Store(home).add(catalog, threads=1)
    finally:
        os.chmod(home, 0o755)


# -- fault injection: the writer killed at every step ---------------------------------------------------

def test_an_update_passes_every_named_step(home: Path, catalog: Path, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    monkeypatch.setenv(FAULT_LOG_ENV, str(log))
    Store(home).add(catalog, threads=1)
    assert log.read_text().split() == UPDATE_STEPS


_UPDATE_CHILD = "import sys; from edgerec.update.store import Store; Store(sys.argv[1]).add(sys.argv[2], threads=1)"


def _update_in_child(home: Path, catalog: Path, step: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _UPDATE_CHILD, str(home), str(catalog)],
                            env={**child_env(), FAULT_AT_ENV: step}, cwd=REPO, stderr=subprocess.PIPE)


def test_a_writer_killed_at_any_step_leaves_the_old_or_the_new_version(
        template_home: Path, catalog: Path, golden: dict[str, tuple], tmp_path: Path) -> None:
    homes = {step: Path(shutil.copytree(template_home, tmp_path / f"home-{i}")) for i, step in enumerate(UPDATE_STEPS)}
    survived = {}
    # Two writers at a time (different homes): the machine has two cores.
    for pair in [UPDATE_STEPS[i : i + 2] for i in range(0, len(UPDATE_STEPS), 2)]:
        children = {step: _update_in_child(homes[step], catalog, step) for step in pair}
        for step, child in children.items():
            assert child.wait(timeout=120) == -9, f"{step}: the writer was not killed there"
    for step, home in homes.items():
        got = load_answers(home)
        expected = "new" if UPDATE_STEPS.index(step) >= UPDATE_STEPS.index(SWITCH_STEP) else "old"
        assert got == golden[expected], f"killed {step}: not the {expected} version's answers"
        # The next writer clears what the killed one left and completes the update.
        Store(home).add(catalog, threads=1)
        assert load_answers(home) == golden["new"], f"killed {step}: the next update went wrong"
        assert leftovers(home) == [], f"killed {step}: leftovers {leftovers(home)}"
        assert len(Store(home).versions()) <= 2
        survived[step] = expected
    assert set(survived.values()) == {"old", "new"}


# -- the command line -------------------------------------------------------------------------------------

def test_cli_init_add_remove_rebuild(tiny_bundle: Path, tmp_path: Path, catalog: Path) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    made = runner.invoke(main, ["init", str(home), "--from", str(tiny_bundle)])
    assert made.exit_code == 0, made.output
    added = runner.invoke(main, ["add", str(catalog), "--bundle", str(home), "--threads", "1"])
    assert added.exit_code == 0, added.output
    assert "version v000002 is current (previous v000001): 122 items; 2 added, 1 replaced" in added.output
    removed = runner.invoke(main, ["remove", "new-1", "--bundle", str(home)])
    assert removed.exit_code == 0 and "121 items" in removed.output
    unknown = runner.invoke(main, ["remove", "nope", "--bundle", str(home)])
    assert unknown.exit_code == 2 and "unknown item id 'nope'" in unknown.output
    rebuilt = runner.invoke(main, ["build", str(catalog), "--out", str(home)])
    assert rebuilt.exit_code == 0 and "v000004 (now current; previous v000003): 3 items" in rebuilt.output
    info = runner.invoke(main, ["info", "--json", "--bundle", str(home)])
    assert json.loads(info.output)["version"] == "v000004"
    answer = runner.invoke(main, ["similar", "new-2", "--bundle", str(home), "--json", "-k", "2"])
    assert sorted(json.loads(line)["item_id"] for line in answer.output.splitlines()) == ["item-003", "new-1"]
    plain = runner.invoke(main, ["add", str(catalog), "--bundle", str(tiny_bundle)])
    assert plain.exit_code == 2 and "not a bundle home" in plain.output


def test_cli_init_refuses_a_damaged_source(tiny_bundle: Path, tmp_path: Path) -> None:
    source = Path(shutil.copytree(tiny_bundle, tmp_path / "source"))
    with open(source / "index.hnsw", "ab") as handle:
        handle.write(b"\0")
    result = CliRunner().invoke(main, ["init", str(tmp_path / "home"), "--from", str(source)])
    assert result.exit_code == 3 and "index.hnsw" in result.output
    assert not (tmp_path / "home").exists()


def test_manifest_errors_in_the_pointer_are_manifest_errors(home: Path) -> None:
    (home / POINTER_NAME).write_text("[]")
    with pytest.raises(ManifestError):
        read_pointer(home)
