"""Helpers for the damaged-bundle tests: copy and damage bundles, and load them in child processes.

A damaged hnswlib or ONNX file can kill the process that loads it (SIGSEGV,
SIGABRT), which no ``pytest.raises`` can catch. So every load runs in a child
process. One child loads many bundles (a child costs ~0.5 s to start); when a
child dies, the bundles it had not reported on are loaded again one child
each, so the crash is pinned on its bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
QUERY = "space alien robot movie"
TOP_K = 5
BUNDLE_FILES = ("encoder.onnx", "tokenizer.json", "index.hnsw", "items.jsonl")
# hnswlib's 96-byte header: six size_t, int maxlevel, uint enterpoint, size_t maxM, maxM0, M,
# double mult, size_t ef_construction. Offsets of the fields the tests rewrite:
HEADER = struct.Struct("<6QiI3QdQ")
MAX_ELEMENTS_AT, COUNT_AT, MAX_LEVEL_AT, ENTRY_POINT_AT = 8, 16, 48, 52

# Loads each bundle named on stdin (a JSON list) and prints one marked JSON line per bundle
# (marked: ONNX Runtime itself prints to stdout when a damaged model makes it retry).
RESULT_MARK = "EDGEREC-RESULT "
_CHILD = r"""
import json, sys
from edgerec import Recommender
from edgerec.errors import EdgerecError
for path in json.loads(sys.stdin.read()):
    try:
        rec = Recommender.load(path, threads=1)
        result = {"kind": "ok", "ids": [r.item_id for r in rec.query(QUERY, k=TOP_K)]}
    except EdgerecError as exc:
        result = {"kind": "error", "error": type(exc).__name__, "message": str(exc),
                  "bases": [c.__name__ for c in type(exc).__mro__]}
    except BaseException as exc:
        result = {"kind": "untyped", "error": type(exc).__name__, "message": str(exc)[:500]}
    print(MARK + json.dumps({"path": path, **result}), flush=True)
""".replace("QUERY", repr(QUERY)).replace("TOP_K", str(TOP_K)).replace("MARK", repr(RESULT_MARK))


@dataclass(frozen=True)
class Outcome:
    """What loading one bundle in a child did."""

    kind: str  # ok | error (an EdgerecError) | untyped (another exception) | crash (the child died)
    ids: tuple[str, ...] = ()
    error: str = ""
    bases: tuple[str, ...] = ()
    message: str = ""
    returncode: int = 0
    stderr: str = field(default="", repr=False)

    def describe(self) -> str:
        if self.kind == "crash":
            return f"child died with return code {self.returncode}: {self.stderr[-400:]}"
        return f"{self.kind} {self.error}: {self.message}" if self.kind != "ok" else f"ok {list(self.ids)}"


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEREC_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_child(paths: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=child_env(), cwd=REPO)
    assert process.stdin is not None
    process.stdin.write(json.dumps(paths))
    process.stdin.close()
    return process


def _collect(process: subprocess.Popen[str]) -> tuple[dict[str, Outcome], int, str]:
    assert process.stdout is not None and process.stderr is not None
    out, err = process.stdout.read(), process.stderr.read()
    returncode = process.wait(timeout=300)
    found = {}
    for line in out.splitlines():
        if not line.startswith(RESULT_MARK):
            continue
        body = json.loads(line[len(RESULT_MARK):])
        path = body.pop("path")
        found[path] = Outcome(kind=body["kind"], ids=tuple(body.get("ids", ())), error=body.get("error", ""),
                              bases=tuple(body.get("bases", ())), message=body.get("message", ""))
    return found, returncode, err


def load_in_children(paths: list[Path], processes: int = 2) -> dict[str, Outcome]:
    """Load every bundle in child processes; a bundle that kills its child gets a 'crash' outcome."""
    names = [str(p) for p in paths]
    batches = [names[i::processes] for i in range(processes) if names[i::processes]]
    results: dict[str, Outcome] = {}
    unreported: list[str] = []
    for batch, process in [(batch, _run_child(batch)) for batch in batches]:
        found, _, _ = _collect(process)
        results.update(found)
        unreported += [name for name in batch if name not in found]
    for name in unreported:  # one child each, to pin the crash on its bundle
        found, returncode, err = _collect(_run_child([name]))
        results[name] = found.get(name) or Outcome(kind="crash", returncode=returncode, stderr=err)
    return results


# -- damage helpers -----------------------------------------------------------

def copy_bundle(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


def read_manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


def write_manifest(root: Path, body: dict[str, Any]) -> None:
    """Write a hand-edited manifest without its checksum, so the check under test is the one that answers."""
    body = {k: v for k, v in body.items() if k != "checksum"}
    (root / "manifest.json").write_text(json.dumps(body, indent=2), encoding="utf-8")


def rehash(root: Path) -> None:
    """Make the manifest's sizes and hashes match the files again, so only structural checks can object."""
    body = read_manifest(root)
    for entry in body["files"].values():
        path = root / entry["path"]
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    write_manifest(root, body)


def change_bytes(path: Path, change: Callable[[bytearray], None]) -> None:
    data = bytearray(path.read_bytes())
    change(data)
    path.write_bytes(bytes(data))


def tree_digest(root: Path) -> dict[str, str]:
    """What a reader depends on, per file directly in ``root``: equal digests mean an undamaged copy.

    Files: sha256 and link count (a hard link is damage even with intact bytes). The manifest: its
    parsed content, so a dropped trailing newline counts as no change.
    """
    digest = {}
    for path in sorted(root.iterdir()):
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            digest[path.name] = f"not a regular file: {stat.filemode(info.st_mode)}"
            continue
        data = path.read_bytes()
        if path.name == "manifest.json":
            try:
                data = json.dumps(json.loads(data), sort_keys=True).encode()
            except (ValueError, RecursionError):
                pass
        digest[path.name] = f"{hashlib.sha256(data).hexdigest()} links={info.st_nlink}"
    return digest
