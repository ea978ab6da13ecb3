"""Measuring helpers shared by `edgerec bench` and the export stage's measurements.

Variants that are compared run interleaved in a freshly shuffled order every
round, so machine drift and cache effects fall on all of them alike; a fresh
process is timed from spawn to its first answer, with its own peak memory.
Torch-free, like the rest of edgerec.
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import EdgerecError

# What a timed child prints when its first answer is ready (then its peak RSS in KiB).
ANSWERED = "answered"
_CHILD_TIMEOUT_S = 600.0


class BenchError(EdgerecError):
    """A benchmark child process failed or printed something unexpected."""


@dataclass(frozen=True)
class Timing:
    """Percentiles of one variant's timed calls, in milliseconds."""

    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> "Timing":
        if not seconds:
            raise ValueError("no timings to summarise")
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(len(ms), round(float(p50), 4), round(float(p95), 4), round(float(p99), 4),
                   round(float(ms.mean()), 4))


@dataclass(frozen=True)
class ChildRun:
    """One fresh process: seconds from spawn to its first answer, and its peak resident memory."""

    seconds: float
    peak_rss_bytes: int


def interleaved_seconds(calls: Mapping[str, Callable[[], object]], *, rounds: int, warmup: int,
                        seed: int = 0) -> dict[str, list[float]]:
    """Seconds per call of each variant; every round runs each variant once, in a new shuffled order."""
    rng = random.Random(seed)
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            start = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, else the platform's word for it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def package_versions(*packages: str) -> dict[str, str | None]:
    """Installed versions by distribution name; None for one that is not installed."""
    found: dict[str, str | None] = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def machine_facts() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count() or 1, "platform": platform.platform(),
            "python": platform.python_version(), **package_versions("onnxruntime", "tokenizers", "hnswlib", "numpy")}


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child that must import this very edgerec (a source checkout too)."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[2])  # the folder that holds the edgerec package
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def first_answer(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 timeout: float = _CHILD_TIMEOUT_S) -> ChildRun:
    """Spawn ``argv``; time until it prints ``answered``, then read the peak RSS (KiB) it prints next."""
    with tempfile.TemporaryFile(mode="w+") as errors:  # a file, not a pipe: a chatty child cannot block
        start = time.perf_counter()
        with subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=errors, text=True,
                              env=dict(env) if env is not None else None) as child:
            assert child.stdout is not None
            # A watchdog instead of communicate(timeout): communicate reads the pipe's file
            # descriptor and would miss what readline() already buffered.
            watchdog = threading.Timer(timeout, child.kill)
            watchdog.start()
            try:
                first = child.stdout.readline()
                elapsed = time.perf_counter() - start
                rest = child.stdout.read()
                child.wait()
            finally:
                watchdog.cancel()
        errors.seek(0)
        stderr = errors.read()
    words = rest.split()
    if child.returncode != 0 or first.strip() != ANSWERED or not words or not words[-1].isdigit():
        tail = " | ".join(stderr.strip().splitlines()[-3:]) or (first + rest).strip()[-300:] or "no output"
        if child.returncode < 0:
            tail = f"killed by signal {-child.returncode} (timeout {timeout:.0f} s?); {tail}"
        raise BenchError(f"benchmark child {argv[:2]} exited with {child.returncode}: {tail}")
    return ChildRun(seconds=elapsed, peak_rss_bytes=int(words[-1]) * 1024)


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB.

    On Linux from /proc/self/status VmHWM, not ru_maxrss: a child's ru_maxrss
    starts at its parent's RSS at the time of the fork (the kernel carries it
    across exec), so a child spawned by a big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


def exact_top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Labels of the k largest inner products, best first: the exact answer HNSW is checked against."""
    scores = vectors @ query
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]


def recall_at_k(found: Sequence[int], truth: Sequence[int]) -> float:
    return len(set(map(int, found)) & set(map(int, truth))) / max(len(truth), 1)
