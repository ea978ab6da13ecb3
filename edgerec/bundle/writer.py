"""Writing bundle directories: the one writer of the bundle format.

``BundleWriter`` stages a bundle in a temporary sibling directory, writes
each file itself (so every write error surfaces, and what landed is read back
and compared with what was written), writes the manifest last, fsyncs, and
renames the whole directory into place, so a reader never sees half a bundle.

A new version of a bundle home shares the previous version's unchanged files:
``copy_in`` hard-links such a file instead of copying it, where the file system
allows (edgerec.bundle.home_links: why the reader accepts these links and no others).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Iterator, Mapping

from ..errors import BundleError, InputError, IntegrityError, WriteError
from .faults import fault_point
from .home_links import home_of_version
from .manifest import (FILE_NAMES, MANIFEST_NAME, DescriptionSpec, EncoderSpec, FileEntry, IndexSpec, ItemsSpec,
                       LexicalSpec, Manifest, PriorSpec, UserSpec)
from .reader import CHUNK_BYTES, Bundle, sha256_of


class BundleWriter:
    """Stage the files of a new bundle, then publish them atomically.

    Use as a context manager: write each role's file with ``write``, ``open``
    or ``copy_in`` (or, for tests and tools, at ``path_for(role)``), then call
    ``finish``. On any exception the staging directory is removed and ``out``
    is untouched. Write failures (disk full, read-only, ...) raise WriteError.

    ``share_with``: the version of a bundle home that this new version of the same home follows;
    files copied in from it unchanged become hard links to its files. Ignored unless ``out`` is in
    that same home: links never leave a home.
    """

    def __init__(self, out: str | os.PathLike[str], *, overwrite: bool = False,
                 share_with: Bundle | None = None) -> None:
        self.out = Path(out).absolute()
        self.overwrite = overwrite
        same_home = share_with is not None and home_of_version(share_with.root) == self.out.parent.resolve()
        self._share_with = share_with if same_home else None
        self._check_out()
        parent = self.out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}{STAGING_MARK}", dir=parent))
        except OSError as exc:
            raise write_error(parent, exc) from None
        self._done = False
        self._written: dict[str, tuple[int, str]] = {}  # role -> (size, sha256) as written
        fault_point("after-create:staging")

    def _check_out(self) -> None:
        # Bad input (exit 2), not a damaged bundle: the caller named a directory that is taken.
        if self.out.exists() and not self.overwrite:
            raise InputError(f"{self.out}: already exists; choose another --out, or pass --force to replace "
                             "the bundle there")
        if self.out.exists() and not (self.out / MANIFEST_NAME).is_file():
            # Never replace a directory that is not a bundle: it may be someone's data.
            raise InputError(f"{self.out}: exists and is not a bundle; refusing to replace it")

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if not self._done:
            shutil.rmtree(self.staging, ignore_errors=True)

    def path_for(self, role: str) -> Path:
        return self.staging / FILE_NAMES[role]

    def write(self, role: str, chunks: Iterable[bytes]) -> None:
        """Write a role's file from ``chunks``, fsync it, and remember its size and sha256."""
        self._written[role] = write_new_file(self.path_for(role), chunks)

    @contextmanager
    def open(self, role: str) -> Iterator["NewFile"]:
        """A role's file to write piece by piece (a streaming build writes items as it encodes them);
        fsynced when the block ends and checked like every other file at ``finish``."""
        new_file = NewFile(self.path_for(role))
        try:
            yield new_file
        except BaseException:
            new_file.abandon()
            raise
        self._written[role] = new_file.close()

    def scratch_path(self, name: str) -> Path:
        """A path inside the staging directory for an intermediate file; remove it before ``finish``."""
        return self.staging / f".scratch-{name}"

    def copy_in(self, role: str, source: str | os.PathLike[str], *, sha256: str | None = None) -> None:
        """Copy a file in; with ``sha256``, refuse a source that is not the verified one. The same role's
        file of ``share_with``, unchanged, is hard-linked instead where the file system allows."""
        if sha256 is not None and self._link_in(role, Path(source), sha256):
            return
        self.write(role, _read_chunks(Path(source)))
        if sha256 is not None and self._written[role][1] != sha256:
            raise IntegrityError(f"{source}: changed while it was being copied; nothing was written")

    def _link_in(self, role: str, source: Path, sha256: str) -> bool:
        shared = self._share_with
        entry = shared.manifest.files.get(role) if shared is not None else None
        if shared is None or entry is None or entry.sha256 != sha256 or source.resolve() != shared.path(role):
            return False
        try:
            os.link(source, self.path_for(role))
        except OSError:
            # Another file system (EXDEV), no links there (EPERM, ENOTSUP), too many (EMLINK): copy instead.
            return False
        fault_point(f"after-link:{self.path_for(role).name}")
        # Checked like a written file at finish: read back whole, size and sha256.
        self._written[role] = (entry.size, entry.sha256)
        return True

    def finish(
        self,
        *,
        name: str,
        encoder: EncoderSpec,
        index: IndexSpec | None,
        items: ItemsSpec | None,
        provenance: Mapping[str, Any],
        user: UserSpec = UserSpec(),
        descriptions: DescriptionSpec | None = None,
        lexical: LexicalSpec | None = None,
        prior: PriorSpec | None = None,
    ) -> Manifest:
        """Write the manifest of the files written and publish the bundle (``index`` and ``items`` None:
        a model, see Manifest)."""
        files = {}
        for role, file_name in FILE_NAMES.items():
            path = self.staging / file_name
            if role in self._written:
                size, digest = self._written[role]
                _check_landed(path, size, digest)
            elif path.exists():
                _fsync_file(path)
                size, digest = path.stat().st_size, sha256_of(path)
            else:
                continue
            files[role] = FileEntry(path=file_name, size=size, sha256=digest)
        manifest = Manifest(name=name, files=files, encoder=encoder, index=index, items=items, user=user,
                            provenance=provenance, descriptions=descriptions, lexical=lexical, prior=prior)
        manifest_path = self.staging / MANIFEST_NAME
        data = manifest.to_json().encode("utf-8")
        _check_landed(manifest_path, *write_new_file(manifest_path, [data]))
        try:
            fsync_dir(self.staging)
        except OSError as exc:
            raise write_error(self.staging, exc) from None
        fault_point("after-fsync:staging")
        self._publish()
        self._done = True
        return manifest

    def _publish(self) -> None:
        self._check_out()  # again: building took a while and someone may have made `out` since
        old = None
        try:
            if self.out.exists():
                old = self.out.with_name(f".{self.out.name}{OLD_MARK}{os.getpid()}")
                os.rename(self.out, old)
            os.rename(self.staging, self.out)
            fault_point("after-rename:bundle")
            fsync_dir(self.out.parent)
        except OSError as exc:
            raise write_error(self.out, exc) from None
        fault_point("after-fsync:parent")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# Marks in the names of a writer's temporary directories, so leftovers of a
# killed writer can be recognised (edgerec.update.store removes them).
STAGING_MARK = ".staging-"
OLD_MARK = ".old-"
_WRITE_HINTS = {
    errno.ENOSPC: "free some disk space and try again",
    errno.EDQUOT: "free some space (disk quota) and try again",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "no permission to write here; write somewhere else",
    errno.EPERM: "no permission to write here; write somewhere else",
}


def write_error(path: Path, exc: OSError) -> WriteError:
    reason = exc.strerror or str(exc)
    hint = _WRITE_HINTS.get(exc.errno or 0, "check the disk and try again")
    return WriteError(f"{path}: cannot write ({reason}); {hint}. Nothing was replaced")


def _read_chunks(source: Path) -> Iterator[bytes]:
    try:
        with open(source, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk
    except OSError as exc:
        raise BundleError(f"{source}: cannot read ({exc.strerror})") from None


class NewFile:
    """A new file written with os.write (so every error surfaces) and hashed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fault_point(f"before-write:{path.name}")
        self._digest = hashlib.sha256()
        self._size = 0
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise write_error(path, exc) from None

    def write(self, chunk: bytes) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: already closed")
        view = memoryview(chunk)
        try:
            while view:
                written = os.write(self._fd, view)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError as exc:
            self.abandon()
            raise write_error(self.path, exc) from None
        self._digest.update(chunk)
        self._size += len(chunk)

    def close(self) -> tuple[int, str]:
        """fsync and close: (size, sha256) of what was written."""
        if self._fd is None:
            raise ValueError(f"{self.path}: already closed")
        fault_point(f"after-write:{self.path.name}")
        fd, self._fd = self._fd, None
        try:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise write_error(self.path, exc) from None
        fault_point(f"after-fsync:{self.path.name}")
        return self._size, self._digest.hexdigest()

    def abandon(self) -> None:
        """Close without fsync after a failure (the staging directory and its files are removed anyway)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def write_new_file(path: Path, chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write a new file with os.write (every error surfaces), fsync it: (size, sha256) of what was written."""
    new_file = NewFile(path)
    try:
        for chunk in chunks:
            new_file.write(chunk)
    except BaseException:
        new_file.abandon()
        raise
    return new_file.close()


def _check_landed(path: Path, size: int, digest: str) -> None:
    """Read a written file back: a short or damaged write must never be published."""
    try:
        actual_size = path.stat().st_size
        actual = sha256_of(path) if actual_size == size else ""
    except OSError as exc:
        raise write_error(path, exc) from None
    if actual != digest:
        raise WriteError(f"{path}: reads back as {actual_size} bytes with another sha256 than the {size} bytes "
                         "written; the disk may be full or failing. Nothing was replaced")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
