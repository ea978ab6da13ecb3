"""The evaluation's table and plot writers, on made-up rows (the real run is `python -m export evaluate`)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from export.measure.evaluation import Row, markdown, svg_plot

QUALITY = {"hr@10": 0.1, "ndcg@10": 0.05, "hr@20": 0.2, "ndcg@20": 0.07}


def rows() -> list[Row]:
    timing = {"query_1t": {"p50_ms": 2.0, "p95_ms": 3.0}, "query_2t": {"p50_ms": 1.5, "p95_ms": 2.0},
              "recommend_1t": {"p50_ms": 0.2, "p95_ms": 0.3}}
    fast = {k: {"p50_ms": v["p50_ms"] / 10, "p95_ms": v["p95_ms"] / 10} for k, v in timing.items()}
    return [
        Row("popularity", "most liked", {**QUALITY, "hr@10": 0.04}),
        Row("stock-int8-ort", "stock", QUALITY, 0.5, timing, 300.0, 23_000_000, 120.0),
        Row("student-0L-fused-dynamic-per-channel", "student", {**QUALITY, "hr@10": 0.14}, 0.6, fast, 9000.0,
            12_000_000, 90.0),
    ]


def test_markdown_has_one_line_per_row_and_the_summary():
    summary = {"measured": "2026-11-23", "cpu": "test cpu", "timing_query": "q", "shipped": "student-0L",
               "query_p50_vs_stock_ort_int8": 0.1, "query_p50_vs_stock_st_int8": 0.1,
               "query_p50_vs_sentence_transformers_torch": 0.01, "hr10_vs_popularity": 3.5,
               "hr10_vs_finetuned_teacher": 0.99, "shipped_int8_vs_student_fp32": {"mean_cosine": 0.99}}
    text = markdown(rows(), summary)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(rows())
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert "| popularity |" in text and "| – / – |" in text  # no latency for a baseline without a model
    assert "hr10 vs popularity: 3.5" in text


def test_plot_is_valid_svg_with_a_point_per_timed_row():
    svg = svg_plot(rows(), shipped="student-0L-fused-dynamic-per-channel")
    root = ElementTree.fromstring(svg)
    circles = [e for e in root.iter() if e.tag.endswith("circle")]
    assert len(circles) == 2  # popularity has no latency: it is the dashed line instead
    assert sum(c.get("fill") == "crimson" for c in circles) == 1
