"""Measure hnswlib's alternatives on a built bundle's own vectors: M, memory, build time, recall@10.

For results/scale.md. The bundle's index (built with the bundle's M) is the
reference; each M given is built again, index only, from the same vectors in
the same order, in a child process so that its memory is its own. Recall@10
is measured against exact search (numpy) for query-like texts encoded by the
bundle's encoder and for items' own vectors (the `similar` path), by label and
by score (ties at the 10th score count as hits):

    python results/scale_index.py /tmp/bundle-1m --m 8 --work /tmp/scale-index
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgerec.bundle.reader import open_bundle  # noqa: E402
from edgerec.bundle.manifest import IndexSpec  # noqa: E402

K = 10
QUERY_TEXTS = 200
QUERY_ITEMS = 200
EFS = (64, 128, 256, 512)


def anon_mb() -> float:
    """This process's resident anonymous memory in MB: the index, not the pages of the memory-mapped
    vectors it was built from (VmRSS counts both)."""
    return int(Path("/proc/self/status").read_text().split("RssAnon:")[1].split()[0]) / 1024


def export_vectors(index_path: Path, spec: IndexSpec, out: Path) -> None:
    """The index's vectors, label order, as a float32 file (read back in chunks: never two copies in memory)."""
    import hnswlib

    index = hnswlib.Index(space=spec.space, dim=spec.dim)
    index.load_index(str(index_path), max_elements=spec.count)
    vectors = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(spec.count, spec.dim))
    for start in range(0, spec.count, 65536):
        labels = np.arange(start, min(spec.count, start + 65536))
        vectors[labels] = index.get_items(labels, return_type="numpy")
    vectors.flush()


def queries(bundle_path: Path, vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(query vectors, the item label each must not return: -1 for text queries)."""
    from edgerec.encoder import TextEncoder
    from export.stages.query_texts import query_like_texts

    bundle = open_bundle(bundle_path)
    default = open_bundle(REPO / "artifacts" / "default")
    with open(default.path("items"), encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    texts = query_like_texts(records, QUERY_TEXTS, seed=seed)[:QUERY_TEXTS]
    encoder = TextEncoder(bundle.path("encoder"), bundle.path("tokenizer"), bundle.manifest.encoder)
    text_vectors = encoder.encode(texts)
    items = np.random.default_rng(seed).choice(len(vectors), size=QUERY_ITEMS, replace=False)
    return (np.concatenate([text_vectors, vectors[np.sort(items)]]),
            np.concatenate([np.full(len(texts), -1), np.sort(items)]))


def exact_top(vectors: np.ndarray, query: np.ndarray, skip: np.ndarray, k: int = K) -> np.ndarray:
    """Exact top-k labels by inner product, scanning the vectors in chunks."""
    best_scores = np.full((len(query), 0), -np.inf, dtype=np.float32)
    best_labels = np.zeros((len(query), 0), dtype=np.int64)
    for start in range(0, len(vectors), 131072):
        block = np.asarray(vectors[start : start + 131072])
        scores = query @ block.T
        labels = np.arange(start, start + len(block))
        scores[skip[:, None] == labels[None, :]] = -np.inf
        scores = np.concatenate([best_scores, scores], axis=1)
        labels = np.concatenate([best_labels, np.broadcast_to(labels, (len(query), len(block)))], axis=1)
        keep = np.argpartition(-scores, k, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_labels = np.take_along_axis(labels, keep, axis=1)
    return best_labels


def recall(index, vectors: np.ndarray, query: np.ndarray, skip: np.ndarray, truth: np.ndarray,
           ef: int) -> tuple[float, float]:  # index: hnswlib.Index
    """(recall of the exact top-10 labels, recall by score). A synthetic catalogue has many items
    with the same text, so ties at the 10th score are common: by score, a returned item counts when
    it scores at least the exact 10th score, whichever of the tied items it is."""
    index.set_ef(ef)
    found, _ = index.knn_query(query, k=K + 1)
    by_label = by_score = 0
    for row, labels in enumerate(found):
        kept = [label for label in labels.tolist() if label != skip[row]][:K]
        by_label += len(set(kept) & set(truth[row].tolist()))
        tenth = (vectors[np.sort(truth[row])] @ query[row]).min()
        by_score += int(((vectors[np.sort(kept)] @ query[row]) >= tenth - 1e-5).sum())
    return by_label / truth.size, by_score / truth.size


def child(args: argparse.Namespace) -> None:
    """Build (or load) one index and report its figures as one JSON line."""
    import hnswlib

    work = Path(args.work)
    vectors = np.load(work / "vectors.npy", mmap_mode="r")
    query, skip, truth = (np.load(work / f"{name}.npy") for name in ("query", "skip", "truth"))
    count, dim = vectors.shape
    before = anon_mb()
    index = hnswlib.Index(space="ip", dim=dim)
    started = time.perf_counter()
    if args.load:
        index.load_index(args.load, max_elements=count)
        path = Path(args.load)
    else:
        index.init_index(max_elements=count, M=args.child_m, ef_construction=args.ef_construction, random_seed=100)
        index.set_num_threads(args.threads)
        for start in range(0, count, 4096):
            index.add_items(np.ascontiguousarray(vectors[start : start + 4096]), np.arange(start, min(count, start + 4096)))
        path = work / f"index-m{args.child_m}.hnsw"
        index.save_index(str(path))
    seconds = time.perf_counter() - started
    figures = {"m": args.child_m, "built": not args.load, "seconds": round(seconds, 1),
               "index_ram_mb": round(anon_mb() - before), "file_mb": round(path.stat().st_size / 1e6, 1)}
    for ef in EFS:
        texts = slice(0, QUERY_TEXTS)
        items = slice(QUERY_TEXTS, None)
        for name, part in (("text", texts), ("items", items)):
            by_label, by_score = recall(index, vectors, query[part], skip[part], truth[part], ef)
            figures[f"recall_{name}_ef{ef}"] = round(by_label, 4)
            figures[f"recall_by_score_{name}_ef{ef}"] = round(by_score, 4)
    print(json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bundle", nargs="?")
    parser.add_argument("--m", type=int, nargs="*", default=[8])
    parser.add_argument("--work", default="/tmp/scale-index")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child-m", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--ef-construction", type=int, default=200)
    args = parser.parse_args()
    if args.child_m is not None:
        child(args)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bundle = open_bundle(Path(args.bundle))
    spec = bundle.manifest.index
    if not (work / "vectors.npy").exists():
        export_vectors(bundle.path("index"), spec, work / "vectors.npy")
    vectors = np.load(work / "vectors.npy", mmap_mode="r")
    query, skip = queries(Path(args.bundle), vectors)
    truth = exact_top(vectors, query, skip)
    for name, array in (("query", query), ("skip", skip), ("truth", truth)):
        np.save(work / f"{name}.npy", array)
    runs = [["--child-m", str(spec.m), "--load", str(bundle.path("index"))]]
    runs += [["--child-m", str(m)] for m in args.m]
    for run in runs:
        subprocess.run([sys.executable, __file__, "--work", str(work), "--threads", str(args.threads),
                        "--ef-construction", str(spec.ef_construction), *run], check=True)


if __name__ == "__main__":
    main()
