"""A static table as an ONNX Gather graph: edgerec's own TextEncoder reads it and gives the static
model's vectors (float16 exactly, int8 within rounding), [CLS] and [SEP] included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgerec.errors import BundleError
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


def test_the_runtime_computes_a_static_graph_itself_with_onnx_runtimes_numbers(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from edgerec.bundle.manifest import EncoderSpec
    from edgerec.bundle.static_graph import read_static_table
    from edgerec.encoder import TextEncoder
    from export.stages.static_embed import vocabulary_words
    from export.stages.static_onnx import OUTPUT, write_static_onnx

    tokenizer = make_tiny_teacher(tmp_path / "teacher") / "tokenizer.json"
    rows = np.random.default_rng(2).normal(size=(len(vocabulary_words(tokenizer)[0]), 16)).astype(np.float32)
    spec = EncoderSpec(max_length=32, pooling="mean", normalize=True, dim=16, inputs=("input_ids",), output=OUTPUT,
                       vocab_size=len(rows))
    for storage in ("float16", "int8"):
        path = write_static_onnx(rows, tmp_path / f"{storage}.onnx", storage)
        encoder = TextEncoder(path, tokenizer, spec, threads=1)
        assert encoder.providers == ["numpy"] and encoder.session is None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for text in TEXTS:
            ids = np.asarray([encoder.tokenizer.encode(text).ids], dtype=np.int64)
            mean = session.run(None, {"input_ids": ids})[0][0].mean(axis=0)
            np.testing.assert_allclose(encoder.encode_one(text), mean / np.linalg.norm(mean), atol=1e-6)
        np.testing.assert_allclose(encoder.encode(TEXTS), np.stack([encoder.encode_one(t) for t in TEXTS]), atol=1e-6)
    # Anything but the exact graph goes to ONNX Runtime: another output name, an extra node, a cut file.
    assert read_static_table(tmp_path / "int8.onnx", "other") is None
    model = onnx.load(str(tmp_path / "int8.onnx"))
    model.graph.node[-1].output[0] = "scaled"
    model.graph.node.append(onnx.helper.make_node("Neg", ["scaled"], [OUTPUT]))
    onnx.save(model, str(tmp_path / "negated.onnx"))
    assert read_static_table(tmp_path / "negated.onnx", OUTPUT) is None
    negated = TextEncoder(tmp_path / "negated.onnx", tokenizer, spec, threads=1)
    assert negated.providers == ["CPUExecutionProvider"]
    np.testing.assert_allclose(negated.encode_one(TEXTS[0]), -encoder.encode_one(TEXTS[0]), atol=1e-6)
    data = (tmp_path / "int8.onnx").read_bytes()
    for cut in (10, len(data) // 2, len(data) - 3):
        (tmp_path / "cut.onnx").write_bytes(data[:cut])
        assert read_static_table(tmp_path / "cut.onnx", OUTPUT) is None
    small = EncoderSpec(max_length=32, pooling="mean", normalize=True, dim=8, inputs=("input_ids",), output=OUTPUT,
                        vocab_size=len(rows))
    with pytest.raises(BundleError, match="16-d rows"):
        TextEncoder(tmp_path / "int8.onnx", tokenizer, small, threads=1)


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
