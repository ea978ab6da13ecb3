"""Bundle homes, the writer's side: versioned bundles behind an atomic pointer, for crash-safe updates.

A home is a directory::

    HOME/
      current              {"format": "edgerec-home", "current": "v000003", "previous": "v000002"}
      v000002/             a complete bundle (what `current` named before the last update)
      v000003/             a complete bundle (what readers load)
      .lock                held with fcntl.flock by the one writer
      .v000004.staging-*   a writer's unfinished version (removed by the next writer)

Readers (edgerec.bundle.reader) read ``current`` and open the version it
names; nothing else in the home matters to them. A writer takes the lock,
writes a whole new version beside the others with ``BundleWriter`` (staged,
fsynced, verified, renamed into place), and only then replaces ``current``
(temp file, fsync, rename, fsync the directory). Killed at any point, the home holds either the old
``current`` or the new one, each naming a complete version. A live index is
never changed: every update writes a new version.

The pointer is a file rather than a symlink because bundle loading refuses
symlinks, and a rename over a file is atomic on every POSIX file system.

Versions share what did not change: a new version's encoder, tokenizer,
description model and notice (and, for a new prior, items and index too) are
hard links to the previous version's files where the file system allows
(edgerec.bundle.home_links). Removing an old version removes one name of such
a file; the current version's name and the bytes stay.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle.hnsw_file import IndexFile, StoredVectors, validate_index_file
from ..bundle.faults import fault_point
from ..bundle.home import HOME_FORMAT, POINTER_NAME, VERSION_NAME, Pointer, is_home, read_pointer, version_number
from ..bundle.manifest import FILE_NAMES, PriorSpec
from ..bundle.reader import Bundle, open_bundle, open_current
from ..bundle.writer import OLD_MARK, STAGING_MARK, BundleWriter, fsync_dir, write_error, write_new_file
from ..errors import BundleError, CatalogError, InputError, StoreBusyError, UnknownItemError
from ..encoder import TextEncoder
from ..events import EventColumns, EventsReport, read_events
from ..index import ItemIndex
from ..items import ItemTable, item_text
from ..prior import DEFAULT_WEIGHT, ItemPrior, event_counts, remap_counts
from .build import ModelFiles, Prior, build_from_catalog, item_texts, tool_versions, write_bundle_files
from .catalog import read_catalog
from .prune import PRUNE_LIMIT, prune_index_file
from .updated_items import UpdatedItems

LOCK_NAME = ".lock"
_POINTER_TEMP = ".current.tmp"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class UpdateReport:
    """What an update did: the new version and how its items came about."""

    version: str
    previous: str | None
    count: int  # items in the new version
    added: int = 0  # new ids
    replaced: int = 0  # ids that were there, given again (their records replace the old ones)
    removed: int = 0
    encoded: int = 0  # items whose text had to be encoded; the others' vectors were copied


@dataclass(frozen=True)
class PriorReport:
    """What `set_prior` counted, and the version that holds it."""

    version: str
    previous: str | None
    weight: float
    events: EventsReport


class Store:
    """The writer side of a bundle home. Every method that writes holds the home's lock."""

    def __init__(self, home: str | os.PathLike[str], *, keep: int = 2) -> None:
        if keep < 2:
            raise ValueError("keep must be at least 2: the current version and the one before it")
        self.home = Path(home).absolute()
        self.keep = keep

    # -- reading -------------------------------------------------------------
    def pointer(self) -> Pointer:
        return read_pointer(self.home)

    def versions(self) -> list[str]:
        """Complete version directories in the home, oldest first."""
        try:
            names = os.listdir(self.home)
        except FileNotFoundError:
            return []
        return sorted((n for n in names if VERSION_NAME.match(n)), key=version_number)

    # -- writing -------------------------------------------------------------
    @classmethod
    def create(cls, home: str | os.PathLike[str], source: str | os.PathLike[str]) -> "Store":
        """A new home whose first version is a verified copy of the bundle ``source``."""
        home = Path(home).absolute()
        if home.exists() and (not home.is_dir() or any(home.iterdir())):
            raise InputError(f"{home}: already exists and is not empty; choose a new directory for the home")
        bundle = open_bundle(source)
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(home, exc) from None
        store = cls(home)
        with store._locked(creating=True):
            if os.path.lexists(home / POINTER_NAME):
                raise InputError(f"{home}: became a home while this one was being made")
            store._commit(lambda out: _copy_bundle(bundle, out), previous=None)
        return store

    def add(self, catalog: str | os.PathLike[str], *, id_field: str | None = None, threads: int | None = None,
            progress: Progress | None = None) -> UpdateReport:
        """Add the catalogue's items, replacing those whose id is already there. Unchanged texts keep
        their vectors (copied from the current index); only new and changed texts are encoded."""
        with self._locked():
            current = open_current(self.home)
            wanted_id = id_field or current.manifest.items.id_field
            records = [_rename_id(r, wanted_id, current.manifest.items.id_field)
                       for r in read_catalog(catalog, id_field=wanted_id)]
            return self._update(current, records, (), catalog=Path(catalog).name, threads=threads,
                                progress=progress)

    def remove(self, item_ids: Sequence[str], *, threads: int | None = None) -> UpdateReport:
        """Remove items by id; every id must exist (nothing is removed otherwise)."""
        if isinstance(item_ids, str):
            raise TypeError("item_ids must be a sequence of str ids, not one str")
        with self._locked():
            current = open_current(self.home)
            return self._update(current, [], item_ids, catalog=None, threads=threads, progress=None)

    def rebuild(self, catalog: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None,
                text_fields: Sequence[str] | None = None, id_field: str = "id", name: str | None = None,
                threads: int | None = None, ef: int | None = None,
                progress: Progress | None = None) -> UpdateReport:
        """A new version from a whole catalogue, encoded with ``base``'s model (default: the current version's)."""
        with self._locked():
            previous = self.pointer().current
            # The home's catalogue keeps its text fields unless others are asked for.
            kept = open_current(self.home).manifest.items
            manifest = self._commit(
                lambda out: build_from_catalog(catalog, out, base=base or self.home / previous,
                                               text_fields=text_fields or (kept.text_fields if kept else None),
                                               id_field=id_field,
                                               name=name or self.home.name, threads=threads, ef=ef,
                                               progress=progress),
                previous=previous,
            )
        count = manifest.items.count
        return UpdateReport(version=self.pointer().current, previous=previous, count=count, encoded=count)

    def set_prior(self, events: str | os.PathLike[str], *, columns: EventColumns = EventColumns(),
                  min_rating: float | None = None, half_life_days: float | None = None,
                  weight: float | None = None) -> PriorReport:
        """A new version whose item prior (edgerec.prior) counts the events in ``events``: an app's own
        interactions, so that `recommend` leans towards what its users choose now. ``weight``: the prior's
        weight (default: the current version's, else DEFAULT_WEIGHT). Nothing is encoded or indexed again."""
        with self._locked():
            current = open_current(self.home)
            manifest = current.manifest
            table = ItemTable.load(current.path("items"), manifest.items)
            per_user, read = read_events(events, table.labels, columns, min_rating=min_rating)
            counts = event_counts(per_user, len(table), half_life_days=half_life_days)
            if weight is None:
                weight = manifest.prior.weight if manifest.prior is not None else DEFAULT_WEIGHT
            spec = PriorSpec(weight=float(weight), events=read.kept, source=Path(events).name,
                             half_life_days=half_life_days)
            self._commit(lambda out: _copy_bundle(current, out, prior=(spec, counts), share=True),
                         previous=current.version)
            return PriorReport(version=self.pointer().current, previous=current.version, weight=spec.weight,
                               events=read)

    # -- internals -----------------------------------------------------------
    def _update(self, current: Bundle, records: list[dict[str, Any]], remove_ids: Sequence[str], *,
                catalog: str | None, threads: int | None, progress: Progress | None) -> UpdateReport:
        with ExitStack() as stack:  # scratch files live until the new version is written and switched to
            return self._update_in(stack, current, records, remove_ids, catalog=catalog, threads=threads,
                                   progress=progress)

    def _update_in(self, stack: ExitStack, current: Bundle, records: list[dict[str, Any]],
                   remove_ids: Sequence[str], *, catalog: str | None, threads: int | None,
                   progress: Progress | None) -> UpdateReport:
        manifest = current.manifest
        id_field, text_fields = manifest.items.id_field, manifest.items.text_fields
        old_table = ItemTable.load(current.path("items"), manifest.items)
        for item_id in remove_ids:
            if not isinstance(item_id, str):
                raise TypeError(f"item ids are str, got {type(item_id).__name__}")
            if item_id not in old_table.labels:
                raise UnknownItemError(item_id)
        removing = set(remove_ids)
        incoming = {record[id_field]: record for record in records}
        added = [r for item_id, r in incoming.items() if item_id not in old_table.labels]
        # Old items keep their order (replaced ones in place); new ones follow in catalogue order.
        # A stored vector is reused when the item's text is still the one it was encoded from. An old
        # item that is kept as it is stays a label: its line is copied into the new items file byte for
        # byte, never parsed or serialised again (a million of them took seconds each way).
        ids_by_label = [""] * len(old_table)
        for item_id, label in old_table.labels.items():
            ids_by_label[label] = item_id
        rows: list[int | Mapping[str, Any]] = []
        reuse: list[int | None] = []
        for label, item_id in enumerate(ids_by_label):
            if item_id in removing:
                continue
            new = incoming.get(item_id)
            if new is None:
                rows.append(label)
                reuse.append(label)
                continue
            rows.append(new)
            unchanged = item_text(old_table.records[label], text_fields) == item_text(new, text_fields)
            reuse.append(label if unchanged else None)
        rows += added
        reuse += [None] * len(added)
        if not rows:
            raise CatalogError("the update would leave no items; a bundle needs at least one")
        prior = _carried_prior(current, old_table, rows)
        table = UpdatedItems(old_table, manifest.items.columns, rows)
        started = time.perf_counter()
        changed = [i for i, label in enumerate(reuse) if label is None]
        texts = item_texts([rows[i] for i in changed], text_fields, id_field)  # changed rows are new records
        vectors = _encode(current, texts, threads=threads, progress=progress)
        encode_seconds = time.perf_counter() - started
        started = time.perf_counter()
        # Labels are item rows. A remove rewrites the graph without the removed items (edgerec.update.prune);
        # once the items pruned since the graph was last built pass PRUNE_LIMIT, it is built again,
        # because every cut link costs the graph a little.
        last = manifest.provenance.get("update")
        pruned_before = last.get("pruned_since_build", 0) if isinstance(last, dict) else 0
        pruned = (pruned_before if type(pruned_before) is int and pruned_before >= 0 else 0) + len(removing)
        index: ItemIndex | IndexFile
        if removing and (changed or pruned > PRUNE_LIMIT * manifest.index.count):
            how, pruned = "rebuilt", 0
            index = ItemIndex.build(_all_vectors(current, reuse, changed, vectors), m=manifest.index.m,
                                    ef_construction=manifest.index.ef_construction, ef=manifest.index.ef,
                                    threads=threads or 0)
        elif removing:  # nothing to link in: the pruned file is the new index as it is
            how = "pruned"
            rows = np.asarray([old_table.labels[item_id] for item_id in removing], dtype=np.int64)
            try:  # a killed writer's scratch directory is tidied by the next writer (STAGING_MARK)
                scratch = Path(tempfile.mkdtemp(prefix=f".prune{STAGING_MARK}", dir=self.home))
                stack.callback(shutil.rmtree, scratch, ignore_errors=True)
                spec = prune_index_file(current.path("index"), manifest.index, rows, scratch / "index.hnsw")
            except OSError as exc:
                raise write_error(Path(exc.filename or self.home), exc) from None
            index = IndexFile(scratch / "index.hnsw", spec)
        else:  # old items keep their rows: only changed and new items go into the current graph
            how = "grown"
            index = ItemIndex.load(current.path("index"), manifest.index, room_for=len(table))
            index.upsert(vectors, np.asarray(changed, dtype=np.int64), threads=threads or 0)
        report = UpdateReport(
            version=self._next_version(), previous=current.version, count=len(table), added=len(added),
            replaced=len(incoming) - len(added), removed=len(removing), encoded=reuse.count(None),
        )
        provenance = {
            **manifest.provenance,
            "update": {"kind": "remove" if remove_ids else "add", "from_version": current.version,
                       "catalog": catalog, "added": report.added, "replaced": report.replaced,
                       "removed": report.removed, "encoded": report.encoded,
                       "index": how, "pruned_since_build": pruned},
            "build": {"tool_versions": tool_versions(), "encode_seconds": round(encode_seconds, 3),
                      "index_seconds": round(time.perf_counter() - started, 3)},
        }

        def write_version(out: Path) -> Any:
            with BundleWriter(out, share_with=current) as writer:  # the model files are linked, not copied
                return write_bundle_files(
                    writer, table=table, index=index, model=ModelFiles.of_bundle(current),
                    text_fields=text_fields, user=manifest.user, name=manifest.name, provenance=provenance,
                    descriptions_from=current, prior=prior,
                )

        self._commit(write_version, previous=current.version, name=report.version)
        return report

    def _commit(self, write_version: Callable[[Path], Any], *, previous: str | None, name: str | None = None) -> Any:
        """Write a new version with ``write_version(dir)``, verify it, switch ``current`` to it, tidy up."""
        name = name or self._next_version()
        out = self.home / name
        result = write_version(out)
        try:
            _verify_version(out)
            fault_point("after-verify")
            self._switch(Pointer(current=name, previous=previous))
        except BaseException:
            self._abandon(name)
            raise
        self._tidy()
        fault_point("after-tidy")
        return result

    def _next_version(self) -> str:
        numbers = [version_number(n) for n in self.versions()]
        if os.path.lexists(self.home / POINTER_NAME):
            pointer = self.pointer()
            numbers += [version_number(n) for n in (pointer.current, pointer.previous) if n]
        return f"v{max(numbers, default=0) + 1:06d}"

    def _abandon(self, name: str) -> None:
        """After a failed switch: remove the unused new version and pointer temp file (a killed writer's
        are removed by the next writer instead)."""
        (self.home / _POINTER_TEMP).unlink(missing_ok=True)
        try:
            switched = self.pointer().current == name
        except BundleError:
            return  # cannot tell: leave the version for the next writer's tidy-up
        if not switched:
            _remove_tree(self.home / name)

    def _switch(self, pointer: Pointer) -> None:
        body = {"format": HOME_FORMAT, "current": pointer.current, "previous": pointer.previous}
        temp = self.home / _POINTER_TEMP
        write_new_file(temp, [(json.dumps(body) + "\n").encode("utf-8")])
        try:
            os.rename(temp, self.home / POINTER_NAME)
            fault_point("after-rename:current")
            fsync_dir(self.home)
        except OSError as exc:
            raise write_error(self.home / POINTER_NAME, exc) from None
        fault_point("after-fsync:home")

    def _tidy(self) -> None:
        """Remove what no reader can be using: killed writers' leftovers and versions beyond ``keep``.

        Runs under the lock, so no writer is active. Readers open only what
        ``current`` names (a reader holding an older pointer retries). Without
        a readable pointer no version is touched.
        """
        for entry in os.listdir(self.home):
            if entry.startswith(".") and (STAGING_MARK in entry or OLD_MARK in entry):
                shutil.rmtree(self.home / entry, ignore_errors=True)
            elif entry == _POINTER_TEMP:
                (self.home / entry).unlink(missing_ok=True)
        if not os.path.lexists(self.home / POINTER_NAME):
            return
        pointer = self.pointer()
        live = [name for name in (pointer.current, pointer.previous) if name]
        # Beyond the live ones, the newest versions below the current one; a version above it was
        # never switched to (its writer was killed), so no reader has seen it.
        older = [v for v in self.versions()
                 if v not in live and version_number(v) < version_number(pointer.current)]
        spare = self.keep - len(live)
        keep = set(live) | set(older[len(older) - spare:] if spare > 0 else [])
        for name in self.versions():
            if name not in keep:
                _remove_tree(self.home / name)

    def _require_home(self) -> None:
        if not self.home.is_dir():
            raise BundleError(f"{self.home}: no such bundle home; make one with `edgerec init {self.home}`")
        versions = self.versions()
        if versions and not os.path.lexists(self.home / POINTER_NAME):
            raise BundleError(
                f"{self.home / POINTER_NAME}: missing, though the home holds {', '.join(versions)}; write it back as "
                f'{{"format": "{HOME_FORMAT}", "current": "{versions[-1]}"}} if that version is the one to serve'
            )
        if not is_home(self.home):
            raise InputError(
                f"{self.home}: not a bundle home (updates write new versions into a home); "
                f"make one from this bundle with `edgerec init HOME --from {self.home}` and update HOME"
            )

    @contextmanager
    def _locked(self, *, creating: bool = False) -> Iterator[None]:
        """Hold the home's lock (refusing at once if another writer has it) and clear killed writers' leftovers."""
        if not creating:
            self._require_home()
        path = self.home / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise BundleError(f"{self.home}: no such bundle home; make one with `edgerec init`") from None
            raise write_error(path, exc) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise StoreBusyError(
                    f"{self.home}: another edgerec process (pid {holder}) is updating this home; "
                    "wait for it to finish and try again"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            self._tidy()
            yield
        finally:
            os.close(fd)  # releases the lock


def _verify_version(out: Path) -> None:
    """Re-open the new version as a reader would (sizes, hashes, index structure) before anyone can."""
    bundle = open_bundle(out, follow_home=False)
    validate_index_file(bundle.path("index"), bundle.manifest.index)
    ItemTable.load(bundle.path("items"), bundle.manifest.items)


def _remove_tree(path: Path) -> None:
    # Rename first (atomic), so a half-deleted version never carries a version name.
    doomed = path.with_name(f".{path.name}{OLD_MARK}{os.getpid()}")
    try:
        os.rename(path, doomed)
    except OSError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _copy_bundle(bundle: Bundle, out: Path, *, prior: Prior | None = None, share: bool = False) -> Any:
    """A verified copy of ``bundle``; with ``prior``, that item prior instead of the bundle's own. With
    ``share`` (``bundle`` is a version of the same home), unchanged files are hard links to its own."""
    manifest = bundle.manifest
    with BundleWriter(out, share_with=bundle if share else None) as writer:
        for role, entry in manifest.files.items():
            if role in FILE_NAMES and not (prior is not None and role == "prior"):
                writer.copy_in(role, bundle.path(role), sha256=entry.sha256)
        if prior is not None:
            writer.write("prior", [ItemPrior(prior[1]).to_bytes()])
        return writer.finish(name=manifest.name, encoder=manifest.encoder, index=manifest.index,
                             items=manifest.items, user=manifest.user, provenance=manifest.provenance,
                             descriptions=manifest.descriptions, lexical=manifest.lexical,
                             prior=manifest.prior if prior is None else prior[0])


def _carried_prior(current: Bundle, old_table: ItemTable, rows: Sequence[int | Mapping[str, Any]]) -> Prior | None:
    """The current item prior for the updated table (``rows``: an old label, or a new or replacing record):
    an item keeps its count by id, a new item starts at 0."""
    spec = current.manifest.prior
    if spec is None:
        return None
    old = ItemPrior.from_bytes(current.path("prior").read_bytes(), size=len(old_table), name=str(current.path("prior")))
    id_field = old_table.id_field
    old_label_of = [row if isinstance(row, int) else old_table.labels.get(row[id_field]) for row in rows]
    return spec, remap_counts(old.counts, old_label_of)


def _rename_id(record: Mapping[str, Any], catalog_field: str, bundle_field: str) -> dict[str, Any]:
    if catalog_field == bundle_field:
        return dict(record)
    body = {k: v for k, v in record.items() if k != catalog_field}
    return {bundle_field: record[catalog_field], **body}


def _encode(current: Bundle, texts: list[str], *, threads: int | None, progress: Progress | None) -> Any:
    """``texts`` encoded with the current version's model."""
    manifest = current.manifest
    if not texts:
        return np.empty((0, manifest.index.dim), dtype=np.float32)
    encoder = TextEncoder(current.path("encoder"), current.path("tokenizer"), manifest.encoder, threads=threads)
    advance = None if progress is None else _counting(progress, "encoding", len(texts))
    return encoder.encode(texts, progress=advance)


def _all_vectors(current: Bundle, reuse: list[int | None], changed: list[int], encoded: Any) -> Any:
    """Vectors in the new label order: ``encoded`` for the ``changed`` rows, copied from the current
    index where ``reuse`` names a label."""
    vectors = np.empty((len(reuse), current.manifest.index.dim), dtype=np.float32)
    vectors[changed] = encoded
    copied = [i for i, label in enumerate(reuse) if label is not None]
    if copied:  # read from the file: the old graph itself is not needed
        stored = StoredVectors.open(current.path("index"), current.manifest.index)
        vectors[copied] = stored.read(np.array([reuse[i] for i in copied], dtype=np.int64))
    return vectors


def _counting(progress: Progress, stage: str, total: int) -> Callable[[int], None]:
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(stage, done, total)

    return advance
