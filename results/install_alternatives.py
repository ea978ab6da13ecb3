"""Issue 22: what could replace or back up hnswlib on a device with no compiler.

Run in a venv holding numpy, hnswlib, voyager and usearch:
    python results/install_alternatives.py [--sizes 3883,50000,200000]
Prints one JSON line per finding. Vectors are random unit vectors of the bundles' width (384); exact
search time does not depend on the data, and HNSW's recall on random vectors is a lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

# One thread, as edgerec answers a query: a multi-threaded BLAS on a busy 2-core machine took 12 ms
# for what one thread does in 0.15 ms.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402 - after the thread settings, which numpy reads when it loads


def p50_ms(run, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        start = time.perf_counter()
        run(q)
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 3)


def exact_top(vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ q
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def ef_for(n: int) -> int:  # edgerec build's default breadth by catalogue size
    return 64 if n <= 5000 else 256 if n <= 100_000 else 512


def search_times(n: int, dim: int, k: int, rng: np.random.Generator, hnsw: bool) -> dict:
    import hnswlib

    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(n, 200, replace=False)] + 0.05 * rng.standard_normal((200, dim), dtype=np.float32)
    exact = {"n": n, "dim": dim, "k": k, "vectors_mb": round(vectors.nbytes / 1e6, 1),
             "exact_numpy_p50_ms": p50_ms(lambda q: exact_top(vectors, q, k), queries)}
    if not hnsw:  # building the graph one-threaded takes minutes here (88 s for 50,000)
        return exact
    start = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, M=16, ef_construction=200)
    index.add_items(vectors, np.arange(n), num_threads=1)
    build_s = time.perf_counter() - start
    index.set_ef(ef_for(n))
    index.set_num_threads(1)
    found = [set(index.knn_query(q, k=k)[0][0]) for q in queries]
    truth = [set(exact_top(vectors, q, k)) for q in queries]
    recall = float(np.mean([len(f & t) / k for f, t in zip(found, truth)]))
    return {**exact, "hnswlib_p50_ms": p50_ms(lambda q: index.knn_query(q, k=k), queries), "hnswlib_ef": ef_for(n),
            "hnswlib_recall_at_k": round(recall, 4), "hnswlib_build_s_1_thread": round(build_s, 1)}


def voyager_reads_hnswlib(dim: int, rng: np.random.Generator) -> dict:
    """Save an hnswlib index as edgerec bundles hold it and ask voyager to load it, with and without
    the space and width given (voyager's loader for files without its own header)."""
    import hnswlib
    import voyager

    vectors = rng.standard_normal((100, dim), dtype=np.float32)
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=100, M=16, ef_construction=200)
    index.add_items(vectors, np.arange(100))
    attempts = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "index.hnsw")
        index.save_index(path)
        for label, call in [
            ("load(path)", lambda: voyager.Index.load(path)),
            ("load(path, space=InnerProduct, num_dimensions, Float32)",
             lambda: voyager.Index.load(path, space=voyager.Space.InnerProduct, num_dimensions=dim,
                                        storage_data_type=voyager.StorageDataType.Float32)),
        ]:
            try:
                loaded = call()
                ids, _ = loaded.query(vectors[3], k=1)
                attempts[label] = f"loaded; nearest to item 3 is {int(ids[0])}"
            except Exception as exc:  # noqa: BLE001 - recording what voyager says
                attempts[label] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    attempts["same_answers_as_hnswlib"] = _voyager_agrees(dim)
    from importlib.metadata import version
    return {"voyager": version("voyager"), "reads_hnswlib_file": attempts}


def _voyager_agrees(dim: int) -> str:
    """Top-10 lists for 200 of the shipped bundle's own item vectors as queries, from hnswlib and from
    voyager reading the same index.hnsw, at the bundle's ef (64)."""
    import hnswlib
    import voyager

    path = str(Path(__file__).resolve().parents[1] / "artifacts" / "default" / "index.hnsw")
    index = hnswlib.Index(space="ip", dim=dim)
    index.load_index(path)
    vectors = np.asarray(index.get_items(list(range(0, index.get_current_count(), 19))[:200]), dtype=np.float32)
    loaded = voyager.Index.load(path, space=voyager.Space.InnerProduct, num_dimensions=dim,
                                storage_data_type=voyager.StorageDataType.Float32)
    index.set_ef(64)
    same = 0
    for q in vectors:
        ours = list(index.knn_query(q, k=10)[0][0])
        theirs = [int(i) for i in loaded.query(q, k=10, query_ef=64)[0]]
        same += ours == theirs
    return f"{same}/{len(vectors)} queries: identical top-10 lists"


def usearch_format(dim: int, rng: np.random.Generator) -> dict:
    import hnswlib
    from usearch.index import Index

    vectors = rng.standard_normal((100, dim), dtype=np.float32)
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=100, M=16, ef_construction=200)
    index.add_items(vectors, np.arange(100))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "index.hnsw")
        index.save_index(path)
        try:
            Index.restore(path)
            outcome = "restored"
        except Exception as exc:  # noqa: BLE001
            outcome = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    return {"usearch_reads_hnswlib_file": outcome}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="3883,50000,200000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--hnsw-up-to", type=int, default=50_000, help="build and time HNSW up to this size")
    parser.add_argument("--skip-formats", action="store_true", help="only the search times")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if not args.skip_formats:
        print(json.dumps(voyager_reads_hnswlib(args.dim, rng)), flush=True)
        print(json.dumps(usearch_format(args.dim, rng)), flush=True)
    for n in map(int, args.sizes.split(",")):
        print(json.dumps(search_times(n, args.dim, 10, rng, hnsw=n <= args.hnsw_up_to)), flush=True)


if __name__ == "__main__":
    main()
