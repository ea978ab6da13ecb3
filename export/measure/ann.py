"""`python -m export ann`: nearest-neighbour search from a thousand items to a million, on this machine.

For each catalogue size: build an HNSW index (hnswlib, the bundle's M and
ef_construction, all cores), record the build time, the memory the index
adds, its file size, then time single queries (1 thread) at several ef and
exact numpy search (1 thread, BLAS pinned to one thread), interleaved in a
shuffled order per query, and score recall@10 against the exact answers. At
the largest size (or --memory-size) the memory alternatives are measured too:
a smaller M (8 instead of 16) and exact search over a float16 copy of the
vectors. Says where HNSW starts to beat exact search and what the bundle's
default ef buys. Writes results/ann.{json,md,svg}.

The vectors: a seeded mixture of a few thousand Gaussian clusters on the unit
sphere, with uneven cluster sizes (Dirichlet weights) and spreads; by default
the shipped bundle's real item vectors are the cluster centres, so the
catalogue has the geometry of real text embeddings. Queries are fresh draws
from the same mixture, never items of the index. Each (size, M) runs in its
own process, so that its peak memory is its own. Needs only numpy and hnswlib.
"""

from __future__ import annotations

import json
import math
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgerec.tools.timing import Timing, cpu_model, exact_top_k, peak_rss_kib, recall_at_k
from edgerec.index import DEFAULT_EF, DEFAULT_EF_CONSTRUCTION, DEFAULT_M

from .plots import Axis, Point, Series, svg_chart

K = 10
_BLOCK = 65_536        # rows generated or scanned at once: bounds temporary memory at 1M items
_TRUTH_BLOCK = 16_384  # items per block of the all-queries exact scan (queries x block scores)
_HNSW_SEED = 100       # the seed edgerec.index uses for its builds
_WARMUP_QUERIES = 20
# Exact search is timed on one thread, like HNSW queries; the BLAS would otherwise use every core.
_ONE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

Log = Callable[[str], None]


@dataclass(frozen=True)
class AnnConfig:
    sizes: tuple[int, ...] = (1_000, 3_000, 10_000, 100_000, 1_000_000)
    efs: tuple[int, ...] = (10, 20, 50, 100, 200)
    default_ef: int = DEFAULT_EF          # the bundle's ef; always measured
    m: int = DEFAULT_M
    small_m: int = 8                      # the memory alternative
    ef_construction: int = DEFAULT_EF_CONSTRUCTION
    dim: int = 384                        # ignored when centres come from a file (their width wins)
    clusters: int = 3_000
    spread: float = 0.6                   # noise norm relative to the centre's (cosine to centre ~ 1/sqrt(1+s^2))
    queries: int = 1_000
    exact_queries: int = 50               # timed exact searches per size (recall uses all queries)
    memory_size: int | None = None        # None: the largest size
    build_threads: int = 0                # 0: all cores
    seed: int = 0
    centres: str | None = None            # .npy of unit vectors to use as cluster centres; None: random

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < K + 1:
            raise ValueError(f"sizes must be above {K}, got {self.sizes}")
        if not self.efs or min(self.efs) < 1 or self.queries < 1 or self.exact_queries < 1:
            raise ValueError("efs, queries and exact_queries must be positive")
        if self.memory_size is not None and self.memory_size not in self.sizes:
            raise ValueError(f"memory_size {self.memory_size} must be one of the sizes {self.sizes}")

    @property
    def all_efs(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.efs) | {self.default_ef}))

    @property
    def alternatives_size(self) -> int:
        return self.memory_size or max(self.sizes)


# -- the data ------------------------------------------------------------------------
def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def cluster_centres(config: AnnConfig) -> np.ndarray:
    rng = np.random.default_rng([config.seed, 0])
    if config.centres is None:
        return _unit(rng.standard_normal((config.clusters, config.dim)).astype(np.float32))
    real = _unit(np.load(config.centres).astype(np.float32))
    picked = real[rng.choice(len(real), size=config.clusters, replace=config.clusters > len(real))]
    if config.clusters > len(real):  # repeated real vectors: jitter them apart a little
        picked = _unit(picked + 0.1 / math.sqrt(real.shape[1]) * rng.standard_normal(picked.shape).astype(np.float32))
    return picked


def mixture(centres: np.ndarray, count: int, config: AnnConfig, stream: int) -> np.ndarray:
    """``count`` unit vectors from the cluster mixture; ``stream`` 1 is the catalogue, 2 the queries."""
    shape_rng = np.random.default_rng([config.seed, 1_000])  # weights and spreads: the same for every stream
    weights = shape_rng.dirichlet(np.ones(len(centres)))
    spreads = (config.spread * shape_rng.uniform(0.5, 1.5, len(centres)) / math.sqrt(centres.shape[1]))
    rng = np.random.default_rng([config.seed, stream])
    out = np.empty((count, centres.shape[1]), dtype=np.float32)
    for start in range(0, count, _BLOCK):
        n = min(_BLOCK, count - start)
        which = rng.choice(len(centres), size=n, p=weights)
        noise = rng.standard_normal((n, centres.shape[1]), dtype=np.float32)
        out[start : start + n] = _unit(centres[which] + noise * spreads[which, None].astype(np.float32))
    return out


def exact_answers(items: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Exact top-k labels per query, best first, scanning the items in blocks (bounded memory)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_labels = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(items), _TRUTH_BLOCK):
        scores = queries @ items[start : start + _TRUTH_BLOCK].astype(np.float32, copy=False).T
        kk = min(k, scores.shape[1])
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        merged_labels = np.concatenate([best_labels, top + start], axis=1)
        keep = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, keep, axis=1)
        best_labels = np.take_along_axis(merged_labels, keep, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_labels, order, axis=1)


def exact_top_k_float16(items16: np.ndarray, query: np.ndarray, k: int = K) -> np.ndarray:
    """Exact search over a float16 copy: numpy has no float16 BLAS, so blocks are widened to float32."""
    scores = np.empty(len(items16), dtype=np.float32)
    for start in range(0, len(items16), _BLOCK):
        scores[start : start + _BLOCK] = items16[start : start + _BLOCK].astype(np.float32) @ query
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]


# -- one (size, M) in its own process ------------------------------------------------
def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def measure(config: AnnConfig, size: int, m: int, alternatives: bool) -> dict[str, Any]:
    """Everything for one catalogue size and one M, in this process."""
    import hnswlib

    centres = cluster_centres(config)
    items = mixture(centres, size, config, stream=1)
    queries = mixture(centres, config.queries, config, stream=2)
    truth = exact_answers(items, queries)
    dim = items.shape[1]

    rss_before = current_rss_bytes()
    index = hnswlib.Index(space="ip", dim=dim)
    began = time.perf_counter()
    index.init_index(max_elements=size, M=m, ef_construction=config.ef_construction, random_seed=_HNSW_SEED)
    index.set_num_threads(config.build_threads or os.cpu_count() or 1)
    for start in range(0, size, _BLOCK):
        index.add_items(items[start : start + _BLOCK], np.arange(start, min(size, start + _BLOCK)))
    build_s = time.perf_counter() - began
    rss_after = current_rss_bytes()
    with tempfile.TemporaryDirectory(prefix="edgerec-ann-") as scratch:
        path = Path(scratch) / "index.hnsw"
        index.save_index(str(path))
        file_bytes = path.stat().st_size
    index.set_num_threads(1)

    timed = _time_queries(index, items, queries, config)
    found = timed.pop("found")
    result: dict[str, Any] = {
        "size": size, "m": m, "dim": dim, "build_s": round(build_s, 3),
        "build_threads": config.build_threads or os.cpu_count() or 1,
        "index_file_bytes": file_bytes, "vectors_bytes": items.nbytes,
        "index_memory_bytes": None if rss_before is None or rss_after is None else rss_after - rss_before,
        "hnsw": [{"ef": ef, "recall_at_10": round(float(np.mean([recall_at_k(f, t) for f, t in zip(found[ef], truth)])), 4),
                  **asdict(timed[ef])} for ef in config.all_efs],
        "exact": asdict(timed["exact"]),
    }
    if alternatives:
        items16 = items.astype(np.float16)
        seconds = []
        for query in queries[: config.exact_queries]:
            began = time.perf_counter()
            exact_top_k_float16(items16, query)
            seconds.append(time.perf_counter() - began)
        fp16_truth = exact_answers(items16, queries)  # widened block by block, like the single-query path
        result["float16_exact"] = {
            "bytes": items16.nbytes,
            "recall_at_10": round(float(np.mean([recall_at_k(f, t) for f, t in zip(fp16_truth, truth)])), 4),
            **asdict(Timing.of(seconds)),
        }
    result["peak_rss_bytes"] = peak_rss_kib() * 1024
    return result


def _time_queries(index: Any, items: np.ndarray, queries: np.ndarray, config: AnnConfig) -> dict[Any, Any]:
    """Per query: every ef (and, for the first exact_queries, exact search) in a shuffled order."""
    rng = random.Random(config.seed)
    efs = config.all_efs
    seconds: dict[Any, list[float]] = {ef: [] for ef in efs} | {"exact": []}
    found: dict[int, list[np.ndarray]] = {ef: [] for ef in efs}
    warmup = min(_WARMUP_QUERIES, len(queries) // 4)
    for number, query in enumerate(queries):
        variants: list[Any] = list(efs) + (["exact"] if number < config.exact_queries + warmup else [])
        rng.shuffle(variants)
        for variant in variants:
            if variant == "exact":
                began = time.perf_counter()
                exact_top_k(items, query, K)
                elapsed = time.perf_counter() - began
            else:
                index.set_ef(variant)
                began = time.perf_counter()
                labels, _ = index.knn_query(query, k=K)
                elapsed = time.perf_counter() - began
                found[variant].append(labels[0])
            if number >= warmup:
                seconds[variant].append(elapsed)
    return {key: Timing.of(values) for key, values in seconds.items()} | {"found": found}


def worker_main(task_json: str) -> None:
    """Entry point of a worker process: one JSON task in, one JSON result line out."""
    task = json.loads(task_json)
    config = AnnConfig(**{**task["config"], "sizes": tuple(task["config"]["sizes"]),
                          "efs": tuple(task["config"]["efs"])})
    print(json.dumps(measure(config, task["size"], task["m"], task["alternatives"])), flush=True)


def _run_worker(config: AnnConfig, size: int, m: int, alternatives: bool) -> dict[str, Any]:
    task = json.dumps({"config": asdict(config), "size": size, "m": m, "alternatives": alternatives})
    env = {**os.environ, **_ONE_THREAD_ENV}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run([sys.executable, "-c", "import sys\nfrom export.measure.ann import worker_main\n"
                           "worker_main(sys.argv[1])", task], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"ann worker for {size} items, M={m} failed ({done.returncode}): "
                           + " | ".join(done.stderr.strip().splitlines()[-5:]))
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the whole run ---------------------------------------------------------------------
def run_ann(config: AnnConfig, results: Path, *, argv: Sequence[str] = (), log: Log = print,
            centres_from: str = "random") -> dict[str, Any]:
    rows = []
    for size in sorted(config.sizes):
        alternatives = size == config.alternatives_size
        log(f"[ann] {size:,} items, M={config.m}: build, then {config.queries} queries x {len(config.all_efs)} ef"
            + (" + float16 exact" if alternatives else ""))
        rows.append(_run_worker(config, size, config.m, alternatives))
    log(f"[ann] {config.alternatives_size:,} items, M={config.small_m}")
    small = _run_worker(config, config.alternatives_size, config.small_m, False)
    body = {
        "command": shlex.join(["python", "-m", "export", *argv]) if argv else "python -m export ann",
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": sys.version.split()[0],
                    "hnswlib": _version("hnswlib"), "numpy": np.__version__},
        "config": {**asdict(config), "centres": centres_from},
        "sizes": rows,
        "memory_alternatives": memory_alternatives(rows, small, config),
        "crossover": crossover(rows, config.default_ef),
        "default_ef": default_ef_summary(rows, config.default_ef),
    }
    results.mkdir(parents=True, exist_ok=True)
    (results / "ann.json").write_text(json.dumps(body, indent=2) + "\n")
    (results / "ann.md").write_text(markdown(body))
    (results / "ann.svg").write_text(svg_plot(body))
    log((results / "ann.md").read_text())
    return body


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _at_ef(row: dict[str, Any], ef: int) -> dict[str, Any]:
    return next(h for h in row["hnsw"] if h["ef"] == ef)


def crossover(rows: Sequence[dict[str, Any]], ef: int) -> dict[str, Any]:
    """The catalogue size where HNSW at ``ef`` gets faster (p50) than exact search, by log-log interpolation
    between the measured sizes around it."""
    points = [(r["size"], r["exact"]["p50_ms"], _at_ef(r, ef)["p50_ms"]) for r in sorted(rows, key=lambda r: r["size"])]
    faster = [hnsw < exact for _, exact, hnsw in points]
    if all(faster):
        return {"ef": ef, "size": None, "text": f"HNSW (ef={ef}) is faster than exact search at every measured "
                                                f"size, down to {points[0][0]:,} items: the crossover is below that"}
    if not faster[-1]:
        return {"ef": ef, "size": None, "text": f"exact search is still faster at {points[-1][0]:,} items"}
    i = max(j for j in range(len(faster)) if not faster[j])  # last size where exact wins
    (n0, e0, h0), (n1, e1, h1) = points[i], points[i + 1]
    r0, r1 = math.log(e0 / h0), math.log(e1 / h1)  # exact/HNSW ratio, crosses 0
    size = int(float(f"{math.exp(math.log(n0) - r0 / (r1 - r0) * (math.log(n1) - math.log(n0))):.2g}"))
    return {"ef": ef, "size": size,
            "text": f"HNSW (ef={ef}) beats exact search from about {size:,} items "
                    f"(exact wins at {n0:,}, HNSW at {n1:,})"}


def default_ef_summary(rows: Sequence[dict[str, Any]], ef: int) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        at = _at_ef(r, ef)
        reaching = [h["ef"] for h in r["hnsw"] if h["recall_at_10"] >= 0.99]
        out.append({"size": r["size"], "ef": ef, "recall_at_10": at["recall_at_10"], "p50_ms": at["p50_ms"],
                    "exact_p50_ms": r["exact"]["p50_ms"], "speedup_vs_exact": round(r["exact"]["p50_ms"] / at["p50_ms"], 2),
                    "smallest_ef_with_recall_0.99": min(reaching) if reaching else None})
    return out


def memory_alternatives(rows: Sequence[dict[str, Any]], small: dict[str, Any], config: AnnConfig) -> dict[str, Any]:
    main = next(r for r in rows if r["size"] == config.alternatives_size)
    ef = config.default_ef

    def hnsw(row: dict[str, Any]) -> dict[str, Any]:
        at = _at_ef(row, ef)
        return {"m": row["m"], "build_s": row["build_s"], "index_file_bytes": row["index_file_bytes"],
                "index_memory_bytes": row["index_memory_bytes"], "peak_rss_bytes": row["peak_rss_bytes"],
                "ef": ef, "recall_at_10": at["recall_at_10"], "p50_ms": at["p50_ms"], "p99_ms": at["p99_ms"],
                "recall_by_ef": {str(h["ef"]): h["recall_at_10"] for h in row["hnsw"]}}

    fp16 = main["float16_exact"]
    return {
        "size": config.alternatives_size,
        f"hnsw_m{main['m']}": hnsw(main),
        f"hnsw_m{small['m']}": hnsw(small),
        "exact_float32": {"bytes": main["vectors_bytes"], "recall_at_10": 1.0, "p50_ms": main["exact"]["p50_ms"],
                          "p99_ms": main["exact"]["p99_ms"]},
        "exact_float16": {"bytes": fp16["bytes"], "recall_at_10": fp16["recall_at_10"], "p50_ms": fp16["p50_ms"],
                          "p99_ms": fp16["p99_ms"]},
    }


# -- output ----------------------------------------------------------------------------------
def _mb(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1e6:,.1f}" if abs(value) < 1e8 else f"{value / 1e6:,.0f}"


def _faster(speedup: float) -> str:
    return f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"


def markdown(body: dict[str, Any]) -> str:
    config, machine = body["config"], body["machine"]
    efs = [h["ef"] for h in body["sizes"][0]["hnsw"]]
    lines = [
        "# Nearest neighbours at scale (`python -m export ann`)", "",
        f"Command: `{body['command']}`. Measured {body['measured']} on {machine['cpu']} ({machine['cores']} cores); "
        f"hnswlib {machine['hnswlib']}, numpy {machine['numpy']}.", "",
        f"Data: {config['dim'] if config['centres'] == 'random' else body['sizes'][0]['dim']}-d unit vectors, a "
        f"seeded mixture of {config['clusters']:,} Gaussian clusters (centres: {config['centres']}; spread "
        f"{config['spread']}), {config['queries']:,} fresh queries from the same mixture. HNSW: M={config['m']}, "
        f"ef_construction={config['ef_construction']}, built on {body['sizes'][0]['build_threads']} threads; "
        f"queries on 1 thread, every ef and exact search (numpy, BLAS on 1 thread; first "
        f"{config['exact_queries']} queries) in a shuffled order per query. Latencies in ms.", "",
        "| items | build s | index file MB | index RAM MB | peak RSS MB | exact p50 / p99 | "
        + " | ".join(f"ef={ef} recall / p50 / p99" for ef in efs) + " |",
        "|" + "---|" * (6 + len(efs)),
    ]
    for r in body["sizes"]:
        cells = [f"{r['size']:,}", f"{r['build_s']:.2f}", _mb(r["index_file_bytes"]), _mb(r["index_memory_bytes"]),
                 _mb(r["peak_rss_bytes"]), f"{r['exact']['p50_ms']:.3f} / {r['exact']['p99_ms']:.3f}"]
        cells += [f"{h['recall_at_10']:.3f} / {h['p50_ms']:.3f} / {h['p99_ms']:.3f}" for h in r["hnsw"]]
        lines.append("| " + " | ".join(cells) + " |")
    cross = body["crossover"]
    lines += ["", f"**Crossover:** {cross['text']}.", "", f"**What the bundle's default ef={cross['ef']} buys:**", ""]
    for d in body["default_ef"]:
        reach = d["smallest_ef_with_recall_0.99"]
        lines.append(f"- {d['size']:,} items: recall@10 {d['recall_at_10']:.3f} at {d['p50_ms']:.3f} ms p50, "
                     f"{_faster(d['speedup_vs_exact'])} than exact ({d['exact_p50_ms']:.3f} ms); "
                     + (f"recall 0.99 first reached at ef={reach}" if reach else "recall 0.99 not reached at any ef"))
    alt = body["memory_alternatives"]
    lines += ["", f"## Memory alternatives at {alt['size']:,} items", "",
              "| option | memory MB | build s | recall@10 | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for key, value in alt.items():
        if key.startswith("hnsw"):
            lines.append(f"| HNSW M={value['m']} (vectors inside, float32), ef={value['ef']} "
                         f"| {_mb(value['index_memory_bytes'])} (file {_mb(value['index_file_bytes'])}) "
                         f"| {value['build_s']:.1f} | {value['recall_at_10']:.3f} | {value['p50_ms']:.3f} "
                         f"| {value['p99_ms']:.3f} |")
        elif key.startswith("exact"):
            kind = key.split("_")[1]
            lines.append(f"| exact numpy over a {kind} copy | {_mb(value['bytes'])} | – | {value['recall_at_10']:.3f} "
                         f"| {value['p50_ms']:.3f} | {value['p99_ms']:.3f} |")
    small = [v for k, v in alt.items() if k.startswith("hnsw")]
    lines += ["", "Recall by ef, " + "; ".join(
        f"M={v['m']}: " + ", ".join(f"ef={ef} {r:.3f}" for ef, r in v["recall_by_ef"].items()) for v in small) + ".",
        "", "Index RAM is the growth of resident memory while the index was built; the float16 copy's recall is "
        "against exact float32 answers."]
    return "\n".join(lines) + "\n"


def svg_plot(body: dict[str, Any]) -> str:
    """Query latency against catalogue size, log-log: exact search and HNSW at the default ef."""
    ef = body["crossover"]["ef"]
    rows = sorted(body["sizes"], key=lambda r: r["size"])
    exact = Series("exact numpy, 1 thread", [Point(r["size"], r["exact"]["p50_ms"]) for r in rows],
                   colour="gray", joined=True)
    hnsw = Series(f"HNSW ef={ef}, 1 thread (label: recall@10)",
                  [Point(r["size"], _at_ef(r, ef)["p50_ms"], f"{_at_ef(r, ef)['recall_at_10']:.3f}") for r in rows],
                  colour="crimson", joined=True)
    return svg_chart([exact, hnsw], x=Axis("catalogue size, items (log scale)", log=True),
                     y=Axis("query p50, ms (log scale)", log=True), legend=True)


def config_with(base: AnnConfig, **changes: Any) -> AnnConfig:
    return replace(base, **{k: v for k, v in changes.items() if v is not None})
