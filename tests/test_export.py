"""The export pipeline on the tiny teacher: every stage ran, checked itself, and reported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgerec.bundle.reader import open_bundle


@pytest.mark.needs_torch
def test_stages_leave_reports_and_the_bundle_records_them(tiny_export):
    teacher, config, records = tiny_export
    onnx_report = json.loads((config.work / "onnx.json").read_text())
    int8_report = json.loads((config.work / "int8.json").read_text())
    # fp32 ONNX reproduces torch up to float rounding.
    assert onnx_report["fp32_vs_torch"]["min_cosine"] >= 0.9999
    assert int8_report["size_bytes"]["int8"] < int8_report["size_bytes"]["fp32"]
    manifest = open_bundle(config.out).manifest
    model = manifest.provenance["model"]
    assert model["teacher"] == "tiny-bert"
    assert any("distilled" in stage for stage in model["stages"])
    assert set(model["training"]) == {"finetune", "distil"}
    assert manifest.user.window == config.targets.window
    # Every INT8 variant was built, checked and timed; the kept one is the bundle's encoder.
    assert set(int8_report["variants"]) == {v.key for v in config.int8_variants}
    assert int8_report["chosen"] in int8_report["variants"]
    assert model["validation"]["fp32_vs_torch"] == onnx_report["fp32_vs_torch"]
    assert model["encode_latency_1_thread"]["int8"]["p50_ms"] > 0
    assert manifest.items.count == len(records)
    assert manifest.encoder.max_length == 32 and manifest.encoder.dim == 32
    assert set(manifest.encoder.inputs) == {"input_ids", "attention_mask", "token_type_ids"}


@pytest.mark.needs_torch
def test_int8_stage_refuses_when_vectors_move_too_far(tiny_export, tmp_path):
    from dataclasses import replace

    from export.stages.pipeline import stage_int8
    from export.stages.validate import ValidationFailed

    teacher, config, records = tiny_export
    strict = replace(config, int8_min_mean_cosine=1.0001)  # no INT8 model can reach this
    with pytest.raises(ValidationFailed, match="mean cosine"):
        stage_int8(teacher, records, strict)
    # The report of the failed check is still written, for the person debugging it.
    failed = json.loads((config.work / "int8.json").read_text())
    assert failed["chosen"] is None
    assert all(v["int8_vs_fp32"]["mean_cosine"] < 1.0 for v in failed["variants"].values())
    stage_int8(teacher, records, config)  # restore the passing artefacts for other tests


def test_agreement_measures_cosine_and_neighbour_overlap():
    from export.stages.validate import agreement

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(50, 8))
    same = agreement(reference * 3.0, reference)
    assert same.min_cosine == pytest.approx(1.0) and same.top10_overlap == 1.0
    shuffled = agreement(rng.normal(size=(50, 8)), reference)
    assert shuffled.mean_cosine < 0.5 and shuffled.top10_overlap < 0.5


def test_reading_order_of_titles():
    from export.stages.sources import reading_order

    assert reading_order("Matrix, The") == "The Matrix"
    assert reading_order("Postino, Il (The Postman)") == "Il Postino (The Postman)"
    assert reading_order("Enfer, L'") == "L'Enfer"
    assert reading_order("Heat") == "Heat"
