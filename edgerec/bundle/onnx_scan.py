"""Refusing ONNX models that would make ONNX Runtime read other files.

A tensor in an ONNX model can keep its data in an external file, named by a
path inside the model. A bundle's hashes cover only the bundle's own files,
and ONNX Runtime's own check (1.24 and later) still follows a hard link to a
file anywhere, so a model that names one could read any file the process can.
The bundle contract is a self-contained encoder: before ONNX Runtime sees a
model, its protobuf is walked (the wire format, without the onnx package) and
any tensor with external data is refused, wherever it sits: initializers,
attributes, subgraphs of control-flow nodes, functions, training graphs.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from ..errors import BundleError

# Message kinds and, for each, the length-delimited fields that hold messages to walk.
_MODEL, _GRAPH, _NODE, _ATTRIBUTE, _TENSOR, _SPARSE, _FUNCTION, _TRAINING = range(8)
_CHILDREN = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
    _FUNCTION: {7: _NODE, 11: _ATTRIBUTE},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTRIBUTE},
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _TENSOR: {},
}
_EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = 13, 14, 1  # TensorProto fields and DataLocation.EXTERNAL
_MAX_DEPTH = 64  # subgraphs nest; a real model is a few levels deep


def check_self_contained(path: Path) -> None:
    """Raise BundleError if the ONNX model at ``path`` is not valid protobuf or has external data."""
    # Mapped, not read: the walk skips over tensor data, so those pages are never touched.
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return  # nothing to follow; ONNX Runtime refuses an empty model itself
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as data:
                problem = _walk(data, _MODEL, 0)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the encoder ({exc.strerror})") from None
    if problem:
        raise BundleError(f"{path}: {problem}; a bundle's encoder must be one self-contained file")


def _walk(data: memoryview, kind: int, depth: int) -> str | None:
    """The first problem found in one message, or None."""
    if depth > _MAX_DEPTH:
        return "is not a valid ONNX model (nested too deep)"
    children = _CHILDREN[kind]
    position, end = 0, len(data)
    while position < end:
        key, position = read_varint(data, position)
        if key is None:
            return "is not a valid ONNX model (cut short)"
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, position = read_varint(data, position)
            if value is None:
                return "is not a valid ONNX model (cut short)"
            if kind == _TENSOR and field == _DATA_LOCATION and value == _EXTERNAL:
                return "has a tensor whose data is in an external file"
        elif wire == 1 or wire == 5:
            position += 8 if wire == 1 else 4
            if position > end:
                return "is not a valid ONNX model (cut short)"
        elif wire == 2:
            length, position = read_varint(data, position)
            if length is None or position + length > end:
                return "is not a valid ONNX model (cut short)"
            if kind == _TENSOR and field == _EXTERNAL_DATA:
                return "has a tensor whose data is in an external file"
            child = children.get(field)
            if child is not None:
                problem = _walk(data[position : position + length], child, depth + 1)
                if problem:
                    return problem
            position += length
        else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
            return f"is not a valid ONNX model (wire type {wire})"
    return None if position == end else "is not a valid ONNX model (cut short)"


def read_varint(data: memoryview, position: int) -> tuple[int | None, int]:
    value = shift = 0
    while position < len(data) and shift < 70:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    return None, position
