"""`edgerec bench`: this machine's numbers for one bundle, measured the way they are quoted.

What it measures:

- cold start: a fresh ``python -c`` process that loads the bundle and answers
  one query (1 thread), from spawn to the answer; the median of a few runs;
- peak memory of that fresh query process (its own high-water RSS);
- per-call latency p50/p95/p99 of text queries of three fixed lengths and of a
  10-item history recommendation, at 1 thread and at all cores;
- batch-encoding throughput over the bundle's own item texts (or a sample);
- the index's search (HNSW, or exact for a small catalogue: edgerec.index.searches_exactly)
  time and recall@10 against a plain numpy search over the bundle's own vectors, with item
  vectors as queries (nothing excluded).

How: every figure follows a warm-up; variants that are compared (1 thread
against all cores, the index's search against numpy's) alternate in a freshly shuffled
order on every round, so machine drift and cache effects fall on all of them
alike; the report says how many repetitions each figure rests on. One warm-up
child runs before the timed cold starts so that every timed one finds the
files in the page cache (a first start after a reboot is slower).

The measuring helpers (interleaved timing, percentiles, timing a child to its
first answer, the CPU's name) live in edgerec.tools.timing, shared with export/.
"""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import __version__
from ..descriptions import DescriptionModel
from ..encoder import TextEncoder, clean_text
from ..items import item_text
from ..recommender import Recommender
from ..errors import EdgerecError
from .timing import (ChildRun, Timing, child_env, exact_top_k, first_answer, interleaved_seconds, machine_facts,
                     recall_at_k)

# Fixed texts, so that runs on different machines and days compare.
QUERY_TEXTS = {
    "short": "space adventure with aliens",
    "medium": "a clever heist movie where a crew of thieves robs a casino",
    "long": (
        "I am looking for a slow, atmospheric science fiction film about a lonely engineer who is sent to a "
        "remote station on a frozen moon, where strange signals begin to arrive from the ice, the crew starts "
        "to distrust each other, and the story turns into a quiet psychological thriller about memory, guilt "
        "and what it means to come home after years alone in space"
    ),
}
HISTORY_LENGTH = 10
TOP_K = 10
ENCODE_BATCH_SIZE = 32
COLD_START_THREADS = 1
# Spawned as `python -c`: prints a line when the first answer is ready, then its own peak RSS in KiB.
COLD_START_SCRIPT = """
import sys
from edgerec import Recommender
Recommender.load(sys.argv[1], threads=int(sys.argv[3])).query(sys.argv[2], k=10)
print("answered", flush=True)
from edgerec.tools.timing import peak_rss_kib
print(peak_rss_kib(), flush=True)
"""

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    """How many repetitions each figure rests on."""

    rounds: int = 300          # timed calls per latency row
    warmup: int = 30           # untimed calls per latency row before timing
    cold_starts: int = 5       # timed fresh processes (after one untimed)
    encode_items: int = 1000   # item texts per throughput pass (a seeded sample when there are more)
    encode_passes: int = 3     # throughput passes per thread setting
    search_queries: int = 500  # item vectors used as search queries
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name != "seed" and (not isinstance(value, int) or value < (0 if name == "warmup" else 1)):
                raise ValueError(f"BenchConfig.{name} must be a positive int, got {value!r}")

    @classmethod
    def quick(cls) -> "BenchConfig":
        """A smoke run: seconds, not minutes; its figures are too noisy to quote."""
        return cls(rounds=20, warmup=3, cold_starts=2, encode_items=64, encode_passes=1, search_queries=50)


@dataclass(frozen=True)
class LatencyRow:
    workload: str
    detail: str
    threads: int
    timing: Timing


@dataclass(frozen=True)
class ThroughputRow:
    threads: int
    items: int
    passes: int
    batch_size: int
    items_per_second: float      # median over passes
    items_per_second_min: float
    items_per_second_max: float


@dataclass(frozen=True)
class SearchResult:
    queries: int
    k: int
    ef: int
    items: int
    recall_at_k: float
    method: str     # "hnsw" or "exact": how the index searches (edgerec.index.searches_exactly)
    index: Timing   # the index's own search
    exact: Timing   # plain numpy over every vector: the reference


@dataclass(frozen=True)
class BenchReport:
    edgerec_version: str
    bundle: dict[str, Any]
    machine: dict[str, Any]
    config: BenchConfig
    cold_start: dict[str, Any]
    peak_memory: dict[str, Any]
    latency: tuple[LatencyRow, ...]
    throughput: tuple[ThroughputRow, ...]
    search: SearchResult
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the benchmark -------------------------------------------------------------
def thread_settings() -> list[int]:
    """1 thread and all cores (one setting on a single-core machine)."""
    return sorted({1, os.cpu_count() or 1})


def run_bench(bundle_path: str | os.PathLike[str], config: BenchConfig = BenchConfig(),
              log: Log | None = None) -> BenchReport:
    """Measure one bundle on this machine. ``log`` gets one line per phase (for a progress display)."""
    say = log or (lambda _line: None)
    settings = thread_settings()
    first = Recommender.load(bundle_path, threads=settings[0])
    # The other thread settings get their own ONNX session over the same items, index, BM25 postings and
    # prior (a million-item index is 1.9 GB: one copy is enough), so every setting answers the same way.
    recommenders = {settings[0]: first}
    for threads in settings[1:]:
        encoder = TextEncoder(first.bundle.path("encoder"), first.bundle.path("tokenizer"),
                              first.bundle.manifest.encoder, threads=threads)
        descriptions = DescriptionModel.of_bundle(first.bundle, threads=threads, encoder=encoder)
        recommenders[threads] = Recommender(first.bundle, encoder, first.index, first.items, descriptions,
                                            first.lexical, first.prior)
    manifest = first.bundle.manifest
    notes = []

    say(f"cold start: {config.cold_starts} fresh processes (+1 untimed)")
    runs = cold_starts(Path(bundle_path), QUERY_TEXTS["short"], config.cold_starts)
    seconds = [r.seconds for r in runs]
    rss_mb = [r.peak_rss_bytes / 1e6 for r in runs]
    cold = {"runs": len(runs), "threads": COLD_START_THREADS, "median_s": round(float(np.median(seconds)), 4),
            "min_s": round(min(seconds), 4), "max_s": round(max(seconds), 4),
            "what": "fresh `python -c` process: import edgerec, load and verify the bundle, answer one query"}
    memory = {"runs": len(runs), "median_mb": round(float(np.median(rss_mb)), 1),
              "max_mb": round(max(rss_mb), 1), "what": "peak RSS (VmHWM) of the cold-start processes"}

    say(f"latency: {config.rounds} rounds (+{config.warmup} warm-up), {len(settings)} thread settings interleaved")
    latency = measure_latency(recommenders, config)

    texts = item_texts_sample(first, config.encode_items, config.seed)
    if len(texts) < min(config.encode_items, len(first)):
        notes.append(f"{min(config.encode_items, len(first)) - len(texts)} item(s) with no text skipped")
    say(f"throughput: {len(texts)} item texts x {config.encode_passes} passes per thread setting")
    throughput = measure_throughput(recommenders, texts, config)

    say(f"search: {min(config.search_queries, len(first))} item vectors, the index against plain numpy")
    search = measure_search(first, config)

    bundle = {"name": manifest.name, "path": str(first.bundle.root), "items": manifest.items.count,
              "dim": manifest.encoder.dim, "max_length": manifest.encoder.max_length,
              "index": {"m": manifest.index.m, "ef_construction": manifest.index.ef_construction,
                        "ef": manifest.index.ef}}
    return BenchReport(edgerec_version=__version__, bundle=bundle, machine=machine_facts(), config=config,
                       cold_start=cold, peak_memory=memory, latency=tuple(latency), throughput=tuple(throughput),
                       search=search, notes=tuple(notes))


def cold_starts(bundle_path: Path, text: str, runs: int) -> list[ChildRun]:
    argv = [sys.executable, "-c", COLD_START_SCRIPT, str(bundle_path), text, str(COLD_START_THREADS)]
    env = child_env()
    first_answer(argv, env=env)  # untimed: brings the files into the page cache
    return [first_answer(argv, env=env) for _ in range(runs)]


def history_ids(recommender: Recommender, seed: int) -> list[str]:
    """A fixed-by-seed history of up to HISTORY_LENGTH items from the bundle itself."""
    count = len(recommender)
    rng = np.random.default_rng(seed)
    labels = rng.choice(count, size=min(HISTORY_LENGTH, count), replace=False)
    id_field = recommender.items.id_field
    return [str(recommender.items.records[int(label)][id_field]) for label in labels]


def measure_latency(recommenders: Mapping[int, Recommender], config: BenchConfig) -> list[LatencyRow]:
    any_rec = next(iter(recommenders.values()))
    history = history_ids(any_rec, config.seed)
    details = {}
    for name, text in QUERY_TEXTS.items():
        tokens = len(any_rec.encoder.tokenizer.encode(text).ids)
        details[f"query-{name}"] = f"{tokens} tokens, reading: {any_rec.query_reading(text)}"
        if any_rec.descriptions is not None:  # what the description model costs, beside the encoder alone
            details[f"query-{name}-encoder-only"] = f"{tokens} tokens, descriptions=False"
    details["recommend"] = f"{len(history)}-item history"
    calls: dict[str, Callable[[], object]] = {}
    for threads, rec in recommenders.items():
        for name, text in QUERY_TEXTS.items():
            calls[f"query-{name}@{threads}"] = lambda rec=rec, text=text: rec.query(text, k=TOP_K)
            if rec.descriptions is not None:
                calls[f"query-{name}-encoder-only@{threads}"] = (
                    lambda rec=rec, text=text: rec.query(text, k=TOP_K, descriptions=False))
        calls[f"recommend@{threads}"] = lambda rec=rec: rec.recommend(history, k=TOP_K)
    samples = interleaved_seconds(calls, rounds=config.rounds, warmup=config.warmup, seed=config.seed)
    rows = []
    for key, seconds in samples.items():
        workload, threads = key.rsplit("@", 1)
        rows.append(LatencyRow(workload, details[workload], int(threads), Timing.of(seconds)))
    order = [*details]
    return sorted(rows, key=lambda r: (order.index(r.workload), r.threads))


def item_texts_sample(recommender: Recommender, limit: int, seed: int) -> list[str]:
    """Up to ``limit`` of the bundle's item texts (a seeded sample when there are more), readable ones only."""
    records = recommender.items.records
    fields = recommender.bundle.manifest.items.text_fields
    labels = np.arange(len(records))
    if len(labels) > limit:
        labels = np.sort(np.random.default_rng(seed).choice(len(labels), size=limit, replace=False))
    texts = []
    for label in labels:
        try:
            texts.append(clean_text(item_text(records[int(label)], fields)))
        except EdgerecError:  # an item with no readable text cannot be encoded; it is counted as skipped
            continue
    return texts


def measure_throughput(recommenders: Mapping[int, Recommender], texts: Sequence[str],
                       config: BenchConfig) -> list[ThroughputRow]:
    if not texts:
        return []
    calls = {threads: (lambda rec=rec: rec.encode(list(texts), batch_size=ENCODE_BATCH_SIZE))
             for threads, rec in recommenders.items()}
    # One untimed pass per setting: ONNX Runtime sizes its buffers on the first batches.
    samples = interleaved_seconds({str(t): c for t, c in calls.items()}, rounds=config.encode_passes, warmup=1,
                                  seed=config.seed)
    rows = []
    for threads in recommenders:
        rates = [len(texts) / s for s in samples[str(threads)]]
        rows.append(ThroughputRow(threads, len(texts), len(rates), ENCODE_BATCH_SIZE,
                                  round(float(np.median(rates)), 1), round(min(rates), 1), round(max(rates), 1)))
    return rows


def measure_search(recommender: Recommender, config: BenchConfig) -> SearchResult:
    index = recommender.index
    count = index.spec.count
    vectors = index.vectors(range(count))
    k = min(TOP_K, count)
    rng = np.random.default_rng(config.seed + 1)
    labels = rng.choice(count, size=min(config.search_queries, count), replace=False)
    index_seconds: list[float] = []
    exact_seconds: list[float] = []
    recalls: list[float] = []
    order = random.Random(config.seed)
    for round_number, label in enumerate(labels):
        query = vectors[int(label)]
        answers: dict[str, np.ndarray] = {}
        variants = ["index", "exact"]
        order.shuffle(variants)
        for variant in variants:
            start = time.perf_counter()
            if variant == "index":
                answers[variant] = index.search(query, k)[0]
            else:
                answers[variant] = exact_top_k(vectors, query, k)
            elapsed = time.perf_counter() - start
            if round_number >= min(config.warmup, len(labels) // 2):  # the first calls warm the caches
                (index_seconds if variant == "index" else exact_seconds).append(elapsed)
        recalls.append(recall_at_k(answers["index"], answers["exact"]))
    return SearchResult(queries=len(labels), k=k, ef=index.spec.ef, items=count,
                        recall_at_k=round(float(np.mean(recalls)), 4), method="exact" if index.exact else "hnsw",
                        index=Timing.of(index_seconds), exact=Timing.of(exact_seconds))


# -- output ----------------------------------------------------------------------
def format_report(report: BenchReport) -> list[str]:
    """The readable table `edgerec bench` prints."""
    b, m, c = report.bundle, report.machine, report.config
    cold, memory, search = report.cold_start, report.peak_memory, report.search
    method = "exact: every item scored" if search.method == "exact" else f"HNSW ef={search.ef}"
    lines = [
        f"edgerec bench {report.edgerec_version}: bundle {b['name']} ({b['items']} items, dim {b['dim']}, "
        f"HNSW M={b['index']['m']} ef={b['index']['ef']})",
        f"machine      {m['cpu']}, {m['cores']} cores; python {m['python']}, onnxruntime {m['onnxruntime']}, "
        f"hnswlib {m['hnswlib']}",
        f"method       {c.rounds} timed rounds after {c.warmup} warm-up per latency row; "
        "thread settings interleaved in a shuffled order every round",
        "",
        f"cold start   {cold['median_s'] * 1e3:.0f} ms median, fresh process to first answer "
        f"({cold['runs']} runs after 1 untimed, {cold['threads']} thread; min {cold['min_s'] * 1e3:.0f}, "
        f"max {cold['max_s'] * 1e3:.0f})",
        f"peak memory  {memory['median_mb']:.0f} MB median peak RSS of those processes (max {memory['max_mb']:.0f})",
        "",
        f"{'latency, ms':<28}{'input':<40}{'threads':>8}{'p50':>9}{'p95':>9}{'p99':>9}{'calls':>7}",
    ]
    for row in report.latency:
        t = row.timing
        lines.append(f"{row.workload:<28}{row.detail:<40}{row.threads:>8}{t.p50_ms:>9.3f}{t.p95_ms:>9.3f}"
                     f"{t.p99_ms:>9.3f}{t.samples:>7}")
    lines.append("")
    for row in report.throughput:
        lines.append(f"throughput   {row.items_per_second:.0f} items/s at {row.threads} thread(s): {row.items} item "
                     f"texts, batch {row.batch_size}, median of {row.passes} passes "
                     f"(min {row.items_per_second_min:.0f}, max {row.items_per_second_max:.0f})")
    lines += [
        "",
        f"search       recall@{search.k} {search.recall_at_k:.4f} (the index, {method}, against plain numpy, "
        f"{search.queries} item vectors as queries over {search.items} items)",
        f"             index p50 {search.index.p50_ms:.4f}  p95 {search.index.p95_ms:.4f}  p99 {search.index.p99_ms:.4f} ms",
        f"             numpy p50 {search.exact.p50_ms:.4f}  p95 {search.exact.p95_ms:.4f}  p99 {search.exact.p99_ms:.4f} ms"
        f"  ({search.index.samples} timed each, interleaved)",
    ]
    lines += [f"note         {note}" for note in report.notes]
    return lines


def config_for(quick: bool, rounds: int | None) -> BenchConfig:
    config = BenchConfig.quick() if quick else BenchConfig()
    return replace(config, rounds=rounds) if rounds is not None else config
