"""The physical floor: how fast one query could possibly be on this CPU.

Arithmetic of a BERT-style encoder for one text of S tokens, per layer and token:

    2 * (4*H^2 + 2*H*FF) + 4*S*H   operations (a multiply-add counts as two)

4*H^2 multiply-adds are the Q, K, V and output projections, 2*H*FF the two
feed-forward matrices, and 4*S*H operations the attention scores (Q K^T) and
their weighted sum over V. Summed over L layers and S tokens:
L * S * (2*(4H^2 + 2H*FF) + 4*S*H). For all-MiniLM-L6-v2 (H=384, FF=1536,
L=6) that is ~0.34 GOP at 16 tokens. The word-embedding lookup is a memory
read (S rows of H values), not arithmetic, and is left out; so are LayerNorm,
softmax and GELU, which are a few operations per value, not per weight.

The INT8 peak of a CPU: cores x clock x INT8 operations per cycle. One
AVX-512 VNNI instruction (VPDPBUSD on 512 bits) does 64 8-bit multiply-adds,
128 operations; a core issues one or two of them per cycle depending on how
many 512-bit multiply units it has, which /proc/cpuinfo does not say: it is
looked up from the CPU family and the assumption is written into the result.
The clock is /proc/cpuinfo's "cpu MHz" (in a VM usually the nominal clock;
turbo can be higher, which would lower the floor).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FORMULA = "L * S * (2*(4*H^2 + 2*H*FF) + 4*S*H)"

# INT8 operations (2 per multiply-add) per instruction of the best dot-product instruction the CPU has.
INT8_OPS_PER_INSTRUCTION = {
    "avx512_vnni": 128.0,   # VPDPBUSD zmm: 64 u8 x s8 multiply-adds into 16 int32
    "avx_vnni": 64.0,       # VPDPBUSD ymm: 32 multiply-adds
    "avx2": 64.0 / 3,       # VPMADDUBSW + VPMADDWD + VPADDD for 32 multiply-adds: three instructions
}
# fp32: one FMA instruction does (bits / 32) multiply-adds.
FP32_OPS_PER_INSTRUCTION = {"avx512f": 32.0, "avx2": 16.0}


@dataclass(frozen=True)
class EncoderShape:
    hidden: int        # H
    ff: int            # FF, the feed-forward width
    layers: int        # L
    vocab: int | None  # rows of the word-embedding table (memory, not arithmetic)
    source: str


def encoder_ops(shape: EncoderShape, tokens: int) -> int:
    """Operations of one forward pass over ``tokens`` tokens: L * S * (2*(4H^2 + 2H*FF) + 4*S*H)."""
    h, ff, s = shape.hidden, shape.ff, tokens
    return shape.layers * s * (2 * (4 * h * h + 2 * h * ff) + 4 * s * h)


def shape_from_config(path: Path) -> EncoderShape:
    """From a transformers config.json (hidden_size, intermediate_size, num_hidden_layers)."""
    config = json.loads(Path(path).read_text())
    return EncoderShape(int(config["hidden_size"]), int(config["intermediate_size"]),
                        int(config["num_hidden_layers"]), config.get("vocab_size"), f"{path}")


def shape_from_onnx(path: Path, hidden: int) -> EncoderShape:
    """From an exported graph's weights, fp32 or INT8, fused or not: every layer has one H x FF and one
    FF x H feed-forward matrix, so their count is the layer count. ``hidden`` is the output width."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    shapes = Counter(tuple(int(d) for d in t.dims) for t in model.graph.initializer if len(t.dims) == 2)
    # A width F is the feed-forward one when both H x F and F x H matrices exist (a fused H x 3H
    # QKV matrix has no 3H x H partner); the smaller of the two counts is the layer count.
    layers_by_width = {cols: min(n, shapes[(cols, hidden)])
                       for (rows, cols), n in shapes.items() if rows == hidden and cols > hidden}
    ff, layers = max(layers_by_width.items(), key=lambda item: (item[1], item[0]), default=(0, 0))
    if layers == 0:
        ff = 0
    vocab = max((rows for rows, cols in shapes if cols == hidden and rows not in (ff, hidden)), default=None)
    return EncoderShape(hidden, ff, layers, vocab, str(path) + ("" if layers else " (no feed-forward layers)"))


_INT8_OPS = frozenset({"MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "MatMulIntegerToFloat", "QAttention",
                       "QGemm", "DynamicQuantizeLinear", "QuantizeLinear"})


def graph_precision(path: Path) -> str:
    """'int8' when the graph runs quantized matrix products, else 'fp32' (which peak applies)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return "int8" if any(node.op_type in _INT8_OPS for node in model.graph.node) else "fp32"


@dataclass(frozen=True)
class CpuPeak:
    model: str
    cores: int
    ghz: float
    int8_isa: str
    int8_ops_per_instruction: float
    fp32_ops_per_instruction: float
    units_per_core: int          # 512-bit (or 256-bit) multiply units issuing one such instruction per cycle
    units_assumption: str
    int8_ops_per_second_per_core: float
    fp32_ops_per_second_per_core: float


def _cpuinfo_field(text: str, name: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.split(":", 1)[0].strip() == name and ":" in line]


def multiply_units(model: str, vendor: str, family: int | None, isa: str) -> tuple[int, str]:
    """How many vector multiply units issue VNNI/FMA per cycle, from the CPU family (an assumption, stated)."""
    name = model.lower()
    if vendor == "AuthenticAMD" and family is not None:
        if family >= 0x1A:
            return 2, "AMD Zen 5 (family 0x1A): two 512-bit multiply pipes assumed"
        if family == 0x19 and isa == "avx512_vnni":
            return 1, "AMD Zen 4 (family 0x19): 512-bit ops run on two 256-bit halves, one per cycle assumed"
        return 2, f"AMD family {family:#x}: two 256-bit multiply pipes assumed"
    if vendor == "GenuineIntel" and isa == "avx512_vnni":
        if "xeon" in name and not re.search(r"(bronze|silver|gold 5\d\d\d)", name):
            return 2, "Intel Xeon with AVX-512: two 512-bit FMA ports (0 and 5) assumed"
        return 1, "Intel with AVX-512 outside the two-port Xeons: one 512-bit unit assumed"
    return 2, f"{vendor or 'unknown vendor'} {model}: two vector multiply units assumed"


def cpu_peak(cpuinfo: str | None = None, cores: int | None = None) -> CpuPeak:
    """This CPU's INT8 and fp32 peak, from /proc/cpuinfo (or the text given, for tests)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model = (_cpuinfo_field(cpuinfo, "model name") or ["unknown"])[0]
    vendor = (_cpuinfo_field(cpuinfo, "vendor_id") or [""])[0]
    family_text = (_cpuinfo_field(cpuinfo, "cpu family") or [""])[0]
    family = int(family_text) if family_text.isdigit() else None
    flags = set((_cpuinfo_field(cpuinfo, "flags") or [""])[0].split())
    mhz = [float(v) for v in _cpuinfo_field(cpuinfo, "cpu MHz") if re.fullmatch(r"[\d.]+", v)]
    ghz = max(mhz) / 1e3 if mhz else 0.0
    isa = next((name for name in INT8_OPS_PER_INSTRUCTION if name in flags), "avx2")
    fp32 = FP32_OPS_PER_INSTRUCTION["avx512f" if "avx512f" in flags else "avx2"]
    units, assumption = multiply_units(model, vendor, family, isa)
    int8 = INT8_OPS_PER_INSTRUCTION[isa]
    return CpuPeak(model=model, cores=cores or os.cpu_count() or 1, ghz=round(ghz, 3), int8_isa=isa,
                   int8_ops_per_instruction=round(int8, 2), fp32_ops_per_instruction=fp32, units_per_core=units,
                   units_assumption=assumption, int8_ops_per_second_per_core=ghz * 1e9 * int8 * units,
                   fp32_ops_per_second_per_core=ghz * 1e9 * fp32 * units)


def floor_ms(ops: int, ops_per_second_per_core: float, threads: int) -> float | None:
    """Milliseconds at peak on ``threads`` cores; None when the peak is unknown."""
    if ops_per_second_per_core <= 0:
        return None
    return ops / (ops_per_second_per_core * threads) * 1e3


def floor_report(shape: EncoderShape, tokens: int, peak: CpuPeak, measured_ms: dict[int, float],
                 precision: str = "int8") -> dict[str, Any]:
    """The arithmetic, the floor at 1 thread and at each measured thread count, and how close we get.

    ``measured_ms``: threads -> measured encode p50. ``efficiency`` = floor / measured (1.0 is the floor).
    """
    ops = encoder_ops(shape, tokens)
    rate = peak.int8_ops_per_second_per_core if precision == "int8" else peak.fp32_ops_per_second_per_core
    rows = {}
    for threads, ms in sorted(measured_ms.items()):
        floor = floor_ms(ops, rate, min(threads, peak.cores))
        rows[str(threads)] = {"measured_ms": round(ms, 4), "floor_ms": None if floor is None else round(floor, 5),
                              "efficiency": None if not floor or ms <= 0 else round(floor / ms, 4)}
    return {"formula": FORMULA, "shape": asdict(shape), "tokens": tokens, "ops": ops, "gop": round(ops / 1e9, 4),
            "embedding_lookup_values": tokens * shape.hidden, "precision": precision, "by_threads": rows}
