"""ItemIndex: hnswlib behind a typed wrapper that checks queries and k; small catalogues searched exactly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgerec import index as index_module
from edgerec.errors import BundleError, InputError
from edgerec.index import ItemIndex, searches_exactly
from edgerec.bundle.manifest import IndexSpec

COUNT, DIM = 2000, 32


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def through_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the graph: every index here is searched as a large catalogue is, unless a
    test says otherwise (``exactly``)."""
    monkeypatch.setattr(index_module, "EXACT_UP_TO", 0)


def exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the shipped limit


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_rows(np.random.default_rng(42), COUNT)


@pytest.fixture(scope="module")
def index(vectors: np.ndarray) -> ItemIndex:
    return ItemIndex.build(vectors)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return unit_rows(np.random.default_rng(7), 100)


def test_build_records_the_spec(index: ItemIndex) -> None:
    # 2,000 items: a small catalogue gets the dense graph (edgerec.index.default_graph)
    assert index.spec == IndexSpec(space="ip", dim=DIM, m=48, ef_construction=400, ef=64, count=COUNT)


def test_the_graph_is_dense_up_to_five_thousand_items_and_lean_above() -> None:
    from edgerec.index import DENSE_GRAPH_UP_TO, default_graph

    assert default_graph(1) == default_graph(DENSE_GRAPH_UP_TO) == (48, 400)
    assert default_graph(DENSE_GRAPH_UP_TO + 1) == (16, 200)


def test_recall_at_10_against_exact_search(index: ItemIndex, vectors: np.ndarray, queries: np.ndarray) -> None:
    # Threshold: mean recall@10 >= 0.95 over 100 queries (HNSW with M=48, ef=64 on
    # 2,000 random 32-d unit vectors typically reaches ~0.99).
    hits = 0
    for query in queries:
        exact = set(np.argsort(-(vectors @ query))[:10])
        labels, _ = index.search(query, 10)
        hits += len(exact & set(labels.tolist()))
    recall = hits / (10 * len(queries))
    assert recall >= 0.95, f"recall@10 = {recall:.3f}"


def test_scores_are_sorted_dot_products(index: ItemIndex, vectors: np.ndarray, queries: np.ndarray) -> None:
    for query in queries[:20]:
        labels, scores = index.search(query, 10)
        assert labels.dtype == np.int64 and scores.dtype == np.float32
        assert len(labels) == 10 and len(set(labels.tolist())) == 10
        assert np.all(np.diff(scores) <= 0)
        np.testing.assert_allclose(scores, vectors[labels] @ query, atol=1e-5)


def test_item_vector_finds_itself_first(index: ItemIndex, vectors: np.ndarray) -> None:
    labels, scores = index.search(vectors[123], 3)
    assert labels[0] == 123
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(index.vectors([123, 5]), vectors[[123, 5]], atol=1e-6)


def test_save_then_load_searches_identically(index: ItemIndex, queries: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "index.hnsw"
    index.save(path)
    loaded = ItemIndex.load(path, index.spec)
    assert loaded.spec == index.spec
    for query in queries[:20]:
        labels, scores = index.search(query, 10)
        loaded_labels, loaded_scores = loaded.search(query, 10)
        assert np.array_equal(labels, loaded_labels)
        assert np.array_equal(scores, loaded_scores)


def test_load_refuses_a_count_the_file_does_not_hold(index: ItemIndex, tmp_path: Path) -> None:
    path = tmp_path / "index.hnsw"
    index.save(path)
    spec = IndexSpec(space="ip", dim=DIM, m=16, ef_construction=200, ef=64, count=COUNT + 1)
    with pytest.raises(BundleError, match=f"index holds {COUNT} items"):
        ItemIndex.load(path, spec)


@pytest.mark.parametrize("dim", [DIM // 2, DIM * 2])
def test_load_refuses_a_dim_the_file_does_not_hold(index: ItemIndex, tmp_path: Path, dim: int) -> None:
    path = tmp_path / "index.hnsw"
    index.save(path)
    spec = IndexSpec(space="ip", dim=dim, m=16, ef_construction=200, ef=64, count=COUNT)
    with pytest.raises(BundleError):
        ItemIndex.load(path, spec)


def test_load_refuses_a_missing_file(tmp_path: Path) -> None:
    spec = IndexSpec(space="ip", dim=DIM, m=16, ef_construction=200, ef=64, count=COUNT)
    with pytest.raises(BundleError, match="cannot read"):
        ItemIndex.load(tmp_path / "absent.hnsw", spec)


def test_exclude_drops_labels_and_still_returns_k(index: ItemIndex, queries: np.ndarray) -> None:
    query = queries[0]
    top, _ = index.search(query, 13)
    excluded = top[[0, 2, 5]].tolist()
    labels, scores = index.search(query, 10, exclude=excluded)
    assert len(labels) == 10 and len(scores) == 10
    assert not set(excluded) & set(labels.tolist())
    assert labels.tolist() == [label for label in top.tolist() if label not in excluded][:10]


def test_exclude_of_unknown_labels_changes_nothing(index: ItemIndex, queries: np.ndarray) -> None:
    plain, _ = index.search(queries[1], 10)
    labels, _ = index.search(queries[1], 10, exclude=[COUNT + 5, -1])
    assert np.array_equal(plain, labels)


@pytest.mark.parametrize("k", [20, 21, 1000])
def test_k_larger_than_count_is_clamped(k: int) -> None:
    vectors = unit_rows(np.random.default_rng(3), 20, dim=8)
    small = ItemIndex.build(vectors)
    labels, scores = small.search(vectors[0], k)
    assert sorted(labels.tolist()) == list(range(20))
    assert len(scores) == 20
    labels, _ = small.search(vectors[0], k, exclude=[0, 1])
    assert sorted(labels.tolist()) == list(range(2, 20))


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_is_refused(index: ItemIndex, queries: np.ndarray, k: int) -> None:
    with pytest.raises(InputError, match="at least 1"):
        index.search(queries[0], k, exclude=[1, 2])


def _bad_width(rng: np.random.Generator) -> np.ndarray:
    return unit_rows(rng, 1, DIM - 1)[0]


def _two_rows(rng: np.random.Generator) -> np.ndarray:
    return unit_rows(rng, 2)


def _with(value: float):
    def make(rng: np.random.Generator) -> np.ndarray:
        query = unit_rows(rng, 1)[0]
        query[3] = value
        return query
    return make


@pytest.mark.parametrize(
    ("make", "fragment"),
    [(_bad_width, "31 dims"), (_two_rows, "64 dims"), (_with(np.nan), "NaN"), (_with(np.inf), "infinity"),
     (_with(-np.inf), "infinity")],
    ids=["width-31", "two-rows", "nan", "inf", "-inf"],
)
def test_unusable_query_is_an_input_error(index: ItemIndex, make, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        index.search(make(np.random.default_rng(0)), 5)


@pytest.mark.parametrize(("damage", "fragment"), [(None, None), ("nan", "NaN or infinity"),
                                                  ("label", "labels that are not the item rows")])
def test_level0_is_checked_block_by_block(index: ItemIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          damage: str | None, fragment: str | None) -> None:
    import struct

    import edgerec.bundle.hnsw_file
    from edgerec.bundle.hnsw_file import HEADER, validate_index_file

    path = tmp_path / "index.hnsw"
    index.save(path)
    data = bytearray(path.read_bytes())
    header = HEADER.unpack_from(data)
    per_element, label_offset, offset_data = header[3], header[4], header[5]
    last_row = HEADER.size + (COUNT - 1) * per_element  # in the last, short block
    if damage == "nan":
        struct.pack_into("<f", data, last_row + offset_data, float("nan"))
    elif damage == "label":
        struct.pack_into("<Q", data, last_row + label_offset, 0)
    path.write_bytes(bytes(data))
    monkeypatch.setattr(edgerec.bundle.hnsw_file, "CHECK_BLOCK", 300)
    if fragment is None:
        validate_index_file(path, index.spec)
    else:
        with pytest.raises(BundleError, match=fragment):
            validate_index_file(path, index.spec)


def test_vectors_come_back_by_label_from_memory_and_from_the_file(tmp_path: Path) -> None:
    # Built on 2 threads, hnswlib's internal rows are not in label order: reading the file by row
    # without the label map would return other items' vectors.
    many = unit_rows(np.random.default_rng(3), 9000)  # above one chunk, so bulk reads go to the file
    built = ItemIndex.build(many, threads=2)
    path = tmp_path / "index.hnsw"
    built.save(path)
    loaded = ItemIndex.load(path, built.spec)
    some = [8999, 0, 4242, 4242, 17]
    for index in (built, loaded):
        np.testing.assert_array_equal(index.vectors(range(len(many))), many)
        np.testing.assert_array_equal(index.vectors(some), many[some])
        assert index.vectors([]).shape == (0, many.shape[1])
    # A bundle is replaced by renaming a new one into place: the loaded index still reads its own file.
    other = tmp_path / "other.hnsw"
    ItemIndex.build(unit_rows(np.random.default_rng(4), 9000)).save(other)
    os.replace(other, path)
    np.testing.assert_array_equal(loaded.vectors(range(len(many))), many)
    # A file cut short in place (edgerec never writes one in place) is refused, not misread.
    cut = tmp_path / "cut.hnsw"
    built.save(cut)
    victim = ItemIndex.load(cut, built.spec)
    os.truncate(cut, 1000)
    with pytest.raises(BundleError, match="changed after the bundle was loaded"):
        victim.vectors(range(len(many)))


def test_which_catalogues_are_searched_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the shipped limit
    assert searches_exactly(1000, 384) and searches_exactly(1500, 256) and searches_exactly(12_000, 32)
    assert not searches_exactly(2000, 384) and not searches_exactly(3883, 384) and not searches_exactly(10**6, 32)


def test_an_exact_search_is_brute_force_with_ties_to_the_lower_label(monkeypatch: pytest.MonkeyPatch) -> None:
    exactly(monkeypatch)
    rng = np.random.default_rng(11)
    vectors = unit_rows(rng, 300)
    vectors[40] = vectors[7]  # a tie: the lower label comes first
    index = ItemIndex.build(vectors)
    assert index.exact
    for query in np.concatenate([unit_rows(rng, 30), vectors[[7]]]):
        scores = vectors @ query
        expected = np.lexsort((np.arange(len(scores)), -scores))
        labels, found = index.search(query, 10)
        assert labels.tolist() == expected[:10].tolist()
        np.testing.assert_allclose(found, scores[labels], atol=1e-6)
        labels, _ = index.search(query, 10, exclude=[int(expected[0]), 99999, -3])
        assert labels.tolist() == expected[1:11].tolist()
    assert index.search(vectors[7], 2)[0].tolist() == [7, 40]
    assert sorted(index.search(vectors[0], 1000, exclude=[0])[0].tolist()) == list(range(1, 300))
    assert len(index.search(vectors[0], 5, exclude=range(300))[0]) == 0


def test_a_small_index_loads_its_graph_only_for_an_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exactly(monkeypatch)
    rng = np.random.default_rng(12)
    vectors = unit_rows(rng, 500)
    path = tmp_path / "index.hnsw"
    ItemIndex.build(vectors).save(path)
    loaded = ItemIndex.load(path, ItemIndex.build(vectors).spec, room_for=501)
    query = unit_rows(rng, 1)[0]
    assert loaded.search(query, 5)[0].tolist() == np.argsort(-(vectors @ query))[:5].tolist()
    np.testing.assert_array_equal(loaded.vectors([3, 1]), vectors[[3, 1]])
    loaded.set_ef(100)
    assert loaded._native is None and loaded.ef == 100  # answered from the vectors alone
    extra = unit_rows(rng, 1)
    loaded.upsert(extra, np.array([500]))  # an update links the new item into the graph
    assert loaded._native is not None and loaded._native.ef == 100
    assert loaded.search(extra[0], 1)[0].tolist() == [500]
