"""The candidate text encoders of `python -m export encoders`: what each is, how it is called, what it reads.

A builder takes the shared Context and returns a Candidate; BUILDERS lists them in table order. The
baselines (stock MiniLM, mpnet, the shipped encoder), model2vec-style static tables distilled from a
teacher, BM25 and its fusion, and the students of ``python -m export student`` (read from
--work/students, skipped with a reason when not trained yet).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgerec.encoder import clean_text
from edgerec.lexical import LexicalIndex, WordSplitter
from edgerec.tools.timing import package_versions

from ..stages import static_embed
from ..stages.general_model import FUSION_WEIGHT
from ..stages.sources import TeacherFacts
from .fusion import bm25_matrix, query_damping, reciprocal_rank_fusion, score_fusion
from .peer_client import top_k
from .text_tasks import Encoder, ScoreMatrix

ANCHOR = "minilm-int8"
BATCH = 32
TOP_K = 10

Log = Callable[[str], None]
QueryFn = Callable[[str], object]


@dataclass(frozen=True)
class EncodersConfig:
    work: Path = Path("export/work")
    results: Path = Path("results")
    bundle: Path = Path("artifacts/default")
    model: Path = Path("artifacts/general")  # the general model `edgerec build` starts from
    rounds: int = 200           # timed rounds: each runs every candidate's title query and description query
    warmup: int = 20
    only: tuple[str, ...] = ()  # candidate names; empty: all; the anchor is always measured
    quick: bool = False         # smoke run: subsampled tasks and catalogue, few rounds
    validation: bool = False    # the validation sets (training side) instead of the test sets: for choosing
    seed: int = 0
    bulk_threads: int = 2       # untimed work (task texts, distillation) uses every core


@dataclass
class Candidate:
    """One thing that turns text into rankings: what it is, how it is called, and what it needs on disk."""

    name: str
    description: str
    files: tuple[Path, ...]     # what it reads at run time (its size)
    torch_free: bool
    fingerprint: str            # what its vectors depend on: task vectors are cached under it
    encode: Encoder | None = None                     # texts -> unit float32 vectors, batch 32, 1 thread
    encode_one: Callable[[str], np.ndarray] | None = None  # the query path, 1 thread
    scores: ScoreMatrix | None = None                 # (queries, documents) -> scores: retrieval tasks use it
    bulk_encode: Encoder | None = None                # task texts, untimed, every core (default: encode)
    searcher: Callable[[Sequence[str], np.ndarray], QueryFn] | None = None  # catalogue -> end-to-end query
    before_timing: Callable[[], None] = lambda: None  # e.g. torch's process-wide thread count back to 1
    extra_bytes: int = 0        # beyond its files: e.g. a BM25 index over the catalogue
    note: str = ""

    @property
    def timed(self) -> bool:
        return self.encode is not None and self.encode_one is not None

    def query_over(self, catalogue: Sequence[str], vectors: np.ndarray) -> QueryFn:
        """The end-to-end query: encode_one + exact top-10 over its own catalogue vectors (unless it has its own)."""
        if self.searcher is not None:
            return self.searcher(catalogue, vectors)
        assert self.encode_one is not None
        encode_one = self.encode_one
        return lambda text: top_k(vectors, encode_one(text), TOP_K)


@dataclass
class Context:
    """What the candidate builders share; models they load are kept in ``shared``."""

    config: EncodersConfig
    stock: TeacherFacts
    catalogue: list[str]
    log: Log
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def tokenizer(self) -> Path:
        """all-MiniLM-L6-v2's tokenizer.json: the WordPiece vocabulary of every MiniLM-based candidate."""
        return self.stock.path / "tokenizer.json"

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.shared:
            self.shared[key] = make()
        return self.shared[key]


# -- fingerprints and caches ---------------------------------------------------------

def files_digest(paths: Sequence[Path], *extra: str) -> str:
    """sha256 over the files' bytes (in the order given) and ``extra`` strings: 16 hex digits."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}\0".encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
    for text in extra:
        digest.update(f"\0{text}".encode())
    return digest.hexdigest()[:16]


def versions(*packages: str) -> str:
    """'a=1.0,b=none': part of a fingerprint (vectors change with the library that computes them)."""
    return ",".join(f"{k}={v or 'none'}" for k, v in package_versions(*packages).items())


# -- candidates ----------------------------------------------------------------------

def _stock_models(ctx: Context) -> dict[str, Any]:
    from .evaluation import prepare_stock_models

    def make() -> dict[str, Any]:
        ctx.log("stock all-MiniLM-L6-v2 as ONNX fp32 and fused + dynamic INT8 (made once in work/evaluation)")
        models = prepare_stock_models(ctx.stock, ctx.config.work / "evaluation", ctx.tokenizer)
        return {m.key: m for m in models}
    return ctx.once("stock-models", make)


def _plain_onnx(ctx: Context, name: str, model_key: str, description: str) -> Candidate:
    from .peer_client import PlainOnnxEncoder

    model = _stock_models(ctx)[model_key]
    timed = PlainOnnxEncoder(str(model.onnx), str(ctx.tokenizer), ctx.stock.max_length, 1)
    bulk = PlainOnnxEncoder(str(model.onnx), str(ctx.tokenizer), ctx.stock.max_length, ctx.config.bulk_threads)
    files = (model.onnx, ctx.tokenizer)
    return Candidate(name, description, files, torch_free=True,
                     fingerprint=files_digest(files, f"max_length={ctx.stock.max_length}", "plain-onnx-mean"),
                     encode=lambda texts: timed.encode(texts, batch_size=BATCH), encode_one=timed.encode_one,
                     bulk_encode=lambda texts: bulk.encode(texts, batch_size=BATCH))


def _minilm_fp32(ctx: Context) -> Candidate:
    return _plain_onnx(ctx, "minilm-fp32", "stock-fp32",
                       "all-MiniLM-L6-v2 as published, ONNX fp32; tokenizer + ONNX Runtime + mean pool")


def _minilm_int8(ctx: Context) -> Candidate:
    return _plain_onnx(ctx, "minilm-int8", "stock-int8-ort",
                       "all-MiniLM-L6-v2, ORT fused + dynamic INT8 per-channel; tokenizer + ONNX Runtime + mean "
                       "pool: the anchor of every ratio")


def _mpnet_facts(ctx: Context) -> TeacherFacts:
    from ..stages.sources import mpnet_reader

    return ctx.once("mpnet-facts", lambda: mpnet_reader(ctx.config.work))


MPNET_FILES = ("model.safetensors", "tokenizer.json", "config.json", "modules.json", "sentence_bert_config.json",
               "1_Pooling/config.json", "tokenizer_config.json", "special_tokens_map.json")


def _mpnet(ctx: Context) -> Candidate:
    import torch

    from .peer_client import TorchSentenceEncoder

    facts = _mpnet_facts(ctx)
    encoder: TorchSentenceEncoder = ctx.once("mpnet-model", lambda: TorchSentenceEncoder(str(facts.path), 1))

    def bulk(texts: Sequence[str]) -> np.ndarray:
        torch.set_num_threads(ctx.config.bulk_threads)
        try:
            return encoder.encode(texts, batch_size=BATCH)
        finally:
            encoder.use_threads()

    files = tuple(facts.path / f for f in MPNET_FILES if (facts.path / f).is_file())
    return Candidate("mpnet", "all-mpnet-base-v2 (the teacher: the quality ceiling), sentence-transformers on "
                     "torch fp32", files, torch_free=False,
                     fingerprint=files_digest(files, f"max_length={facts.max_length}",
                                              versions("sentence-transformers", "torch", "transformers")),
                     encode=lambda texts: encoder.encode(texts, batch_size=BATCH), encode_one=encoder.encode_one,
                     bulk_encode=bulk, before_timing=encoder.use_threads)


def _edgerec_default(ctx: Context) -> Candidate:
    from edgerec.bundle.reader import open_bundle
    from edgerec.encoder import TextEncoder

    bundle = open_bundle(ctx.config.bundle)
    spec = bundle.manifest.encoder
    timed = TextEncoder(bundle.path("encoder"), bundle.path("tokenizer"), spec, threads=1)
    bulk = TextEncoder(bundle.path("encoder"), bundle.path("tokenizer"), spec, threads=ctx.config.bulk_threads,
                       tokenizer=timed.tokenizer)
    files = (bundle.path("encoder"), bundle.path("tokenizer"))
    return Candidate(
        "edgerec-default", f"the shipped bundle's encoder ({bundle.manifest.name}: 0 transformer layers, "
        "fine-tuned on MovieLens titles) through edgerec.encoder.TextEncoder; without its description model",
        files, torch_free=True,
        fingerprint="-".join(bundle.manifest.files[r].sha256[:16] for r in ("encoder", "tokenizer")),
        encode=lambda texts: timed.encode([clean_text(t) for t in texts], batch_size=BATCH),
        encode_one=lambda text: timed.encode_one(clean_text(text)),
        bulk_encode=lambda texts: bulk.encode([clean_text(t) for t in texts], batch_size=BATCH))


def _edgerec_general(ctx: Context) -> Candidate:
    """The shipped general model as a user's `edgerec build` gets it: its int8 graph through TextEncoder, BM25
    fused with the model's weight, and the query through a Recommender over a bundle built from the
    catalogue (HNSW, the lexical pool)."""
    from edgerec import Recommender
    from edgerec.bundle.reader import open_bundle
    from edgerec.encoder import TextEncoder
    from edgerec.update.build import build_bundle

    model = open_bundle(ctx.config.model, model_ok=True)
    spec, setting = model.manifest.encoder, model.manifest.lexical
    if setting is None:
        raise ValueError(f"{ctx.config.model}: the general model has no lexical setting")
    timed = TextEncoder(model.path("encoder"), model.path("tokenizer"), spec, threads=1)
    bulk = TextEncoder(model.path("encoder"), model.path("tokenizer"), spec, threads=ctx.config.bulk_threads,
                       tokenizer=timed.tokenizer)
    files = (model.path("encoder"), model.path("tokenizer"))
    lexical = _bm25_with_damping(ctx)  # the model keeps MiniLM's normaliser, so BM25 reads words as it does

    def encode(texts: Sequence[str]) -> np.ndarray:
        return timed.encode([clean_text(t) for t in texts], batch_size=BATCH)

    def scores(queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        matrix, damping_inputs = lexical(queries, documents)
        return score_fusion(encode(queries) @ encode(documents).T, matrix, setting.weight, damping_inputs)

    def searcher(catalogue: Sequence[str], vectors: np.ndarray) -> QueryFn:
        out = ctx.config.work / "encoders" / "general-bundle"
        build_bundle([{"id": str(i), "text": t} for i, t in enumerate(catalogue)], out,
                     model_path=files[0], tokenizer_path=files[1], encoder_spec=spec, text_fields=("text",),
                     name="encoders-catalogue", lexical=setting, threads=ctx.config.bulk_threads, overwrite=True)
        recommender = Recommender.load(out, threads=1)
        return lambda text: recommender.query(text, k=TOP_K)

    return Candidate(
        "edgerec-general", f"the general model shipped for `edgerec build` ({model.manifest.name}: the static "
        f"student, int8) through edgerec.encoder.TextEncoder, BM25 fused as edgerec fuses it (weight "
        f"{setting.weight:g} x the damping: the best BM25 item's coverage of the query's words for short queries, "
        "none for long ones); the query "
        "through edgerec.Recommender over a bundle of the catalogue built with it (HNSW + the lexical pool)",
        files, torch_free=True,
        fingerprint="-".join(model.manifest.files[r].sha256[:16] for r in ("encoder", "tokenizer")) + f"-w{setting.weight}",
        encode=encode, encode_one=lambda text: timed.encode_one(clean_text(text)),
        bulk_encode=lambda texts: bulk.encode([clean_text(t) for t in texts], batch_size=BATCH),
        scores=scores, searcher=searcher, extra_bytes=_catalogue_bm25(ctx).nbytes,
        note=f"texts/s is the dense side's; {_bm25_note(ctx)}")


def _static_table(ctx: Context, teacher: str, centred: bool) -> Path:
    """The distilled rows of ``teacher`` ('minilm' or 'mpnet'), made once under work/encoders (the teacher
    reads the vocabulary once for both projections)."""
    def make() -> Path:
        path_of = {"minilm": lambda: ctx.stock.path, "mpnet": lambda: _mpnet_facts(ctx).path}[teacher]
        names = {"minilm": ctx.stock.name, "mpnet": "sentence-transformers/all-mpnet-base-v2"}
        return static_embed.distilled_table(
            ctx.config.work / "encoders" / f"static-{teacher}{'-centred' if centred else ''}.npy", names[teacher],
            lambda: static_embed.sentence_teacher(path_of(), ctx.config.bulk_threads), ctx.tokenizer, centred=centred,
            log=ctx.log)
    return ctx.once(f"static-table-{teacher}-{centred}", make)


# name suffix -> (centred PCA, Zipf/SIF weights): plain uncentred, weighted uncentred, and model2vec's own defaults.
STATIC_RECIPES = {"": (False, False), "-zipf": (False, True), "-m2v": (True, True)}


def _static_encoder(ctx: Context, teacher: str, suffix: str) -> tuple[static_embed.StaticEncoder, Path]:
    centred, zipf = STATIC_RECIPES[suffix]
    table = _static_table(ctx, teacher, centred)

    def make() -> static_embed.StaticEncoder:
        rows = np.load(table)
        weights = static_embed.zipf_sif_weights(len(rows)) if zipf else None
        return static_embed.StaticEncoder(rows, ctx.tokenizer, weights)
    return ctx.once(f"static-{teacher}{suffix}", make), table


def _static(ctx: Context, teacher: str, suffix: str) -> Candidate:
    encoder, table = _static_encoder(ctx, teacher, suffix)
    centred, zipf = STATIC_RECIPES[suffix]
    facts = json.loads(table.with_suffix(".json").read_text())
    files = (table, ctx.tokenizer)
    weighting = (f"rows weighted by model2vec's default Zipf/SIF weight (a={static_embed.SIF_COEFFICIENT:g}, "
                 "rank = token id)" if zipf else "unweighted")
    teacher_name = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}[teacher]
    projection = "centred PCA (model2vec's)" if centred else "uncentred PCA"
    return Candidate(
        f"static-{teacher}{suffix}",
        f"model2vec-style static model distilled from {teacher_name}: each of the {facts['tokens_read']:,} "
        f"WordPiece tokens read alone, {projection} {facts['teacher_dim']} -> {facts['dims']} "
        f"({facts['variance_kept']:.1%} of the {'variance' if centred else 'second moment'} kept); mean of the "
        f"token rows, {weighting}; pure numpy", files, torch_free=True,
        fingerprint=files_digest(files, f"zipf={zipf}", f"static v{static_embed.VERSION}",
                                 f"max_tokens={static_embed.MAX_TOKENS}"),
        encode=lambda texts: encoder.encode(texts, batch_size=BATCH), encode_one=encoder.encode_one)


def _splitter(ctx: Context) -> WordSplitter:
    return ctx.once("word-splitter", lambda: WordSplitter.from_file(ctx.tokenizer))


def _bm25_with_damping(ctx: Context) -> Callable[[Sequence[str], Sequence[str]], tuple[np.ndarray, Any]]:
    """(queries, documents) -> (BM25 matrix, what the runtime's damping reads: fusion.query_damping)."""
    splitter = _splitter(ctx)

    def read(queries: Sequence[str], documents: Sequence[str]) -> tuple[np.ndarray, Any]:
        index = LexicalIndex.build(documents, splitter)
        return bm25_matrix(index, queries), query_damping(index, queries)
    return read


def _bm25_matrix(ctx: Context) -> ScoreMatrix:
    splitter = _splitter(ctx)
    return lambda queries, documents: bm25_matrix(LexicalIndex.build(documents, splitter), queries)


def _catalogue_bm25(ctx: Context) -> LexicalIndex:
    def make() -> LexicalIndex:
        started = time.perf_counter()
        index = LexicalIndex.build(ctx.catalogue, _splitter(ctx))
        ctx.shared["catalogue-bm25-seconds"] = time.perf_counter() - started
        return index
    return ctx.once("catalogue-bm25", make)


def _bm25_note(ctx: Context) -> str:
    index = _catalogue_bm25(ctx)
    return (f"its BM25 index over the {index.size:,} catalogue texts: {index.nbytes / 1e6:.2f} MB of postings, "
            f"built once in {ctx.shared['catalogue-bm25-seconds']:.2f} s (not in texts/s)")


def _bm25(ctx: Context) -> Candidate:
    index = _catalogue_bm25(ctx)
    return Candidate(
        "bm25", "Okapi BM25 (k1 1.2, b 0.75) over words from the MiniLM tokenizer's normaliser and "
        "pre-tokenizer; retrieval tasks only (no vectors: Lee is not scored); no latency row (not an encoder); "
        "size: the tokenizer file + its postings over the catalogue", (ctx.tokenizer,), torch_free=True,
        fingerprint=files_digest((ctx.tokenizer,), "bm25"), scores=_bm25_matrix(ctx), extra_bytes=index.nbytes,
        note=_bm25_note(ctx))


def _with_bm25(ctx: Context, dense: Candidate, weight: float | None = None, damped: bool = False) -> Candidate:
    """``dense`` and bm25 fused, by reciprocal rank (k 60) or, with ``weight``, by score (fusion.score_fusion;
    ``damped``: with the runtime's damping of the share by coverage and query length): on the retrieval tasks,
    and in the query over the catalogue; Lee from the dense vectors."""
    if dense.encode is None or dense.encode_one is None:
        raise ValueError(f"{dense.name} has no vectors to fuse")
    encode, encode_one = dense.encode, dense.encode_one
    lexical = _bm25_with_damping(ctx)

    def fuse(dense_scores: np.ndarray, lexical_scores: np.ndarray, damping_inputs: Any) -> np.ndarray:
        if weight is None:
            return reciprocal_rank_fusion(dense_scores, lexical_scores)
        return score_fusion(dense_scores, lexical_scores, weight, damping_inputs if damped else None)

    def scores(queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        matrix, damping_inputs = lexical(queries, documents)
        return fuse(encode(queries) @ encode(documents).T, matrix, damping_inputs)

    def searcher(catalogue: Sequence[str], vectors: np.ndarray) -> QueryFn:
        index = _catalogue_bm25(ctx)
        if index.size != len(vectors):
            raise ValueError(f"BM25 holds {index.size} catalogue texts, the dense side {len(vectors)}")

        def query(text: str) -> np.ndarray:
            fused = fuse(vectors @ encode_one(text), index.scores(text), query_damping(index, (text,)))[0]
            k = min(TOP_K, len(fused))
            top = np.argpartition(-fused, k - 1)[:k]
            return top[np.argsort(-fused[top], kind="stable")]
        return query

    how = ("reciprocal rank (k 60)" if weight is None else
           f"score: cosine + {weight:g}{' x the damping (coverage, query length)' if damped else ''} x BM25 / the "
           "query's best BM25")
    suffix = "m" if damped else ""
    shipped_rule = weight is None or (weight == FUSION_WEIGHT and damped)  # the plain name: RRF, or as shipped
    return Candidate(
        f"{dense.name}+bm25" + ("" if shipped_rule else f"{suffix}@{weight:g}"),
        f"{dense.name} and bm25 fused by {how} on the retrieval tasks and in "
        f"the query (full dense ranking + the documents BM25 retrieves); Lee from {dense.name}'s vectors; size: "
        f"{dense.name}'s files + the BM25 postings over the catalogue", dense.files, torch_free=dense.torch_free,
        fingerprint=files_digest(dense.files, f"{dense.name}+bm25{suffix}@{weight}", dense.fingerprint),
        encode=encode, encode_one=encode_one, bulk_encode=dense.bulk_encode, scores=scores, searcher=searcher,
        extra_bytes=_catalogue_bm25(ctx).nbytes,
        note=f"texts/s is the dense side's; {_bm25_note(ctx)}; the query ranks the whole catalogue both ways "
             "(two full sorts), not optimised")


# -- students (python -m export student) ----------------------------------------------

class NotTrained(RuntimeError):
    """A student candidate whose model `python -m export student` has not written yet."""


def _student_model(ctx: Context, layers: int) -> Path:
    from ..stages.student import default_config, student_dir

    model = student_dir(ctx.config.work, "minilm", default_config(layers)) / "model"
    if not model.is_dir():
        raise NotTrained(f"{model} is missing: run `python -m export student --layers {layers}` first")
    return model


def _static_student(ctx: Context) -> Candidate:
    model = _student_model(ctx, 0)
    files = (model / "rows.f16.npy", model / "tokenizer.json")
    encoder = ctx.once("static-student", lambda: static_embed.StaticEncoder(np.load(files[0]), files[1]))
    return Candidate(
        "student-L0", "static table trained on the corpus against all-MiniLM-L6-v2's vectors (tokenlearn's "
        "recipe; python -m export student --layers 0), 384-d float16", files, torch_free=True,
        fingerprint=files_digest(files, f"static v{static_embed.VERSION}", f"max_tokens={static_embed.MAX_TOKENS}"),
        encode=lambda texts: encoder.encode(texts, batch_size=BATCH), encode_one=encoder.encode_one)


def _corpus_token_counts(ctx: Context, tokenizer: Path, vocabulary: int) -> np.ndarray:
    """How often each token of ``tokenizer`` occurs in the distillation corpus (cached under work/encoders, one
    file per vocabulary)."""
    import gzip

    from ..stages.static_fit import token_ids

    path = ctx.config.work / "encoders" / f"corpus-token-counts-{files_digest((tokenizer,))}.npy"
    corpus = ctx.config.work / "corpus" / "train.txt.gz"
    if path.is_file():
        return np.load(path)
    if not corpus.is_file():
        raise NotTrained(f"{corpus}: missing; run `python -m export corpus` first")
    ctx.log(f"counting the tokens of {corpus} (once)")
    with gzip.open(corpus, "rt", encoding="utf-8") as handle:
        texts = [line.strip() for line in handle if line.strip()]
    counts = np.zeros(vocabulary, dtype=np.int64)
    for start in range(0, len(texts), 50_000):
        ids = token_ids(tokenizer, texts[start : start + 50_000], static_embed.MAX_TOKENS)
        counts += np.bincount(np.fromiter((t for row in ids for t in row), dtype=np.int64), minlength=vocabulary)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, counts)
    return counts


def _compressed_student(ctx: Context, how: str) -> Candidate:
    """The static student made smaller after training, to measure what each means costs: ``dim256``, its rows
    projected on their 256 main directions (uncentred PCA); ``vocab``, the rows of tokens no corpus text uses
    dropped (a text's mean leaves them out; the graph would map them to one zero row)."""
    model = _student_model(ctx, 0)
    files = (model / "rows.f16.npy", model / "tokenizer.json")
    rows = np.load(files[0]).astype(np.float32)
    if how == "dim256":
        projection, values = static_embed.principal_directions(rows, 256)
        kept = float(values[:256].sum() / values.sum())
        table, bytes_, what = rows @ projection.T, rows.shape[0] * 256 * 2, (
            f"rows projected on their 256 main directions (uncentred PCA, {kept:.1%} of the second moment)")
    else:
        used = _corpus_token_counts(ctx, files[1], rows.shape[0]) > 0
        table = np.where(used[:, None], rows, 0.0).astype(np.float32)
        bytes_ = int(used.sum()) * rows.shape[1] * 2 + rows.shape[0] * 4
        what = (f"rows of the {int((~used).sum()):,} tokens no corpus text uses dropped ({int(used.sum()):,} of "
                f"{len(used):,} kept; a 4-byte id map in front)")
    encoder = static_embed.StaticEncoder(table, files[1])
    return Candidate(
        f"student-L0-{how}", f"student-L0 with its {what}; float16 size counted: {bytes_ / 1e6:.1f} MB",
        (files[1],), torch_free=True, extra_bytes=bytes_,
        fingerprint=files_digest(files, f"static v{static_embed.VERSION}", how),
        encode=lambda texts: encoder.encode(texts, batch_size=BATCH), encode_one=encoder.encode_one)


def _student_graphs(ctx: Context, model_dir: Path, facts: TeacherFacts) -> dict[str, Path]:
    """A layered student as ONNX fp32 and ORT fused + dynamic INT8 per-channel (the anchor's form), made once
    in its folder's onnx/ (the same files prepare_stock_models makes there)."""
    from ..stages.onnx_export import export_onnx
    from ..stages.quantize import Int8Config, quantize_int8

    def make() -> dict[str, Path]:
        scratch = model_dir.parent / "onnx"
        fp32, int8 = scratch / "stock-fp32.onnx", scratch / "stock-int8.onnx"
        if not fp32.is_file():
            ctx.log(f"exporting {model_dir} to ONNX")
            export_onnx(model_dir, fp32)
        if not int8.is_file():
            quantize_int8(fp32, int8, Int8Config(fuse=True, per_channel=True))
        return {"stock-fp32": fp32, "stock-int8-ort": int8}
    return ctx.once(f"graphs-{model_dir}", make)


def _onnx_student(ctx: Context, model_dir: Path, name: str, what: str, key: str) -> Candidate:
    from ..stages.sources import read_teacher
    from .peer_client import PlainOnnxEncoder

    facts = read_teacher(model_dir, name)
    graph = _student_graphs(ctx, model_dir, facts)[key]
    timed = PlainOnnxEncoder(str(graph), str(model_dir / "tokenizer.json"), facts.max_length, 1)
    bulk = PlainOnnxEncoder(str(graph), str(model_dir / "tokenizer.json"), facts.max_length, ctx.config.bulk_threads)
    files = (graph, model_dir / "tokenizer.json")
    form = "ONNX fp32" if key == "stock-fp32" else "ORT fused + dynamic INT8 per-channel"
    return Candidate(
        name + ("" if key == "stock-fp32" else "-int8"), f"{what}; {form}", files, torch_free=True,
        fingerprint=files_digest(files, f"max_length={facts.max_length}", "plain-onnx-mean"),
        encode=lambda texts: timed.encode(texts, batch_size=BATCH), encode_one=timed.encode_one,
        bulk_encode=lambda texts: bulk.encode(texts, batch_size=BATCH))


def _layered_student(ctx: Context, layers: int, key: str) -> Candidate:
    return _onnx_student(ctx, _student_model(ctx, layers), f"student-L{layers}",
                         f"all-MiniLM-L6-v2's embeddings and first {layers} layer(s), trained on the corpus against "
                         f"its vectors (python -m export student --layers {layers})", key)


def _pruned_student(ctx: Context, layers: int, suffix: str, key: str) -> Candidate:
    """student-L{layers} after `python -m export prune`: folder minilm-L{layers}-{suffix} beside it."""
    model = _student_model(ctx, layers).parent.with_name(f"minilm-L{layers}-{suffix}") / "model"
    report_path = model.parent / "report.json"
    if not model.is_dir() or not report_path.is_file():
        heads, ffn = (int(part[1:]) / 100 for part in suffix.split("-")[:2])
        recover = " --recover-seconds 300" if suffix.endswith("-rec") else ""
        raise NotTrained(f"{model} is missing: run `python -m export prune --layers {layers} --heads-kept {heads:g} "
                         f"--ffn-kept {ffn:g}{recover}` first")
    report = json.loads(report_path.read_text())
    heads = len(next(iter(report["kept"]["heads"].values())))
    neurons = next(iter(report["kept"]["neurons"].values()))
    recovered = report.get("recovered")
    recovery = (f", then {recovered['steps']:,} recovery steps ({recovered['seconds']:g} s) against the teacher's "
                "vectors" if recovered else ", no recovery fine-tune")
    return _onnx_student(ctx, model, f"student-L{layers}-{suffix}",
                         f"student-L{layers} structurally pruned to {heads} of {report['heads']} heads and {neurons:,} "
                         f"of {report['intermediate_size']:,} FFN neurons per layer (python -m export prune){recovery}",
                         key)


# The pruned students the table knows: kept shares (heads, FFN) in percent, recovered or not.
PRUNED = ("h50-f50", "h50-f50-rec")


FUSION_GRID = (0.05, 0.1, 0.2, 0.3, 0.5)
MARGIN_GRID = (0.1, 0.2, 0.3, 0.5, 1.0)

BUILDERS: dict[str, Callable[[Context], Candidate]] = {
    "minilm-fp32": _minilm_fp32,
    "minilm-int8": _minilm_int8,
    "mpnet": _mpnet,
    "edgerec-default": _edgerec_default,
    "edgerec-general": _edgerec_general,
    **{f"static-{teacher}{suffix}": (lambda ctx, teacher=teacher, suffix=suffix: _static(ctx, teacher, suffix))
       for teacher in ("minilm", "mpnet") for suffix in STATIC_RECIPES},
    "bm25": _bm25,
    "static-mpnet+bm25": lambda ctx: _with_bm25(ctx, _static(ctx, "mpnet", "")),
    "student-L0": _static_student,
    "student-L0-dim256": lambda ctx: _compressed_student(ctx, "dim256"),
    "student-L0-vocab": lambda ctx: _compressed_student(ctx, "vocab"),
    "student-L0+bm25": lambda ctx: _with_bm25(ctx, _static_student(ctx), FUSION_WEIGHT, damped=True),
    **{f"student-L{n}{suffix}": (lambda ctx, n=n, key=key: _layered_student(ctx, n, key))
       for n in (1, 2) for suffix, key in (("", "stock-fp32"), ("-int8", "stock-int8-ort"))},
    **{f"student-L1-{suffix}{tail}": (lambda ctx, suffix=suffix, key=key: _pruned_student(ctx, 1, suffix, key))
       for suffix in PRUNED for tail, key in (("", "stock-fp32"), ("-int8", "stock-int8-ort"))},
    "student-L1-int8+bm25": lambda ctx: _with_bm25(ctx, _layered_student(ctx, 1, "stock-int8-ort"), FUSION_WEIGHT,
                                                    damped=True),
    # Score fusion at each weight of the grid: for choosing the weight on the validation sets
    # (`encoders --validation --only NAME`); not in a default run.
    **{f"student-L0+bm25@{w:g}": (lambda ctx, w=w: _with_bm25(ctx, _static_student(ctx), w))
       for w in FUSION_GRID},
    **{f"student-L0+bm25m@{w:g}": (lambda ctx, w=w: _with_bm25(ctx, _static_student(ctx), w, damped=True))
       for w in MARGIN_GRID if w != FUSION_WEIGHT},
}
CANDIDATES = tuple(BUILDERS)
