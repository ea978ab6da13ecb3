"""The physical floor: the arithmetic formula, the model shapes it reads, the CPU peak it divides by."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.measure.floor import (EncoderShape, cpu_peak, encoder_ops, floor_report, graph_precision,
                                  shape_from_config, shape_from_onnx)

MINILM = EncoderShape(hidden=384, ff=1536, layers=6, vocab=30522, source="all-MiniLM-L6-v2")

SAPPHIRE_RAPIDS = """processor	: 0
vendor_id	: GenuineIntel
cpu family	: 6
model name	: Intel(R) Xeon(R) Platinum 8488C
cpu MHz		: 2400.000
flags		: fpu avx2 avx512f avx512bw avx512_vnni amx_int8
processor	: 1
vendor_id	: GenuineIntel
cpu family	: 6
model name	: Intel(R) Xeon(R) Platinum 8488C
cpu MHz		: 2400.000
flags		: fpu avx2 avx512f avx512bw avx512_vnni amx_int8
"""


def test_minilm_at_16_tokens_is_about_a_third_of_a_gop():
    # 6 layers x 16 tokens x (2 * (4 * 384^2 + 2 * 384 * 1536) + 4 * 16 * 384)
    assert encoder_ops(MINILM, 16) == 6 * 16 * (2 * (4 * 384 * 384 + 2 * 384 * 1536) + 4 * 16 * 384) == 342_097_920
    assert encoder_ops(MINILM, 64) / 1e9 == pytest.approx(1.397, abs=0.001)  # BASELINES: ~1.4 GOP at 64 tokens


def test_attention_term_grows_with_the_square_of_the_length():
    no_ff = EncoderShape(hidden=8, ff=0, layers=1, vocab=None, source="test")
    assert encoder_ops(no_ff, 10) == 10 * (2 * 4 * 64 + 4 * 10 * 8)
    assert encoder_ops(EncoderShape(384, 1536, 0, None, "no layers"), 16) == 0


def test_int8_peak_from_cpuinfo():
    peak = cpu_peak(SAPPHIRE_RAPIDS, cores=2)
    assert peak.int8_isa == "avx512_vnni" and peak.int8_ops_per_instruction == 128
    assert peak.units_per_core == 2 and "Xeon" in peak.units_assumption
    assert peak.int8_ops_per_second_per_core == pytest.approx(2.4e9 * 128 * 2)
    assert peak.fp32_ops_per_second_per_core == pytest.approx(2.4e9 * 32 * 2)
    avx2_only = cpu_peak(SAPPHIRE_RAPIDS.replace(" avx512f avx512bw avx512_vnni amx_int8", ""), cores=1)
    assert avx2_only.int8_isa == "avx2" and avx2_only.int8_ops_per_instruction == pytest.approx(64 / 3, abs=0.01)


def test_floor_report_divides_by_cores_and_reports_the_share_of_peak():
    peak = cpu_peak(SAPPHIRE_RAPIDS, cores=2)
    report = floor_report(MINILM, 16, peak, {1: 1.0, 2: 0.6})
    one, two = report["by_threads"]["1"], report["by_threads"]["2"]
    assert one["floor_ms"] == pytest.approx(342_097_920 / (2.4e9 * 256) * 1e3, rel=1e-4)
    assert two["floor_ms"] == pytest.approx(one["floor_ms"] / 2, rel=1e-3)
    assert one["efficiency"] == pytest.approx(one["floor_ms"] / 1.0, rel=1e-3)
    assert report["formula"] == "L * S * (2*(4*H^2 + 2*H*FF) + 4*S*H)" and report["gop"] == pytest.approx(0.342, abs=1e-3)


@pytest.mark.needs_torch
def test_shape_read_from_the_graph_matches_the_config(tiny_export):
    """fp32 and INT8 (fused) graphs of the tiny student give the student's own config."""
    from export.stages.pipeline import FP32_NAME

    student, config, _ = tiny_export
    expected = shape_from_config(student.path / "config.json")
    for graph in [config.work / FP32_NAME, *sorted((config.work / "int8").glob("*.onnx"))]:
        found = shape_from_onnx(graph, expected.hidden)
        assert (found.hidden, found.ff, found.layers, found.vocab) == (
            expected.hidden, expected.ff, expected.layers, expected.vocab), graph
    assert graph_precision(config.work / FP32_NAME) == "fp32"
    assert graph_precision(sorted((config.work / "int8").glob("*.onnx"))[0]) == "int8"


def test_shape_of_the_shipped_encoder():
    shipped = Path(__file__).resolve().parent.parent / "artifacts" / "default" / "encoder.onnx"
    if not shipped.is_file():
        pytest.skip("no shipped bundle in this checkout")
    shape = shape_from_onnx(shipped, 384)
    assert shape.hidden == 384 and shape.vocab == 30522 and shape.layers in range(0, 7)
