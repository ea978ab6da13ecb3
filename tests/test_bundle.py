"""Bundle directories: BundleWriter publishes atomically, open_bundle verifies every byte."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from edgerec.bundle.manifest import FILE_NAMES
from edgerec.bundle.reader import open_bundle
from edgerec.bundle.writer import BundleWriter
from edgerec.errors import BundleError, InputError, IntegrityError, ManifestError
from edgerec.bundle.manifest import EncoderSpec, IndexSpec, ItemsSpec, Manifest

ROLES = ("encoder", "tokenizer", "index", "items")
ENCODER = EncoderSpec(max_length=32, pooling="mean", normalize=True, dim=8,
                      inputs=("input_ids", "attention_mask"), output="last_hidden_state", vocab_size=100)
INDEX = IndexSpec(space="ip", dim=8, m=16, ef_construction=100, ef=32, count=3)
ITEMS = ItemsSpec(count=3, id_field="id", text_fields=("title",), columns=("id", "title"))


def dummy_contents(seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {role: rng.bytes(64 + 16 * i) for i, role in enumerate(ROLES)}


def write_bundle(out: Path, *, name: str = "demo", overwrite: bool = False, seed: int = 0) -> Manifest:
    with BundleWriter(out, overwrite=overwrite) as writer:
        for role, data in dummy_contents(seed).items():
            writer.path_for(role).write_bytes(data)
        return writer.finish(name=name, encoder=ENCODER, index=INDEX, items=ITEMS, provenance={"seed": seed})


def leftovers(parent: Path) -> list[str]:
    """Staging or old-bundle directories a writer should never leave behind."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    write_bundle(out)
    return out


# -- round trip -------------------------------------------------------------

def test_round_trip_returns_verified_paths(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    written = write_bundle(out)
    opened = open_bundle(out)
    assert opened.manifest == written
    assert opened.root == out.resolve()
    assert sorted(os.listdir(out)) == sorted([*(FILE_NAMES[r] for r in ROLES), "manifest.json"])
    for role, data in dummy_contents().items():
        assert opened.path(role) == out.resolve() / FILE_NAMES[role]
        assert opened.path(role).read_bytes() == data
        assert opened.manifest.files[role].size == len(data)
    assert leftovers(tmp_path) == []


def test_optional_notice_is_listed_and_verified(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with BundleWriter(out) as writer:
        for role, data in dummy_contents().items():
            writer.path_for(role).write_bytes(data)
        writer.path_for("notice").write_text("licence text\n")
        writer.finish(name="n", encoder=ENCODER, index=INDEX, items=ITEMS, provenance={})
    opened = open_bundle(out)
    assert opened.path("notice").read_text() == "licence text\n"
    (out / "NOTICE").write_text("licence text!\n")
    with pytest.raises(IntegrityError):
        open_bundle(out)


# -- refusals: where the bundle should be -----------------------------------

def _missing_dir(tmp_path: Path) -> Path:
    return tmp_path / "nowhere"


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "file"
    path.write_text("{}")
    return path


def _no_manifest(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


@pytest.mark.parametrize(
    ("make", "fragment"),
    [(_missing_dir, "no such bundle directory"), (_a_file, "not a directory"), (_no_manifest, "missing")],
    ids=["missing-dir", "path-is-a-file", "no-manifest"],
)
def test_not_a_bundle_is_refused(tmp_path: Path, make: Callable[[Path], Path], fragment: str) -> None:
    with pytest.raises(BundleError, match=fragment):
        open_bundle(make(tmp_path))


# -- refusals: damaged bundle files -----------------------------------------

def truncate(root: Path) -> None:
    path = root / "items.jsonl"
    path.write_bytes(path.read_bytes()[:-1])


def append_byte(root: Path) -> None:
    with open(root / "index.hnsw", "ab") as handle:
        handle.write(b"\0")


def flip_bit(root: Path) -> None:
    path = root / "encoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def delete_file(root: Path) -> None:
    (root / "tokenizer.json").unlink()


def symlink_outside(root: Path) -> None:
    outside = root.parent / "outside.onnx"
    shutil.copyfile(root / "encoder.onnx", outside)
    (root / "encoder.onnx").unlink()
    os.symlink(outside, root / "encoder.onnx")


def symlink_inside(root: Path) -> None:
    shutil.copyfile(root / "encoder.onnx", root / "copy.onnx")
    (root / "encoder.onnx").unlink()
    os.symlink("copy.onnx", root / "encoder.onnx")


def hard_link(root: Path) -> None:
    os.link(root / "items.jsonl", root.parent / "outside.jsonl")


def edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        body = json.loads((root / "manifest.json").read_text())
        del body["checksum"]  # a hand edit: the check under test must be the one that answers
        change(body)
        (root / "manifest.json").write_text(json.dumps(body))
    return apply


def dotdot_path(body: dict) -> None:
    body["files"]["items"]["path"] = "../items.jsonl"


def manifest_symlink(root: Path) -> None:
    (root / "manifest.json").rename(root.parent / "manifest.json")
    os.symlink(root.parent / "manifest.json", root / "manifest.json")


def manifest_not_utf8(root: Path) -> None:
    (root / "manifest.json").write_bytes(b'{"name": "\xff"}')


def manifest_not_json(root: Path) -> None:
    (root / "manifest.json").write_text("{")


DAMAGE = [
    (truncate, IntegrityError, "truncated"),
    (append_byte, IntegrityError, "the manifest says"),
    (flip_bit, IntegrityError, "sha256"),
    (delete_file, BundleError, "missing"),
    (symlink_outside, IntegrityError, "symbolic link"),
    (symlink_inside, IntegrityError, "symbolic link"),
    (hard_link, IntegrityError, "hard links"),
    (edit_manifest(dotdot_path), ManifestError, "file path '../items.jsonl'"),
    (edit_manifest(lambda body: body.pop("index")), ManifestError, "index and items come together"),
    (manifest_symlink, IntegrityError, "symbolic link"),
    (manifest_not_utf8, ManifestError, "not UTF-8"),
    (manifest_not_json, ManifestError, "not valid JSON"),
]


@pytest.mark.parametrize(("damage", "error", "fragment"), DAMAGE,
                         ids=["truncated", "appended-byte", "flipped-bit", "missing-file", "symlink-outside",
                              "symlink-inside", "hard-link", "dotdot-path", "manifest-lacks-index",
                              "manifest-symlink", "manifest-not-utf8", "manifest-not-json"])
def test_damaged_bundle_is_refused(bundle: Path, damage: Callable[[Path], None],
                                   error: type[BundleError], fragment: str) -> None:
    open_bundle(bundle)  # intact before the damage
    damage(bundle)
    with pytest.raises(error, match=fragment) as caught:
        open_bundle(bundle)
    if error is BundleError:
        assert not isinstance(caught.value, (IntegrityError, ManifestError))


def test_flipped_bit_keeps_size(bundle: Path) -> None:
    before = (bundle / "encoder.onnx").stat().st_size
    flip_bit(bundle)
    assert (bundle / "encoder.onnx").stat().st_size == before
    with pytest.raises(IntegrityError, match="sha256"):
        open_bundle(bundle)


def test_symlink_loop_is_an_integrity_error(bundle: Path) -> None:
    (bundle / "items.jsonl").unlink()
    os.symlink("items.jsonl", bundle / "items.jsonl")
    with pytest.raises(IntegrityError):
        open_bundle(bundle)


# -- writer ------------------------------------------------------------------

def test_writer_refuses_existing_out_without_overwrite(bundle: Path) -> None:
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="already exists"):
        BundleWriter(bundle)
    assert (bundle / "manifest.json").read_bytes() == before
    assert leftovers(bundle.parent) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_exception_inside_with_leaves_nothing(tmp_path: Path, error: type[BaseException]) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(error):
        with BundleWriter(out) as writer:
            writer.path_for("encoder").write_bytes(b"half")
            assert writer.staging.is_dir()
            raise error()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_file_written_piece_by_piece_is_hashed_and_checked(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    contents = dummy_contents()
    with BundleWriter(out) as writer:
        for role in ("encoder", "tokenizer", "index"):
            writer.write(role, [contents[role]])
        with writer.open("items") as items_file:
            for start in range(0, len(contents["items"]), 10):
                items_file.write(contents["items"][start : start + 10])
        writer.finish(name="x", encoder=ENCODER, index=INDEX, items=ITEMS, provenance={})
    assert open_bundle(out).path("items").read_bytes() == contents["items"]


def test_an_error_while_a_file_is_open_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError):
        with BundleWriter(out) as writer:
            with writer.open("items") as items_file:
                items_file.write(b"first line\n")
                raise RuntimeError("encoding failed")
    assert list(tmp_path.iterdir()) == []


def test_failed_finish_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(ManifestError, match="files lacks"):
        with BundleWriter(out) as writer:
            writer.path_for("encoder").write_bytes(b"only the encoder")
            writer.finish(name="x", encoder=ENCODER, index=INDEX, items=ITEMS, provenance={})
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_an_existing_bundle(bundle: Path) -> None:
    write_bundle(bundle, name="second", overwrite=True, seed=1)
    opened = open_bundle(bundle)
    assert opened.manifest.name == "second"
    assert opened.path("items").read_bytes() == dummy_contents(1)["items"]
    assert leftovers(bundle.parent) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_writer_refuses_to_replace_a_non_bundle_directory(tmp_path: Path, overwrite: bool) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists" if not overwrite else "not a bundle"):
        BundleWriter(out, overwrite=overwrite)
    assert (out / "holiday.jpg").read_bytes() == b"precious"
    assert leftovers(tmp_path) == []


def test_directory_created_while_writing_is_not_deleted(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(InputError):
        with BundleWriter(out) as writer:
            for role, data in dummy_contents().items():
                writer.path_for(role).write_bytes(data)
            out.mkdir()  # e.g. a second `edgerec build --out bundle`, or the user, during encoding
            (out / "precious.txt").write_text("data")
            writer.finish(name="x", encoder=ENCODER, index=INDEX, items=ITEMS, provenance={})
    assert (out / "precious.txt").read_text() == "data"
