"""What a query costs beside stock MiniLM when it runs back to back, and when other work has run between
two queries (as in `python -m export encoders`, where 23 candidates take turns, and in an app).

    python results/query_regimes.py      # writes results/query-regimes.md (about two minutes)

Both sides answer the encoders command's mixed query set (20 catalogue titles, 24 descriptive
sentences) over the 3,883 MovieLens catalogue texts, 1 thread: edgerec's general model through
`Recommender.query` over the bundle that command builds (export/work/encoders/general-bundle: encode,
HNSW, BM25, fusion, results), and stock all-MiniLM-L6-v2 fused + dynamic INT8 (encode, exact top 10
over its catalogue vectors). Regimes, each side timed in the same run: "warm", blocks of 44 queries
of one side after another; "after other work", each query preceded by writing 64 MB of memory (what
the caches held is gone), the two sides in a shuffled order.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from edgerec import Recommender  # noqa: E402
from edgerec.tools.timing import Timing, cpu_model, exact_top_k  # noqa: E402
from export.measure.encoders import query_set  # noqa: E402
from export.measure.peer_client import PlainOnnxEncoder  # noqa: E402
from export.stages.sources import minilm_teacher  # noqa: E402

BUNDLE = Path("export/work/encoders/general-bundle")
STOCK = Path("export/work/evaluation/stock-int8.onnx")
ROUNDS = 30


def main() -> None:
    started = time.time()
    rec = Recommender.load(BUNDLE, threads=1)
    records = [json.loads(line) for line in (BUNDLE / "items.jsonl").open()]
    catalogue = [r["text"] for r in records]
    queries = query_set([{"title": t.split(". ")[0]} for t in catalogue])
    texts = list(queries.titles) + list(queries.descriptions)
    teacher = minilm_teacher()
    stock = PlainOnnxEncoder(str(STOCK), str(teacher.path / "tokenizer.json"), teacher.max_length, 1)
    vectors = stock.encode(catalogue, batch_size=32)
    sides = {"edgerec": lambda t: rec.query(t, k=10), "minilm-int8": lambda t: exact_top_k(vectors, stock.encode_one(t), 10)}
    junk = np.zeros(64 * 1024 * 1024 // 8)
    samples: dict[tuple[str, str], list[float]] = {(s, r): [] for s in sides for r in ("warm", "after other work")}
    order = random.Random(0)
    for t in texts:  # warm-up
        for call in sides.values():
            call(t)
    for _ in range(ROUNDS):
        names = list(sides)
        order.shuffle(names)
        for name in names:  # warm: one side's whole set back to back
            for t in texts:
                begin = time.perf_counter()
                sides[name](t)
                samples[(name, "warm")].append(time.perf_counter() - begin)
        for t in texts:  # after other work: the caches cleared before every call
            order.shuffle(names)
            for name in names:
                junk += 1.0
                begin = time.perf_counter()
                sides[name](t)
                samples[(name, "after other work")].append(time.perf_counter() - begin)
    lines = ["# A query back to back and after other work (`python results/query_regimes.py`)", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC on {cpu_model()}, 1 thread, "
             f"{len(texts)} queries x {ROUNDS} rounds per side and regime. See the script's docstring for what "
             "each side and regime is.", "", "| regime | edgerec p50 ms | MiniLM INT8 p50 ms | ratio |", "|---|---|---|---|"]
    for regime in ("warm", "after other work"):
        ours, anchor = (Timing.of(samples[(s, regime)]).p50_ms for s in ("edgerec", "minilm-int8"))
        lines.append(f"| {regime} | {ours:.3f} | {anchor:.3f} | {ours / anchor:.2f}x |")
    lines += ["", f"Wall time {time.time() - started:.0f} s.", ""]
    Path("results/query-regimes.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
