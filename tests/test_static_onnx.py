"""A static table as an ONNX Gather graph: edgerec's own TextEncoder reads it and gives the static
model's vectors (float16 exactly, int8 within rounding), [CLS] and [SEP] included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiny import make_tiny_teacher

pytest.importorskip("onnx")
pytestmark = pytest.mark.needs_torch  # the tiny tokenizer is made with transformers

TEXTS = ["a haunted house", "space alien robot heist", "the king and the queen of the sea", "dog"]


def test_the_gather_graph_reads_as_the_static_model(tmp_path: Path) -> None:
    from edgerec.bundle.manifest import EncoderSpec
    from edgerec.encoder import TextEncoder
    from export.stages.static_embed import StaticEncoder, vocabulary_words
    from export.stages.static_onnx import OUTPUT, int8_rows, write_static_onnx

    tokenizer = make_tiny_teacher(tmp_path / "teacher") / "tokenizer.json"
    words, special = vocabulary_words(tokenizer)
    rows = np.random.default_rng(0).normal(size=(len(words), 16)).astype(np.float32)
    rows[special] = 0.0  # as the student leaves them: never trained
    rows = rows.astype(np.float16).astype(np.float32)
    static = StaticEncoder(rows, tokenizer).encode(TEXTS)
    spec = EncoderSpec(max_length=32, pooling="mean", normalize=True, dim=16, inputs=("input_ids",), output=OUTPUT,
                       vocab_size=len(words))
    for storage, tolerance in (("float16", 1e-6), ("int8", 1e-2)):
        encoder = TextEncoder(write_static_onnx(rows, tmp_path / f"{storage}.onnx", storage), tokenizer, spec, threads=1)
        batch = encoder.encode(TEXTS)
        assert np.abs(batch - static).max() < tolerance and (batch * static).sum(axis=1).min() > 0.9995, storage
        assert np.abs(encoder.encode_one(TEXTS[1]) - static[1]).max() < tolerance
    quantized, scale = int8_rows(rows)
    assert np.abs(quantized.astype(np.float32) * scale[:, None] - rows).max() <= scale.max() / 2 + 1e-7
    assert (scale[special] == 1.0).all() and (quantized[special] == 0).all()
    assert (tmp_path / "int8.onnx").stat().st_size < (tmp_path / "float16.onnx").stat().st_size
    with pytest.raises(ValueError, match="storage"):
        write_static_onnx(rows, tmp_path / "x.onnx", "int4")
    with pytest.raises(ValueError, match="finite"):
        write_static_onnx(np.full((3, 2), np.nan), tmp_path / "y.onnx")


def test_a_static_model_is_read_back_as_a_base_to_fit(tmp_path: Path) -> None:
    from edgerec.bundle.writer import BundleWriter
    from export.stages.general_model import load_static_base, static_spec
    from export.stages.static_embed import vocabulary_words
    from export.stages.static_onnx import int8_rows, read_static_onnx, write_static_onnx

    tokenizer = make_tiny_teacher(tmp_path / "teacher") / "tokenizer.json"
    rows = np.random.default_rng(1).normal(size=(len(vocabulary_words(tokenizer)[0]), 8)).astype(np.float32)
    quantized, scale = int8_rows(rows)
    for storage, expected in (("float16", rows.astype(np.float16).astype(np.float32)),
                              ("int8", quantized.astype(np.float32) * scale[:, None])):
        np.testing.assert_allclose(read_static_onnx(write_static_onnx(rows, tmp_path / f"{storage}.onnx", storage)),
                                   expected, atol=1e-6)
    with BundleWriter(tmp_path / "model") as writer:  # what `python -m export general` writes
        writer.copy_in("encoder", tmp_path / "int8.onnx")
        writer.copy_in("tokenizer", tokenizer)
        writer.finish(name="m", encoder=static_spec(rows), index=None, items=None, provenance={})
    base_rows, base_tokenizer = load_static_base(tmp_path / "model")
    assert np.abs(base_rows - rows).max() <= scale.max() / 2 + 1e-6 and base_tokenizer.name == "tokenizer.json"
    folder = tmp_path / "student"
    folder.mkdir()
    np.save(folder / "rows.f16.npy", rows.astype(np.float16))
    assert load_static_base(folder)[0].dtype == np.float32 and load_static_base(folder)[1] == folder / "tokenizer.json"
    with pytest.raises(ValueError, match="neither a static student folder"):
        load_static_base(tmp_path / "teacher")
