"""Vector shards: a catalogue's item vectors, encoded elsewhere (edgerec.scale.encode_job, on Ray), in
files that `edgerec build --vectors DIR` turns into a bundle without encoding again.

A shard directory holds, per shard, ``shard-*.npy`` (float32, one unit row per item) and
``shard-*.ids.json`` (the items' ids, in row order), and one ``shards.json`` listing the shards in
catalogue order with each file's size and sha256, the dimension, and the sha256 of the encoder and
tokenizer that made the vectors. Plain numpy and JSON: reading shards needs neither Ray nor pyarrow.

The build reads the shards a chunk of rows at a time (memory-mapped), checking as it goes that the
ids are the catalogue's, in its order, and that every row is finite and of unit length.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..bundle.reader import sha256_of
from ..errors import CatalogError

FORMAT = "edgerec-vector-shards"
SCHEMA_VERSION = 1
MANIFEST_NAME = "shards.json"
# The encoder's vectors are unit length to float32 rounding; this is as strict as a build from vectors.
UNIT_TOLERANCE = 1e-3


class ShardError(CatalogError):
    """A shard directory that cannot be turned into a bundle; the message names the file and the fix."""


@dataclass(frozen=True)
class ShardFile:
    """One shard's two files, as the manifest lists them."""

    vectors: str
    ids: str
    count: int
    vectors_sha256: str
    ids_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"vectors": self.vectors, "ids": self.ids, "count": self.count,
                "vectors_sha256": self.vectors_sha256, "ids_sha256": self.ids_sha256}


def write_shard(directory: str | os.PathLike[str], stem: str, ids: Sequence[str], vectors: np.ndarray) -> ShardFile:
    """Write one shard, ``stem``.npy and ``stem``.ids.json (what each encoding worker does for its batch; the
    stem must be unique, as workers do not know where their batch falls), and describe it for the manifest."""
    block = np.ascontiguousarray(vectors, dtype=np.float32)
    if block.ndim != 2 or block.shape[0] != len(ids):
        raise ValueError(f"a shard needs one vector row per id: {len(ids)} ids, vectors {block.shape}")
    vectors_name, ids_name = f"{stem}.npy", f"{stem}.ids.json"
    folder = Path(directory)
    _write_atomically(folder / vectors_name, lambda handle: np.save(handle, block, allow_pickle=False))
    _write_atomically(folder / ids_name,
                      lambda handle: handle.write(json.dumps(list(ids), ensure_ascii=False).encode("utf-8")))
    return ShardFile(vectors_name, ids_name, len(ids), sha256_of(folder / vectors_name), sha256_of(folder / ids_name))


def write_manifest(directory: str | os.PathLike[str], shards: Sequence[ShardFile], *, dim: int, encoder_sha256: str,
                   tokenizer_sha256: str, id_field: str, text_fields: Sequence[str], catalog_sha256: str) -> Path:
    """shards.json, written last: a directory without it is an unfinished job."""
    body = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "dim": dim, "count": sum(s.count for s in shards),
            "encoder_sha256": encoder_sha256, "tokenizer_sha256": tokenizer_sha256, "id_field": id_field,
            "text_fields": list(text_fields), "catalog_sha256": catalog_sha256,
            "shards": [s.to_dict() for s in shards]}
    path = Path(directory) / MANIFEST_NAME
    _write_atomically(path, lambda handle: handle.write(json.dumps(body, indent=1).encode("utf-8")))
    return path


def _write_atomically(path: Path, write: Any) -> None:
    scratch = path.with_name(path.name + ".tmp")
    with open(scratch, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(scratch, path)


class VectorShards:
    """The shards of one directory, read as one (count, dim) array a slice at a time.

    Opening checks the manifest and every file's size and sha256 (the build trusts nothing it has not
    hashed, as with a bundle); slicing checks ids against the catalogue, finiteness and unit length.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        body = _read_manifest(self.directory)
        self.dim: int = body["dim"]
        self.count: int = body["count"]
        self.encoder_sha256: str = body["encoder_sha256"]
        self.tokenizer_sha256: str = body["tokenizer_sha256"]
        self.id_field: str = body["id_field"]
        self.text_fields: tuple[str, ...] = tuple(body["text_fields"])
        self.catalog_sha256: str = body["catalog_sha256"]
        self.shards = [ShardFile(**entry) for entry in body["shards"]]
        self._arrays = [self._open_vectors(s) for s in self.shards]
        self._ids = [self._open_ids(s) for s in self.shards]
        self._starts = np.cumsum([0] + [s.count for s in self.shards])
        if int(self._starts[-1]) != self.count:
            raise ShardError(f"{self._manifest}: says {self.count} items but its shards hold {int(self._starts[-1])}")

    @property
    def _manifest(self) -> Path:
        return self.directory / MANIFEST_NAME

    def check_model(self, *, dim: int, encoder_sha256: str, tokenizer_sha256: str, model_name: str) -> None:
        """The vectors must come from the model the bundle will read queries with."""
        if dim != self.dim:
            raise ShardError(f"{self._manifest}: {self.dim}-d vectors, but the model {model_name} makes {dim}-d ones")
        if (encoder_sha256, tokenizer_sha256) != (self.encoder_sha256, self.tokenizer_sha256):
            raise ShardError(f"{self._manifest}: the vectors were made by another encoder than {model_name}'s; "
                             "encode again with that model, or build with the model that made them (--bundle)")

    def rows(self, start: int, ids: Sequence[str]) -> np.ndarray:
        """The vectors of rows start .. start+len(ids), which must be the items ``ids`` (the catalogue's)."""
        stop = start + len(ids)
        if stop > self.count:
            raise ShardError(f"{self.directory}: the shards hold {self.count} items, the catalogue more; "
                             "encode this catalogue again")
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        parts, shard_ids = [], []
        number, position = first, start
        while position < stop:
            offset = position - int(self._starts[number])
            take = min(stop, int(self._starts[number + 1])) - position
            parts.append(np.asarray(self._arrays[number][offset : offset + take], dtype=np.float32))
            shard_ids.extend(self._ids[number][offset : offset + take])
            position += take
            number += 1
        for row, (expected, found) in enumerate(zip(ids, shard_ids), start=start):
            if expected != found:
                raise ShardError(f"{self.directory}: row {row} is item {found!r} but the catalogue has {expected!r} "
                                 "there; the shards were made from another catalogue (or its order changed): "
                                 "encode it again")
        block = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise ShardError(f"{self.directory}: the vector of row {bad} is not finite; encode again")
        norms = np.linalg.norm(block, axis=1)
        off = np.flatnonzero(np.abs(norms - 1.0) > UNIT_TOLERANCE)
        if off.size:
            raise ShardError(f"{self.directory}: the vector of row {start + int(off[0])} has length "
                             f"{norms[off[0]]:.4f}, not 1; vectors must be the encoder's unit vectors")
        return block

    def _open_vectors(self, shard: ShardFile) -> np.ndarray:
        path = self._checked(shard.vectors, shard.vectors_sha256)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ShardError(f"{path}: not a numpy array file ({exc})") from None
        if array.dtype != np.float32 or array.shape != (shard.count, self.dim):
            raise ShardError(f"{path}: holds {array.dtype} {array.shape}, the manifest says float32 "
                             f"({shard.count}, {self.dim})")
        return array

    def _open_ids(self, shard: ShardFile) -> list[str]:
        path = self._checked(shard.ids, shard.ids_sha256)
        try:
            ids = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError):
            raise ShardError(f"{path}: not a JSON list of ids") from None
        if not isinstance(ids, list) or len(ids) != shard.count or not all(isinstance(i, str) for i in ids):
            raise ShardError(f"{path}: should be a JSON list of {shard.count} string ids")
        return ids

    def _checked(self, name: str, sha256: str) -> Path:
        path = self.directory / name
        if Path(name).name != name or not path.is_file():
            raise ShardError(f"{self._manifest}: lists {name!r}, which is not a file in {self.directory}")
        if sha256_of(path) != sha256:
            raise ShardError(f"{path}: its sha256 differs from the manifest's: the file is damaged or was "
                             "replaced; encode again")
        return path


_FIELDS = {"format": str, "schema_version": int, "dim": int, "count": int, "encoder_sha256": str,
           "tokenizer_sha256": str, "id_field": str, "text_fields": list, "catalog_sha256": str, "shards": list}
_SHARD_FIELDS = {"vectors": str, "ids": str, "count": int, "vectors_sha256": str, "ids_sha256": str}


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ShardError(f"{directory}: no such directory of vector shards")
    if not path.is_file():
        raise ShardError(f"{path}: missing; the encoding job did not finish (it writes {MANIFEST_NAME} last)")
    try:
        body = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        raise ShardError(f"{path}: not valid JSON") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ShardError(f"{path}: not an {FORMAT} manifest")
    if body.get("schema_version") != SCHEMA_VERSION:
        raise ShardError(f"{path}: schema version {body.get('schema_version')!r}; this edgerec reads "
                         f"{SCHEMA_VERSION}: upgrade edgerec")
    for name, kind in _FIELDS.items():
        if not isinstance(body.get(name), kind):
            raise ShardError(f"{path}: field {name!r} is missing or not a {kind.__name__}")
    for entry in body["shards"]:
        if not isinstance(entry, dict) or set(entry) != set(_SHARD_FIELDS) or \
                not all(isinstance(entry[k], kind) for k, kind in _SHARD_FIELDS.items()):
            raise ShardError(f"{path}: a shard entry should have exactly {sorted(_SHARD_FIELDS)}")
    return body
