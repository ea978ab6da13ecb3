"""manifest.json: one parser, one serialiser, and every refusal names its field."""

from __future__ import annotations

import copy
import json
import re

import pytest

from edgerec.errors import ManifestError
from edgerec.bundle.manifest import EncoderSpec, FileEntry, IndexSpec, ItemsSpec, Manifest, UserSpec

SHA = "0123456789abcdef" * 4
DELETE = object()


def valid_body() -> dict:
    """A manifest body in the exact shape Manifest.to_json writes."""
    return {
        "format": "edgerec-bundle",
        "schema_version": 1,
        "name": "demo",
        "files": {
            "encoder": {"path": "encoder.onnx", "size": 10, "sha256": SHA},
            "index": {"path": "index.hnsw", "size": 20, "sha256": SHA},
            "items": {"path": "items.jsonl", "size": 30, "sha256": SHA},
            "tokenizer": {"path": "tokenizer.json", "size": 40, "sha256": SHA},
        },
        "encoder": {
            "max_length": 128,
            "pooling": "mean",
            "normalize": True,
            "dim": 384,
            "inputs": ["input_ids", "attention_mask"],
            "output": "last_hidden_state",
            "vocab_size": 30522,
        },
        "index": {"space": "ip", "dim": 384, "m": 16, "ef_construction": 200, "ef": 64, "count": 3,
                  "label_map": "items-row"},
        "items": {"count": 3, "id_field": "id", "text_fields": ["title"], "columns": ["id", "title"]},
        "user": {"representation": "mean-of-recent", "window": 10},
        "provenance": {"model": {"name": "tiny"}, "note": "héllo"},
    }


def changed(dotted: str, value: object) -> str:
    """valid_body() as JSON with one field set (or deleted) by its dotted path."""
    body = copy.deepcopy(valid_body())
    *parents, last = dotted.split(".")
    node = body
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return json.dumps(body)


def test_valid_manifest_round_trips() -> None:
    manifest = Manifest.from_json(json.dumps(valid_body()))
    assert manifest.encoder.inputs == ("input_ids", "attention_mask")
    assert manifest.files["index"] == FileEntry(path="index.hnsw", size=20, sha256=SHA)
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest
    written = json.loads(manifest.to_json())
    assert written.pop("checksum").startswith("sha256:")
    assert written == valid_body()


def test_a_manifest_changed_after_writing_is_refused_by_its_checksum() -> None:
    written = json.loads(Manifest.from_json(json.dumps(valid_body())).to_json())
    written["user"]["window"] += 1  # still a valid manifest: only the checksum can tell
    with pytest.raises(ManifestError, match="checksum does not match"):
        Manifest.from_json(json.dumps(written))


def test_every_single_bit_flip_of_a_written_manifest_is_refused() -> None:
    data = bytearray(Manifest.from_json(json.dumps(valid_body())).to_json().encode("utf-8"))
    survivors = []
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            try:
                text = flipped.decode("utf-8")
                loaded = Manifest.from_json(text)
            except (UnicodeDecodeError, ManifestError):
                continue
            survivors.append((position, bit, loaded))
    # Only flips JSON ignores (whitespace between tokens) may load, and they must load unchanged.
    original = Manifest.from_json(data.decode("utf-8"))
    assert all(loaded == original for _, _, loaded in survivors)


def test_built_manifest_round_trips() -> None:
    manifest = Manifest(
        name="built",
        files={role: FileEntry(path=f"{role}.bin", size=1, sha256=SHA)
               for role in ("encoder", "tokenizer", "index", "items", "notice")},
        encoder=EncoderSpec(max_length=64, pooling="cls", normalize=False, dim=8,
                            inputs=("input_ids",), output="out", vocab_size=10),
        index=IndexSpec(space="cosine", dim=8, m=4, ef_construction=10, ef=10, count=2),
        items=ItemsSpec(count=2, id_field="sku", text_fields=("a", "b"), columns=("sku", "a", "b")),
    )
    assert Manifest.from_json(manifest.to_json()) == manifest


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "top level must be an object"),
        ('"edgerec-bundle"', "top level must be an object"),
    ],
    ids=["broken", "empty", "list", "string"],
)
def test_unparseable_text_is_refused(text: str, fragment: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(fragment)):
        Manifest.from_json(text)


REFUSALS = [
    # (dotted field, new value or DELETE, fragment the message must contain)
    ("format", "other-bundle", "format must be 'edgerec-bundle'"),
    ("format", DELETE, "format must be 'edgerec-bundle'"),
    ("schema_version", 6, "schema_version 6 is not supported"),
    ("schema_version", 3, "does not fit the content, which is version 1"),
    ("schema_version", DELETE, "schema_version None is not supported"),
    ("colour", "blue", "unknown fields ['colour']"),
    ("encoder.colour", "blue", "unknown fields in encoder: ['colour']"),
    ("index.colour", "blue", "unknown fields in index: ['colour']"),
    ("files.index.mode", 1, "'mode'"),
    ("name", DELETE, "missing field 'name'"),
    ("files", DELETE, "missing field 'files'"),
    ("encoder.dim", DELETE, "encoder lacks ['dim']"),
    ("items.columns", DELETE, "items lacks ['columns']"),
    ("files.index.sha256", DELETE, "sha256"),
    ("name", 5, "name must be a string"),
    ("files", [], "files must be an object"),
    ("encoder", "mean", "encoder must be an object"),
    ("provenance", [], "provenance must be an object"),
    ("files.items", "items.jsonl", "files.items must be an object"),
    ("encoder.dim", "384", "encoder.dim must be a positive integer"),
    ("encoder.dim", True, "encoder.dim must be a positive integer"),
    ("encoder.dim", 0, "encoder.dim must be a positive integer"),
    ("encoder.max_length", 1.5, "encoder.max_length must be a positive integer"),
    ("index.count", -3, "index.count must be a positive integer"),
    ("files.index.size", -1, "size of 'index.hnsw' must be a non-negative integer"),
    ("files.index.size", "20", "size of 'index.hnsw' must be a non-negative integer"),
    ("files.index.sha256", "abc", "sha256 of 'index.hnsw' must be 64 lowercase hex digits"),
    ("files.index.sha256", SHA.upper(), "sha256 of 'index.hnsw' must be 64 lowercase hex digits"),
    ("files.index.sha256", SHA + "0", "sha256 of 'index.hnsw' must be 64 lowercase hex digits"),
    ("encoder.normalize", "yes", "encoder.normalize must be true or false"),
    ("encoder.pooling", "max", "encoder.pooling must be one of"),
    ("encoder.inputs", ["attention_mask"], "encoder.inputs must name input_ids"),
    ("encoder.inputs", [], "encoder.inputs must name input_ids"),
    ("encoder.inputs", ["input_ids", "pixel_values"], "encoder.inputs must name input_ids"),
    ("encoder.inputs", "input_ids", "encoder.inputs must be a list of strings"),
    ("encoder.output", "", "encoder.output must be a name"),
    ("index.space", "hamming", "index.space must be one of"),
    ("index.label_map", "by-id", "index.label_map must be 'items-row'"),
    ("items.id_field", "sku", "items.id_field 'sku' is not among items.columns"),
    ("items.text_fields", [], "items.text_fields [] must be non-empty"),
    ("items.text_fields", ["plot"], "items.text_fields ['plot'] must be non-empty"),
    ("files.tokenizer", DELETE, "files lacks ['tokenizer']"),
    ("files.items.path", "index.hnsw", "two roles share one file"),
    ("files.notice", {"path": "manifest.json", "size": 1, "sha256": SHA}, "manifest.json cannot list itself"),
    ("encoder.dim", 768, "encoder.dim 768 differs from index.dim 384"),
    ("items.count", 7, "items.count 7 differs from index.count 3"),
]


@pytest.mark.parametrize(("field", "value", "fragment"), REFUSALS,
                         ids=[f"{f}={'DELETE' if v is DELETE else v!r}" for f, v, _ in REFUSALS])
def test_bad_field_is_refused_by_name(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(fragment)):
        Manifest.from_json(changed(field, value))


ESCAPING_PATHS = ["../x", "/abs", "a/b", "", "..", ".", "x\x00", "a\\b", "C:x"]


@pytest.mark.parametrize("path", ESCAPING_PATHS)
def test_file_path_must_be_a_plain_name(path: str) -> None:
    with pytest.raises(ManifestError, match="file path"):
        Manifest.from_json(changed("files.items.path", path))
    with pytest.raises(ManifestError, match="file path"):
        FileEntry(path=path, size=1, sha256=SHA)


def test_refusal_is_a_manifest_error_not_a_type_error() -> None:
    # Missing constructor arguments surface as TypeError inside; the caller must see ManifestError.
    with pytest.raises(ManifestError):
        Manifest.from_json(changed("files.index", {"path": "index.hnsw"}))


def test_huge_integer_literal_is_a_manifest_error() -> None:
    text = changed("index.count", 3).replace('"count": 3,', '"count": ' + "1" * 5000 + ",")
    with pytest.raises(ManifestError):
        Manifest.from_json(text)


@pytest.mark.parametrize("field, value", [("user.window", 0), ("user.window", "10"), ("user.window", True),
                                          ("user.representation", "max"), ("user.extra", 1)])
def test_bad_user_spec_is_refused(field, value):
    with pytest.raises(ManifestError, match="user"):
        Manifest.from_json(changed(field, value))


def test_manifest_without_user_spec_gets_the_default():
    body = valid_body()
    del body["user"]
    assert Manifest.from_json(json.dumps(body)).user == UserSpec()
