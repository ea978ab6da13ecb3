"""Stage `int8`: fuse the fp32 graph, then quantize its weights to INT8.

Fusion uses ONNX Runtime's transformer optimizer (attention, LayerNorm, Gelu
into single ops). Quantization is either dynamic (weights INT8, activation
scales computed on every call) or static (activation scales fixed beforehand
from calibration texts, so no scale is computed at query time and a query's
vector does not depend on what else is in its batch). Per channel or per
tensor for the weights. The int8 stage builds every variant and measures them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class Int8Config:
    """How the INT8 encoder is made."""

    fuse: bool = True          # ORT transformer optimizer before quantizing
    per_channel: bool = True   # one scale per output channel of each weight
    static: bool = False       # activation scales from calibration texts instead of per call
    reduce_range: bool = False # 7-bit weights: only for CPUs without VNNI

    def describe(self) -> str:
        parts = ["fused" if self.fuse else "unfused", "static INT8" if self.static else "dynamic INT8",
                 "per-channel" if self.per_channel else "per-tensor"]
        return " ".join(parts)

    @property
    def key(self) -> str:
        """A short file-name-safe name: 'fused-dynamic-per-channel'."""
        return self.describe().replace(" INT8", "").replace(" ", "-")


# Variants the int8 stage compares. Static quantization runs on the unfused
# graph: the fused Attention op has no static INT8 form in ONNX Runtime, so
# fusing first would leave the attention projections in fp32.
VARIANTS = (
    Int8Config(fuse=True, per_channel=True),
    Int8Config(fuse=True, per_channel=False),
    Int8Config(fuse=False, per_channel=True, static=True),
    Int8Config(fuse=False, per_channel=False, static=True),
)


def fuse(fp32_path: Path, out_path: Path) -> Path:
    """Fuse attention/LayerNorm/Gelu subgraphs; the model's head count is read from the graph."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(fp32_path), model_type="bert", num_heads=0, hidden_size=0, opt_level=1, use_gpu=False)
    model.save_model_to_file(str(out_path))
    return out_path


class _Calibration:
    """ONNX Runtime's calibration reader: one feed per text, unpadded, as queries arrive."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_int8(fp32_path: Path, out_path: Path, config: Int8Config = Int8Config(),
                  calibration: Iterable[dict[str, np.ndarray]] | None = None) -> Path:
    """Write an INT8 copy of ``fp32_path`` to ``out_path``; static needs ``calibration`` feeds."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    with tempfile.TemporaryDirectory(prefix="edgerec-int8-") as scratch:
        source = fuse(fp32_path, Path(scratch) / "fused.onnx") if config.fuse else fp32_path
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if config.static:
            if calibration is None:
                raise ValueError("static quantization needs calibration feeds")
            quantize_static(
                model_input=str(source),
                model_output=str(out_path),
                calibration_data_reader=_Calibration(calibration),
                quant_format=QuantFormat.QOperator,
                op_types_to_quantize=["MatMul", "Gather"],
                per_channel=config.per_channel,
                reduce_range=config.reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                # Min-max: ORT's histogram methods need every calibration feed the same
                # shape, and padding texts to one length would calibrate on padding.
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            return out_path
        quantize_dynamic(
            model_input=str(source),
            model_output=str(out_path),
            weight_type=QuantType.QInt8,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            # Fused contrib ops carry no inferred types; without this the quantizer stops.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return out_path
