"""Query latency against HNSW search breadth on a large bundle: for results/scale.md.

One Recommender, one thread; for each ef, every query text is answered once as
a warm-up, then ROUNDS times, cycling the efs within each round so that drift
of the machine falls on all of them alike. Exact search (numpy, all vectors)
is timed the same way for the crossover:

    python results/scale_latency.py /tmp/bundle-1m
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(name, "1")  # exact search on one thread too, like the queries
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgerec import Recommender  # noqa: E402

EFS = (64, 128, 256, 512)
ROUNDS = 5
TEXTS = ("a heist movie with a clever twist", "space adventure", "funny animated film for kids", "war drama",
         "romantic comedy in new york", "film noir detective", "horror", "western with a lone gunman",
         "musical", "documentary about music", "science fiction thriller", "crime")


def main() -> None:
    rec = Recommender.load(sys.argv[1], threads=1)
    vectors = rec.encode(list(TEXTS))
    times: dict[str, list[float]] = {f"ef={ef}": [] for ef in EFS}
    all_vectors = rec.index.vectors(range(len(rec)))  # exact search reads these; loaded once, not timed
    times["exact"] = []
    for round_ in range(ROUNDS + 1):
        for ef in EFS:
            rec.index.set_ef(ef)
            for text in TEXTS:
                started = time.perf_counter()
                rec.query(text, k=10)
                if round_:
                    times[f"ef={ef}"].append(time.perf_counter() - started)
        for vector in vectors:
            started = time.perf_counter()
            np.argpartition(-(all_vectors @ vector), 10)[:10]
            if round_:
                times["exact"].append(time.perf_counter() - started)
    print(f"{len(rec):,} items, {len(TEXTS)} texts x {ROUNDS} rounds, 1 thread")
    for name, samples in times.items():
        ms = np.array(samples) * 1e3
        print(f"{name:8s} p50 {np.percentile(ms, 50):7.2f} ms  p95 {np.percentile(ms, 95):7.2f} ms")


if __name__ == "__main__":
    main()
