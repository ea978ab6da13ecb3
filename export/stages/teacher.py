"""Stage `teacher`: a teacher's reading of every corpus text, kept in shards that survive interruption.

Reading the ~800k corpus texts is the slow part of distilling a student on a two-core machine:
all-mpnet-base-v2 reads about 31 texts/s through ONNX Runtime fp32 (torch: about 21/s; its dynamic
INT8 graph reads noise, cosine 0.03 to torch), all-MiniLM-L6-v2 several times as many. So the
texts go in one seeded order (the first shards are a random sample of the corpus), a fixed number
per shard, each shard written whole (temporary file, then rename) under the fingerprint of what
made it; a rerun starts at the first missing shard, and ``seconds`` stops at a shard boundary. A GPU
machine reads everything in minutes instead (gpu_distil.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

Encode = Callable[[Sequence[str]], np.ndarray]
Progress = Callable[[str, int, int], None]

SHARD_TEXTS = 8192
MANIFEST = "teacher.json"


def read_corpus(path: Path) -> list[str]:
    """The corpus file's texts (``python -m export corpus``), one per line."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def corpus_order(count: int, seed: int = 0) -> np.ndarray:
    """The order texts are read in: any first part of it is a random sample of the corpus."""
    return np.random.default_rng(seed).permutation(count)


@dataclass(frozen=True)
class ShardPlan:
    """What a folder of shards holds: which teacher read which corpus, in what order."""

    teacher: str
    corpus_sha256: str
    count: int
    shard_texts: int = SHARD_TEXTS
    seed: int = 0

    @property
    def shards(self) -> int:
        return -(-self.count // self.shard_texts)

    def lines(self, shard: int) -> np.ndarray:
        """The corpus line numbers shard ``shard`` holds, in its row order."""
        order = corpus_order(self.count, self.seed)
        return order[shard * self.shard_texts : (shard + 1) * self.shard_texts]


def shard_path(out: Path, shard: int) -> Path:
    return out / f"shard-{shard:05d}.f16.npy"


def open_plan(out: Path, plan: ShardPlan) -> None:
    """Start ``out`` for ``plan``, or check that the shards already there were made for it."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    if manifest.is_file():
        found = json.loads(manifest.read_text())
        if found != plan.__dict__:
            raise ValueError(f"{out}: its shards were made for {found}, not {plan.__dict__}; "
                             "choose another folder or delete this one")
        return
    manifest.write_text(json.dumps(plan.__dict__, indent=2) + "\n")


def read_shards(texts: Sequence[str], encode: Encode, out: Path, plan: ShardPlan, *,
                seconds: float | None = None, progress: Progress | None = None) -> dict[str, float]:
    """Encode every missing shard of ``plan`` into ``out`` (unit float16 rows), stopping after
    ``seconds`` at a shard boundary; returns what this call did."""
    if len(texts) != plan.count:
        raise ValueError(f"the corpus has {len(texts)} texts, the plan {plan.count}")
    open_plan(out, plan)
    began, done, encoded = time.perf_counter(), 0, 0
    for shard in range(plan.shards):
        path = shard_path(out, shard)
        if path.is_file():
            done += 1
            continue
        if seconds is not None and time.perf_counter() - began > seconds:
            break
        lines = plan.lines(shard)
        vectors = np.asarray(encode([texts[i] for i in lines]), dtype=np.float32)
        if vectors.shape[0] != len(lines) or not np.isfinite(vectors).all():
            raise ValueError(f"the teacher returned {vectors.shape} for {len(lines)} texts, or non-finite values")
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            np.save(handle, vectors.astype(np.float16))
        os.replace(temporary, path)
        done, encoded = done + 1, encoded + len(lines)
        if progress is not None:
            progress("teacher", done, plan.shards)
    elapsed = time.perf_counter() - began
    return {"shards_done": done, "shards": plan.shards, "texts_encoded_now": encoded,
            "seconds": round(elapsed, 1), "texts_per_second": round(encoded / elapsed, 1) if encoded else 0.0}


def load_shards(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(corpus line numbers, float32 unit vectors) of every shard written so far."""
    plan = ShardPlan(**json.loads((out / MANIFEST).read_text()))
    lines, vectors = [], []
    for shard in range(plan.shards):
        path = shard_path(out, shard)
        if path.is_file():
            lines.append(plan.lines(shard))
            vectors.append(np.load(path).astype(np.float32))
    if not lines:
        return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
    return np.concatenate(lines), np.concatenate(vectors)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def stage_teacher(corpus: Path, work: Path, teacher_name: str, *, seconds: float | None = None,
                  threads: int | None = None, progress: Progress | None = None) -> dict[str, float]:
    """`python -m export teacher`: ``teacher_name`` (mpnet or minilm) reads the corpus through ONNX
    Runtime fp32 into ``work/teacher-<name>/``."""
    from edgerec.encoder import TextEncoder

    from .onnx_export import export_onnx
    from .onnx_export import encoder_spec
    from .sources import minilm_teacher, mpnet_reader

    facts = mpnet_reader(work) if teacher_name == "mpnet" else minilm_teacher()
    out = work / f"teacher-{teacher_name}"
    texts = read_corpus(corpus)
    plan = ShardPlan(teacher=facts.name, corpus_sha256=file_sha256(corpus), count=len(texts))
    open_plan(out, plan)
    graph = out / "teacher.onnx"
    if not graph.is_file():
        export_onnx(facts.path, graph)
    encoder = TextEncoder(graph, facts.path / "tokenizer.json", encoder_spec(facts, graph), threads=threads)
    return read_shards(texts, lambda batch: encoder.encode(list(batch), batch_size=64), out, plan,
                       seconds=seconds, progress=progress)
