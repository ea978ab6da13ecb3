"""A static table as an ONNX graph the runtime already reads: token ids in, one row per token out.

The graph is a Gather: `input_ids` [batch, tokens] -> `token_vectors` [batch, tokens, dim]. The
runtime's mean pooling and normalisation (edgerec.pooling) then give the static model's vector. The
tokenizer keeps adding [CLS] and [SEP]; their rows are zero (the student never trains them), so they
only scale the mean, and the unit vector is the one the student computes without them.

Storage: float16 (half the float32 size, the precision the student is saved in), or int8 with one
float scale per row (a quarter): symmetric, the row's largest magnitude at 127, dequantized in the graph
after the Gather so that only the rows a text uses are converted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUTPUT = "token_vectors"
OPSET = 18
STORAGES = ("float16", "int8")


def int8_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 rows, float32 scale per row) with rows ~= int8 * scale; an all-zero row gets scale 1."""
    table = np.asarray(rows, dtype=np.float32)
    scale = np.abs(table).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.round(table / scale[:, None]), -127, 127).astype(np.int8), scale.astype(np.float32)


def write_static_onnx(rows: np.ndarray, out: Path, storage: str = "float16") -> Path:
    """Write the Gather graph for ``rows`` (vocabulary x dim) to ``out``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    table = np.asarray(rows, dtype=np.float32)
    if table.ndim != 2 or not np.isfinite(table).all():
        raise ValueError(f"rows must be a finite 2-d table, got shape {table.shape}")
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])
    output = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", "tokens", table.shape[1]])
    if storage == "float16":
        initializers = [numpy_helper.from_array(table.astype(np.float16), "rows")]
        nodes = [helper.make_node("Gather", ["rows", "input_ids"], ["picked"]),
                 helper.make_node("Cast", ["picked"], [OUTPUT], to=TensorProto.FLOAT)]
    else:
        quantized, scale = int8_rows(table)
        initializers = [numpy_helper.from_array(quantized, "rows"), numpy_helper.from_array(scale[:, None], "scales")]
        nodes = [helper.make_node("Gather", ["rows", "input_ids"], ["picked"]),
                 helper.make_node("Cast", ["picked"], ["wide"], to=TensorProto.FLOAT),
                 helper.make_node("Gather", ["scales", "input_ids"], ["picked_scales"]),
                 helper.make_node("Mul", ["wide", "picked_scales"], [OUTPUT])]
    graph = helper.make_graph(nodes, "static", [ids], [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgerec")
    model.ir_version = 9
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    onnx.save(model, str(partial))
    partial.replace(out)
    return out


def read_static_onnx(path: Path) -> np.ndarray:
    """The float32 rows of a Gather graph ``write_static_onnx`` wrote (int8 rows times their scales)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    if "rows" not in tensors or [n.op_type for n in graph.node][:1] != ["Gather"]:
        raise ValueError(f"{path}: not a static table's Gather graph (python -m export general writes one)")
    rows = tensors["rows"].astype(np.float32)
    return rows * tensors["scales"] if "scales" in tensors else rows
