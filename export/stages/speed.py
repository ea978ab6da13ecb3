"""Side-by-side timing: variants alternate in a shuffled order on every round,
so that machine drift and cache effects fall on all of them alike."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from edgerec.tools.timing import interleaved_seconds


def p50_latencies_ms(variants: Mapping[str, Callable[[], object]], *, rounds: int = 300, warmup: int = 20,
                     seed: int = 0) -> dict[str, dict[str, float]]:
    """p50 and p95 milliseconds per call of each variant, measured interleaved (edgerec's own helper)."""
    samples = interleaved_seconds(variants, rounds=rounds, warmup=warmup, seed=seed)
    out = {}
    for name, seconds in samples.items():
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        out[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}
    return out
