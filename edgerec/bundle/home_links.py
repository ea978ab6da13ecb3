"""Hard links between the versions of one bundle home, and the one case where the reader accepts them.

Why links: an update writes a whole new version, and most of its bytes (the
12 MB encoder, the tokenizer, the description model, the notice) are the
previous version's, unchanged. The writer (edgerec.bundle.writer) hard-links
such a file to the previous version's instead of copying it, where the file
system allows (another file system, or one without links, gets a copy).

Why the reader refuses links elsewhere: a hard link can be a second name for
a file outside the bundle, which someone else can change after it was
checked; a plain bundle never needs one (``cp -r``, tar and zip make copies).

The rule: a file with ``st_nlink > 1`` is accepted only in a version
directory of a bundle home (``HOME/v000003``, HOME holding a ``current``
pointer), and only when every one of its links is a file in a directory
directly inside that home: its versions, and a writer's staging directory
while an update runs. Counting them is cheap (a home keeps two or three
versions of a few files). A file that is also linked from anywhere else
(another home, a user's directory) is refused as before. The sha256 in the
manifest is checked whatever the link count, so a link never changes what
is loaded; the rule only limits who else can write to the file.

A writer adds and removes links while readers open versions (staging a
version, tidying an old one), so a count that comes up short is taken again
a few times before the file is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .home import VERSION_NAME, is_home

_COUNT_ATTEMPTS = 3


def home_of_version(root: Path) -> Path | None:
    """The bundle home that ``root`` (a resolved directory) is a version of, or None for a plain bundle."""
    if VERSION_NAME.match(root.name) and is_home(root.parent):
        return root.parent
    return None


def links_stay_in_home(path: Path, home: Path) -> bool:
    """Whether every hard link of the file at ``path`` is a file in a directory directly inside ``home``."""
    try:
        for _ in range(_COUNT_ATTEMPTS):
            before = os.lstat(path)
            inside = _links_inside(home, (before.st_dev, before.st_ino))
            if inside >= os.lstat(path).st_nlink:
                return True
    except FileNotFoundError:
        pass  # the version was tidied away meanwhile: refused, and open_current reads the new pointer
    return False


def _links_inside(home: Path, file_id: tuple[int, int]) -> int:
    found = 0
    with os.scandir(home) as entries:
        folders = [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) == file_id:
                        found += 1
        except (FileNotFoundError, NotADirectoryError):
            continue  # a writer removed or renamed it meanwhile; the next attempt sees the new state
    return found
