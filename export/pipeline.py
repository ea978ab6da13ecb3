"""The export pipeline: stages that each write into a work directory, check
themselves against the stage before, and leave a JSON report for the bundle's
provenance. Each stage can run alone (it reads what earlier stages left) or
all together (`run_all`).
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgerec.build import build_bundle
from edgerec.encoder import TextEncoder
from edgerec.items import item_text
from edgerec.manifest import EncoderSpec

from .onnx_export import OPSET, export_onnx
from .quantize import Int8Config, quantize_int8
from .sources import QUERY_TEXTS, TeacherFacts
from .speed import p50_latencies_ms
from .validate import ValidationFailed, agreement, check, torch_reference

FP32_NAME, INT8_NAME, TOKENIZER_NAME = "fp32.onnx", "int8.onnx", "tokenizer.json"


@dataclass(frozen=True)
class ExportConfig:
    """Everything the pipeline needs besides the teacher and the catalogue."""

    work: Path = Path("export/work")
    out: Path = Path("artifacts/default")
    name: str = "movielens-1m-minilm-l6-int8"
    text_fields: tuple[str, ...] = ("title", "year", "genres")
    int8: Int8Config = field(default_factory=Int8Config)
    validation_items: int = 300      # catalogue texts, plus the query-like texts
    seed: int = 0
    # Thresholds. fp32 ONNX must reproduce torch up to float rounding; INT8 may
    # move vectors a little (per-channel keeps ~0.99 mean cosine on MiniLM).
    fp32_min_cosine: float = 0.9999
    int8_min_mean_cosine: float = 0.98
    int8_min_cosine: float = 0.90
    timing_rounds: int = 300
    catalog_provenance: dict[str, Any] = field(default_factory=dict)
    notice: Path | None = None
    overwrite: bool = True


def validation_texts(records: Sequence[dict], config: ExportConfig) -> list[str]:
    rng = random.Random(config.seed)
    sample = rng.sample(list(records), min(config.validation_items, len(records)))
    return [item_text(r, config.text_fields) for r in sample] + list(QUERY_TEXTS)


def encoder_spec(teacher: TeacherFacts, model_path: Path) -> EncoderSpec:
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


def _write_report(work: Path, stage: str, report: dict[str, Any]) -> None:
    (work / f"{stage}.json").write_text(json.dumps(report, indent=2) + "\n")


def _read_report(work: Path, stage: str) -> dict[str, Any]:
    path = work / f"{stage}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run the `{stage}` stage first")
    return json.loads(path.read_text())


def _raise_if(failures: list[str]) -> None:
    if failures:
        raise ValidationFailed("; ".join(failures))


def stage_onnx(teacher: TeacherFacts, records: Sequence[dict], config: ExportConfig) -> dict[str, Any]:
    """Teacher -> fp32 ONNX, checked against torch on real texts."""
    from tokenizers import Tokenizer

    config.work.mkdir(parents=True, exist_ok=True)
    print(f"[onnx] exporting {teacher.name} (opset {OPSET})")
    model_path = export_onnx(teacher.path, config.work / FP32_NAME)
    # The shipped tokenizer.json pads every text to 128 tokens: store it without
    # padding and truncating at the model's limit, so nobody pays for that trap.
    tokenizer = Tokenizer.from_file(str(teacher.path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=teacher.max_length)
    tokenizer.save(str(config.work / TOKENIZER_NAME))

    spec = encoder_spec(teacher, model_path)
    texts = validation_texts(records, config)
    reference = torch_reference(teacher.path, texts, max_length=spec.max_length, pooling=spec.pooling,
                                normalize=spec.normalize)
    np.save(config.work / "torch_reference.npy", reference)
    vectors = TextEncoder(model_path, config.work / TOKENIZER_NAME, spec).encode(texts)
    result = agreement(vectors, reference)
    print("[onnx] fp32 ONNX against torch")
    failures = check("fp32 vs torch", result, min_mean_cosine=config.fp32_min_cosine,
                     min_cosine=config.fp32_min_cosine)
    report = {"teacher": teacher.name, "opset": OPSET, "spec": json.loads(json.dumps(spec.__dict__)),
              "fp32_vs_torch": result.as_dict(), "threshold_min_cosine": config.fp32_min_cosine}
    _write_report(config.work, "onnx", report)
    _raise_if(failures)
    return report


def stage_int8(teacher: TeacherFacts, records: Sequence[dict], config: ExportConfig) -> dict[str, Any]:
    """fp32 ONNX -> fused INT8 ONNX, checked against fp32 ONNX and torch."""
    _read_report(config.work, "onnx")
    fp32_path, int8_path = config.work / FP32_NAME, config.work / INT8_NAME
    print(f"[int8] {config.int8.describe()}")
    quantize_int8(fp32_path, int8_path, config.int8)
    spec = encoder_spec(teacher, int8_path)
    texts = validation_texts(records, config)
    tokenizer = config.work / TOKENIZER_NAME
    fp32 = TextEncoder(fp32_path, tokenizer, spec).encode(texts)
    # Encoded one at a time, as queries are: no padding reaches the dynamic scales.
    int8_encoder = TextEncoder(int8_path, tokenizer, spec)
    int8 = np.concatenate([int8_encoder.encode([t]) for t in texts])
    reference = np.load(config.work / "torch_reference.npy")
    print("[int8] INT8 against fp32 ONNX")
    versus_fp32 = agreement(int8, fp32)
    failures = check("int8 vs fp32", versus_fp32, min_mean_cosine=config.int8_min_mean_cosine,
                     min_cosine=config.int8_min_cosine)
    versus_torch = agreement(int8, reference)
    check("int8 vs torch", versus_torch, min_mean_cosine=0.0, min_cosine=0.0)
    batched = agreement(int8_encoder.encode(texts), int8)
    check("int8 batched vs one at a time", batched, min_mean_cosine=0.0, min_cosine=0.0)
    report = {
        "recipe": config.int8.describe(),
        "int8_vs_fp32": versus_fp32.as_dict(),
        "int8_vs_torch": versus_torch.as_dict(),
        "int8_batched_vs_single": batched.as_dict(),
        "thresholds": {"min_mean_cosine": config.int8_min_mean_cosine, "min_cosine": config.int8_min_cosine},
        "size_bytes": {"fp32": fp32_path.stat().st_size, "int8": int8_path.stat().st_size},
    }
    _write_report(config.work, "int8", report)
    _raise_if(failures)
    return report


def stage_bundle(teacher: TeacherFacts, records: Sequence[dict], config: ExportConfig,
                 progress: Any = None) -> dict[str, Any]:
    """Time fp32 against INT8 side by side, then encode the catalogue with INT8 and write the bundle."""
    onnx_report, int8_report = _read_report(config.work, "onnx"), _read_report(config.work, "int8")
    int8_path, tokenizer = config.work / INT8_NAME, config.work / TOKENIZER_NAME
    spec = encoder_spec(teacher, int8_path)
    query = QUERY_TEXTS[0]
    fp32 = TextEncoder(config.work / FP32_NAME, tokenizer, spec, threads=1)
    int8 = TextEncoder(int8_path, tokenizer, spec, threads=1)
    print(f"[bundle] timing fp32 and INT8 side by side, 1 thread, query {query!r}")
    timing = p50_latencies_ms({"fp32": lambda: fp32.encode([query]), "int8": lambda: int8.encode([query])},
                              rounds=config.timing_rounds, seed=config.seed)
    timing["speedup_p50"] = round(timing["fp32"]["p50_ms"] / timing["int8"]["p50_ms"], 2)
    print(f"  fp32 p50 {timing['fp32']['p50_ms']} ms, int8 p50 {timing['int8']['p50_ms']} ms, "
          f"{timing['speedup_p50']}x")
    provenance = {
        "model": {
            "teacher": teacher.name,
            "stages": ["teacher as published", f"ONNX export (optimum, opset {OPSET})", int8_report["recipe"]],
            "validation": {
                "texts": f"{config.validation_items} catalogue texts + {len(QUERY_TEXTS)} query-like texts",
                "fp32_vs_torch": onnx_report["fp32_vs_torch"],
                "int8_vs_fp32": int8_report["int8_vs_fp32"],
                "int8_vs_torch": int8_report["int8_vs_torch"],
                "int8_batched_vs_single": int8_report["int8_batched_vs_single"],
            },
            "encode_latency_1_thread": {"query": query, **timing},
            "model_bytes": int8_report["size_bytes"],
        },
        "catalog": config.catalog_provenance,
    }
    print(f"[bundle] encoding {len(records)} items into {config.out}")
    manifest = build_bundle(
        records, config.out, model_path=int8_path, tokenizer_path=tokenizer, encoder_spec=spec,
        text_fields=config.text_fields, name=config.name, provenance=provenance,
        notice_path=config.notice, overwrite=config.overwrite, progress=progress,
    )
    report = {"bundle": str(config.out), "items": manifest.items.count}
    _write_report(config.work, "bundle", report)
    return report


def run_all(teacher: TeacherFacts, records: Sequence[dict], config: ExportConfig, progress: Any = None) -> None:
    stage_onnx(teacher, records, config)
    stage_int8(teacher, records, config)
    stage_bundle(teacher, records, config, progress=progress)


def clean(config: ExportConfig) -> None:
    shutil.rmtree(config.work, ignore_errors=True)
