"""HNSW recall for text queries over a bundle built with the general model (static vectors), by M and ef,
and how much of `Recommender.query`'s fused top 10 differs from exact search.

    python results/hnsw_general_recall.py [BUNDLE]   # default export/work/encoders/general-bundle
                                                     # (written by `python -m export encoders`)
Queries: every 13th MovieLens title and 11 descriptive sentences. Writes results/hnsw-general.md.
"""

import sys
import time
from pathlib import Path

import hnswlib
import numpy as np

from edgerec import Recommender

bundle = Path(sys.argv[1] if len(sys.argv) > 1 else "export/work/encoders/general-bundle")
rec = Recommender.load(bundle, threads=1)
vectors = np.ascontiguousarray(rec.index.vectors(range(len(rec))))
titles = [str(r.get("title", "")) for r in Recommender.load("artifacts/default").items.records][::13]
sentences = ["a film about a shark attacking a beach town", "a slow-burning psychological thriller set in a hotel",
             "something to cheer me up after a bad day", "a space adventure with robots and a princess",
             "a love story in paris during the war", "animated movie for kids about toys",
             "gritty crime drama about the mafia", "a documentary about climate change",
             "heist movie with a clever twist", "the matrix", "star wars"]
texts = titles + sentences
queries = rec.encode(texts)
exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
lines = ["# HNSW recall over a general-model bundle (`python results/hnsw_general_recall.py`)", "",
         f"Bundle `{bundle}` ({len(rec):,} items, static general model), {len(texts)} text queries "
         f"({len(titles)} titles, {len(sentences)} sentences); {time.strftime('%Y-%m-%d %H:%M')} UTC, 1 thread. "
         f"Mean cosine between items: {float((vectors[:500] @ vectors[:500].T).mean()):.2f} (static vectors "
         "crowd together).", "",
         "## Raw HNSW recall@10 against exact search", "", "| M | ef_construction | ef | recall@10 | search p50 us |",
         "|---|---|---|---|---|"]
for m, construction in ((16, 200), (32, 200), (48, 400)):
    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(len(vectors), M=m, ef_construction=construction, random_seed=100)
    index.add_items(vectors, np.arange(len(vectors)))
    index.set_num_threads(1)
    for ef in (32, 64, 128):
        index.set_ef(ef)
        hits, seconds = 0, []
        for q, e in zip(queries, exact):
            started = time.perf_counter()
            labels, _ = index.knn_query(q.reshape(1, -1), k=10)
            seconds.append(time.perf_counter() - started)
            hits += len(set(labels[0].tolist()) & set(e.tolist()))
        lines.append(f"| {m} | {construction} | {ef} | {hits / len(queries) / 10:.3f} | {np.median(seconds) * 1e6:.0f} |")
lines += ["", "## `Recommender.query` (HNSW + BM25 fusion) against the same with exact search (ef 4000)", "",
          "| ef | fused top-10 overlap with exact | query p50 us |", "|---|---|---|"]


def answers(ef: int) -> tuple[dict, float]:
    rec.index.set_ef(ef)
    out, seconds = {}, []
    for text in texts:
        started = time.perf_counter()
        out[text] = [r.item_id for r in rec.query(text)]
        seconds.append(time.perf_counter() - started)
    return out, float(np.median(seconds) * 1e6)


reference, _ = answers(4000)
for ef in (64, 96, 128):
    found, p50 = answers(ef)
    overlap = np.mean([len(set(found[t]) & set(reference[t])) / 10 for t in texts])
    lines.append(f"| {ef} | {overlap:.3f} | {p50:.0f} |")
Path("results/hnsw-general.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
