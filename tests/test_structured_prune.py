"""Structured pruning of a transformer student (export/stages/prune.py) on the tiny model: the requested
share of heads and neurons goes, the least important first, the shapes stay consistent through a save
and reload, the pruned model still reads text, and keeping everything changes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiny import WORDS, make_tiny_teacher

pytestmark = pytest.mark.needs_torch

TEXTS = [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(2 + i % 9)) for i in range(48)]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("prune") / "teacher")


def batches(path: Path, texts=TEXTS) -> list:
    from export.stages.static_fit import tokenize
    from export.stages.student import padded

    ids = tokenize(path / "tokenizer.json", texts, 32, special=True)
    return [padded(ids, np.arange(s, min(s + 16, len(ids)))) for s in range(0, len(ids), 16)]


def pooled(model, path: Path) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([model(ids, mask).numpy() for ids, mask in batches(path)])


def pruned(teacher: Path, heads_kept: float, ffn_kept: float):
    from export.stages.prune import importance, prune_body
    from export.stages.student import make_student

    model = make_student(teacher, 2).eval()
    head_scores, neuron_scores = importance(model.body, batches(teacher))
    kept = prune_body(model.body, head_scores, neuron_scores, heads_kept, ffn_kept)
    return model, kept, head_scores, neuron_scores


def test_half_the_heads_and_neurons_go_and_the_shapes_agree(teacher: Path) -> None:
    from export.stages.prune import parameter_count
    from export.stages.student import make_student

    full = make_student(teacher, 2)
    model, kept, head_scores, neuron_scores = pruned(teacher, 0.5, 0.5)
    # The tiny model: 4 heads of 8 dimensions in a 32-wide layer, 64 FFN neurons.
    assert head_scores.shape == (2, 4) and neuron_scores.shape == (2, 64)
    for index, layer in enumerate(model.body.encoder.layer):
        attention = layer.attention
        assert attention.self.num_attention_heads == 2 and len(kept["heads"][index]) == 2
        assert attention.self.query.weight.shape == (16, 32) and attention.self.value.weight.shape == (16, 32)
        assert attention.output.dense.weight.shape == (32, 16)
        assert layer.intermediate.dense.weight.shape == (32, 32) and layer.output.dense.weight.shape == (32, 32)
        # The heads kept are the best scored ones.
        assert sorted(kept["heads"][index]) == sorted(np.argsort(-head_scores[index])[:2].tolist())
    assert model.body.config.intermediate_size == 32
    assert parameter_count(model.body) < parameter_count(full.body)
    vectors = pooled(model, teacher)
    assert vectors.shape == (len(TEXTS), 32) and np.isfinite(vectors).all()


def test_a_saved_pruned_model_reloads_to_the_same_vectors(teacher: Path, tmp_path: Path) -> None:
    import json

    from export.stages.student import make_student, save_sentence_model

    model, _, _, _ = pruned(teacher, 0.5, 0.25)
    save_sentence_model(model, teacher, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["intermediate_size"] == 16 and all(len(v) == 2 for v in config["pruned_heads"].values())
    reloaded = make_student(tmp_path / "model", 2).eval()
    np.testing.assert_allclose(pooled(reloaded, tmp_path / "model"), pooled(model, teacher), atol=1e-5)


def test_an_unused_head_and_neuron_are_the_ones_dropped(teacher: Path) -> None:
    import torch

    from export.stages.prune import importance
    from export.stages.student import make_student

    model = make_student(teacher, 2).eval()
    layer = model.body.encoder.layer[1]
    with torch.no_grad():
        layer.attention.output.dense.weight[:, 8:16] = 0  # head 1 of layer 1 adds nothing
        layer.output.dense.weight[:, 5] = 0               # neuron 5 of layer 1 neither
    head_scores, neuron_scores = importance(model.body, batches(teacher))
    assert head_scores[1, 1] == 0 and head_scores[1].min() == 0 and (head_scores[0] > 0).all()
    assert neuron_scores[1, 5] == 0 and np.argmin(neuron_scores[1]) == 5


def test_keeping_everything_changes_nothing(teacher: Path) -> None:
    from export.stages.student import make_student

    full = make_student(teacher, 2).eval()
    model, kept, _, _ = pruned(teacher, 1.0, 1.0)
    assert not model.body.config.pruned_heads and model.body.config.intermediate_size == 64
    assert all(len(h) == 4 for h in kept["heads"].values())
    np.testing.assert_array_equal(pooled(model, teacher), pooled(full, teacher))


def test_shares_outside_zero_to_one_are_refused(teacher: Path) -> None:
    with pytest.raises(ValueError, match="share"):
        pruned(teacher, 0.0, 0.5)
    with pytest.raises(ValueError, match="share"):
        pruned(teacher, 0.5, 1.5)
    from export.stages.prune import PruneConfig

    with pytest.raises(ValueError, match="share"):  # the command refuses before loading any text
        PruneConfig(heads_kept=0.5, ffn_kept=0.0)
    assert PruneConfig(0.75, 0.5).suffix == "h75-f50" and PruneConfig(0.5, 0.5, recover_seconds=60).suffix == "h50-f50-rec"


def test_the_onnx_export_and_fusion_take_a_pruned_model(teacher: Path, tmp_path: Path) -> None:
    """The export path the encoders' candidates use: optimum's ONNX export and ORT's attention fusion must
    read the narrower attention (half the heads: no longer hidden size / the config's head count wide)."""
    from export.measure.peer_client import PlainOnnxEncoder
    from export.stages.onnx_export import export_onnx
    from export.stages.quantize import fuse
    from export.stages.student import save_sentence_model
    from export.stages.validate import torch_reference

    model, _, _, _ = pruned(teacher, 0.5, 0.5)
    save_sentence_model(model, teacher, tmp_path / "model")
    fp32 = export_onnx(tmp_path / "model", tmp_path / "fp32.onnx")
    fused = fuse(fp32, tmp_path / "fused.onnx")
    reference = torch_reference(tmp_path / "model", TEXTS, max_length=32, pooling="mean", normalize=True)
    # A random model's vectors of different texts sit close together (cosines near 1), so the graphs are held
    # to the torch vectors element by element, well inside the spread between texts.
    assert np.abs(reference - reference.mean(axis=0)).max() > 1e-2
    for graph in (fp32, fused):
        vectors = PlainOnnxEncoder(str(graph), str(tmp_path / "model" / "tokenizer.json"), 32, 1).encode(TEXTS)
        np.testing.assert_allclose(vectors, reference, atol=1e-4, err_msg=graph.name)
