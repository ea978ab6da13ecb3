"""Build a bundle from a catalogue of items, on the device, without torch.

The encoder and tokenizer come from an existing bundle (or, in the export
stage, from freshly exported files); the items are encoded, indexed, and
everything is written through the one ``BundleWriter``.

The build streams: items go through in chunks (encoded, added to the index,
appended to items.jsonl), so memory is the index plus one chunk, whatever
the catalogue's size. A catalogue file is read twice: a first pass checks
every line and counts the items (hnswlib allocates for the count up front),
the second encodes; the file's sha256 must be the same both times.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from .. import __version__
from ..bundle.hnsw_file import IndexFile, check_index_layout, validate_index_file
from ..bundle.manifest import EncoderSpec, ItemsSpec, LexicalSpec, Manifest, PriorSpec, UserSpec
from ..bundle.reader import Bundle, open_bundle
from ..bundle.writer import BundleWriter
from ..encoder import TextEncoder
from ..errors import BundleError, CatalogError, WriteError
from ..index import IndexBuilder, ItemIndex
from ..items import ItemTable, item_text, jsonl_bytes
from ..lexical import LexicalBuilder, WordSplitter
from ..prior import ItemPrior
from ..scale.shards import VectorShards
from .catalog import CatalogFile, CatalogSurvey, survey_catalog, text_fields_among
from .updated_items import UpdatedItems

# progress(stage, done, total): called as work advances.
Progress = Callable[[str, int, int], None]
# An item prior to write: its setting and its counts, one per item (edgerec.prior).
Prior = tuple[PriorSpec, np.ndarray]
# The text fields a build from a model (no catalogue of its own to copy them from) looks for, in this order.
COMMON_TEXT_FIELDS = ("title", "name", "text", "description", "summary", "genres", "tags", "keywords",
                      "category", "categories")
# Items encoded, indexed and written at a time: a few MB of records, texts and vectors.
BUILD_CHUNK = 4096


@dataclass(frozen=True)
class ModelFiles:
    """The files a bundle's model is made of: what every bundle built from it copies in unchanged."""

    encoder: Path
    tokenizer: Path
    spec: EncoderSpec
    notice: Path | None = None
    # The verified bundle the files come from, if any: they must still hash to what its manifest says.
    source: Bundle | None = None
    # The lexical setting chosen for this encoder (edgerec.lexical); each bundle gets postings of its own items.
    lexical: LexicalSpec | None = None

    @classmethod
    def of_bundle(cls, bundle: Bundle) -> ModelFiles:
        notice = bundle.path("notice") if "notice" in bundle.manifest.files else None
        return cls(bundle.path("encoder"), bundle.path("tokenizer"), bundle.manifest.encoder, notice, bundle,
                   bundle.manifest.lexical)

    def lexical_builder(self, tokenizer: Any = None) -> LexicalBuilder | None:
        """BM25 postings to fill, when the model has a lexical setting (``tokenizer``: the model's, if loaded)."""
        if self.lexical is None:
            return None
        split = WordSplitter(tokenizer) if tokenizer is not None else WordSplitter.from_file(self.tokenizer)
        return LexicalBuilder(split, k1=self.lexical.k1, b=self.lexical.b)

    def copy_into(self, writer: BundleWriter) -> None:
        for role, path in (("encoder", self.encoder), ("tokenizer", self.tokenizer), ("notice", self.notice)):
            if path is not None:
                writer.copy_in(role, path, sha256=self._expected_sha256(role))

    def _expected_sha256(self, role: str) -> str | None:
        files = self.source.manifest.files if self.source is not None else {}
        return files[role].sha256 if role in files else None


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
    lexical: LexicalSpec | None = None,
    vectors: np.ndarray | None = None,
    prior: Prior | None = None,
    threads: int | None = None,
    batch_size: int = 32,
    m: int | None = None,
    ef_construction: int | None = None,
    ef: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Manifest:
    """Encode ``records`` (already in memory) with the given model and write a complete bundle to ``out``.

    ``vectors``: unit vectors, one row per record, indexed instead of the model's reading of the item texts
    (the export stage's item vectors fitted to interactions); the model still reads queries and new items.
    ``prior``: the item prior's setting and counts, one per record (edgerec.prior).
    Catalogue files go through ``build_from_catalog``, which never holds all records.
    """
    table = ItemTable.from_records(list(records), id_field)
    item_texts(table.records, text_fields, table.id_field)  # refuses items without text before anything is written
    with BundleWriter(out, overwrite=overwrite) as writer:
        return write_streamed_bundle(
            writer, iter(table.records), count=len(table), columns=table.columns(), id_field=id_field,
            model=ModelFiles(model_path, tokenizer_path, encoder_spec, notice_path, lexical=lexical),
            text_fields=text_fields,
            vectors=None if vectors is None else _checked_vectors(vectors, len(table), encoder_spec),
            user=user, name=name, provenance=provenance or {}, threads=threads, batch_size=batch_size,
            m=m, ef_construction=ef_construction, ef=ef, progress=progress, prior=_checked_prior(prior, len(table)),
        )


def write_streamed_bundle(
    writer: BundleWriter,
    items: Iterator[Mapping[str, Any]],
    *,
    count: int,
    columns: Sequence[str],
    id_field: str,
    model: ModelFiles,
    text_fields: Sequence[str],
    user: UserSpec,
    name: str,
    provenance: Mapping[str, Any],
    threads: int | None = None,
    batch_size: int = 32,
    m: int | None = None,
    ef_construction: int | None = None,
    ef: int | None = None,
    progress: Progress | None = None,
    chunk_size: int = BUILD_CHUNK,
    vectors: np.ndarray | VectorShards | None = None,
    prior: Prior | None = None,
) -> Manifest:
    """Encode, index and write ``count`` items from ``items`` a chunk at a time, then publish the bundle
    (with ``vectors``, one row per item: those are indexed instead of encoding).

    ``items`` must yield exactly ``count`` records (checked): hnswlib is
    sized for them before the first one is read. ``columns``: every field the
    records have, for the manifest.
    """
    encoder = TextEncoder(model.encoder, model.tokenizer, model.spec, threads=threads)
    model.copy_into(writer)
    lexical = model.lexical_builder(encoder.tokenizer)
    builder = IndexBuilder(count, model.spec.dim, m=m, ef_construction=ef_construction, ef=ef, threads=threads or 0)
    encode_seconds = index_seconds = 0.0
    encoded = 0

    def advance(n: int) -> None:
        nonlocal encoded
        encoded += n
        if progress is not None:
            progress("building", encoded, count)

    with writer.open("items") as items_file:
        while chunk := list(islice(items, chunk_size)):
            if builder.count + len(chunk) > count:
                raise CatalogError(f"more than the {count} items counted before encoding; "
                                   "the catalogue changed during the build: build again")
            texts = [item_text(record, text_fields) for record in chunk]
            if lexical is not None:
                lexical.add(texts)
            started = time.perf_counter()
            if vectors is None:
                # encode() sorts each slice of texts by length before batching, so batches carry little padding.
                block = encoder.encode(texts, batch_size=batch_size, progress=advance)
            elif isinstance(vectors, VectorShards):  # checked against the chunk's ids as they are read
                block = vectors.rows(builder.count, [record[id_field] for record in chunk])
                advance(len(chunk))
            else:
                block = vectors[builder.count : builder.count + len(chunk)]
                advance(len(chunk))
            encode_seconds += time.perf_counter() - started
            started = time.perf_counter()
            builder.add(block)
            index_seconds += time.perf_counter() - started
            items_file.write(jsonl_bytes(chunk))
    if builder.count != count:
        raise CatalogError(f"{builder.count} items, not the {count} counted before encoding; "
                           "the catalogue changed during the build: build again")
    del encoder  # its ONNX Runtime session and arenas are not needed any more
    index = builder.finish()
    del builder
    build_facts = {
        "tool_versions": tool_versions(),
        "encode_seconds": round(encode_seconds, 3),
        "index_seconds": round(index_seconds, 3),
        "items_per_second": round(count / max(encode_seconds, 1e-9), 1),
    }
    spec = index.spec
    write_index(writer, index)  # frees the graph: ``index`` was the last reference
    if lexical is not None:
        writer.write("lexical", [lexical.finish().to_bytes()])
    _write_prior(writer, prior)
    items_spec = ItemsSpec(count=count, id_field=id_field, text_fields=tuple(text_fields), columns=tuple(columns))
    return writer.finish(name=name, encoder=model.spec, index=spec, items=items_spec, user=user,
                         provenance={**provenance, "build": build_facts}, lexical=model.lexical,
                         prior=None if prior is None else prior[0])


def _write_prior(writer: BundleWriter, prior: Prior | None) -> None:
    if prior is not None:
        writer.write("prior", [ItemPrior(prior[1]).to_bytes()])


def _checked_prior(prior: Prior | None, count: int) -> Prior | None:
    if prior is None:
        return None
    counts = np.asarray(prior[1], dtype=np.float32)
    if counts.shape != (count,) or not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError(f"prior counts must be finite, non-negative, one per item ({count}), got {counts.shape}")
    return prior[0], counts


def _checked_vectors(vectors: np.ndarray, count: int, spec: EncoderSpec) -> np.ndarray:
    block = np.asarray(vectors, dtype=np.float32)
    if block.shape != (count, spec.dim) or not np.isfinite(block).all():
        raise ValueError(f"vectors must be finite, one {spec.dim}-d row per item ({count}), got {block.shape}")
    if not np.allclose(np.linalg.norm(block, axis=1), 1.0, atol=1e-3):
        raise ValueError("vectors must have unit length, as the encoder's do")
    return block


def write_bundle_files(
    writer: BundleWriter,
    *,
    table: ItemTable | UpdatedItems,
    index: ItemIndex | IndexFile,
    model: ModelFiles,
    text_fields: Sequence[str],
    user: UserSpec,
    name: str,
    provenance: Mapping[str, Any],
    descriptions_from: Bundle | None = None,
    prior: Prior | None = None,
) -> Manifest:
    """Write every file of a bundle whose items and index are in memory through ``writer`` and publish it
    (bundle-home updates; builds stream through ``write_streamed_bundle``). ``index`` is released.

    ``descriptions_from``: a bundle whose description model (edgerec.descriptions) carries over. It
    writes into the index's space, learnt on that bundle's catalogue, so it stays valid when a few items
    change; a new catalogue (``edgerec build``) starts without.
    """
    model.copy_into(writer)
    descriptions = None
    if descriptions_from is not None and descriptions_from.manifest.descriptions is not None:
        descriptions = descriptions_from.manifest.descriptions
        for role in ("descriptions", "descriptions_tokenizer"):
            if role in descriptions_from.manifest.files:
                writer.copy_in(role, descriptions_from.path(role), sha256=descriptions_from.manifest.files[role].sha256)
    spec = index.spec
    write_index(writer, index)
    writer.write("items", table.serialized())
    lexical = model.lexical_builder()
    if lexical is not None:  # BM25's weights depend on every item: written anew for each version
        records = table.iter_records() if isinstance(table, UpdatedItems) else table.records
        lexical.add(item_text(record, text_fields) for record in records)
        writer.write("lexical", [lexical.finish().to_bytes()])
    _write_prior(writer, prior)
    items_spec = ItemsSpec(count=len(table), id_field=table.id_field, text_fields=tuple(text_fields),
                           columns=table.columns())
    return writer.finish(name=name, encoder=model.spec, index=spec, items=items_spec, user=user,
                         provenance=provenance, descriptions=descriptions, lexical=model.lexical,
                         prior=None if prior is None else prior[0])


def write_index(writer: BundleWriter, index: ItemIndex | IndexFile) -> None:
    """Write the index file through ``writer``, dropping ``index``'s graph on the way.

    An ``IndexFile`` is checked whole (as a load would) and copied in as it is.

    hnswlib saves straight from its memory to a scratch file in the staging
    directory: ``ItemIndex.serialized`` would first copy the whole graph (as
    much memory again as the index: 1.7 GB for a million 384-d items). hnswlib
    reports no write error, so the scratch file's layout is checked (a short
    write fails it), then the writer copies it in with os.write, hashing,
    fsyncing and reading it back like every file.
    """
    if isinstance(index, IndexFile):
        validate_index_file(index.path, index.spec)
        writer.copy_in("index", index.path)
        return
    scratch = writer.scratch_path("index")
    spec = index.spec
    try:
        index.save_with_hnswlib(scratch)
        index.release()
        try:
            check_index_layout(scratch, spec)
        except BundleError:
            raise WriteError(f"{scratch}: hnswlib could not write the whole index; the disk may be full. "
                             "Nothing was replaced") from None
        writer.copy_in("index", scratch)
    finally:
        scratch.unlink(missing_ok=True)


def item_texts(records: Sequence[Mapping[str, Any]], text_fields: Sequence[str], id_field: str) -> list[str]:
    """Each record's encoder text; a record with no text in any of the fields is refused."""
    texts = [item_text(record, text_fields) for record in records]
    empty = [record[id_field] for record, text in zip(records, texts) if not text]
    if empty:
        raise _no_text_error(len(empty), text_fields, empty[0])
    return texts


def _no_text_error(count: int, text_fields: Sequence[str], example: str) -> CatalogError:
    items = "1 item has" if count == 1 else f"{count} items have"
    return CatalogError(f"{items} no text in {list(text_fields)}, e.g. id {example!r}")


def _text_like_fields(catalog: Any, survey: CatalogSurvey, log: Callable[[str], None] | None) -> tuple[str, ...]:
    skipped = ", ".join(f"{name} ({kind})" for name, kind in survey.not_text.items())
    if not survey.text_like:
        raise CatalogError(f"{catalog}: no field holds text (the fields: {', '.join(survey.columns)}"
                           f"{'; ' + skipped if skipped else ''}); say which make the item text with --text-fields")
    if log is not None:
        log(f"text from every field holding words: {', '.join(survey.text_like)}"
            f"{'; not ' + skipped if skipped else ''} (choose with --text-fields)")
    return survey.text_like


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
    ef: int | None = None,
    progress: Progress | None = None,
    chunk_size: int = BUILD_CHUNK,
    log: Callable[[str], None] | None = None,
    vectors: VectorShards | None = None,
) -> Manifest:
    """A new bundle for the items in ``catalog``, using the encoder of ``base`` (a bundle or a model).

    Streams: the catalogue is checked in a first pass (nothing is encoded
    before every line is known to be good), then encoded in chunks. Without
    ``text_fields``, every field that holds words makes the text (not the id,
    numbers or links: ``catalog.value_kind``); ``log`` is told which.
    ``vectors``: the catalogue's vectors, already encoded by ``base``'s model (edgerec.scale): indexed
    instead of encoding; their text fields are the bundle's.
    """
    source = open_bundle(base, model_ok=True)
    if vectors is not None:
        text_fields = _shards_fit(vectors, source, text_fields, id_field)
    catalog_file, survey, fields = plan_catalog(catalog, text_fields, id_field, progress, log)
    # The ids are checked row by row as the vectors are read; the hash also catches a changed text.
    if vectors is not None and (vectors.count, vectors.catalog_sha256) != (survey.count, survey.sha256):
        raise CatalogError(f"{catalog}: not the catalogue the vectors in {vectors.directory} were made from "
                           f"({survey.count} items here, {vectors.count} there, or other bytes); encode it again")

    def second_pass() -> Iterator[Mapping[str, Any]]:
        for _, record in catalog_file.records(unique=False):  # the first pass refused duplicates
            yield record
        if catalog_file.sha256 != survey.sha256:
            raise CatalogError(f"{catalog}: changed during the build; build again")

    # The model's history carries over; figures measured on the old catalogue do not.
    provenance = {
        "model": source.manifest.provenance.get("model", {}),
        "encoder_from": source.manifest.name,
        "catalog": {"source": Path(catalog).name, "built_by": "edgerec build", "items": survey.count,
                    **({"vectors_from": "vector shards (edgerec.scale)"} if vectors is not None else {})},
    }
    # A rebuild in a bundle home links the model files of the version it follows (BundleWriter.share_with).
    with BundleWriter(out, overwrite=overwrite, share_with=source) as writer:
        return write_streamed_bundle(
            writer, second_pass(), count=survey.count, columns=survey.columns, id_field=id_field,
            model=ModelFiles.of_bundle(source), text_fields=fields,
            user=source.manifest.user,  # the model's training window goes with the model
            name=name or Path(out).name, provenance=provenance, threads=threads, ef=ef, progress=progress,
            chunk_size=chunk_size, vectors=vectors,
        )


def _shards_fit(vectors: VectorShards, source: Bundle, text_fields: Sequence[str] | None,
                id_field: str) -> tuple[str, ...]:
    """The shards' text fields, once the shards are known to come from ``source``'s model and to name
    items by ``id_field``."""
    files = source.manifest.files
    vectors.check_model(dim=source.manifest.encoder.dim, encoder_sha256=files["encoder"].sha256,
                        tokenizer_sha256=files["tokenizer"].sha256, model_name=source.manifest.name)
    if vectors.id_field != id_field:
        raise CatalogError(f"{vectors.directory}: the vectors name items by {vectors.id_field!r}, not {id_field!r}; "
                           f"build with --id-field {vectors.id_field}")
    if text_fields and tuple(text_fields) != vectors.text_fields:
        raise CatalogError(f"{vectors.directory}: the vectors were encoded from {list(vectors.text_fields)}, "
                           f"not {list(text_fields)}; drop --text-fields or encode again")
    return vectors.text_fields


def plan_catalog(
    catalog: str | os.PathLike[str],
    text_fields: Sequence[str] | None,
    id_field: str,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[CatalogFile, CatalogSurvey, tuple[str, ...]]:
    """The first pass over a catalogue: every line checked, the items counted, the text fields chosen
    (``text_fields``, or every field holding words), items without text refused."""
    catalog_file = CatalogFile(catalog, id_field=id_field)
    lines = catalog_file.count_lines()
    survey = survey_catalog(catalog_file, text_fields or (),
                            progress=None if progress is None else lambda line: progress("checking", min(line, lines), lines))
    if progress is not None:
        progress("checking", lines, lines)
    if text_fields:
        fields = text_fields_among(survey.columns, text_fields, id_field)
        missing = [f for f in text_fields if f not in fields]
        if missing:
            raise CatalogError(f"{catalog}: no item has the text field(s) {missing}")
    else:
        fields = _text_like_fields(catalog, survey, log)
    without_text, first_without_text = survey.without_text_in(fields)
    if first_without_text is not None:
        raise _no_text_error(without_text, fields, first_without_text)
    return catalog_file, survey, tuple(fields)
