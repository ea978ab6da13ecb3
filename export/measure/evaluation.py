"""`python -m export evaluate`: every stage side by side, in one run, on this machine.

For each row: ranking quality on the MovieLens-1M test users (leave-last-out,
full catalogue), a text-query check (genre queries), query and recommend
latency at 1 and 2 threads (interleaved, so drift falls on all rows alike),
catalogue encoding throughput, model size and the peak memory of a fresh
process answering one query. Writes results/compression.{json,md,svg}.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgerec import Recommender
from edgerec.bundle.manifest import UserSpec
from edgerec.tools.timing import cpu_model
from edgerec.update.build import build_bundle

from ..stages.interactions import Split
from ..stages.onnx_export import export_onnx
from ..stages.onnx_export import encoder_spec
from ..stages.pipeline import FINETUNED_DIR, FP32_NAME, STUDENT_DIR, TOKENIZER_NAME, ExportConfig
from ..stages.quantize import Int8Config, quantize_int8
from ..stages.query_texts import genre_queries
from ..stages.ranking import cooccurrence_scorer, evaluate, popularity_scorer, vector_scorer
from ..stages.sources import TeacherFacts, read_teacher
from ..stages.speed import p50_latencies_ms
from .plots import Axis, Guide, Point, Series, svg_chart

# An 11-token query (with [CLS] and [SEP]), the length of the brief's anchor figures.
TIMING_QUERY = "a heist movie with a clever twist ending"
# Peak RSS from edgerec.tools.timing.peak_rss_kib (VmHWM): a child's ru_maxrss would start at this big process's RSS.
MEMORY_PROBE = """
import sys
from edgerec import Recommender
Recommender.load(sys.argv[1], threads=1).query(sys.argv[2], k=10)
from edgerec.tools.timing import peak_rss_kib
print(peak_rss_kib())
"""
TORCH_MEMORY_PROBE = """
import sys, torch
torch.set_num_threads(1)
from sentence_transformers import SentenceTransformer
SentenceTransformer(sys.argv[1], device="cpu").encode([sys.argv[2]])
from edgerec.tools.timing import peak_rss_kib
print(peak_rss_kib())
"""


@dataclass
class Row:
    name: str
    how: str
    quality: dict[str, float]
    genre_precision: float | None = None
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    items_per_second: float | None = None
    model_bytes: int | None = None
    peak_rss_mb: float | None = None


@dataclass(frozen=True)
class Model:
    """An ONNX encoder to evaluate through the runtime, as a bundle of the whole catalogue."""

    key: str
    how: str
    onnx: Path
    tokenizer: Path
    facts: TeacherFacts


def _genre_precision(recommender: Recommender, records: Sequence[dict]) -> float:
    """Mean share of the top 10 for 'comedy movies' etc. that carry that genre."""
    shares = []
    for genre, text in genre_queries().items():
        hits = recommender.query(text, k=10)
        shares.append(np.mean([genre in r.metadata.get("genres", []) for r in hits]))
    return float(np.mean(shares))


def _peak_rss_mb(script: str, *args: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, check=True)
    return round(int(out.stdout.split()[-1]) / 1024, 1)  # KiB -> MiB


def student_key(work: Path) -> str:
    layers = json.loads((work / "distil.json").read_text())["layers"]
    return f"student-{len(layers)}L"


def prepare_models(stock: TeacherFacts, config: ExportConfig, scratch: Path,
                   other_students: Sequence[Path] = ()) -> list[Model]:
    """The stock teacher's ONNX forms (made here if missing), the fine-tuned teacher, and the students:
    the pipeline's own (``config.work``) and those of other work directories (students of other depths)."""
    tokenizer = config.work / TOKENIZER_NAME
    finetuned = read_teacher(config.work / FINETUNED_DIR, name="fine-tuned teacher")
    finetuned_fp32 = scratch / "finetuned-fp32.onnx"
    if not finetuned_fp32.is_file():
        export_onnx(finetuned.path, finetuned_fp32)
    models = [
        *prepare_stock_models(stock, scratch, tokenizer),
        Model("finetuned-fp32", "fine-tuned teacher, ONNX fp32", finetuned_fp32, tokenizer, finetuned),
    ]
    for work in (config.work, *other_students):
        student, key = read_teacher(work / STUDENT_DIR, name="student"), student_key(work)
        depth = key.split("-")[1].replace("L", " layer(s)")
        models.append(Model(f"{key}-fp32", f"student, {depth}, ONNX fp32", work / FP32_NAME, tokenizer, student))
        # Every INT8 variant of the pipeline's own student; the kept one of the others.
        variants = sorted((work / "int8").glob("*.onnx")) if work == config.work else [
            work / "int8" / f"{json.loads((work / 'int8.json').read_text())['chosen']}.onnx"]
        for path in variants:
            models.append(Model(f"{key}-{path.stem}", f"student, {depth}, {path.stem.replace('-', ' ')} INT8",
                                path, tokenizer, student))
    return models


def prepare_stock_models(stock: TeacherFacts, scratch: Path, tokenizer: Path) -> list[Model]:
    """The published teacher in the ONNX forms a user makes today (made in ``scratch`` when missing):
    fp32, ORT-fused + dynamic INT8 per-channel, and sentence-transformers' avx512_vnni INT8."""
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    scratch.mkdir(parents=True, exist_ok=True)
    stock_fp32 = scratch / "stock-fp32.onnx"
    if not stock_fp32.is_file():
        export_onnx(stock.path, stock_fp32)
    stock_int8 = scratch / "stock-int8.onnx"
    if not stock_int8.is_file():
        quantize_int8(stock_fp32, stock_int8, Int8Config(fuse=True, per_channel=True))
    st_copy = scratch / "st-stock"
    st_int8 = st_copy / "onnx" / "model_qint8_avx512_vnni.onnx"
    if not st_int8.is_file():
        shutil.copytree(stock.path, st_copy, dirs_exist_ok=True)
        export_dynamic_quantized_onnx_model(SentenceTransformer(str(st_copy), backend="onnx", device="cpu"),
                                            "avx512_vnni", str(st_copy))
    return [
        Model("stock-fp32", "teacher as published, ONNX fp32", stock_fp32, tokenizer, stock),
        Model("stock-int8-ort", "teacher as published, ORT fused + dynamic INT8 per-channel", stock_int8, tokenizer, stock),
        Model("stock-int8-st", "teacher as published, sentence-transformers avx512_vnni INT8", st_int8, tokenizer, stock),
    ]


def run_evaluation(stock: TeacherFacts, records: Sequence[dict], split: Split, config: ExportConfig,
                   results: Path, rounds: int = 200, other_students: Sequence[Path] = (),
                   progress: Callable[[str, int, int], None] | None = None) -> list[Row]:
    import torch
    from sentence_transformers import SentenceTransformer

    window = config.targets.window
    scratch = config.work / "evaluation"
    rows = [
        Row("popularity", "most liked in training, no text", evaluate(popularity_scorer(split), split)),
        Row("co-occurrence", f"item-to-item cosine of co-likes, last {window} items",
            evaluate(cooccurrence_scorer(split, window), split)),
    ]
    print("[evaluate] preparing models")
    models = prepare_models(stock, config, scratch, other_students)
    recommenders: dict[str, dict[int, Recommender]] = {}
    for model in models:
        out = scratch / "bundles" / model.key
        print(f"[evaluate] {model.key}: encoding the catalogue")
        manifest = build_bundle(records, out, model_path=model.onnx, tokenizer_path=model.tokenizer,
                                encoder_spec=encoder_spec(model.facts, model.onnx), text_fields=config.text_fields,
                                user=UserSpec(window=window), name=model.key, overwrite=True, threads=2,
                                progress=progress)
        loaded = {threads: Recommender.load(out, threads=threads) for threads in (1, 2)}
        recommenders[model.key] = loaded
        vectors = loaded[1].index.vectors(np.arange(len(loaded[1])))
        row = Row(model.key, model.how, evaluate(vector_scorer(vectors, window), split),
                  genre_precision=_genre_precision(loaded[1], records),
                  items_per_second=manifest.provenance["build"]["items_per_second"],
                  model_bytes=model.onnx.stat().st_size,
                  peak_rss_mb=_peak_rss_mb(MEMORY_PROBE, str(out), TIMING_QUERY))
        rows.append(row)

    # sentence-transformers on torch: the stock teacher as most people run it today.
    st_model = SentenceTransformer(str(stock.path), device="cpu")
    st_index = recommenders["stock-fp32"][1].index
    st_row = Row("stock-torch", "teacher as published, sentence-transformers on torch",
                 next(r for r in rows if r.name == "stock-fp32").quality,
                 model_bytes=sum(p.stat().st_size for p in stock.path.glob("*.safetensors")),
                 peak_rss_mb=_peak_rss_mb(TORCH_MEMORY_PROBE, str(stock.path), TIMING_QUERY))
    rows.insert(2, st_row)

    history = [records[i]["id"] for i in split.history("test")[0][-window:]]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        query_calls: dict[str, Callable[[], object]] = {
            key: (lambda r=r[threads]: r.query(TIMING_QUERY, k=10)) for key, r in recommenders.items()}
        query_calls["stock-torch"] = lambda: st_index.search(st_model.encode([TIMING_QUERY])[0], 10)
        print(f"[evaluate] query latency, {threads} thread(s), {len(query_calls)} rows interleaved")
        for key, timing in p50_latencies_ms(query_calls, rounds=rounds, seed=threads).items():
            next(r for r in rows if r.name == key).latency[f"query_{threads}t"] = timing
        recommend_calls = {key: (lambda r=r[threads]: r.recommend(history, k=10)) for key, r in recommenders.items()}
        for key, timing in p50_latencies_ms(recommend_calls, rounds=rounds, seed=threads).items():
            next(r for r in rows if r.name == key).latency[f"recommend_{threads}t"] = timing
    write_results(rows, results, config)
    return rows


def _ratio(rows: list[Row], a: str, b: str) -> float | None:
    try:
        x = next(r for r in rows if r.name == a).latency["query_1t"]["p50_ms"]
        y = next(r for r in rows if r.name == b).latency["query_1t"]["p50_ms"]
    except (StopIteration, KeyError):
        return None
    return round(x / y, 3)


def write_results(rows: list[Row], results: Path, config: ExportConfig) -> None:
    results.mkdir(parents=True, exist_ok=True)
    int8_report = json.loads((config.work / "int8.json").read_text())
    shipped = int8_report["chosen"]
    shipped_row = f"{student_key(config.work)}-{shipped}"
    popularity = rows[0].quality["hr@10"]
    teacher = next(r for r in rows if r.name == "finetuned-fp32").quality["hr@10"]
    student = next(r for r in rows if r.name == shipped_row).quality["hr@10"]
    summary = {
        "shipped": shipped_row,
        "query_p50_vs_stock_ort_int8": _ratio(rows, shipped_row, "stock-int8-ort"),
        "query_p50_vs_stock_st_int8": _ratio(rows, shipped_row, "stock-int8-st"),
        "query_p50_vs_sentence_transformers_torch": _ratio(rows, shipped_row, "stock-torch"),
        "hr10_vs_popularity": round(student / popularity, 3),
        "hr10_vs_finetuned_teacher": round(student / teacher, 3),
        "shipped_int8_vs_student_fp32": int8_report["int8_vs_fp32"],
        "timing_query": TIMING_QUERY,
        "cpu": cpu_model(),
        "measured": time.strftime("%Y-%m-%d"),
    }
    body = {"summary": summary, "rows": [r.__dict__ for r in rows]}
    (results / "compression.json").write_text(json.dumps(body, indent=2) + "\n")
    (results / "compression.md").write_text(markdown(rows, summary))
    (results / "compression.svg").write_text(svg_plot(rows, shipped_row))
    print((results / "compression.md").read_text())


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(rows: list[Row], summary: dict[str, Any]) -> str:
    head = ("| row | how | HR@10 | NDCG@10 | HR@20 | NDCG@20 | genre P@10 | query p50/p95 ms 1t | query p50 ms 2t "
            "| recommend p50 ms 1t | items/s | model MB | peak RSS MB |")
    lines = ["# Compression, stage by stage (`python -m export evaluate`)", "",
             f"Measured {summary['measured']} on {summary['cpu']}; query text {summary['timing_query']!r}; "
             "MovieLens-1M test users, leave-last-out, full ranking, history excluded.", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        q1, q2, rec = (r.latency.get(k, {}) for k in ("query_1t", "query_2t", "recommend_1t"))
        lines.append(
            f"| {r.name} | {r.how} | {_fmt(r.quality['hr@10'], 4)} | {_fmt(r.quality['ndcg@10'], 4)} "
            f"| {_fmt(r.quality['hr@20'], 4)} | {_fmt(r.quality['ndcg@20'], 4)} | {_fmt(r.genre_precision, 2)} "
            f"| {_fmt(q1.get('p50_ms'), 2)} / {_fmt(q1.get('p95_ms'), 2)} | {_fmt(q2.get('p50_ms'), 2)} "
            f"| {_fmt(rec.get('p50_ms'), 3)} | {_fmt(r.items_per_second, 0)} "
            f"| {_fmt(None if r.model_bytes is None else r.model_bytes / 1e6, 1)} | {_fmt(r.peak_rss_mb, 0)} |")
    lines += ["", "Shipped model: " + summary["shipped"], ""]
    for key in ("query_p50_vs_stock_ort_int8", "query_p50_vs_stock_st_int8", "query_p50_vs_sentence_transformers_torch",
                "hr10_vs_popularity", "hr10_vs_finetuned_teacher", "shipped_int8_vs_student_fp32"):
        lines.append(f"- {key.replace('_', ' ')}: {summary[key]}")
    return "\n".join(lines) + "\n"


def svg_plot(rows: list[Row], shipped: str, width: int = 720, height: int = 440) -> str:
    """Quality (HR@10) against 1-thread query p50, one point per model row, log-scaled time."""
    points = [Point(r.latency["query_1t"]["p50_ms"], r.quality["hr@10"], r.name,
                    "crimson" if r.name == shipped else None) for r in rows if "query_1t" in r.latency]
    popularity = next(r for r in rows if r.name == "popularity").quality["hr@10"]
    return svg_chart([Series("models", points)], x=Axis("query p50, ms, 1 thread (log scale)", log=True),
                     y=Axis("HR@10, MovieLens-1M test", from_zero=True), guides=[Guide(popularity, "popularity")],
                     width=width, height=height)
