"""Fuzzing bundle loading (RELIABILITY F3/F4): one byte range of one file mutated, loaded in a child.

With the manifest's hashes as they were, any change to a hashed file must be
refused with a typed BundleError naming it; only an unchanged file may load.
With hashes recomputed (``rehash``), only the structural validators and the
wrappers around ONNX Runtime, tokenizers and hnswlib stand between the bytes
and native code: the bundle may load (a changed weight or title is still a
valid bundle), or fail with a typed error naming the file, but never kill the
process. A third of the mutations hit the hnswlib header with hashes
recomputed, so the header validator meets arbitrary field values (F4).
Children are slow (~0.5 s), so each example is a batch of mutated bundles
loaded by two children.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bundle_damage import BUNDLE_FILES, HEADER, copy_bundle, load_in_children, rehash, tree_digest
from edgerec.errors import ManifestError
from edgerec.bundle.manifest import Manifest

ALL_FILES = (*BUNDLE_FILES, "manifest.json")
BATCH = 16


@dataclass(frozen=True)
class Mutation:
    file: str
    kind: str  # overwrite | flip | truncate | insert | delete
    at: float  # where, as a fraction of the region
    header_only: bool  # region: the first bytes (hnswlib's header for the index) or the whole file
    data: bytes
    rehash: bool

    def apply(self, root: Path) -> None:
        path = root / self.file
        content = bytearray(path.read_bytes())
        end = min(len(content), HEADER.size if self.header_only else len(content))
        position = min(int(self.at * end), max(len(content) - 1, 0))
        if self.kind == "overwrite":
            content[position : position + len(self.data)] = self.data
            del content[len(path.read_bytes()):]  # keep the size: only the hash or the validators can tell
        elif self.kind == "flip" and content:
            content[position] ^= 1 << (self.data[0] % 8)
        elif self.kind == "truncate":
            del content[position:]
        elif self.kind == "insert":
            content[position:position] = self.data
        elif self.kind == "delete":
            del content[position : position + len(self.data)]
        path.write_bytes(bytes(content))
        if self.rehash:
            rehash(root)


def mutations() -> st.SearchStrategy[Mutation]:
    anywhere = st.builds(
        Mutation,
        file=st.sampled_from(ALL_FILES),
        kind=st.sampled_from(["overwrite", "flip", "truncate", "insert", "delete"]),
        at=st.floats(0, 1),
        header_only=st.booleans(),
        data=st.binary(min_size=1, max_size=16),
        rehash=st.booleans(),
    ).map(lambda m: m if m.file != "manifest.json" else Mutation(**{**m.__dict__, "rehash": False}))
    index_header = st.builds(Mutation, file=st.just("index.hnsw"), kind=st.sampled_from(["overwrite", "flip"]),
                             at=st.floats(0, 1), header_only=st.just(True), data=st.binary(min_size=1, max_size=8),
                             rehash=st.just(True))
    return st.one_of(anywhere, anywhere, index_header)


@pytest.fixture(scope="module")
def fuzz_work(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("fuzz")
    return tiny_bundle, work


@settings(max_examples=3, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(mutations(), min_size=BATCH, max_size=BATCH))
def test_a_mutated_bundle_is_refused_typed_or_loads_only_if_it_may(fuzz_work: tuple[Path, Path],
                                                                  batch: list[Mutation]) -> None:
    source, work = fuzz_work
    example = Path(tempfile.mkdtemp(dir=work))
    try:
        intact = copy_bundle(source, example / "intact")
        pristine = tree_digest(intact)
        roots = []
        for number, mutation in enumerate(batch):
            root = copy_bundle(source, example / f"m{number}")
            mutation.apply(root)
            roots.append(root)
        results = load_in_children([intact, *roots])
        golden = results[str(intact)]
        assert golden.kind == "ok", golden.describe()
        for mutation, root in zip(batch, roots):
            outcome = results[str(root)]
            where = f"{mutation}: {outcome.describe()}"
            assert outcome.kind in ("ok", "error"), f"never a crash or an untyped exception: {where}"
            unchanged = tree_digest(root) == pristine
            if outcome.kind == "error":
                assert "BundleError" in outcome.bases, where
                assert not unchanged, f"refused an intact bundle: {where}"
                names = ALL_FILES if mutation.file == "manifest.json" else (mutation.file,)
                assert any(name in outcome.message for name in names), f"the message names no file: {where}"
            elif mutation.rehash:
                pass  # valid structure with other values: loading is allowed, crashing is not
            elif mutation.file == "manifest.json":
                assert outcome.ids == golden.ids, f"a changed manifest that loads must change no answer: {where}"
            else:
                assert unchanged, f"a changed file passed its sha256 check: {where}"
    finally:
        shutil.rmtree(example, ignore_errors=True)


# -- F2: the manifest parser on arbitrary text and on valid manifests with one value replaced ----------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _leaf_paths(value: object, prefix: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [prefix] + [p for key, inner in value.items() for p in _leaf_paths(inner, (*prefix, key))]
    if isinstance(value, list):
        return [prefix] + [p for i, inner in enumerate(value) for p in _leaf_paths(inner, (*prefix, i))]
    return [prefix]


@pytest.fixture(scope="module")
def manifest_body(tiny_bundle: Path) -> dict:
    return json.loads((tiny_bundle / "manifest.json").read_text())


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_the_manifest_parser_gives_a_manifest_or_a_manifest_error(manifest_body: dict, data: st.DataObject) -> None:
    body = copy.deepcopy(manifest_body)
    paths = _leaf_paths(body)
    path = data.draw(st.sampled_from(paths[1:]), label="where")
    replacement = data.draw(JSON_VALUES, label="value")
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    text = data.draw(st.one_of(st.just(json.dumps(body)), st.text(max_size=200)), label="text")
    try:
        manifest = Manifest.from_json(text)
    except ManifestError as exc:
        assert str(exc).startswith("manifest.json") and "\n" not in str(exc)
        return
    for entry in manifest.files.values():  # whatever parses names only plain files inside the bundle
        assert "/" not in entry.path and "\\" not in entry.path and "\x00" not in entry.path
        assert entry.path not in ("", ".", "..", "manifest.json")
