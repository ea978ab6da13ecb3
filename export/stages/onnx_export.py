"""Stage `onnx`: a transformers encoder to an ONNX graph (fp32), via optimum.

The graph returns token vectors (`last_hidden_state`); pooling and
normalisation stay in the runtime's numpy code, where they are tested alone.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from edgerec.bundle.manifest import EncoderSpec

from .sources import TeacherFacts

OPSET = 18


def export_onnx(model_dir: Path, out_path: Path) -> Path:
    """Export the encoder in ``model_dir`` to ``out_path`` (a single .onnx file)."""
    from optimum.exporters.onnx import main_export

    with tempfile.TemporaryDirectory(prefix="edgerec-onnx-") as scratch:
        # library_name="transformers": the plain encoder, not sentence-transformers'
        # pooled graph, so that every bundle pools the same way.
        main_export(
            str(model_dir),
            output=scratch,
            task="feature-extraction",
            library_name="transformers",
            opset=OPSET,
            do_validation=False,  # validate.py compares against torch on real texts instead
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(scratch) / "model.onnx"), out_path)
    return out_path


def encoder_spec(teacher: TeacherFacts, model_path: Path) -> EncoderSpec:
    """How the runtime reads an exported transformer graph: its inputs, and the teacher's pooling and size."""
    import onnx

    model_config = json.loads((teacher.path / "config.json").read_text())
    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = tuple(i.name for i in graph.input if i.name not in initializers)
    return EncoderSpec(
        max_length=teacher.max_length,
        pooling=teacher.pooling,
        normalize=teacher.normalize,
        dim=int(model_config["hidden_size"]),
        inputs=inputs,
        output="last_hidden_state",
        vocab_size=int(model_config["vocab_size"]),
    )
