"""The bundle-home pointer: which version of a home readers open.

A home is a directory of complete bundle versions (``v000001``, ...) and a
small JSON file ``current`` naming the one to serve. This module is the
pointer's format, shared by the reader (edgerec.bundle.reader follows it) and
the writer side (edgerec.update.store replaces it atomically).
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import BundleError, ManifestError
from .manifest import MANIFEST_NAME

POINTER_NAME = "current"
HOME_FORMAT = "edgerec-home"
VERSION_NAME = re.compile(r"^v(\d{6,})$")
_MAX_POINTER_BYTES = 4096


@dataclass(frozen=True)
class Pointer:
    current: str
    previous: str | None = None


def is_home(path: str | os.PathLike[str]) -> bool:
    """A directory with a ``current`` pointer and no manifest of its own."""
    root = Path(path)
    return os.path.lexists(root / POINTER_NAME) and not os.path.lexists(root / MANIFEST_NAME)


def read_pointer(home: Path) -> Pointer:
    path = home / POINTER_NAME
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_POINTER_BYTES:
            raise ManifestError(f"{path}: not a small regular file; restore the home's `current` pointer")
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; {home} is not a bundle home") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror})") from None
    except (ValueError, RecursionError):  # also UnicodeDecodeError
        raise ManifestError(f"{path}: not valid JSON; restore the pointer (it names a version directory)") from None
    if not isinstance(raw, dict) or raw.get("format") != HOME_FORMAT:
        raise ManifestError(f"{path}: format must be {HOME_FORMAT!r}")
    current, previous = raw.get("current"), raw.get("previous")
    if not (isinstance(current, str) and VERSION_NAME.match(current)):
        raise ManifestError(f"{path}: current must name a version like 'v000001', got {current!r}")
    if previous is not None and not (isinstance(previous, str) and VERSION_NAME.match(previous)):
        raise ManifestError(f"{path}: previous must name a version like 'v000001', got {previous!r}")
    return Pointer(current, previous)


def version_number(name: str) -> int:
    match = VERSION_NAME.match(name)
    return int(match.group(1)) if match else 0
