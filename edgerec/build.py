"""Build a bundle from a catalogue of items, on the device, without torch.

The encoder and tokenizer come from an existing bundle (or, in the export
stage, from freshly exported files); the items are encoded, indexed, and
everything is written through the one ``BundleWriter``.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import __version__
from .bundle import Bundle, BundleWriter, open_bundle
from .encoder import TextEncoder
from .errors import CatalogError
from .index import DEFAULT_EF, DEFAULT_EF_CONSTRUCTION, DEFAULT_M, ItemIndex
from .items import ItemTable, choose_text_fields, item_text, read_catalog
from .manifest import EncoderSpec, ItemsSpec, Manifest, UserSpec

# progress(stage, done, total): called as work advances.
Progress = Callable[[str, int, int], None]


def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "edgerec": __version__}
    for package in ("onnxruntime", "tokenizers", "hnswlib", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def build_bundle(
    records: Sequence[Mapping[str, Any]],
    out: str | os.PathLike[str],
    *,
    model_path: Path,
    tokenizer_path: Path,
    encoder_spec: EncoderSpec,
    text_fields: Sequence[str],
    user: UserSpec = UserSpec(),
    id_field: str = "id",
    name: str,
    provenance: Mapping[str, Any] | None = None,
    notice_path: Path | None = None,
    threads: int | None = None,
    batch_size: int = 32,
    m: int = DEFAULT_M,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
    ef: int = DEFAULT_EF,
    overwrite: bool = False,
    progress: Progress | None = None,
    source: Bundle | None = None,
) -> Manifest:
    """Encode ``records`` with the given model and write a complete bundle to ``out``.

    ``source``: the verified bundle the model files come from, if any (their hashes are checked on copy).
    """
    table = ItemTable.from_records(list(records), id_field)
    texts = item_texts(table, text_fields)

    with BundleWriter(out, overwrite=overwrite) as writer:
        encoder = TextEncoder(model_path, tokenizer_path, encoder_spec, threads=threads)
        started = time.perf_counter()
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress("encoding", done, len(texts))

        vectors = encoder.encode(texts, batch_size=batch_size, progress=advance)
        encode_seconds = time.perf_counter() - started

        indexed = 0

        def advance_index(n: int) -> None:
            nonlocal indexed
            indexed += n
            if progress is not None:
                progress("indexing", indexed, len(texts))

        started = time.perf_counter()
        index = ItemIndex.build(vectors, m=m, ef_construction=ef_construction, ef=ef,
                                threads=threads or 0, progress=advance_index)
        index_seconds = time.perf_counter() - started

        build_facts = {
            "tool_versions": tool_versions(),
            "encode_seconds": round(encode_seconds, 3),
            "index_seconds": round(index_seconds, 3),
            "items_per_second": round(len(texts) / max(encode_seconds, 1e-9), 1),
        }
        return write_bundle_files(
            writer, table=table, index=index, model_path=model_path, tokenizer_path=tokenizer_path,
            notice_path=notice_path, encoder_spec=encoder_spec, text_fields=text_fields, user=user, name=name,
            provenance={**(provenance or {}), "build": build_facts}, source=source,
        )


def item_texts(table: ItemTable, text_fields: Sequence[str]) -> list[str]:
    """Each item's encoder text; an item with no text in any of the fields is refused."""
    texts = [item_text(record, text_fields) for record in table.records]
    empty = [record[table.id_field] for record, text in zip(table.records, texts) if not text]
    if empty:
        raise CatalogError(f"{len(empty)} items have no text in {list(text_fields)}, e.g. id {empty[0]!r}")
    return texts


def write_bundle_files(
    writer: BundleWriter,
    *,
    table: ItemTable,
    index: ItemIndex,
    model_path: Path,
    tokenizer_path: Path,
    encoder_spec: EncoderSpec,
    text_fields: Sequence[str],
    user: UserSpec,
    name: str,
    provenance: Mapping[str, Any],
    notice_path: Path | None = None,
    source: Bundle | None = None,
) -> Manifest:
    """Write every file of a bundle through ``writer`` and publish it.

    With ``source``, the encoder, tokenizer and notice copied from it must
    hash to what its (verified) manifest says.
    """

    def expected(role: str) -> str | None:
        return source.manifest.files[role].sha256 if source is not None and role in source.manifest.files else None

    writer.copy_in("encoder", model_path, sha256=expected("encoder"))
    writer.copy_in("tokenizer", tokenizer_path, sha256=expected("tokenizer"))
    writer.write("index", index.serialized())
    writer.write("items", table.serialized())
    if notice_path is not None:
        writer.copy_in("notice", notice_path, sha256=expected("notice"))
    items_spec = ItemsSpec(count=len(table), id_field=table.id_field, text_fields=tuple(text_fields),
                           columns=table.columns())
    return writer.finish(name=name, encoder=encoder_spec, index=index.spec, items=items_spec, user=user,
                         provenance=provenance)


def build_from_catalog(
    catalog: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str],
    text_fields: Sequence[str] | None = None,
    id_field: str = "id",
    name: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Manifest:
    """A new bundle for the items in ``catalog``, using the encoder of the bundle ``base``."""
    source = open_bundle(base)
    records = read_catalog(catalog, id_field=id_field)
    fields = choose_text_fields(records, text_fields or source.manifest.items.text_fields, id_field)
    if text_fields:
        missing = [f for f in text_fields if f not in fields]
        if missing:
            raise CatalogError(f"{catalog}: no item has the text field(s) {missing}")
    # The model's history carries over; figures measured on the old catalogue do not.
    provenance = {
        "model": source.manifest.provenance.get("model", {}),
        "encoder_from": source.manifest.name,
        "catalog": {"source": Path(catalog).name, "built_by": "edgerec build", "items": len(records)},
    }
    return build_bundle(
        records,
        out,
        source=source,
        model_path=source.path("encoder"),
        tokenizer_path=source.path("tokenizer"),
        encoder_spec=source.manifest.encoder,
        text_fields=fields,
        user=source.manifest.user,  # the model's training window goes with the model
        id_field=id_field,
        name=name or Path(out).name,
        provenance=provenance,
        threads=threads,
        overwrite=overwrite,
        progress=progress,
    )
