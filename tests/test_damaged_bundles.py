"""Damaged bundles: refused with a typed error naming the file, never a crash, never wrong answers.

Every damage case is made from a copy of the tiny bundle and loaded in a
child process (tests/bundle_damage.py), because a damaged hnswlib or ONNX
file can kill the process that reads it. A case passes when its child exits
normally and either raises the expected BundleError subclass with a message
naming the damaged file, or, where the case allows it, answers the golden
query exactly as the intact bundle does.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from bundle_damage import (
    BUNDLE_FILES,
    COUNT_AT,
    ENTRY_POINT_AT,
    HEADER,
    MAX_ELEMENTS_AT,
    MAX_LEVEL_AT,
    Outcome,
    change_bytes,
    copy_bundle,
    load_in_children,
    read_manifest,
    rehash,
    tree_digest,
    write_manifest,
)
from edgerec.errors import BundleError, IntegrityError, ManifestError

ALL_FILES = (*BUNDLE_FILES, "manifest.json")
HTML_404 = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n"
LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")


@dataclass(frozen=True)
class Sources:
    """What damage functions may draw on besides the bundle being damaged."""

    other: Path  # another bundle of the same catalogue, encoded with the fp32 graph


@dataclass(frozen=True)
class Expect:
    """errors: acceptable error types; names: the message must contain one of them;
    may_load: the bundle may also load, but then must answer exactly like the intact one."""

    errors: tuple[type[BundleError], ...] = (BundleError,)
    names: tuple[str, ...] = ALL_FILES
    may_load: bool = False


Damage = Callable[[Path, Sources], None]


@dataclass(frozen=True)
class Case:
    name: str
    damage: Damage
    expect: Expect


# -- damage of one file's bytes (hashes left as they were: the sha256 check must catch all) ---------

def _missing(name: str) -> Damage:
    return lambda root, _: (root / name).unlink()


def _truncate(name: str, keep: Callable[[int], int]) -> Damage:
    return lambda root, _: change_bytes(root / name, lambda data: data.__delitem__(slice(keep(len(data)), None)))


def _append(name: str, byte: bytes) -> Damage:
    return lambda root, _: change_bytes(root / name, lambda data: data.extend(byte))


def _header_size(name: str, size: int) -> int:
    return min(HEADER.size if name == "index.hnsw" else 64, size // 2)


def _flip(name: str, seed: int, region: str) -> Damage:
    def damage(root: Path, _: Sources) -> None:
        def flip(data: bytearray) -> None:
            rng = np.random.default_rng(seed)
            head = _header_size(name, len(data))
            position = int(rng.integers(0, head) if region == "header" else rng.integers(head, len(data)))
            data[position] ^= 1 << int(rng.integers(0, 8))
        change_bytes(root / name, flip)
    return damage


def _replace(name: str, data: bytes) -> Damage:
    return lambda root, _: (root / name).write_bytes(data)


def _swap(name: str) -> Damage:
    return lambda root, sources: shutil.copyfile(sources.other / name, root / name)


def byte_damage_cases() -> list[Case]:
    cases = []
    for name in ALL_FILES:
        stem = name.split(".")[0]
        if name == "manifest.json":
            # The manifest has no hash of its own: a flipped bit either breaks it (ManifestError), changes
            # a file's recorded size or hash (IntegrityError), or changes nothing the answers depend on.
            content = Expect(errors=(ManifestError,), names=("manifest.json",))
            flipped = Expect(names=ALL_FILES, may_load=True)
            missing = Expect(errors=(BundleError,), names=("manifest.json",))
            swapped = Expect(errors=(IntegrityError,), names=BUNDLE_FILES)
        else:
            content = Expect(errors=(IntegrityError,), names=(name,))
            flipped = swapped = content
            missing = Expect(errors=(BundleError,), names=(name,))
        cases += [
            Case(f"{stem}-missing", _missing(name), missing),
            Case(f"{stem}-empty", _truncate(name, lambda n: 0), content),
            Case(f"{stem}-half", _truncate(name, lambda n: n // 2), content),
            Case(f"{stem}-minus-one-byte", _truncate(name, lambda n: n - 1), content),
            Case(f"{stem}-plus-one-byte", _append(name, b"x"), content),
            Case(f"{stem}-html-page", _replace(name, HTML_404), content),
            Case(f"{stem}-lfs-pointer", _replace(name, LFS_POINTER), content),
            Case(f"{stem}-from-other-bundle", _swap(name), swapped),
        ]
        for region in ("header", "body"):
            cases += [Case(f"{stem}-bit-flip-{region}-{seed}", _flip(name, seed, region), flipped)
                      for seed in range(3)]
    return cases


# -- manifest lies --------------------------------------------------------------------------------

def _edit(change: Callable[[dict], None]) -> Damage:
    def damage(root: Path, _: Sources) -> None:
        body = read_manifest(root)
        change(body)
        write_manifest(root, body)
    return damage


def _set(dotted: str, value: object) -> Callable[[dict], None]:
    def change(body: dict) -> None:
        *parents, last = dotted.split(".")
        for key in parents:
            body = body[key]
        if value is _DELETE:
            del body[last]
        else:
            body[last] = value
    return change


_DELETE = object()
MANIFEST = Expect(errors=(ManifestError,), names=("manifest.json",))


def _both(*changes: Callable[[dict], None]) -> Callable[[dict], None]:
    def change(body: dict) -> None:
        for one in changes:
            one(body)
    return change


def manifest_lie_cases() -> list[Case]:
    return [
        Case("lie-size", _edit(lambda b: b["files"]["index"].__setitem__("size", b["files"]["index"]["size"] + 4)),
             Expect(errors=(IntegrityError,), names=("index.hnsw",))),
        Case("lie-sha256", _edit(_set("files.items.sha256", "0" * 64)),
             Expect(errors=(IntegrityError,), names=("items.jsonl",))),
        Case("lie-dim-both", _edit(_both(_set("encoder.dim", 16), _set("index.dim", 16))),
             Expect(names=("index.hnsw", "encoder.onnx"))),
        Case("lie-dim-encoder-only", _edit(_set("encoder.dim", 16)), MANIFEST),
        Case("lie-count-both", _edit(_both(_set("items.count", 119), _set("index.count", 119))),
             Expect(names=("items.jsonl", "index.hnsw"))),
        Case("lie-count-index-only", _edit(_set("index.count", 121)), MANIFEST),
        Case("lie-m", _edit(_set("index.m", 8)), Expect(names=("index.hnsw",))),
        Case("lie-vocab-smaller-than-tokenizer", _edit(_set("encoder.vocab_size", 100)),
             Expect(names=("tokenizer.json",))),
        Case("lie-graph-inputs", _edit(_set("encoder.inputs", ["input_ids"])), Expect(names=("encoder.onnx",))),
        Case("lie-graph-output", _edit(_set("encoder.output", "pooler_output")), Expect(names=("encoder.onnx",))),
        Case("schema-version-2", _edit(_set("schema_version", 2)), MANIFEST),
        Case("schema-version-string", _edit(_set("schema_version", "1")), MANIFEST),
        Case("schema-version-missing", _edit(_set("schema_version", _DELETE)), MANIFEST),
        Case("format-other", _edit(_set("format", "other-bundle")), MANIFEST),
        Case("field-missing-encoder", _edit(_set("encoder", _DELETE)), MANIFEST),
        Case("field-missing-index-file", _edit(_set("files.index", _DELETE)), MANIFEST),
        Case("field-unknown-top", _edit(_set("colour", "blue")), MANIFEST),
        Case("field-unknown-index", _edit(_set("index.colour", "blue")), MANIFEST),
        Case("manifest-invalid-json", _replace("manifest.json", b'{"format": "edgerec-bundle",'), MANIFEST),
        Case("manifest-not-utf8", _replace("manifest.json", b'{"name": "\xff\xfe"}'), MANIFEST),
        Case("manifest-deeply-nested", _replace("manifest.json", b"[" * 100_000 + b"]" * 100_000), MANIFEST),
        Case("manifest-huge-integer", _edit(_set("index.count", "COUNT")), MANIFEST),
    ]


def _huge_integer(root: Path, _: Sources) -> None:
    text = (root / "manifest.json").read_text().replace('"COUNT"', "9" * 5000)
    (root / "manifest.json").write_text(text)


# -- paths that escape or are not plain files ------------------------------------------------------

def _path(role: str, path: str, place: Callable[[Path], None] | None = None) -> Damage:
    def damage(root: Path, _: Sources) -> None:
        if place is not None:
            place(root)
        _edit(_set(f"files.{role}.path", path))(root, _)
    return damage


def _outside_copy(root: Path) -> None:
    shutil.copyfile(root / "items.jsonl", root.parent / f"{root.name}-items.jsonl")


def _symlink_file(root: Path, _: Sources) -> None:
    outside = root.parent / f"{root.name}-encoder.onnx"
    shutil.copyfile(root / "encoder.onnx", outside)
    (root / "encoder.onnx").unlink()
    os.symlink(outside, root / "encoder.onnx")


def _symlink_parent(root: Path) -> None:
    outside = root.parent / f"{root.name}-dir"
    outside.mkdir()
    shutil.copyfile(root / "items.jsonl", outside / "items.jsonl")
    os.symlink(outside, root / "sub")


def _hard_link(root: Path, _: Sources) -> None:
    os.link(root / "index.hnsw", root.parent / f"{root.name}-index.hnsw")


def _manifest_symlink(root: Path, _: Sources) -> None:
    outside = root.parent / f"{root.name}-manifest.json"
    (root / "manifest.json").rename(outside)
    os.symlink(outside, root / "manifest.json")


def _directory_instead(name: str) -> Damage:
    def damage(root: Path, _: Sources) -> None:
        (root / name).unlink()
        (root / name).mkdir()
    return damage


def _fifo_instead(name: str) -> Damage:
    # Opening a FIFO blocks forever: the check must look before it opens.
    def damage(root: Path, _: Sources) -> None:
        (root / name).unlink()
        os.mkfifo(root / name)
    return damage


def _root_symlink(root: Path, _: Sources) -> None:
    # The bundle directory itself reached through a symlink: the user's choice of path, accepted.
    real = root.parent / f"{root.name}-real"
    root.rename(real)
    os.symlink(real, root)


def _extra_file(root: Path, _: Sources) -> None:
    (root / "unlisted.onnx").write_bytes(b"not listed in the manifest, so never read")


def path_cases() -> list[Case]:
    return [
        Case("path-dotdot", _path("items", "../items.jsonl", _outside_copy), MANIFEST),
        Case("path-absolute", _path("items", "/etc/passwd"), MANIFEST),
        Case("path-nul", _path("items", "items.jsonl\x00"), MANIFEST),
        Case("path-backslash", _path("items", "..\\items.jsonl"), MANIFEST),
        Case("path-symlink-parent", _path("items", "sub/items.jsonl", _symlink_parent), MANIFEST),
        Case("path-two-roles-one-file", _path("items", "index.hnsw"), MANIFEST),
        Case("symlink-file", _symlink_file, Expect(errors=(IntegrityError,), names=("encoder.onnx",))),
        Case("symlink-manifest", _manifest_symlink, Expect(errors=(IntegrityError,), names=("manifest.json",))),
        Case("hard-link", _hard_link, Expect(errors=(IntegrityError,), names=("index.hnsw",))),
        Case("directory-instead-of-file", _directory_instead("items.jsonl"),
             Expect(errors=(IntegrityError,), names=("items.jsonl",))),
        Case("fifo-instead-of-file", _fifo_instead("tokenizer.json"),
             Expect(errors=(IntegrityError,), names=("tokenizer.json",))),
        Case("root-is-a-symlink", _root_symlink, Expect(errors=(), may_load=True)),
        Case("unlisted-extra-file", _extra_file, Expect(errors=(), may_load=True)),
    ]


# -- the tokenizer does not fit the model (hashes recomputed: only the load-time check can tell) -------

def _bigger_tokenizer(lie_in_manifest: bool) -> Damage:
    def damage(root: Path, _: Sources) -> None:
        body = json.loads((root / "tokenizer.json").read_text())
        vocab = body["model"]["vocab"]
        for extra in range(100):
            vocab[f"zzextra{extra}"] = len(vocab)
        (root / "tokenizer.json").write_text(json.dumps(body))
        if lie_in_manifest:
            _edit(_set("encoder.vocab_size", len(vocab)))(root, _)
        rehash(root)
    return damage


def tokenizer_cases() -> list[Case]:
    return [
        Case("tokenizer-bigger-than-model", _bigger_tokenizer(False), Expect(names=("tokenizer.json",))),
        Case("tokenizer-bigger-than-model-manifest-lies", _bigger_tokenizer(True),
             Expect(names=("tokenizer.json",))),
    ]


# -- structurally damaged files with hashes recomputed: the validators and wrappers must catch them --

def _rehashed(damage: Damage) -> Damage:
    def apply(root: Path, sources: Sources) -> None:
        damage(root, sources)
        rehash(root)
    return apply


@dataclass(frozen=True)
class _IndexLayout:
    count: int
    per_element: int
    max_m0: int
    max_m: int
    levels: list[int]
    upper_starts: dict[int, int]  # item -> byte offset of its upper link lists

    @classmethod
    def read(cls, data: bytes) -> "_IndexLayout":
        fields = HEADER.unpack_from(data)
        count, per_element, max_m, max_m0 = fields[2], fields[3], fields[8], fields[9]
        position = HEADER.size + count * per_element
        levels, starts = [], {}
        for item in range(count):
            (size,) = struct.unpack_from("<I", data, position)
            position += 4
            levels.append(size // (4 + 4 * max_m))
            if size:
                starts[item] = position
            position += size
        return cls(count, per_element, max_m0, max_m, levels, starts)

    def level0(self, item: int) -> int:
        return HEADER.size + item * self.per_element


def _index_edit(change: Callable[[bytearray, _IndexLayout], None]) -> Damage:
    def damage(root: Path, _: Sources) -> None:
        change_bytes(root / "index.hnsw", lambda data: change(data, _IndexLayout.read(bytes(data))))
        rehash(root)
    return damage


def _put(fmt: str, offset: Callable[[_IndexLayout], int], value: Callable[[_IndexLayout], int | float]):
    return lambda data, layout: struct.pack_into(fmt, data, offset(layout), value(layout))


def _foreign_index(dim: int, count: int, m: int) -> Damage:
    def damage(root: Path, _: Sources) -> None:
        from edgerec.index import ItemIndex

        rng = np.random.default_rng(dim + count + m)
        rows = rng.normal(size=(count, dim)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        ItemIndex.build(rows, m=m, ef_construction=200, threads=1).save(root / "index.hnsw")
        rehash(root)
    return damage


def _nan_vector(data: bytearray, layout: _IndexLayout) -> None:
    offset_data = 4 + 4 * layout.max_m0
    struct.pack_into("<f", data, layout.level0(3) + offset_data, float("nan"))


def _level1_link_to_level0_item(data: bytearray, layout: _IndexLayout) -> None:
    ground = layout.levels.index(0)
    item = next(iter(layout.upper_starts))
    struct.pack_into("<II", data, layout.upper_starts[item], 1, ground)


def index_structure_cases() -> list[Case]:
    index = Expect(names=("index.hnsw",))
    return [
        Case("index-max-elements-below-count",
             _index_edit(_put("<Q", lambda l: MAX_ELEMENTS_AT, lambda l: l.count - 1)), index),
        Case("index-entry-point-out-of-range",
             _index_edit(_put("<I", lambda l: ENTRY_POINT_AT, lambda l: l.count + 7)), index),
        Case("index-entry-point-on-lower-level",
             _index_edit(_put("<I", lambda l: ENTRY_POINT_AT, lambda l: l.levels.index(0))), index),
        Case("index-max-level-negative", _index_edit(_put("<i", lambda l: MAX_LEVEL_AT, lambda l: -1)), index),
        Case("index-max-level-huge", _index_edit(_put("<i", lambda l: MAX_LEVEL_AT, lambda l: 1 << 30)), index),
        Case("index-count-huge", _index_edit(_put("<Q", lambda l: COUNT_AT, lambda l: 1 << 40)), index),
        Case("index-neighbour-out-of-range", _index_edit(_put("<I", lambda l: l.level0(5) + 4, lambda l: 10_000)),
             index),
        Case("index-neighbour-count-too-big",
             _index_edit(_put("<I", lambda l: l.level0(5), lambda l: l.max_m0 + 1)), index),
        Case("index-deletion-mark", _index_edit(lambda data, l: data.__setitem__(l.level0(5) + 2, 1)), index),
        Case("index-link-list-size-odd",
             _index_edit(_put("<I", lambda l: next(iter(l.upper_starts.values())) - 4, lambda l: 7)), index),
        Case("index-upper-link-to-lower-item", _index_edit(_level1_link_to_level0_item), index),
        Case("index-duplicate-label",
             _index_edit(_put("<Q", lambda l: l.level0(1) + l.per_element - 8, lambda l: 0)), index),
        Case("index-nan-vector", _index_edit(_nan_vector), index),
        Case("index-trailing-bytes", _rehashed(_append("index.hnsw", b"\0" * 8)), index),
        Case("index-wrong-dim", _foreign_index(dim=16, count=120, m=16), index),
        Case("index-wrong-count", _foreign_index(dim=32, count=119, m=16), index),
        Case("index-wrong-m", _foreign_index(dim=32, count=120, m=8), index),
    ]


def _items_line(line: bytes) -> Damage:
    def damage(root: Path, _: Sources) -> None:
        lines = (root / "items.jsonl").read_bytes().splitlines(keepends=True)
        lines[7] = line
        (root / "items.jsonl").write_bytes(b"".join(lines))
        rehash(root)
    return damage


def _external_data(root: Path, _: Sources) -> None:
    """The same encoder with its weights moved to a file beside it (hard-linked, as an attack would)."""
    import onnx

    model = onnx.load(str(root / "encoder.onnx"))
    onnx.save(model, str(root / "encoder.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    os.link(root / "weights.bin", root.parent / f"{root.name}-weights-elsewhere.bin")


def rehashed_content_cases() -> list[Case]:
    cases = []
    for name in ("encoder.onnx", "tokenizer.json", "index.hnsw", "items.jsonl"):
        stem = name.split(".")[0]
        expect = Expect(names=(name,))
        cases += [
            Case(f"rehashed-{stem}-empty", _rehashed(_truncate(name, lambda n: 0)), expect),
            Case(f"rehashed-{stem}-half", _rehashed(_truncate(name, lambda n: n // 2)), expect),
            Case(f"rehashed-{stem}-html-page", _rehashed(_replace(name, HTML_404)), expect),
            Case(f"rehashed-{stem}-lfs-pointer", _rehashed(_replace(name, LFS_POINTER)), expect),
        ]
    items = Expect(names=("items.jsonl",))
    return cases + [
        Case("rehashed-encoder-external-data", _rehashed(_external_data), Expect(names=("encoder.onnx",))),
        Case("rehashed-tokenizer-model-null", _rehashed(_replace("tokenizer.json", b'{"model": null}')),
             Expect(names=("tokenizer.json",))),
        Case("rehashed-items-not-utf8", _items_line(b'{"id": "item-007", "title": "\xff"}\n'), items),
        Case("rehashed-items-not-json", _items_line(b"{\n"), items),
        Case("rehashed-items-not-object", _items_line(b"[1, 2]\n"), items),
        Case("rehashed-items-no-id", _items_line(b'{"title": "x"}\n'), items),
        Case("rehashed-items-duplicate-id", _items_line(b'{"id": "item-000"}\n'), items),
        Case("rehashed-items-huge-integer", _items_line(b'{"id": "item-007", "n": ' + b"9" * 5000 + b"}\n"), items),
        Case("rehashed-items-deep-nesting", _items_line(b'{"id": "item-007", "n": ' + b"[" * 50_000
                                                        + b"]" * 50_000 + b"}\n"), items),
        Case("rehashed-items-line-dropped", _rehashed(lambda root, _: change_bytes(
            root / "items.jsonl", lambda data: data.__delitem__(slice(data.rindex(b"\n", 0, len(data) - 1) + 1, None)))),
            items),
    ]


def all_cases() -> list[Case]:
    cases = [*byte_damage_cases(), *manifest_lie_cases(), *path_cases(), *tokenizer_cases(),
             *index_structure_cases(), *rehashed_content_cases()]
    # One case needs text the JSON writer cannot produce: patched after writing.
    return [Case(c.name, _then(c.damage, _huge_integer), c.expect) if c.name == "manifest-huge-integer" else c
            for c in cases]


def _then(first: Damage, second: Damage) -> Damage:
    def damage(root: Path, sources: Sources) -> None:
        first(root, sources)
        second(root, sources)
    return damage


CASES = all_cases()


@dataclass(frozen=True)
class Loaded:
    golden: Outcome
    outcomes: dict[str, Outcome]
    unchanged: set[str]  # cases whose damage left every byte as it was (e.g. swapping in an identical file)


@pytest.fixture(scope="module")
def loaded(tiny_bundle: Path, tiny_fp32_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    work = tmp_path_factory.mktemp("damaged")
    sources = Sources(other=tiny_fp32_bundle)
    intact = copy_bundle(tiny_bundle, work / "intact")
    pristine = tree_digest(intact)
    dirs, unchanged = {}, set()
    for case in CASES:
        root = copy_bundle(tiny_bundle, work / case.name)
        case.damage(root, sources)
        dirs[case.name] = root
        if root.is_dir() and not root.is_symlink() and tree_digest(root) == pristine:
            unchanged.add(case.name)
    results = load_in_children([intact, *dirs.values()])
    return Loaded(golden=results[str(intact)], outcomes={name: results[str(d)] for name, d in dirs.items()},
                  unchanged=unchanged)


def test_the_intact_copy_answers(loaded: Loaded) -> None:
    assert loaded.golden.kind == "ok" and len(loaded.golden.ids) == 5, loaded.golden.describe()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_damaged_bundle(loaded: Loaded, case: Case) -> None:
    outcome = loaded.outcomes[case.name]
    assert outcome.kind in ("ok", "error"), outcome.describe()  # never a crash or an untyped exception
    if outcome.kind == "ok":
        assert case.expect.may_load or case.name in loaded.unchanged, f"loaded a damaged bundle: {outcome.describe()}"
        assert outcome.ids == loaded.golden.ids, "a damaged bundle that loads must answer exactly as the intact one"
        return
    assert case.name not in loaded.unchanged, f"refused a bundle whose bytes are intact: {outcome.describe()}"
    assert case.expect.errors, f"expected to load: {outcome.describe()}"
    assert any(error.__name__ in outcome.bases for error in case.expect.errors), outcome.describe()
    assert any(name in outcome.message for name in case.expect.names), f"message names no file: {outcome.message}"
    assert "\n" not in outcome.message, "errors are one line"


def test_the_table_covers_every_file_and_class() -> None:
    names = {c.name for c in CASES}
    for stem in ("encoder", "tokenizer", "index", "items", "manifest"):
        for damage in ("missing", "empty", "half", "minus-one-byte", "plus-one-byte", "html-page", "lfs-pointer",
                       "from-other-bundle", "bit-flip-header-0", "bit-flip-body-0"):
            assert f"{stem}-{damage}" in names
    assert len(CASES) == len(names), "case names must be unique"
