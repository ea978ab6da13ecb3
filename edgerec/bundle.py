"""Reading and writing bundle directories: the only code that touches their files.

``open_bundle`` verifies every file (inside the root, a plain regular file,
right size, right sha256) before anything hands it to ONNX Runtime, tokenizers
or hnswlib: those libraries run silently wrong or crash on a damaged file.
``BundleWriter`` stages a bundle in a temporary sibling directory, writes the
manifest last and renames the whole directory into place, so a reader never
sees half a bundle.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping

from .errors import BundleError, IntegrityError, ManifestError
from .manifest import MANIFEST_NAME, EncoderSpec, FileEntry, IndexSpec, ItemsSpec, Manifest, UserSpec

# Canonical file names a writer uses for each role.
FILE_NAMES = {
    "encoder": "encoder.onnx",
    "tokenizer": "tokenizer.json",
    "index": "index.hnsw",
    "items": "items.jsonl",
    "notice": "NOTICE",
}
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest and the absolute path of each file."""

    root: Path
    manifest: Manifest

    def path(self, role: str) -> Path:
        return self.root / self.manifest.files[role].path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def open_bundle(root: str | os.PathLike[str]) -> Bundle:
    """Read the manifest of ``root`` and verify every file it lists."""
    root = Path(root)
    if not root.exists():
        raise BundleError(f"{root}: no such bundle directory; pass --bundle DIR or set EDGEREC_BUNDLE")
    if not root.is_dir():
        raise BundleError(f"{root}: not a directory; a bundle is a directory with a manifest.json")
    root = root.resolve()
    manifest_path = root / MANIFEST_NAME
    _check_plain_file(manifest_path, MANIFEST_NAME, missing_hint="this directory is not an edgerec bundle")
    if manifest_path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise ManifestError(f"{manifest_path}: larger than {_MAX_MANIFEST_BYTES} bytes; not a manifest")
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{manifest_path}: not UTF-8 text; rebuild the bundle") from None
    manifest = Manifest.from_json(text)
    for role, entry in manifest.files.items():
        _verify_file(root, role, entry)
    return Bundle(root=root, manifest=manifest)


def _check_plain_file(path: Path, label: str, missing_hint: str) -> os.stat_result:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: missing ({missing_hint})") from None
    if stat.S_ISLNK(info.st_mode):
        raise IntegrityError(f"{path}: {label} is a symbolic link; bundles hold only regular files")
    if not stat.S_ISREG(info.st_mode):
        raise IntegrityError(f"{path}: {label} is not a regular file")
    if info.st_nlink > 1:
        # A hard link can point at a file outside the bundle that changes under us.
        raise IntegrityError(f"{path}: {label} has {info.st_nlink} hard links; copy the bundle instead of linking it")
    return info


def _verify_file(root: Path, role: str, entry: FileEntry) -> None:
    path = root / entry.path
    # lstat first: a symlink (even a loop) is refused before anything follows it.
    info = _check_plain_file(path, f"{role} file", missing_hint="the bundle is incomplete; rebuild or re-copy it")
    if path.resolve().parent != root:
        raise IntegrityError(f"{path}: {role} file resolves outside the bundle")
    if info.st_size != entry.size:
        raise IntegrityError(
            f"{path}: {role} file is {info.st_size} bytes, the manifest says {entry.size}; "
            "the file is truncated or replaced: rebuild or re-copy the bundle"
        )
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise IntegrityError(
            f"{path}: {role} file's sha256 is {actual[:12]}..., the manifest says {entry.sha256[:12]}...; "
            "the file is damaged or replaced: rebuild or re-copy the bundle"
        )


class BundleWriter:
    """Stage the files of a new bundle, then publish them atomically.

    Use as a context manager: write each role's file at ``path_for(role)``
    (or ``copy_in``), then call ``finish``. On any exception the staging
    directory is removed and ``out`` is untouched.
    """

    def __init__(self, out: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.out = Path(out).absolute()
        self.overwrite = overwrite
        self._check_out()
        parent = self.out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-", dir=parent))
        except OSError as exc:
            raise BundleError(f"{parent}: cannot write here ({exc.strerror})") from None
        self._done = False

    def _check_out(self) -> None:
        if self.out.exists() and not self.overwrite:
            raise BundleError(f"{self.out}: already exists; choose another --out or pass --force")
        if self.out.exists() and not (self.out / MANIFEST_NAME).is_file():
            # Never replace a directory that is not a bundle: it may be someone's data.
            raise BundleError(f"{self.out}: exists and is not a bundle; refusing to replace it")

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if not self._done:
            shutil.rmtree(self.staging, ignore_errors=True)

    def path_for(self, role: str) -> Path:
        return self.staging / FILE_NAMES[role]

    def copy_in(self, role: str, source: str | os.PathLike[str]) -> None:
        shutil.copyfile(source, self.path_for(role))

    def finish(
        self,
        *,
        name: str,
        encoder: EncoderSpec,
        index: IndexSpec,
        items: ItemsSpec,
        provenance: Mapping[str, Any],
        user: UserSpec = UserSpec(),
    ) -> Manifest:
        files = {}
        for role, file_name in FILE_NAMES.items():
            path = self.staging / file_name
            if path.exists():
                _fsync_file(path)
                files[role] = FileEntry(path=file_name, size=path.stat().st_size, sha256=sha256_of(path))
        manifest = Manifest(name=name, files=files, encoder=encoder, index=index, items=items, user=user,
                            provenance=provenance)
        manifest_path = self.staging / MANIFEST_NAME
        manifest_path.write_text(manifest.to_json(), encoding="utf-8")
        _fsync_file(manifest_path)
        _fsync_dir(self.staging)
        self._publish()
        self._done = True
        return manifest

    def _publish(self) -> None:
        self._check_out()  # again: building took a while and someone may have made `out` since
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.rename(self.out, old)
        os.rename(self.staging, self.out)
        _fsync_dir(self.out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
