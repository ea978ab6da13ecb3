"""The bundle the server answers from, and how a new version replaces it.

``LiveBundle.current`` is one reference to an immutable ``Loaded`` (a Recommender and the name and
version it came from). A request reads it once and answers from that object to the end, so a swap
never mixes two versions in one answer and never fails a request: the old Recommender stays valid
for as long as a request holds it (its files stay open even when the home prunes the version).
The new version is loaded and warmed beside the old one, then swapped in with one assignment.

``Reloader`` is the thread that reloads: every ``poll_seconds`` and whenever ``request()`` is
called (the server calls it on SIGHUP). Recommender.reload() returns the same object when the
home's ``current`` has not moved, so polling an unchanged home costs one small read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable

from ..bundle.home import read_pointer
from ..bundle.manifest import MANIFEST_NAME
from ..bundle.reader import Bundle
from ..errors import EdgerecError, one_line
from ..recommender import DEFAULT_THREADS, Recommender

log = logging.getLogger("edgerec.serve")


@dataclass(frozen=True)
class Loaded:
    rec: Recommender
    name: str
    version: str


def bundle_identity(bundle: Bundle) -> tuple[str, str]:
    """(name, version): a home's version name, else (a plain directory) the manifest's hash, so a
    rebuilt directory is told apart from the one it replaced."""
    if bundle.version is not None:
        return bundle.manifest.name, bundle.version
    digest = hashlib.sha256(bundle.manifest.to_json().encode("utf-8", "surrogatepass")).hexdigest()
    return bundle.manifest.name, f"sha256:{digest[:12]}"


def warm(rec: Recommender) -> None:
    """One call down each path, so the first real request pays no lazy initialisation."""
    rec.query("warm up", k=1)
    first = rec.items.records[0][rec.items.id_field]
    rec.similar(first, k=1)
    rec.recommend([first], k=1)


class LiveBundle:
    def __init__(self, path: str | os.PathLike[str] | None, *, ort_threads: int | None = DEFAULT_THREADS) -> None:
        self.path = path
        self.ort_threads = ort_threads
        self.on_swap: Callable[[Loaded], None] | None = None  # told of each version swapped in (the metrics)
        self.current: Loaded | None = None  # None until the first load is done and warm
        self.error: EdgerecError | None = None  # why the first load failed
        self._lock = threading.Lock()  # one load or reload at a time
        self._mark: object = None  # what _change_mark said when the served version was loaded

    def load(self) -> Loaded:
        with self._lock:
            rec = Recommender.load(self.path, threads=self.ort_threads)
            self._mark = _served_mark(rec.bundle)
            return self._swap(rec)

    def reload(self, *, force: bool = False) -> bool:
        """Swap in the home's current version if it changed; True when it did.

        Recommender.reload() verifies every file's sha256 even when nothing changed, too much work
        for a poll every few seconds: a poll first compares the home's pointer (or a plain
        directory's manifest.json stat), and only ``force`` (SIGHUP) always goes the full way.
        """
        with self._lock:
            if self.current is None:
                return False
            mark = _change_mark(self.current.rec.bundle)
            if not force and mark == self._mark:
                return False
            self._mark = mark  # a version that fails to load is not retried every poll, only once changed
            rec = self.current.rec.reload()
            self._mark = _served_mark(rec.bundle)
            if rec is self.current.rec:
                return False
            self._swap(rec)
            return True

    def _swap(self, rec: Recommender) -> Loaded:
        warm(rec)
        loaded = Loaded(rec, *bundle_identity(rec.bundle))
        self.current = loaded  # the one assignment requests see
        if self.on_swap is not None:
            self.on_swap(loaded)
        return loaded


def _served_mark(bundle: Bundle) -> object:
    """The change mark of the version just opened (a home's pointer may have moved on since)."""
    return bundle.version if bundle.home is not None else _change_mark(bundle)


def _change_mark(bundle: Bundle) -> object:
    """Cheap to read, and different once a new version is there: a home's pointer, else the stat of
    a plain directory's manifest (rewritten whenever the directory is rebuilt)."""
    try:
        if bundle.home is not None:
            return read_pointer(bundle.home).current
        info = os.stat(bundle.root / MANIFEST_NAME)
        return info.st_ino, info.st_size, info.st_mtime_ns
    except (OSError, EdgerecError):
        return None  # unreadable now: the full reload will say why


class Reloader:
    def __init__(self, live: LiveBundle, poll_seconds: float,
                 on_outcome: Callable[[str], None] = lambda outcome: None) -> None:
        self.live = live
        self.poll_seconds = poll_seconds
        self.on_outcome = on_outcome  # "swapped", "unchanged" or "failed", for the metrics
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._forced = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgerec-reloader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        """Reload now, verifying the bundle in full (safe from a signal handler: it only sets events)."""
        self._forced.set()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds if self.poll_seconds > 0 else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            forced = self._forced.is_set()
            self._forced.clear()
            self.reload_once(force=forced)

    def reload_once(self, *, force: bool = False) -> str:
        try:
            outcome = "swapped" if self.live.reload(force=force) else "unchanged"
        except EdgerecError as exc:  # a damaged or half-removed version: keep serving the one we have
            log.warning("edgerec: reload failed, still serving %s: %s",
                        _describe(self.live.current), one_line(exc))
            outcome = "failed"
        except Exception:  # noqa: BLE001 - the reloader must outlive any one bad version
            log.exception("edgerec: reload failed unexpectedly, still serving %s", _describe(self.live.current))
            outcome = "failed"
        if outcome == "swapped" and self.live.current is not None:
            log.info("edgerec: now serving %s", _describe(self.live.current))
        self.on_outcome(outcome)
        return outcome


def _describe(loaded: Loaded | None) -> str:
    return "nothing" if loaded is None else f"{loaded.name} {loaded.version}"


