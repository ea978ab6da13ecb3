"""`python -m export ann` at tiny sizes: output structure, recall against exact answers, the crossover rule."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from export.__main__ import main as export_main
from export.measure.ann import AnnConfig, cluster_centres, crossover, exact_answers, mixture


@pytest.fixture(scope="module")
def ann_results(tiny_bundle, tmp_path_factory) -> dict:
    results = tmp_path_factory.mktemp("ann")
    code = export_main(["ann", "--bundle", str(tiny_bundle), "--results", str(results), "--sizes", "500,2000",
                        "--efs", "10,50", "--queries", "60", "--exact-queries", "10"])
    assert code == 0
    body = json.loads((results / "ann.json").read_text())
    body["_dir"] = results
    return body


def test_every_size_has_build_memory_and_recall_at_each_ef(ann_results):
    assert [r["size"] for r in ann_results["sizes"]] == [500, 2000]
    for row in ann_results["sizes"]:
        assert row["m"] == 16 and row["dim"] == 32  # the tiny bundle's width: its vectors are the centres
        assert row["build_s"] > 0 and row["index_file_bytes"] > row["vectors_bytes"] > 0
        assert row["peak_rss_bytes"] > row["vectors_bytes"]
        assert [h["ef"] for h in row["hnsw"]] == [10, 50, 64]  # 64: the bundle's default ef is always added
        for h in row["hnsw"]:
            assert 0.0 <= h["recall_at_10"] <= 1.0 and 0 < h["p50_ms"] <= h["p95_ms"] <= h["p99_ms"]
        # ef=64 over at most 2,000 items: HNSW finds (nearly) the exact answers.
        assert row["hnsw"][-1]["recall_at_10"] >= 0.95
        assert row["exact"]["samples"] == 10


def test_memory_alternatives_crossover_and_files(ann_results):
    alt = ann_results["memory_alternatives"]
    assert alt["size"] == 2000 and set(alt) == {"size", "hnsw_m16", "hnsw_m8", "exact_float32", "exact_float16"}
    assert alt["exact_float16"]["bytes"] * 2 == alt["exact_float32"]["bytes"] == 2000 * 32 * 4
    assert alt["hnsw_m8"]["index_file_bytes"] < alt["hnsw_m16"]["index_file_bytes"]
    assert 0.9 <= alt["exact_float16"]["recall_at_10"] <= 1.0
    assert ann_results["crossover"]["ef"] == 64 and ann_results["crossover"]["text"]
    assert [d["size"] for d in ann_results["default_ef"]] == [500, 2000]
    results = ann_results["_dir"]
    assert "## Memory alternatives at 2,000 items" in (results / "ann.md").read_text()
    svg = ElementTree.fromstring((results / "ann.svg").read_text())
    assert sum(e.tag.endswith("polyline") for e in svg.iter()) == 2  # exact and HNSW, each joined over the sizes


def test_exact_answers_in_blocks_equal_a_full_sort():
    config = AnnConfig(sizes=(100,), dim=16, clusters=20)
    centres = cluster_centres(config)
    items, queries = mixture(centres, 40_000, config, stream=1), mixture(centres, 30, config, stream=2)
    assert np.allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)
    full = np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :10]
    assert (exact_answers(items, queries) == full).mean() > 0.999  # ties in float32 may swap a pair


def test_crossover_interpolates_between_the_sizes_around_it():
    def row(size: int, exact: float, hnsw: float) -> dict:
        return {"size": size, "exact": {"p50_ms": exact}, "hnsw": [{"ef": 64, "p50_ms": hnsw}]}

    rows = [row(1_000, 0.02, 0.05), row(10_000, 0.2, 0.05), row(100_000, 2.0, 0.08)]
    found = crossover(rows, 64)
    # exact/HNSW goes 0.4 -> 4 over the decade; log-linear, it is 1 at ln(2.5)/ln(10) of it: 10^3.398 ~ 2,500
    assert found["size"] == pytest.approx(2_500, rel=0.03)
    assert crossover(rows[1:], 64)["size"] is None and "every measured size" in crossover(rows[1:], 64)["text"]
    assert crossover(rows[:1], 64)["size"] is None and "still faster" in crossover(rows[:1], 64)["text"]


def test_memory_size_must_be_a_measured_size():
    with pytest.raises(ValueError, match="memory_size"):
        AnnConfig(sizes=(1000,), memory_size=2000)
