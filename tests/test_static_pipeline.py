"""The export pipeline from a general static student (--static-base) on the tiny catalogue: the table is
fitted to the collaborative targets, written as Gather graphs that match it, and bundled; the runtime
answers from that bundle as the numpy table does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiny import make_tiny_teacher, tiny_catalog, tiny_split

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
    with pytest.raises(ValueError, match="no token"):
        fit_static(rows, [[], [5]], np.ones((2, 24)), StaticFitConfig(epochs=1))
