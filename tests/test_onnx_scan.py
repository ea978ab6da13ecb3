"""Encoders that would make ONNX Runtime read files outside the bundle are refused before it sees them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgerec.encoder import make_session
from edgerec.errors import BundleError
from edgerec.bundle.onnx_scan import check_self_contained


def identity_model(weight: np.ndarray) -> onnx.ModelProto:
    """y = x + w, with w an initializer."""
    w = numpy_helper.from_array(weight, "w")
    node = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_shipped_encoder_and_a_plain_model_pass(tmp_path: Path):
    check_self_contained(Path(__file__).parents[1] / "artifacts" / "default" / "encoder.onnx")
    path = tmp_path / "plain.onnx"
    onnx.save(identity_model(np.ones(4, dtype=np.float32)), path)
    check_self_contained(path)
    make_session(path)


def test_an_initializer_in_an_external_file_is_refused(tmp_path: Path):
    path = tmp_path / "external.onnx"
    onnx.save(identity_model(np.ones(4096, dtype=np.float32)), path, save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").is_file()
    with pytest.raises(BundleError, match="external.onnx: has a tensor whose data is in an external file"):
        make_session(path)


def test_external_data_inside_a_subgraph_is_found(tmp_path: Path):
    inner_weight = numpy_helper.from_array(np.ones(4, dtype=np.float32), "inner")
    inner_weight.data_location = TensorProto.EXTERNAL
    entry = inner_weight.external_data.add()
    entry.key, entry.value = "location", "/etc/hostname"
    inner_weight.ClearField("raw_data")
    branch = helper.make_graph([helper.make_node("Identity", ["inner"], ["out"])], "branch", [],
                               [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])],
                               initializer=[inner_weight])
    cond = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph([cond], "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    path = tmp_path / "nested.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(BundleError, match="external file"):
        check_self_contained(path)


@pytest.mark.parametrize("body", [b"\xff" * 20, b"\x3a\x80", b"\x0b\x0c", b"\x0a\x05abc"],
                         ids=["varint-runs-off", "length-past-end", "group", "short-field"])
def test_bytes_that_are_not_protobuf_are_refused(tmp_path: Path, body: bytes):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(body)
    with pytest.raises(BundleError, match="is not a valid ONNX model"):
        check_self_contained(path)


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path):
    # A graph (field 7) whose node (1) has an attribute (5) with a graph (6) with a node ... 200 levels.
    payload = b""
    for field in [6, 5, 1] * 200:
        payload = bytes([field << 3 | 2]) + _varint(len(payload)) + payload
    path = tmp_path / "deep.onnx"
    path.write_bytes(bytes([7 << 3 | 2]) + _varint(len(payload)) + payload)
    with pytest.raises(BundleError, match="nested too deep"):
        check_self_contained(path)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
