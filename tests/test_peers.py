"""`python -m export peers` end to end on the tiny teacher and bundle (few rounds; timings not asserted)."""

from __future__ import annotations

import json
import shutil

import pytest

from export.measure.peers import EDGEREC, PeersConfig, installed_bytes, run_peers
from export.stages.sources import read_teacher

VARIANTS = [EDGEREC, "st-torch", "onnx-fp32", "onnx-int8-st", "onnx-int8-ort"]


@pytest.fixture(scope="module")
def peers_body(tiny_export, tmp_path_factory) -> dict:
    _, config, _ = tiny_export
    root = tmp_path_factory.mktemp("peers")
    # A copy of the tiny teacher with the pooling config sentence-transformers' ONNX backend reads.
    teacher_dir = shutil.copytree(config.work.parent / "teacher", root / "teacher")
    (teacher_dir / "1_Pooling").mkdir(exist_ok=True)
    (teacher_dir / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    peers = PeersConfig(bundle=config.out, work=root / "work", results=root / "results", rounds=8, warmup=2,
                        cold_starts=1, chunk=40)
    body = run_peers(peers, read_teacher(teacher_dir, name="tiny-bert"), argv=["peers", "--rounds", "8"],
                     log=lambda line: None)
    body["_results"] = peers.results
    return body


@pytest.mark.needs_torch  # the peers include sentence-transformers on torch
def test_every_variant_has_every_figure(peers_body):
    rows = {r["key"]: r for r in peers_body["variants"]}
    assert list(rows) == VARIANTS
    for row in rows.values():
        for what in ("encode", "query"):
            assert set(row[what]) == {"1", "2"}
            for timing in row[what].values():
                assert timing["samples"] == 8 and 0 < timing["p50_ms"] <= timing["p95_ms"] <= timing["p99_ms"]
        assert row["items_per_second"] > 0 and row["cold_start_s"] > 0 and row["peak_rss_mb"] > 10
        assert row["install"]["total_bytes"] == row["install"]["packages_bytes"] + row["install"]["model_bytes"]
        assert row["floor"]["by_threads"]["1"]["measured_ms"] == row["encode"]["1"]["p50_ms"]
    assert all(v == 1.0 for v in rows[EDGEREC]["ratios"].values())
    assert rows[EDGEREC]["floor"]["shape"]["layers"] == 1 and rows["onnx-fp32"]["floor"]["shape"]["layers"] == 2
    assert rows[EDGEREC]["precision"] == "int8" and rows["onnx-fp32"]["precision"] == "fp32"
    assert peers_body["command"] == "python -m export peers --rounds 8" and peers_body["machine"]["cpu"]


@pytest.mark.needs_torch
def test_footprints_count_what_each_variant_needs(peers_body):
    rows = {r["key"]: r["install"] for r in peers_body["variants"]}
    assert "torch" in rows["st-torch"]["distributions"]
    for key in (EDGEREC, "onnx-int8-ort"):
        assert "torch" not in rows[key]["distributions"] and "onnxruntime" in rows[key]["distributions"]
    assert "hnswlib" in rows[EDGEREC]["distributions"]
    assert rows["st-torch"]["packages_bytes"] > 5 * rows["onnx-int8-ort"]["packages_bytes"]


@pytest.mark.needs_torch
def test_markdown_has_a_row_per_variant_and_the_floor(peers_body):
    text = (peers_body["_results"] / "peers.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 2 * (1 + len(VARIANTS))  # the comparison and the floor, each with a header
    assert "## The physical floor" in text and "L * S * (2*(4*H^2 + 2*H*FF) + 4*S*H)" in text
    assert "`python -m export peers --rounds 8`" in text
    assert json.loads((peers_body["_results"] / "peers.json").read_text())["query_tokens"] > 2


def test_installed_bytes_follows_requirements_and_lists_what_is_missing():
    found = installed_bytes(["click", "surely-not-an-installed-distribution"])
    assert found["distributions"]["click"] > 10_000
    assert found["missing"] == ["surely-not-an-installed-distribution"]
