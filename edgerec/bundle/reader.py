"""Reading bundle directories: the one reader of the bundle format.

``open_bundle`` verifies every file (inside the root, a plain regular file,
right size, right sha256) before anything hands it to ONNX Runtime, tokenizers
or hnswlib: those libraries run silently wrong or crash on a damaged file.

A directory without a manifest but with a ``current`` pointer is a bundle home
(edgerec.bundle.home): ``open_bundle`` opens the version the pointer names.

A file with several hard links is refused, except in a version of a bundle
home whose links all stay inside that home: versions share unchanged files
(edgerec.bundle.home_links says why that is safe and how it is checked).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import BundleError, IntegrityError, ManifestError
from .home import POINTER_NAME, is_home, read_pointer
from .home_links import home_of_version, links_stay_in_home
from .manifest import MANIFEST_NAME, FileEntry, Manifest

_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
CHUNK_BYTES = 1 << 20
# A reader that read the pointer just before two updates removed that version retries this often.
_OPEN_ATTEMPTS = 3


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest and the absolute path of each file.

    ``home`` and ``version`` are set when the bundle was opened through a
    bundle home (edgerec.bundle.home): the home directory and the version's name.
    """

    root: Path
    manifest: Manifest
    home: Path | None = None
    version: str | None = None

    def path(self, role: str) -> Path:
        return self.root / self.manifest.files[role].path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def open_bundle(root: str | os.PathLike[str], *, follow_home: bool = True, model_ok: bool = False) -> Bundle:
    """Read the manifest of ``root`` and verify every file it lists.

    ``root`` may also be a bundle home: then the version its ``current``
    pointer names is opened (``follow_home=False`` refuses homes).
    A model (an encoder with no items, see Manifest) is refused unless ``model_ok``:
    it can encode and build bundles, not answer queries.
    """
    root = Path(root)
    if not root.exists():
        raise BundleError(f"{root}: no such bundle directory; pass --bundle DIR or set EDGEREC_BUNDLE")
    if not root.is_dir():
        raise BundleError(f"{root}: not a directory; a bundle is a directory with a manifest.json")
    root = root.resolve()
    manifest_path = root / MANIFEST_NAME
    if follow_home and not os.path.lexists(manifest_path) and is_home(root):
        return open_current(root)
    home = home_of_version(root)  # links to its other versions are allowed, nothing else
    _check_plain_file(manifest_path, MANIFEST_NAME, missing_hint="this directory is not an edgerec bundle", home=home)
    if manifest_path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise ManifestError(f"{manifest_path}: larger than {_MAX_MANIFEST_BYTES} bytes; not a manifest")
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{manifest_path}: not UTF-8 text; rebuild the bundle") from None
    manifest = Manifest.from_json(text)
    if manifest.is_model and not model_ok:
        raise BundleError(f"{root}: a model with no items; it answers no queries. Build a bundle from it: "
                          f"edgerec build CATALOG --out DIR --bundle {root}")
    for role, entry in manifest.files.items():
        _verify_file(root, role, entry, home)
    return Bundle(root=root, manifest=manifest)


def _check_plain_file(path: Path, label: str, missing_hint: str, home: Path | None = None) -> os.stat_result:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: missing ({missing_hint})") from None
    if stat.S_ISLNK(info.st_mode):
        raise IntegrityError(f"{path}: {label} is a symbolic link; bundles hold only regular files")
    if not stat.S_ISREG(info.st_mode):
        raise IntegrityError(f"{path}: {label} is not a regular file")
    if info.st_nlink > 1 and not (home is not None and links_stay_in_home(path, home)):
        # A hard link can point at a file outside the bundle that changes under us.
        where = "outside its bundle home" if home is not None else "and this is not a version of a bundle home"
        raise IntegrityError(f"{path}: {label} has {info.st_nlink} hard links, {where}; "
                             "copy the bundle instead of linking it")
    return info


def _verify_file(root: Path, role: str, entry: FileEntry, home: Path | None) -> None:
    path = root / entry.path
    # lstat first: a symlink (even a loop) is refused before anything follows it.
    info = _check_plain_file(path, f"{role} file", missing_hint="the bundle is incomplete; rebuild or re-copy it",
                             home=home)
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


def open_current(home: str | os.PathLike[str]) -> Bundle:
    """Verify and open the version that the home's pointer names."""
    home = Path(home).resolve()
    for attempt in range(_OPEN_ATTEMPTS):
        pointer = read_pointer(home)
        try:
            return _open_version(home, pointer.current)
        except BundleError:
            # A writer may have switched and removed this version since we read the pointer.
            if attempt + 1 == _OPEN_ATTEMPTS or read_pointer(home) == pointer:
                raise
    raise AssertionError("unreachable")


def _open_version(home: Path, name: str) -> Bundle:
    path = home / name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: the version named by {home / POINTER_NAME} is missing; "
                          "restore it or point `current` at another version") from None
    if not stat.S_ISDIR(info.st_mode):
        raise BundleError(f"{path}: a version must be a directory inside the home, not a link or a file")
    return replace(open_bundle(path, follow_home=False), home=home, version=name)
