"""Streaming builds: memory that does not grow with the catalogue, chunks that stay aligned, and a
catalogue that changes under the build refused."""

from __future__ import annotations

import gc
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tiny import tiny_catalog
from edgerec import Recommender
from edgerec.update.build import build_from_catalog
from edgerec.errors import CatalogError, WriteError
from edgerec.index import IndexBuilder, ItemIndex
from edgerec.items import ItemTable, item_text
from edgerec.update.catalog import read_catalog


def write_catalog(path: Path, count: int) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for record in tiny_catalog(count):
            handle.write(json.dumps(record) + "\n")
    return path


def leftovers(parent: Path) -> list[str]:
    return sorted(name for name in os.listdir(parent) if name.startswith("."))


def traced_peak_of_build(catalog: Path, out: Path, base: Path) -> int:
    """Peak bytes that Python (numpy included) allocated during one build; hnswlib, ONNX Runtime and
    tokenizers allocate outside tracemalloc's view, so the index is not counted."""
    gc.collect()
    tracemalloc.start()
    try:
        build_from_catalog(catalog, out, base=base, threads=1)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_build_memory_does_not_grow_with_the_catalogue(tiny_bundle: Path, tmp_path: Path) -> None:
    # What a streaming build holds: one chunk of records, texts and vectors (the same at 5k and 20k
    # items), plus what grows with the count: the ids seen in the first pass (to refuse duplicates)
    # and the index's link-list sizes, read back to check hnswlib's write (tens of bytes per item).
    # Holding every record, text and vector at once, as builds did before, costs ~2.7x from 5k to 20k.
    small, large = (write_catalog(tmp_path / f"items-{n}.jsonl", n) for n in (5_000, 20_000))
    small_peak = traced_peak_of_build(small, tmp_path / "small", tiny_bundle)
    large_peak = traced_peak_of_build(large, tmp_path / "large", tiny_bundle)
    assert large_peak < 1.6 * small_peak, f"peak {small_peak / 1e6:.1f} MB at 5k items, {large_peak / 1e6:.1f} MB at 20k"
    assert len(Recommender.load(tmp_path / "large", threads=1)) == 20_000


def test_chunks_keep_labels_records_and_vectors_aligned(tiny_fp32_bundle: Path, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "items.jsonl", 50)
    out = tmp_path / "bundle"
    build_from_catalog(catalog, out, base=tiny_fp32_bundle, threads=1, chunk_size=7)  # 7 chunks, the last short
    records = read_catalog(catalog)
    assert (out / "items.jsonl").read_bytes() == b"".join(ItemTable.from_records(records, "id").serialized())
    rec = Recommender.load(out, threads=1)
    fields = rec.bundle.manifest.items.text_fields
    expected = np.stack([rec.encoder.encode_one(item_text(record, fields)) for record in records])
    # fp32: padding to each batch's longest text changes nothing beyond float rounding.
    np.testing.assert_allclose(rec.index.vectors(range(len(records))), expected, atol=1e-5)
    assert [rec.items.records[i]["id"] for i in range(len(records))] == [r["id"] for r in records]


def test_progress_counts_lines_then_items(tiny_bundle: Path, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "items.jsonl", 30)
    calls: list[tuple[str, int, int]] = []
    build_from_catalog(catalog, tmp_path / "bundle", base=tiny_bundle, threads=1,
                       progress=lambda stage, done, total: calls.append((stage, done, total)))
    stages = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert stages == ["checking", "building"]
    assert [c for c in calls if c[0] == "checking"][-1] == ("checking", 30, 30)
    building = [done for stage, done, total in calls if stage == "building" and total == 30]
    assert building == sorted(building) and building[-1] == 30


@pytest.mark.parametrize("change", ["append", "rewrite"])
def test_a_catalogue_changed_during_the_build_is_refused(tiny_bundle: Path, tmp_path: Path, change: str) -> None:
    # Each line is padded past any read buffer, so the second pass has not read the last line yet
    # when the first chunk is done: a change there is one the build must notice.
    with open(tmp_path / "items.jsonl", "w", encoding="utf-8") as handle:
        for record in tiny_catalog(30):
            handle.write(json.dumps({**record, "note": "x" * 16_384}) + "\n")
    catalog = tmp_path / "items.jsonl"
    out = tmp_path / "bundle"
    changed = False

    def change_catalogue(stage: str, done: int, total: int) -> None:
        nonlocal changed
        if stage == "building" and not changed:  # the first pass is over; the second has begun
            changed = True
            if change == "append":
                with open(catalog, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"id": "late", "title": "Late Arrival"}) + "\n")
            else:  # same size, same count, one letter of the last title in another case
                data = bytearray(catalog.read_bytes())
                first_letter = data.rindex(b'"title": "') + len(b'"title": "')
                data[first_letter : first_letter + 1] = data[first_letter : first_letter + 1].swapcase()
                catalog.write_bytes(bytes(data))

    with pytest.raises(CatalogError, match="changed during the build; build again"):
        build_from_catalog(catalog, out, base=tiny_bundle, threads=1, chunk_size=8, progress=change_catalogue)
    assert changed and not out.exists() and leftovers(tmp_path) == []


def test_an_index_that_hnswlib_wrote_short_is_never_published(tiny_bundle: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # hnswlib's save_index does not report a full disk: the file just ends early.
    real_save = ItemIndex.save_with_hnswlib

    def short_save(self: ItemIndex, path: Path) -> None:
        real_save(self, path)
        os.truncate(path, path.stat().st_size - 100)

    monkeypatch.setattr(ItemIndex, "save_with_hnswlib", short_save)
    with pytest.raises(WriteError, match="hnswlib could not write the whole index; the disk may be full"):
        build_from_catalog(write_catalog(tmp_path / "items.jsonl", 30), tmp_path / "bundle", base=tiny_bundle,
                           threads=1)
    assert not (tmp_path / "bundle").exists() and leftovers(tmp_path) == []


def test_index_builder_takes_exactly_its_capacity() -> None:
    vectors = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    builder = IndexBuilder(10, 8, threads=1)
    builder.add(vectors[:6])
    with pytest.raises(ValueError, match="holds 6"):
        builder.finish()
    with pytest.raises(ValueError, match="made for 10 items; 12 would not fit"):
        builder.add(vectors[:6])
    with pytest.raises(ValueError, match=r"shape \(n, 8\)"):
        builder.add(vectors[:, :4])
    builder.add(vectors[6:])
    index = builder.finish()
    labels, _ = index.search(vectors[7], 1)
    assert labels.tolist() == [7] and index.spec.count == 10
