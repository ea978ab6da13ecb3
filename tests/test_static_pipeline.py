"""The export pipeline from a general static student (--static-base) on the tiny catalogue: the table is
fitted to the collaborative targets, written as Gather graphs that match it, and bundled; the runtime
answers from that bundle as the numpy table does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiny import make_tiny_teacher, tiny_catalog, tiny_split


def with_description_model(bundle: Path, out: Path) -> None:
    """``bundle`` with its own encoder as a description model (any model writing into its index's space)."""
    from edgerec.bundle.manifest import DescriptionSpec
    from edgerec.bundle.reader import open_bundle
    from edgerec.bundle.writer import BundleWriter

    source = open_bundle(bundle)
    manifest = source.manifest
    with BundleWriter(out) as writer:
        for role in manifest.files:
            writer.copy_in(role, source.path(role))
        writer.copy_in("descriptions", source.path("encoder"))
        writer.finish(name="teacher", encoder=manifest.encoder, index=manifest.index, items=manifest.items,
                      provenance={}, user=manifest.user, lexical=manifest.lexical,
                      descriptions=DescriptionSpec(model=manifest.encoder, max_margin=0.5, min_title_cover=0.67,
                                                   weight=1.0, title_field="title"))

pytestmark = pytest.mark.needs_torch


def test_a_static_base_is_fitted_checked_and_bundled(tmp_path: Path) -> None:
    from edgerec import Recommender
    from export.stages.finetune import TargetConfig
    from export.stages.pipeline import STATIC_ROWS, ExportConfig, run_all
    from export.stages.sources import read_teacher
    from export.stages.static_embed import StaticEncoder, vocabulary_words
    from export.stages.static_fit import StaticFitConfig, fit_static, token_ids
    from export.stages.static_onnx import OUTPUT

    teacher = read_teacher(make_tiny_teacher(tmp_path / "teacher"), name="tiny-bert")
    base = tmp_path / "base"
    base.mkdir()
    words, special = vocabulary_words(teacher.path / "tokenizer.json")
    rows = np.random.default_rng(0).normal(size=(len(words), 24)).astype(np.float32)
    rows[special] = 0.0
    np.save(base / "rows.f16.npy", rows.astype(np.float16))
    (base / "tokenizer.json").write_bytes((teacher.path / "tokenizer.json").read_bytes())
    records = tiny_catalog()
    config = ExportConfig(
        work=tmp_path / "work", out=tmp_path / "bundle", name="tiny-static", validation_items=60, timing_rounds=5,
        targets=TargetConfig(window=4, epochs=2, batch_size=64, learning_rate=0.05), anchors=20,
        static_base=base, static_fit=StaticFitConfig(epochs=5, batch_size=32, learning_rate=1e-2),
        static_general_texts=("a haunted house on a hill", "the king of the sea"),
        catalog_provenance={"source": "synthetic test catalogue"},
    )
    run_all(teacher, records, tiny_split(records), config)

    import json

    report = json.loads((config.work / "static.json").read_text())
    assert report["general_texts"] == 2
    targets = np.load(config.work / "targets.npy")
    from edgerec.items import item_text

    texts = [item_text(r, config.text_fields) for r in records]
    before = StaticEncoder(rows.astype(np.float16).astype(np.float32), base / "tokenizer.json").encode(texts)
    fitted = np.load(config.work / STATIC_ROWS)
    after = StaticEncoder(fitted, base / "tokenizer.json").encode(texts)

    def own_target_first(vectors: np.ndarray) -> float:  # what the softmax term trains
        return float(np.mean(np.argmax(vectors @ targets.T, axis=1) == np.arange(len(targets))))
    assert own_target_first(after) > own_target_first(before) + 0.1
    assert report["graphs_vs_numpy"]["float16"]["mean_cosine"] >= 0.9999
    from export.stages.query_texts import query_like_texts

    read = texts + query_like_texts(records, config.anchors, seed=config.seed)
    unused = sorted(set(range(len(words))) - {t for ids in token_ids(base / "tokenizer.json", read, 512) for t in ids})
    assert len(unused) > 10
    assert np.array_equal(fitted[unused], rows.astype(np.float16).astype(np.float32)[unused])  # untouched rows
    rec = Recommender.load(config.out, threads=1)
    assert rec.bundle.manifest.encoder.output == OUTPUT and rec.bundle.manifest.encoder.inputs == ("input_ids",)
    assert "fitted to MovieLens-1M" in " ".join(rec.bundle.manifest.provenance["model"]["stages"])
    query = "haunted house horror"
    expected = StaticEncoder(fitted, base / "tokenizer.json").encode([query])[0]
    assert float(rec.encoder.encode_one(query) @ expected) > 0.999
    assert len(rec.query(query, k=5)) == 5
    # The index holds the chosen blend of fitted text vectors and targets, the best valid HR@10 of those allowed.
    blend, by_blend = report["item_vectors"]["blend"], report["item_vectors"]["by_blend"]
    floor = min(config.min_title_at_1, by_blend["0.0"]["title_at_1"])
    allowed = {b: f["valid_hr@10"] for b, f in by_blend.items() if f["title_at_1"] >= floor}
    assert by_blend[str(blend)]["valid_hr@10"] == max(allowed.values())
    indexed = rec.index.vectors(range(len(records)))
    mixed = (1 - blend) * after + blend * targets
    np.testing.assert_allclose(indexed, mixed / np.linalg.norm(mixed, axis=1, keepdims=True), atol=1e-5)
    assert rec.bundle.manifest.lexical is not None and rec.lexical is not None and rec.lexical.size == len(records)

    # A teacher bundle's description model teaches the table descriptive phrases.
    from dataclasses import replace as with_changes

    from export.stages.static_teach import TeachConfig

    teacher_bundle = tmp_path / "teacher-bundle"
    with_description_model(config.out, teacher_bundle)
    phrases = tuple(f"a {w} film about the {v}" for w in ("scary", "funny", "dark", "space") for v in
                    ("sea", "king", "night", "robot", "ghost", "city"))
    taught = with_changes(config, work=tmp_path / "work2", out=tmp_path / "bundle2", static_teacher=teacher_bundle,
                          static_teach=TeachConfig(epochs=3, batch_size=16, learning_rate=1e-2, phrases=phrases))
    run_all(teacher, records, tiny_split(records), taught)
    report2 = json.loads((taught.work / "static.json").read_text())
    overlap = report2["descriptions_taught"]["held_out_overlap_at_10"]
    losses = report2["descriptions_taught"]["loss_per_epoch"]  # 1 - cosine to the goals: it learns them
    assert report2["descriptions_taught"]["phrases"] == len(phrases) and losses[-1] < losses[0]
    assert 0.0 <= overlap["before"] <= 1.0 and 0.0 <= overlap["after"] <= 1.0
    assert not np.array_equal(np.load(taught.work / STATIC_ROWS), fitted)
    assert json.loads((taught.work / "static-fit.json").read_text())["key"]["fit"] == config.static_fit.as_dict()
    with pytest.raises(ValueError, match="no token"):
        fit_static(rows, [[], [5]], np.ones((2, 24)), StaticFitConfig(epochs=1))
