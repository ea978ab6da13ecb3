"""`edgerec loadtest`: threads sharing one Recommender, checked against single-thread answers.

A Recommender (one ONNX Runtime session, one hnswlib index) is meant to be
shared by threads. This measures what that costs (latency percentiles, QPS,
resident memory) and checks that it is safe: every answer must equal the
answer the same call gave on one thread, and every bad input must get its
typed error. The workload is a seeded mix: text queries of varied length
(new input shapes are what grow ONNX Runtime's memory arena), about 10%
similar/recommend calls and about 10% bad or awkward inputs.
"""

from __future__ import annotations

import random
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import EdgerecError, EmptyQueryError, InputError, UnknownItemError
from ..recommender import Recommender

WORKLOAD_SIZE = 200
DEFAULT_WARMUP = 200
BAD_INPUT_SHARE = 0.10
ITEM_CALL_SHARE = 0.10
_HUGE_TEXT_BYTES = 1_000_000
_EXAMPLES_KEPT = 5

Answer = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Call:
    """One call of the workload: a Recommender method and its keyword arguments, named as the HTTP
    API names its body's fields (so `loadtest --url` sends the same calls); ``expected_error`` is
    set for input that must be refused."""

    kind: str
    method: str  # "query", "similar" or "recommend"
    args: Mapping[str, Any]
    expected_error: type[EdgerecError] | None = None

    def run(self, rec: Recommender) -> list:
        return getattr(rec, self.method)(**self.args)


@dataclass(frozen=True)
class RunReport:
    """What one configuration (a number of threads) measured."""

    threads: int
    calls: int
    seconds: float
    qps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    expected_errors: int
    unexpected_errors: int
    mismatches: int
    rss_start_mb: float | None
    rss_end_mb: float | None
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.unexpected_errors == 0 and self.mismatches == 0


class RunsReport:
    """What every load test's report does with its runs (``self.runs``: RunReports)."""

    runs: tuple[RunReport, ...]

    @property
    def ok(self) -> bool:
        return all(run.ok for run in self.runs)

    def to_dict(self) -> dict:
        body = asdict(self)
        body["ok"] = self.ok
        return body


@dataclass(frozen=True)
class LoadReport(RunsReport):
    bundle: str
    items: int
    seed: int
    warmup: int
    queries_per_thread: int
    workload: dict[str, int]
    rss_source: str
    rss_loaded_mb: float | None
    runs: tuple[RunReport, ...]


def rss_mb() -> tuple[float | None, str]:
    """Resident memory now, from /proc (Linux); elsewhere the peak from getrusage, or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024, "VmRSS"
    except OSError:
        pass
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (OSError, ValueError):
        return None, "unavailable"
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    return (peak / 2**20 if sys.platform == "darwin" else peak / 1024), "ru_maxrss (peak)"


def build_workload(rec: Recommender, size: int = WORKLOAD_SIZE, seed: int = 0) -> list[Call]:
    """A seeded list of calls over the bundle's own items and words."""
    rng = random.Random(seed)
    ids = sorted(rec.items.labels)
    words = _catalogue_words(rec)
    huge_text = _words_up_to(words, rng, _HUGE_TEXT_BYTES)
    bad_inputs: list[Call] = [
        Call("bad:empty", "query", {"text": ""}, EmptyQueryError),
        Call("bad:blank", "query", {"text": " \t\n\u200b\ufeff\u200b "}, EmptyQueryError),
        Call("bad:k=0", "query", {"text": words[0], "k": 0}, InputError),
        Call("bad:unknown-id", "similar", {"item_id": "no such item \x1b[2J"}, UnknownItemError),
        Call("bad:unknown-in-history", "recommend", {"history": [ids[0], "no such item"]}, UnknownItemError),
        # Answered by rule, not refused: cut at the byte cap, surrogates replaced.
        Call("edge:huge-text", "query", {"text": huge_text, "k": 5}),
        Call("edge:surrogates", "query", {"text": f"{words[1]} \udcff\ud800 {words[2]}", "k": 5}),
    ]
    calls: list[Call] = []
    for _ in range(size):
        draw = rng.random()
        if draw < BAD_INPUT_SHARE:
            calls.append(rng.choice(bad_inputs))
        elif draw < BAD_INPUT_SHARE + ITEM_CALL_SHARE:
            calls.append(_item_call(rng, ids))
        else:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 16)))
            k = rng.randint(1, 20)
            calls.append(Call("query", "query", {"text": text, "k": k}))
    return calls


def _item_call(rng: random.Random, ids: Sequence[str]) -> Call:
    k = rng.randint(1, 20)
    if rng.random() < 0.5:
        item = rng.choice(ids)
        return Call("similar", "similar", {"item_id": item, "k": k})
    history = [rng.choice(ids) for _ in range(rng.randint(1, 12))]
    return Call("recommend", "recommend", {"history": history, "k": k})


def _catalogue_words(rec: Recommender) -> list[str]:
    words: set[str] = set()
    for record in rec.items.records:
        for value in record.values():
            parts = value if isinstance(value, list) else [value]
            for part in parts:
                if isinstance(part, str):
                    words.update(w.strip(".,:;!?()[]\"'").lower() for w in part.split())
    usable = sorted(w for w in words if len(w) >= 3 and w.isalpha())
    return usable or ["movie", "story", "night"]


def _words_up_to(words: Sequence[str], rng: random.Random, size: int) -> str:
    pieces: list[str] = []
    total = 0
    while total < size:
        word = rng.choice(words)
        pieces.append(word)
        total += len(word) + 1
    return " ".join(pieces)


def _attempt(call: Call, rec: Recommender) -> tuple[Answer | None, BaseException | None]:
    """The call's answer, or what it raised: a panic from native code is counted, never fatal."""
    try:
        return tuple((r.item_id, r.score) for r in call.run(rec)), None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - tokenizers' PanicException is a BaseException
        return None, exc


def reference_answers(rec: Recommender, workload: Sequence[Call]) -> list[Answer | None]:
    """Single-thread answers to compare with; None where the call raised (judged again in every run)."""
    return [_attempt(call, rec)[0] for call in workload]


@dataclass
class Tally:
    latencies_ns: list[int] = field(default_factory=list)
    expected_errors: int = 0
    unexpected_errors: int = 0
    mismatches: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, problem: str) -> None:
        if len(self.problems) < _EXAMPLES_KEPT:
            self.problems.append(problem)


def _worker(rec: Recommender, workload: Sequence[Call], reference: Sequence[Answer | None],
            order: Sequence[int], start: threading.Barrier, tally: Tally) -> None:
    start.wait()
    clock = time.perf_counter_ns
    for position in order:
        call = workload[position]
        began = clock()
        answer, error = _attempt(call, rec)
        tally.latencies_ns.append(clock() - began)
        if call.expected_error is not None:
            if error is not None and type(error) is call.expected_error:
                tally.expected_errors += 1
            else:
                tally.unexpected_errors += 1
                got = "an answer" if error is None else f"{type(error).__name__}: {error}"
                tally.note(f"{call.kind}: expected {call.expected_error.__name__}, got {got}")
        elif error is not None:
            tally.unexpected_errors += 1
            tally.note(f"{call.kind}: {type(error).__name__}: {error}")
        elif answer != reference[position]:
            tally.mismatches += 1
            tally.note(f"{call.kind} #{position}: answer differs from the single-thread one")


def run_threads(rec: Recommender, workload: Sequence[Call], reference: Sequence[Answer | None],
                threads: int, queries: int, seed: int) -> RunReport:
    """``threads`` threads, each making ``queries`` calls drawn (seeded) from the workload."""
    orders = [random.Random(seed * 7919 + 31 * threads + i).choices(range(len(workload)), k=queries)
              for i in range(threads)]
    tallies = [Tally() for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    workers = [threading.Thread(target=_worker, args=(rec, workload, reference, orders[i], start, tallies[i]),
                                name=f"edgerec-load-{i}", daemon=True) for i in range(threads)]
    rss_start, _ = rss_mb()
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - began
    rss_end, _ = rss_mb()
    return summarize(threads, seconds, tallies, rss_start, rss_end)


def summarize(threads: int, seconds: float, tallies: Sequence[Tally], rss_start: float | None,
              rss_end: float | None) -> RunReport:
    """One run's report from its threads' tallies (shared with the HTTP load test)."""
    latencies_ms = np.array([ns for t in tallies for ns in t.latencies_ns], dtype=np.float64) / 1e6
    p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99]) if len(latencies_ms) else (0.0, 0.0, 0.0)
    return RunReport(
        threads=threads, calls=len(latencies_ms), seconds=round(seconds, 3),
        qps=round(len(latencies_ms) / max(seconds, 1e-9), 1),
        p50_ms=round(float(p50), 3), p95_ms=round(float(p95), 3), p99_ms=round(float(p99), 3),
        max_ms=round(float(latencies_ms.max()) if len(latencies_ms) else 0.0, 3),
        expected_errors=sum(t.expected_errors for t in tallies),
        unexpected_errors=sum(t.unexpected_errors for t in tallies),
        mismatches=sum(t.mismatches for t in tallies),
        rss_start_mb=None if rss_start is None else round(rss_start, 1),
        rss_end_mb=None if rss_end is None else round(rss_end, 1),
        problems=tuple(p for t in tallies for p in t.problems)[:_EXAMPLES_KEPT],
    )


def run_loadtest(rec: Recommender, *, threads: Sequence[int], queries: int, warmup: int = DEFAULT_WARMUP,
                 seed: int = 0, workload_size: int = WORKLOAD_SIZE) -> LoadReport:
    """Warm up, take single-thread reference answers, then run each thread count in turn."""
    if not threads or any(n < 1 for n in threads):
        raise InputError(f"threads must be positive counts, got {list(threads)}")
    if queries < 1 or warmup < 0 or workload_size < 1:
        raise InputError("queries and the workload size must be at least 1, warm-up at least 0")
    rss_loaded, rss_source = rss_mb()
    workload = build_workload(rec, workload_size, seed)
    for position in range(warmup):
        _attempt(workload[position % len(workload)], rec)  # outcomes are judged in the measured runs
    reference = reference_answers(rec, workload)
    runs = tuple(run_threads(rec, workload, reference, n, queries, seed) for n in threads)
    kinds: dict[str, int] = {}
    for call in workload:
        group = call.kind.split(":")[0]
        kinds[group] = kinds.get(group, 0) + 1
    return LoadReport(
        bundle=rec.bundle.manifest.name, items=len(rec), seed=seed, warmup=warmup, queries_per_thread=queries,
        workload=dict(sorted(kinds.items())), rss_source=rss_source,
        rss_loaded_mb=None if rss_loaded is None else round(rss_loaded, 1), runs=runs,
    )


def format_report(report: LoadReport) -> list[str]:
    """The report as lines for a terminal."""
    mix = ", ".join(f"{count} {kind}" for kind, count in report.workload.items())

    def mb(value: float | None) -> str:
        return "?" if value is None else f"{value:.1f}"

    lines = [
        f"bundle {report.bundle}: {report.items} items; workload of {sum(report.workload.values())} calls "
        f"({mix}), seed {report.seed}; warm-up {report.warmup} calls; {report.queries_per_thread} calls per thread",
        f"RSS ({report.rss_source}) after load: {mb(report.rss_loaded_mb)} MB",
        "threads  calls      QPS   p50 ms   p95 ms   p99 ms   max ms  expected-err  unexpected  mismatches"
        "  RSS MB start -> end",
    ]
    for run in report.runs:
        lines.append(
            f"{run.threads:>7}  {run.calls:>5}  {run.qps:>7.1f}  {run.p50_ms:>7.2f}  {run.p95_ms:>7.2f}  "
            f"{run.p99_ms:>7.2f}  {run.max_ms:>7.2f}  {run.expected_errors:>12}  {run.unexpected_errors:>10}  "
            f"{run.mismatches:>10}  {mb(run.rss_start_mb)} -> {mb(run.rss_end_mb)}"
        )
        lines.extend(f"         ! {problem}" for problem in run.problems)
    return lines
