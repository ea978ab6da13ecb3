"""Recognising a static encoder (a table lookup) in an ONNX file, and reading its table.

A static encoder's graph only looks up one row per token: `Gather(rows, input_ids)`, cast to
float32, times a per-row scale when the rows are int8 (export/stages/static_onnx.py writes
exactly these two shapes). Running that through ONNX Runtime costs a session (memory, ~0.1 s to
load) and ~20 us of call overhead per query, for what numpy does in a few microseconds. So the
runtime reads such a graph's rows itself and computes the same float32 products.

Only the exact shapes are recognised, from the protobuf wire format (no onnx package in the
runtime); anything else returns None and goes to ONNX Runtime as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .onnx_scan import read_varint

# ONNX field numbers (onnx.proto) used here.
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 5, 11, 12
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP, _NODE_ATTRIBUTE, _NODE_DOMAIN = 1, 2, 4, 5, 7
_ATTRIBUTE_NAME, _ATTRIBUTE_INT = 1, 3
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 8, 9
_VALUE_NAME = 1
_FLOAT, _INT8, _FLOAT16 = 1, 3, 10  # TensorProto.DataType
_NUMPY_TYPES = {_FLOAT: np.dtype("<f4"), _INT8: np.dtype("i1"), _FLOAT16: np.dtype("<f2")}


@dataclass(frozen=True)
class StaticTable:
    """The rows of a static encoder: ``rows`` (vocabulary x dim, int8 or float16), ``scales`` (vocabulary x 1,
    float32) for int8 rows, else None."""

    rows: np.ndarray
    scales: np.ndarray | None

    @property
    def vocab_size(self) -> int:
        return int(self.rows.shape[0])

    @property
    def dim(self) -> int:
        return int(self.rows.shape[1])

    def __post_init__(self) -> None:
        weights = None if self.scales is None else np.ascontiguousarray(self.scales[:, 0])
        object.__setattr__(self, "_weights", weights)

    def mean(self, ids: Sequence[int]) -> np.ndarray:
        """The mean of the graph's token vectors for one text, float32 (dim,): one weighted sum of the
        picked int8 rows, which is the whole cost of a static query (~20 us against ~40 for gather,
        dequantize, then average)."""
        picked = np.asarray(ids, dtype=np.intp)
        if len(picked) == 0:
            return np.zeros(self.dim, dtype=np.float32)
        rows = self.rows.take(picked, axis=0)
        total = self._weights.take(picked) @ rows if self._weights is not None else rows.sum(axis=0, dtype=np.float32)
        return (total / np.float32(len(picked))).astype(np.float32, copy=False)


def read_static_table(path: Path, output: str) -> StaticTable | None:
    """The table of the static graph at ``path`` whose output is named ``output``; None for any other graph."""
    try:
        data = memoryview(Path(path).read_bytes())
        return _table(data, output)
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return None  # not ours to judge: ONNX Runtime reads it and reports what is wrong


def _table(model: memoryview, output: str) -> StaticTable | None:
    graphs = [value for field, value in _fields(model) if field == _MODEL_GRAPH]
    if len(graphs) != 1:
        return None
    nodes, tensors, inputs, outputs = [], {}, [], []
    for field, value in _fields(graphs[0]):
        if field == _GRAPH_NODE:
            nodes.append(_node(value))
        elif field == _GRAPH_INITIALIZER:
            name, array = _tensor(value)
            tensors[name] = array
        elif field == _GRAPH_INPUT:
            inputs.append(_string_field(value, _VALUE_NAME))
        elif field == _GRAPH_OUTPUT:
            outputs.append(_string_field(value, _VALUE_NAME))
    if inputs != ["input_ids"] or outputs != [output]:
        return None
    rows = tensors.get("rows")
    if rows is None or rows.ndim != 2:
        return None
    cast = ("Cast", ("picked",), {"to": _FLOAT})
    if rows.dtype == np.float16 and nodes == [("Gather", ("rows", "input_ids"), ("picked",), {}), (*cast[:2], (output,), cast[2])]:
        return StaticTable(rows, None)
    scales = tensors.get("scales")
    expected = [("Gather", ("rows", "input_ids"), ("picked",), {}), (*cast[:2], ("wide",), cast[2]),
                ("Gather", ("scales", "input_ids"), ("picked_scales",), {}),
                ("Mul", ("wide", "picked_scales"), (output,), {})]
    if (rows.dtype == np.int8 and scales is not None and scales.dtype == np.float32
            and scales.shape == (rows.shape[0], 1) and nodes == expected):
        return StaticTable(rows, scales)
    return None


def _node(data: memoryview) -> tuple[str, tuple[str, ...], tuple[str, ...], dict[str, int]]:
    """(op type, inputs, outputs, integer attributes); a node of another domain never matches."""
    op, domain, inputs, outputs, attributes = "", "", [], [], {}
    for field, value in _fields(data):
        if field == _NODE_OP:
            op = bytes(value).decode()
        elif field == _NODE_DOMAIN:
            domain = bytes(value).decode()
        elif field == _NODE_INPUT:
            inputs.append(bytes(value).decode())
        elif field == _NODE_OUTPUT:
            outputs.append(bytes(value).decode())
        elif field == _NODE_ATTRIBUTE:
            name = _string_field(value, _ATTRIBUTE_NAME)
            ints = [v for f, v in _fields(value) if f == _ATTRIBUTE_INT]
            attributes[name] = ints[0] if len(ints) == 1 and isinstance(ints[0], int) else None
    return (op if domain in ("", "ai.onnx") else f"{domain}.{op}"), tuple(inputs), tuple(outputs), attributes


def _tensor(data: memoryview) -> tuple[str, np.ndarray]:
    dims: list[int] = []
    name, kind, raw = "", None, None
    for field, value in _fields(data):
        if field == _TENSOR_DIMS:
            dims.extend(_packed(value) if isinstance(value, memoryview) else [value])
        elif field == _TENSOR_TYPE:
            kind = value
        elif field == _TENSOR_NAME:
            name = bytes(value).decode()
        elif field == _TENSOR_RAW:
            raw = value
    if kind not in _NUMPY_TYPES or raw is None:
        raise ValueError("a tensor kept in another form than raw data")
    # frombuffer raises ValueError when the bytes do not fill the shape
    return name, np.frombuffer(raw, dtype=_NUMPY_TYPES[kind]).reshape(dims)


def _string_field(data: memoryview, wanted: int) -> str:
    return next((bytes(v).decode() for f, v in _fields(data) if f == wanted), "")


def _packed(data: memoryview) -> list[int]:
    out, position = [], 0
    while position < len(data):
        value, position = read_varint(data, position)
        if value is None:
            raise ValueError("cut short")
        out.append(value)
    return out


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one message: an int for varints, a view for length-delimited fields."""
    position, end = 0, len(data)
    while position < end:
        key, position = read_varint(data, position)
        if key is None:
            raise ValueError("cut short")
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, position = read_varint(data, position)
            if value is None:
                raise ValueError("cut short")
            yield field, value
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4  # fixed-width fields: none needed here
        elif wire == 2:
            length, position = read_varint(data, position)
            if length is None or position + length > end:
                raise ValueError("cut short")
            yield field, data[position : position + length]
            position += length
        else:
            raise ValueError(f"wire type {wire}")
    if position != end:
        raise ValueError("cut short")
