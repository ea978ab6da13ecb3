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

from edgerec.update.build import build_bundle
from edgerec.encoder import TextEncoder
from edgerec.items import item_text
from edgerec.bundle.manifest import LexicalSpec, PriorSpec, UserSpec

from .distil import shallow_copy
from .finetune import TargetConfig, collaborative_targets
from .fit import FitConfig, config_record, encode, fit, save
from .general_model import FUSION_WEIGHT, load_static_base, static_spec
from .interactions import Split
from .onnx_export import OPSET, encoder_spec, export_onnx
from .quantize import VARIANTS, Int8Config, quantize_int8
from .query_texts import query_like_texts
from .ranking import evaluate, prior_scorer, vector_scorer
from .sources import QUERY_TEXTS, TeacherFacts, read_teacher
from .speed import p50_latencies_ms
from .static_embed import MAX_TOKENS as STATIC_MAX_TOKENS
from .static_embed import StaticEncoder
from .static_fit import StaticFitConfig, fit_static, token_ids
from .static_teach import TeachConfig, teach_descriptions
from .static_onnx import write_static_onnx
from .validate import ValidationFailed, agreement, check, torch_reference

FP32_NAME, INT8_NAME, TOKENIZER_NAME = "fp32.onnx", "int8.onnx", "tokenizer.json"
STATIC_ROWS, ITEM_VECTORS, FIT_ROWS = "static-rows.npy", "item-vectors.npy", "static-fit-rows.npy"
FINETUNED_DIR, STUDENT_DIR, TARGETS_NAME = "finetuned", "student", "targets.npy"


@dataclass(frozen=True)
class ExportConfig:
    """Everything the pipeline needs besides the teacher and the catalogue."""

    work: Path = Path("export/work")
    out: Path = Path("artifacts/default")
    name: str = "movielens-1m-minilm-student-int8"
    text_fields: tuple[str, ...] = ("title", "year", "genres")
    id_field: str = "id"
    title_field: str = "title"        # what a user types to find one item (title@1); items may lack it
    interactions_name: str = "MovieLens-1M"  # whose interactions the model is fitted to, for the provenance
    int8_variants: tuple[Int8Config, ...] = VARIANTS
    targets: TargetConfig = field(default_factory=TargetConfig)
    teacher_fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=8, learning_rate=1e-4,
                                                                     embedding_learning_rate=2e-3))
    anchors: int = 1000              # query-like texts that keep their stock vectors while fine-tuning
    student_layers: tuple[int, ...] = ()  # none: embeddings, LayerNorm and mean pooling (distil.py)
    student_item_goal: str = "targets"  # or "teacher": what the student learns on item texts (stage_distil)
    student_fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=20, learning_rate=2e-4,
                                                                     embedding_learning_rate=3e-3))
    # A general static student (rows.f16.npy + tokenizer.json), or a static edgerec model such as
    # artifacts/general, to start from: then stage_static takes the
    # place of finetune, distil, onnx and int8.
    static_base: Path | None = None
    static_fit: StaticFitConfig = field(default_factory=StaticFitConfig)
    # General texts (e.g. corpus sentences) held at the general student's vectors while fitting, so that
    # the words they share with titles keep their general meaning.
    static_general_texts: tuple[str, ...] = ()
    # The index's item vectors: (1 - b) x the fitted table's reading of the item text + b x the item's
    # collaborative target, for the b of this grid with the best validation HR@10 among those whose title@1
    # stays >= min_title_at_1. The encoder's reading remains what a new item (an update) gets.
    item_blends: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    # A bundle with a description model (edgerec.descriptions) whose reading of descriptive phrases the
    # fitted table then learns (static_teach.py); None: no such step.
    static_teacher: Path | None = None
    static_teach: TeachConfig = field(default_factory=TeachConfig)
    min_title_at_1: float = 0.97
    query_texts: int = 3000          # query-like texts for anchoring and distillation
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


def _item_texts(records: Sequence[dict], config: ExportConfig) -> list[str]:
    return [item_text(r, config.text_fields) for r in records]


def _load(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)


def _valid_quality(vectors: np.ndarray, split: Split, window: int) -> dict[str, float]:
    """Validation-split ranking quality: used to compare stages here; the test split is for `evaluate` only."""
    return {k: round(v, 5) for k, v in evaluate(vector_scorer(vectors, window), split, "valid").items()}


def _collaborative_targets(split: Split, text_vectors: np.ndarray, config: ExportConfig, progress: Any) -> np.ndarray:
    """finetune.collaborative_targets, or the ones an earlier run saved with the same settings and inputs."""
    key = {"targets": config.targets.as_dict(), "users": split.users, "items": split.item_count,
           "text_vectors_sum": round(float(np.abs(text_vectors).sum()), 2)}
    saved, record = config.work / TARGETS_NAME, config.work / "targets.json"
    if saved.is_file() and record.is_file() and json.loads(record.read_text()) == key:
        print(f"[finetune] collaborative targets: reusing {saved} (same settings and inputs)")
        return np.load(saved)
    print(f"[finetune] collaborative targets: {config.targets.as_dict()}")
    targets = collaborative_targets(split, text_vectors, config.targets, progress=progress)
    np.save(saved, targets)
    record.write_text(json.dumps(key) + "\n")
    return targets


def stage_finetune(teacher: TeacherFacts, records: Sequence[dict], split: Split, config: ExportConfig,
                   progress: Any = None) -> dict[str, Any]:
    """Teacher -> fine-tuned teacher (finetune.py), on the training split only."""
    import torch

    torch.manual_seed(config.seed)
    config.work.mkdir(parents=True, exist_ok=True)
    model, tokenizer = _load(teacher.path)
    items = _item_texts(records, config)
    anchors = query_like_texts(records, config.anchors, seed=config.seed)
    print(f"[finetune] text vectors of {len(items)} items and {len(anchors)} query-like texts (stock teacher)")
    text_vectors = encode(model, tokenizer, items)
    anchor_vectors = encode(model, tokenizer, anchors)
    targets = _collaborative_targets(split, text_vectors, config, progress)
    print(f"[finetune] fitting the teacher to them: {config_record(config.teacher_fit)}")
    losses = fit(model, tokenizer, items + anchors, np.concatenate([targets, anchor_vectors]), config.teacher_fit,
                 name="fine-tune", progress=progress)
    finetuned = encode(model, tokenizer, items)
    report = {
        "teacher": teacher.name,
        "targets": config.targets.as_dict(),
        "fit": config_record(config.teacher_fit),
        "fit_loss_per_epoch": [round(x, 5) for x in losses],
        "query_like_texts": len(anchors),
        "valid": {"stock": _valid_quality(text_vectors, split, config.targets.window),
                  "targets": _valid_quality(targets, split, config.targets.window),
                  "finetuned": _valid_quality(finetuned, split, config.targets.window)},
        "finetuned_vs_targets": agreement(finetuned, targets).as_dict(),
        "finetuned_vs_stock_on_queries": agreement(encode(model, tokenizer, anchors), anchor_vectors).as_dict(),
    }
    save(model, tokenizer, config.work / FINETUNED_DIR, teacher.path, report)
    print(f"[finetune] valid HR@10: stock {report['valid']['stock']['hr@10']}, "
          f"targets {report['valid']['targets']['hr@10']}, fine-tuned {report['valid']['finetuned']['hr@10']}")
    _write_report(config.work, "finetune", report)
    return report


def stage_distil(records: Sequence[dict], split: Split, config: ExportConfig, progress: Any = None) -> dict[str, Any]:
    """Fine-tuned teacher -> shallow student (distil.py).

    On query-like texts the student learns the teacher's vectors: there the
    teacher carries the language knowledge. On item texts it learns the
    collaborative targets the teacher itself was fit to (config.student_item_goal
    "targets"), because the teacher's item vectors are only a lossy copy of them
    and a student fit to a copy loses twice; "teacher" gives plain distillation.
    """
    import torch

    torch.manual_seed(config.seed)
    _read_report(config.work, "finetune")
    teacher_dir = config.work / FINETUNED_DIR
    teacher, tokenizer = _load(teacher_dir)
    items = _item_texts(records, config)
    queries = query_like_texts(records, config.query_texts, seed=config.seed + 1)
    texts = items + queries
    print(f"[distil] teacher vectors for {len(items)} item texts and {len(queries)} query-like texts")
    teacher_vectors = encode(teacher, tokenizer, texts)
    goal = teacher_vectors.copy()
    if config.student_item_goal == "targets":
        goal[: len(items)] = np.load(config.work / TARGETS_NAME)
    elif config.student_item_goal != "teacher":
        raise ValueError(f"student_item_goal must be 'targets' or 'teacher', got {config.student_item_goal!r}")
    student = shallow_copy(str(teacher_dir), config.student_layers)
    print(f"[distil] student: teacher layers {list(config.student_layers)}, item texts learn the "
          f"{config.student_item_goal}' vectors; {config_record(config.student_fit)}")
    losses = fit(student, tokenizer, texts, goal, config.student_fit, name="distil", progress=progress)
    vectors = encode(student, tokenizer, texts)
    report = {
        "layers": list(config.student_layers),
        "item_goal": config.student_item_goal,
        "fit": config_record(config.student_fit),
        "fit_loss_per_epoch": [round(x, 5) for x in losses],
        "student_vs_goal_items": agreement(vectors[: len(items)], goal[: len(items)]).as_dict(),
        "student_vs_teacher_items": agreement(vectors[: len(items)], teacher_vectors[: len(items)]).as_dict(),
        "student_vs_teacher_queries": agreement(vectors[len(items):], teacher_vectors[len(items):]).as_dict(),
        "valid": {"teacher": _valid_quality(teacher_vectors[: len(items)], split, config.targets.window),
                  "student": _valid_quality(vectors[: len(items)], split, config.targets.window)},
    }
    save(student, tokenizer, config.work / STUDENT_DIR, teacher_dir, report)
    print(f"[distil] valid HR@10: teacher {report['valid']['teacher']['hr@10']}, "
          f"student {report['valid']['student']['hr@10']}")
    _write_report(config.work, "distil", report)
    return report


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
    """fp32 ONNX -> every INT8 variant (quantize.VARIANTS), each checked against fp32 and timed
    side by side; the fastest that passes (ties within 5% go to the closest to fp32) becomes int8.onnx."""
    _read_report(config.work, "onnx")
    fp32_path, tokenizer = config.work / FP32_NAME, config.work / TOKENIZER_NAME
    spec = encoder_spec(teacher, fp32_path)
    texts = validation_texts(records, config)
    fp32_encoder = TextEncoder(fp32_path, tokenizer, spec, threads=1)
    fp32 = fp32_encoder.encode(texts)
    # Calibration texts for static scales: item texts and query-like texts not used for validation.
    calibration = [item_text(r, config.text_fields) for r in records[: config.validation_items]]
    calibration += query_like_texts(records, config.validation_items, seed=config.seed + 2)
    variants_dir = config.work / "int8"
    results: dict[str, dict[str, Any]] = {}
    encoders: dict[str, TextEncoder] = {}
    for variant in config.int8_variants:
        path = variants_dir / f"{variant.key}.onnx"
        print(f"[int8] {variant.describe()}")
        feeds = (fp32_encoder.model_inputs([t]) for t in calibration)
        quantize_int8(fp32_path, path, variant, calibration=feeds)
        encoder = TextEncoder(path, tokenizer, encoder_spec(teacher, path), threads=1)
        # Encoded one at a time, as queries are: no padding reaches dynamic scales.
        single = np.concatenate([encoder.encode([t]) for t in texts])
        versus_fp32 = agreement(single, fp32)
        failures = check(f"{variant.key} vs fp32", versus_fp32, min_mean_cosine=config.int8_min_mean_cosine,
                         min_cosine=config.int8_min_cosine)
        batched = agreement(encoder.encode(texts), single)
        check(f"{variant.key} batched vs one at a time", batched, min_mean_cosine=0.0, min_cosine=0.0)
        encoders[variant.key] = encoder
        results[variant.key] = {"recipe": variant.describe(), "int8_vs_fp32": versus_fp32.as_dict(),
                                "int8_batched_vs_single": batched.as_dict(), "failures": failures,
                                "size_bytes": path.stat().st_size}
    query = QUERY_TEXTS[0]
    print(f"[int8] timing fp32 and every variant side by side, 1 thread, query {query!r}")
    timing = p50_latencies_ms({"fp32": lambda: fp32_encoder.encode([query]),
                               **{key: (lambda e=e: e.encode([query])) for key, e in encoders.items()}},
                              rounds=config.timing_rounds, seed=config.seed)
    for key, result in results.items():
        result["latency_1_thread"] = timing[key]
        print(f"  {key}: p50 {timing[key]['p50_ms']} ms (fp32 {timing['fp32']['p50_ms']} ms)")
    passing = [key for key, result in results.items() if not result["failures"]]
    report: dict[str, Any] = {
        "rule": "fastest p50 among variants passing the thresholds; within 5% of it, the highest mean cosine",
        "variants": results,
        "fp32_latency_1_thread": timing["fp32"],
        "thresholds": {"min_mean_cosine": config.int8_min_mean_cosine, "min_cosine": config.int8_min_cosine},
    }
    if not passing:
        # The report is still written, for whoever debugs the failure.
        _write_report(config.work, "int8", {"chosen": None, **report})
        _raise_if([f for r in results.values() for f in r["failures"]])
    fastest = min(timing[key]["p50_ms"] for key in passing)
    near = [key for key in passing if timing[key]["p50_ms"] <= 1.05 * fastest]
    chosen = max(near, key=lambda key: results[key]["int8_vs_fp32"]["mean_cosine"])
    shutil.copyfile(variants_dir / f"{chosen}.onnx", config.work / INT8_NAME)
    print(f"[int8] kept {chosen}")
    report = {
        "chosen": chosen,
        "recipe": results[chosen]["recipe"],
        "int8_vs_fp32": results[chosen]["int8_vs_fp32"],
        "int8_batched_vs_single": results[chosen]["int8_batched_vs_single"],
        "size_bytes": {"fp32": fp32_path.stat().st_size, "int8": results[chosen]["size_bytes"]},
        **report,
    }
    _write_report(config.work, "int8", report)
    return report


def _title_at_1(vectors: np.ndarray, encoder: StaticEncoder, records: Sequence[dict], config: ExportConfig) -> float:
    """Each record's title (its id where it has none) as the query: how often its own item comes first
    (exact search)."""
    titles = encoder.encode([str(r.get(config.title_field) or r[config.id_field]) for r in records])
    return float(np.mean(np.argmax(titles @ vectors.T, axis=1) == np.arange(len(records))))


def _fitted_rows(rows: np.ndarray, tokenizer: Path, texts: Sequence[str], goals: np.ndarray, config: ExportConfig,
                 progress: Any) -> tuple[np.ndarray, list[float]]:
    """fit_static of the table on (texts, goals), or the rows an earlier run fitted with the same settings
    and inputs (the fit takes ~20 minutes on two cores for MovieLens)."""
    import hashlib

    digest = hashlib.sha256(rows.tobytes())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    digest.update(np.ascontiguousarray(goals, dtype=np.float32).tobytes())
    key = {"fit": config.static_fit.as_dict(), "inputs": digest.hexdigest()}
    saved, record = config.work / FIT_ROWS, config.work / "static-fit.json"
    if saved.is_file() and record.is_file() and json.loads(record.read_text()).get("key") == key:
        print(f"[static] fitted table: reusing {saved} (same settings and inputs)")
        return np.load(saved), json.loads(record.read_text())["losses"]
    fitted, losses = fit_static(rows, token_ids(tokenizer, texts, STATIC_MAX_TOKENS), goals, config.static_fit,
                                name="static", progress=progress)
    np.save(saved, fitted)
    record.write_text(json.dumps({"key": key, "losses": losses}) + "\n")
    return fitted, losses


def _blend_item_vectors(fitted: np.ndarray, targets: np.ndarray, encoder: StaticEncoder, records: Sequence[dict],
                        split: Split, config: ExportConfig) -> tuple[float, dict[str, dict[str, float]]]:
    """Choose the blend of fitted text vectors and collaborative targets the index holds (ExportConfig.item_blends),
    on validation HR@10 among the blends whose title@1 is at least min_title_at_1 (or, where the fitted text
    vectors alone fall short of it, at least theirs); save those vectors. Returns (blend, {blend: figures})."""
    def unit(b: float) -> np.ndarray:
        vectors = (1 - b) * fitted + b * targets
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    floor = min(config.min_title_at_1, _title_at_1(fitted, encoder, records, config))
    figures, best = {}, (0.0, -1.0)
    for b in config.item_blends:
        vectors = unit(b)
        hr = _valid_quality(vectors, split, config.targets.window)["hr@10"]
        title = _title_at_1(vectors, encoder, records, config)
        figures[str(b)] = {"valid_hr@10": hr, "title_at_1": round(title, 4)}
        if title >= floor and hr > best[1]:
            best = (b, hr)
    np.save(config.work / ITEM_VECTORS, unit(best[0]).astype(np.float32))
    return best[0], figures


def stage_static(records: Sequence[dict], split: Split, config: ExportConfig, progress: Any = None) -> dict[str, Any]:
    """The general static student or model config.static_base (general_model.load_static_base) fitted
    to the collaborative targets on item texts while query-like texts keep its own vectors (static_fit.py),
    and each title to its item's target, then written as float16 and int8 Gather graphs, each checked against the
    numpy table. It takes the place
    of finetune, distil, onnx and int8; `bundle` follows."""
    from tokenizers import Tokenizer

    base = config.static_base
    if base is None:
        raise ValueError("stage_static needs config.static_base, a general static student's folder")
    config.work.mkdir(parents=True, exist_ok=True)
    rows, tokenizer_path = load_static_base(base)
    general = StaticEncoder(rows, tokenizer_path)
    items = _item_texts(records, config)
    anchors = query_like_texts(records, config.anchors, seed=config.seed, title_field=config.title_field)
    print(f"[static] {base}: vectors of {len(items)} items and {len(anchors)} query-like texts")
    text_vectors, anchor_vectors = general.encode(items), general.encode(anchors)
    targets = _collaborative_targets(split, text_vectors, config, progress)
    # A title typed alone should find its item: each title learns its item's target too (an anchor that is
    # exactly a title gives way to it).
    titled = [i for i, r in enumerate(records) if str(r.get(config.title_field) or "").strip()]
    titles = [str(records[i][config.title_field]) for i in titled]
    title_set = set(titles)
    keep = [i for i, a in enumerate(anchors) if a not in title_set]
    held = list(config.static_general_texts)
    texts = items + titles + [anchors[i] for i in keep] + held
    goals = np.concatenate([targets, targets[titled], anchor_vectors[keep], *([general.encode(held)] if held else [])])
    print(f"[static] fitting the table on {len(items)} item texts, {len(titles)} titles, {len(keep)} query-like "
          f"texts and {len(held)} general texts: {config.static_fit.as_dict()}")
    fitted, losses = _fitted_rows(rows, tokenizer_path, texts, goals, config, progress)
    teach = None
    if config.static_teacher is not None:
        fitted, teach = teach_descriptions(fitted, tokenizer_path, texts, goals, config.static_teacher,
                                           [str(r[config.id_field]) for r in records], targets, split.popularity(),
                                           config.static_teach, progress=progress)
    np.save(config.work / STATIC_ROWS, fitted)
    tuned = StaticEncoder(fitted, tokenizer_path)
    item_vectors = tuned.encode(items)
    blend, blends = _blend_item_vectors(item_vectors, targets, tuned, records, split, config)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=STATIC_MAX_TOKENS)
    tokenizer.save(str(config.work / TOKENIZER_NAME))
    spec = static_spec(fitted)
    graphs = {"float16": write_static_onnx(fitted, config.work / FP32_NAME, "float16"),
              "int8": write_static_onnx(fitted, config.work / INT8_NAME, "int8")}
    texts = validation_texts(records, config)
    reference = tuned.encode(texts)
    encoders = {k: TextEncoder(path, config.work / TOKENIZER_NAME, spec, threads=1) for k, path in graphs.items()}
    checks, failures = {}, []
    for key, encoder in encoders.items():
        single = np.concatenate([encoder.encode([t]) for t in texts])  # one at a time, as queries are
        checks[key] = agreement(single, reference)
        failures += check(f"static {key} graph vs the numpy table", checks[key],
                          min_mean_cosine=config.fp32_min_cosine if key == "float16" else config.int8_min_mean_cosine,
                          min_cosine=config.fp32_min_cosine if key == "float16" else config.int8_min_cosine)
    query = QUERY_TEXTS[0]
    timing = p50_latencies_ms({k: (lambda e=e: e.encode([query])) for k, e in encoders.items()},
                              rounds=config.timing_rounds, seed=config.seed)
    window = config.targets.window
    report = {
        "base": str(base),
        "targets": config.targets.as_dict(),
        "fit": config.static_fit.as_dict(),
        "fit_loss_per_epoch": [round(x, 5) for x in losses],
        "descriptions_taught": teach,
        "query_like_texts": len(anchors),
        "general_texts": len(held),
        "valid": {"general": _valid_quality(text_vectors, split, window),
                  "targets": _valid_quality(targets, split, window),
                  "fitted": _valid_quality(item_vectors, split, window)},
        "title_at_1": {"general": round(_title_at_1(text_vectors, general, records, config), 4),
                       "fitted": round(_title_at_1(item_vectors, tuned, records, config), 4)},
        "item_vectors": {"blend": blend, "by_blend": blends},
        "fitted_vs_targets": agreement(item_vectors, targets).as_dict(),
        "fitted_vs_general_on_queries": agreement(tuned.encode(anchors), anchor_vectors).as_dict(),
        "graphs_vs_numpy": {k: v.as_dict() for k, v in checks.items()},
        "latency_1_thread": {"query": query, **timing},
        "size_bytes": {k: path.stat().st_size for k, path in graphs.items()},
        "spec": json.loads(json.dumps(spec.__dict__)),
    }
    print(f"[static] valid HR@10: general {report['valid']['general']['hr@10']}, targets "
          f"{report['valid']['targets']['hr@10']}, fitted {report['valid']['fitted']['hr@10']}; title@1 "
          f"{report['title_at_1']}; item vectors: blend {blend} of {blends}")
    _write_report(config.work, "static", report)
    _raise_if(failures)
    return report


def _layered_provenance(model: TeacherFacts, config: ExportConfig) -> dict[str, Any]:
    """What the bundle says of a model made by finetune -> distil -> onnx -> int8."""
    reports = {stage: _read_report(config.work, stage) for stage in ("onnx", "int8")}
    for stage in ("finetune", "distil"):
        if (config.work / f"{stage}.json").is_file():
            reports[stage] = _read_report(config.work, stage)
    stages = []
    if "finetune" in reports:
        stages.append(f"fine-tuned on MovieLens-1M training interactions (window {config.targets.window})")
    if "distil" in reports:
        stages.append(f"distilled into {len(reports['distil']['layers'])} layer(s): teacher layers "
                      f"{reports['distil']['layers']}")
    stages += [f"ONNX export (optimum, opset {OPSET})", reports["int8"]["recipe"]]
    return {
        "teacher": reports["finetune"]["teacher"] if "finetune" in reports else model.name,
        "stages": stages,
        "validation": {
            "texts": f"{config.validation_items} catalogue texts + {len(QUERY_TEXTS)} query-like texts",
            "fp32_vs_torch": reports["onnx"]["fp32_vs_torch"],
            "int8_vs_fp32": reports["int8"]["int8_vs_fp32"],
            "int8_batched_vs_single": reports["int8"]["int8_batched_vs_single"],
        },
        "training": {stage: {k: reports[stage][k] for k in ("fit", "valid")}
                     for stage in ("finetune", "distil") if stage in reports},
        "encode_latency_1_thread": {"query": QUERY_TEXTS[0], "fp32": reports["int8"]["fp32_latency_1_thread"],
                                    "int8": reports["int8"]["variants"][reports["int8"]["chosen"]]["latency_1_thread"]},
        "model_bytes": reports["int8"]["size_bytes"],
    }


def _static_provenance(config: ExportConfig) -> dict[str, Any]:
    """What the bundle says of a general static student fitted by stage_static."""
    report = _read_report(config.work, "static")
    blend = report["item_vectors"]["blend"]
    return {
        "teacher": report["base"],
        "stages": ["general static student (python -m export student --layers 0)",
                   f"fitted to {config.interactions_name} training interactions (window {config.targets.window}) "
                   "on item texts, "
                   "query-like texts kept at the student's own vectors",
                   "Gather graph, int8 rows with a float scale per row",
                   *([f"taught descriptive phrases as {report['descriptions_taught']['teacher']}'s description "
                      "model reads them"] if report.get("descriptions_taught") else []),
                   f"item vectors: {1 - blend:g} x the fitted reading of the item text + {blend:g} x the item's "
                   f"collaborative target (chosen on validation HR@10 with title@1 >= {config.min_title_at_1})",
                   f"BM25 over item texts fused into text queries (weight {FUSION_WEIGHT} x its damping, "
                   "edgerec.lexical)"],
        "validation": {"texts": f"{config.validation_items} catalogue texts + {len(QUERY_TEXTS)} query-like texts",
                       **{f"{k}_vs_numpy": v for k, v in report["graphs_vs_numpy"].items()}},
        "training": {"static": {k: report[k] for k in ("fit", "valid", "title_at_1", "item_vectors")},
                     **({"descriptions": report["descriptions_taught"]} if report.get("descriptions_taught") else {})},
        "encode_latency_1_thread": report["latency_1_thread"],
        "model_bytes": report["size_bytes"],
    }


# Item prior weights tried on validation HR@10 (edgerec.prior); 0 stands for no prior.
PRIOR_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def choose_prior(vectors: np.ndarray, split: Split, window: int, source: str) -> tuple[Any, dict[str, Any]]:
    """The item prior, if validation says it helps: the weight with the best validation HR@10 (counts of the
    training histories), written with the counts of every history before the test targets. None when the
    best weight is 0."""
    tried = {weight: evaluate(prior_scorer(vectors, window, split.popularity(), weight), split, "valid")["hr@10"]
             for weight in PRIOR_WEIGHTS}
    best = max(PRIOR_WEIGHTS, key=lambda w: (tried[w], -w))  # ties to the smaller weight
    report = {"valid_hr@10": {f"{w:g}": round(v, 4) for w, v in tried.items()}, "weight": best}
    print("[bundle] item prior on validation HR@10: "
          + ", ".join(f"{w:g} -> {v:.4f}" for w, v in tried.items()) + f"; kept weight {best:g}")
    if best == 0.0:
        return None, report
    counts = np.bincount(np.concatenate([*split.train, split.valid]), minlength=split.item_count)
    spec = PriorSpec(weight=best, events=int(counts.sum()), source=source)
    return (spec, counts.astype(np.float32)), report


def stage_bundle(model: TeacherFacts, records: Sequence[dict], config: ExportConfig,
                 progress: Any = None, split: Split | None = None) -> dict[str, Any]:
    """Encode the catalogue with the kept INT8 model and write the bundle, with every stage's report; with
    ``split``, an item prior joins when validation says it helps (choose_prior)."""
    static = config.static_base is not None
    provenance = {"model": _static_provenance(config) if static else _layered_provenance(model, config),
                  "catalog": config.catalog_provenance}
    int8_path, tokenizer = config.work / INT8_NAME, config.work / TOKENIZER_NAME
    spec = static_spec(np.load(config.work / STATIC_ROWS)) if static else encoder_spec(model, int8_path)
    vectors = np.load(config.work / ITEM_VECTORS) if static else None
    prior, report = None, {}
    if split is not None:
        if vectors is None:  # the layered model's reading of the items, as the bundle will index it
            texts = [item_text(r, config.text_fields) for r in records]
            vectors = TextEncoder(int8_path, tokenizer, spec, threads=None).encode(texts)
        prior, report["prior"] = choose_prior(vectors, split, config.targets.window,
                                              f"{config.interactions_name} training interactions")
        provenance["prior"] = report["prior"]
    print(f"[bundle] {'indexing the fitted item vectors of' if static else 'encoding'} {len(records)} items "
          f"into {config.out}")
    manifest = build_bundle(
        records, config.out, model_path=int8_path, tokenizer_path=tokenizer,
        encoder_spec=spec, text_fields=config.text_fields, id_field=config.id_field,
        user=UserSpec(window=config.targets.window), name=config.name, provenance=provenance,
        notice_path=config.notice, overwrite=config.overwrite, progress=progress,
        vectors=vectors, prior=prior,
        lexical=LexicalSpec(weight=FUSION_WEIGHT) if static else None,
    )
    report.update({"bundle": str(config.out), "items": manifest.items.count})
    _write_report(config.work, "bundle", report)
    return report


def student_facts(config: ExportConfig) -> TeacherFacts:
    """The distilled student as the later stages see it (pooling and length from its files)."""
    return read_teacher(config.work / STUDENT_DIR, name="edgerec student")


def run_all(teacher: TeacherFacts, records: Sequence[dict], split: Split, config: ExportConfig,
            progress: Any = None, resume: bool = False) -> None:
    """Every stage in order; with ``resume``, stages whose report already exists are skipped."""

    def due(stage: str) -> bool:
        if resume and (config.work / f"{stage}.json").is_file():
            print(f"[{stage}] already done ({config.work / stage}.json); skipping")
            return False
        return True

    if config.static_base is not None:
        if due("static"):
            stage_static(records, split, config, progress=progress)
        stage_bundle(teacher, records, config, progress=progress, split=split)
        return
    if due("finetune"):
        stage_finetune(teacher, records, split, config, progress=progress)
    if due("distil"):
        stage_distil(records, split, config, progress=progress)
    student = student_facts(config)
    if due("onnx"):
        stage_onnx(student, records, config)
    if due("int8"):
        stage_int8(student, records, config)
    stage_bundle(student, records, config, progress=progress, split=split)


def clean(config: ExportConfig) -> None:
    shutil.rmtree(config.work, ignore_errors=True)
