"""Taking items out of an index file (edgerec.update.prune): what is left is a valid index of the kept
items, relabelled as the item table is, and it finds neighbours as well as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgerec.bundle.hnsw_file import HEADER, Header, validate_index_file
from edgerec.index import ItemIndex
from edgerec.update.prune import prune_index_file


def clustered(count: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(count // 100, 2), dim))
    vectors = centres[rng.integers(0, len(centres), count)] + 0.3 * rng.normal(size=(count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture()
def index_file(tmp_path: Path) -> tuple[Path, ItemIndex, np.ndarray]:
    vectors = clustered(2000)
    index = ItemIndex.build(vectors, m=16, ef_construction=100, ef=64, threads=1)
    path = tmp_path / "index.hnsw"
    index.save(path)
    return path, index, vectors


def header(path: Path) -> Header:
    with open(path, "rb") as handle:
        return Header(*HEADER.unpack(handle.read(HEADER.size)))


def recall_at_10(index: ItemIndex, vectors: np.ndarray, queries: np.ndarray) -> float:
    hits = [len(set(index.search(q, 10)[0]) & set(np.argsort(-(vectors @ q))[:10])) for q in queries]
    return float(np.mean(hits)) / 10


def test_kept_items_keep_their_vectors_in_order_and_find_themselves(index_file, tmp_path):
    path, index, vectors = index_file
    remove = np.array([0, 7, 999, 1999])
    spec = prune_index_file(path, index.spec, remove, tmp_path / "pruned.hnsw")
    kept = np.setdiff1d(np.arange(len(vectors)), remove)
    assert spec.count == len(kept) == 1996
    # Labels are 0 .. kept-1 again (the validator insists), each the kept item's new row.
    assert sorted(validate_index_file(tmp_path / "pruned.hnsw", spec)) == list(range(len(kept)))
    pruned = ItemIndex.load(tmp_path / "pruned.hnsw", spec)
    assert np.array_equal(pruned.vectors(range(len(kept))), vectors[kept])
    assert [int(pruned.search(v, 1)[0][0]) for v in vectors[kept]] == list(range(len(kept)))


def test_the_entry_point_can_go(index_file, tmp_path):
    path, index, vectors = index_file
    entry_label = int(validate_index_file(path, index.spec)[header(path).entry_point])
    spec = prune_index_file(path, index.spec, np.array([entry_label]), tmp_path / "pruned.hnsw")
    after = header(tmp_path / "pruned.hnsw")
    assert after.count == len(vectors) - 1 and after.entry_point < after.count
    kept = np.delete(vectors, entry_label, axis=0)
    assert recall_at_10(ItemIndex.load(tmp_path / "pruned.hnsw", spec), kept, kept[:200]) >= 0.95


def test_recall_after_removing_the_limit_is_close_to_a_fresh_build(index_file, tmp_path):
    path, index, vectors = index_file
    rng = np.random.default_rng(1)
    remove = rng.choice(len(vectors), 100, replace=False)  # 5%, PRUNE_LIMIT
    spec = prune_index_file(path, index.spec, remove, tmp_path / "pruned.hnsw")
    kept = np.delete(vectors, np.sort(remove), axis=0)
    queries = clustered(300, seed=7)
    pruned = recall_at_10(ItemIndex.load(tmp_path / "pruned.hnsw", spec), kept, queries)
    fresh = recall_at_10(ItemIndex.build(kept, m=16, ef_construction=100, ef=64, threads=1), kept, queries)
    assert pruned >= fresh - 0.02


def test_removing_every_item_is_refused(index_file, tmp_path):
    path, index, vectors = index_file
    with pytest.raises(ValueError, match="every item"):
        prune_index_file(path, index.spec, np.arange(len(vectors)), tmp_path / "pruned.hnsw")


def test_removing_the_whole_top_level_lowers_the_graph(index_file, tmp_path):
    from edgerec.bundle.hnsw_file import open_index_file, read_layout

    path, index, vectors = index_file
    with open_index_file(path) as handle:
        before, levels, _, _ = read_layout(path, handle, index.spec)
    labels = validate_index_file(path, index.spec)
    top = labels[levels == before.max_level].astype(np.int64)
    spec = prune_index_file(path, index.spec, top, tmp_path / "pruned.hnsw")
    after = header(tmp_path / "pruned.hnsw")
    assert after.max_level < before.max_level
    kept = np.delete(vectors, np.sort(top), axis=0)
    pruned = ItemIndex.load(tmp_path / "pruned.hnsw", spec)
    assert [int(pruned.search(v, 1)[0][0]) for v in kept[:300]] == list(range(300))


def test_one_item_can_be_left(index_file, tmp_path):
    path, index, vectors = index_file
    spec = prune_index_file(path, index.spec, np.arange(1, len(vectors)), tmp_path / "pruned.hnsw")
    pruned = ItemIndex.load(tmp_path / "pruned.hnsw", spec)
    assert spec.count == 1 and np.array_equal(pruned.vectors([0]), vectors[:1])
    assert list(pruned.search(vectors[5], 1)[0]) == [0]
