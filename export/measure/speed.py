"""Side-by-side timing: variants alternate in a shuffled order on every round,
so that machine drift and cache effects fall on all of them alike."""

from __future__ import annotations

import random
import time
from typing import Callable, Mapping

import numpy as np


def p50_latencies_ms(variants: Mapping[str, Callable[[], object]], *, rounds: int = 300, warmup: int = 20,
                     seed: int = 0) -> dict[str, dict[str, float]]:
    """p50 and p95 milliseconds per call of each variant, measured interleaved."""
    rng = random.Random(seed)
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            start = time.perf_counter()
            variants[name]()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {
        name: {"p50_ms": round(float(np.percentile(s, 50)), 3), "p95_ms": round(float(np.percentile(s, 95)), 3)}
        for name, s in samples.items()
    }
