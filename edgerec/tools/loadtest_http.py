"""`edgerec loadtest --url`: the same workload, sent to a running `edgerec serve` over HTTP.

Each client thread holds one keep-alive connection (stdlib http.client) and sends the seeded mix
of edgerec.tools.loadtest. Answers are checked against single-thread answers computed in this
process from the same bundle; a bad input must get the status the server's one error table
(edgerec.serve.problems) gives its error, and a body over the server's limit must get 413. An
answer names the bundle version it came from: answers from another version (a home updated
during the run) are counted per version, not compared.

Only loopback URLs are accepted: this is a tool to measure your own server, not to load someone
else's.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import urlsplit

from ..errors import EdgerecError, InputError
from ..recommender import Recommender
from ..serve.auth import is_loopback
from ..serve.bodies import MAX_BODY_BYTES
from ..serve.problems import status_of
from ..serve.reloader import bundle_identity
from .loadtest import (DEFAULT_WARMUP, WORKLOAD_SIZE, Answer, Call, RunReport, RunsReport, Tally, build_workload,
                       reference_answers, summarize)

_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class HttpLoadReport(RunsReport):
    url: str
    bundle: str
    version: str  # the version the reference answers came from
    items: int
    seed: int
    warmup: int
    queries_per_client: int
    workload: dict[str, int]
    runs: tuple[RunReport, ...]
    versions: tuple[dict[str, int], ...]  # per run: answers by the version that gave them


def parse_loopback_url(url: str) -> tuple[str, int]:
    """(host, port) of an http:// URL on this machine; InputError for anything else."""
    parts = urlsplit(url)
    try:
        port = parts.port or 80
    except ValueError:
        raise InputError(f"--url {url!r}: the port must be a number from 0 to 65535") from None
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise InputError(f"--url {url!r}: give the server's base URL, e.g. http://127.0.0.1:8080")
    if not is_loopback(parts.hostname):
        raise InputError(f"--url {url!r}: only loopback URLs (127.0.0.1, ::1, localhost) are load-tested")
    return parts.hostname, port


class _Client:
    """One keep-alive connection; reopened after the server closes it (it does after a 413)."""

    def __init__(self, host: str, port: int, api_key: str | None) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=_TIMEOUT_SECONDS)
        self.headers = {"Content-Type": "application/json"}
        if api_key is not None:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        try:
            self.connection.request(method, path, body=body, headers=self.headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # the next request opens a new connection
            raise
        if response.will_close or response.status == 413:
            self.connection.close()
        return response.status, payload

    def close(self) -> None:
        self.connection.close()


def _encoded(call: Call) -> tuple[str, bytes, int | None]:
    """(path, body, the status a refusal must have, or None when an answer is expected)."""
    body = json.dumps(dict(call.args)).encode("ascii")  # ensure_ascii: lone surrogates travel escaped
    if len(body) > MAX_BODY_BYTES:
        return f"/v1/{call.method}", body, 413
    expected = None if call.expected_error is None else status_of(call.expected_error)[0]
    return f"/v1/{call.method}", body, expected


def _worker(client: _Client, requests: Sequence[tuple[str, bytes, int | None]], calls: Sequence[Call],
            reference: Sequence[Answer | None], version: str, order: Sequence[int], start: threading.Barrier,
            tally: Tally, versions: dict[str, int]) -> None:
    start.wait()
    clock = time.perf_counter_ns
    for position in order:
        path, body, expected = requests[position]
        kind = calls[position].kind
        began = clock()
        try:
            status, payload = client.request("POST", path, body)
        except (OSError, http.client.HTTPException) as exc:
            tally.latencies_ns.append(clock() - began)
            tally.unexpected_errors += 1
            tally.note(f"{kind}: {type(exc).__name__}: {exc}")
            continue
        tally.latencies_ns.append(clock() - began)
        if expected is not None:
            if status == expected:
                tally.expected_errors += 1
            else:
                tally.unexpected_errors += 1
                tally.note(f"{kind}: expected HTTP {expected}, got {status}: {payload[:200]!r}")
            continue
        if status != 200:
            tally.unexpected_errors += 1
            tally.note(f"{kind}: HTTP {status}: {payload[:200]!r}")
            continue
        answer = json.loads(payload)
        served = answer["bundle"]["version"]
        versions[served] = versions.get(served, 0) + 1
        if served != version:
            continue  # another version's answer: nothing here to compare it with
        got = tuple((item["item_id"], item["score"]) for item in answer["items"])
        if got != reference[position]:
            tally.mismatches += 1
            tally.note(f"{kind} #{position}: answer differs from the in-process one")


def run_http_loadtest(url: str, rec: Recommender, *, clients: Sequence[int], queries: int,
                      warmup: int = DEFAULT_WARMUP, seed: int = 0, workload_size: int = WORKLOAD_SIZE,
                      api_key: str | None = None) -> HttpLoadReport:
    """Check the server is ready and serves ``rec``'s bundle, warm it up, then run each client count."""
    host, port = parse_loopback_url(url)
    if not clients or any(n < 1 for n in clients):
        raise InputError(f"client counts must be positive, got {list(clients)}")
    if queries < 1 or warmup < 0 or workload_size < 1:
        raise InputError("queries and the workload size must be at least 1, warm-up at least 0")
    name, version = bundle_identity(rec.bundle)
    _check_ready(url, _Client(host, port, api_key), name)
    workload = build_workload(rec, workload_size, seed)
    reference = [None if answer is None else tuple((item, round(score, 6)) for item, score in answer)
                 for answer in reference_answers(rec, workload)]
    requests = [_encoded(call) for call in workload]
    warm = _Client(host, port, api_key)
    for position in range(warmup):
        path, body, _ = requests[position % len(requests)]
        warm.request("POST", path, body)
    warm.close()
    runs, versions = [], []
    for n in clients:
        run, seen = _run_clients(host, port, api_key, requests, workload, reference, version, n, queries, seed)
        runs.append(run)
        versions.append(seen)
    kinds: dict[str, int] = {}
    for call in workload:
        kinds[call.kind.split(":")[0]] = kinds.get(call.kind.split(":")[0], 0) + 1
    return HttpLoadReport(url=url, bundle=name, version=version, items=len(rec), seed=seed, warmup=warmup,
                          queries_per_client=queries, workload=dict(sorted(kinds.items())), runs=tuple(runs),
                          versions=tuple(versions))


def _check_ready(url: str, client: _Client, name: str) -> None:
    try:
        status, payload = client.request("GET", "/readyz")
    except (OSError, http.client.HTTPException) as exc:
        raise EdgerecError(f"cannot reach {url}: {exc}; start it with `edgerec serve`") from None
    finally:
        client.close()
    if status != 200:
        raise EdgerecError(f"{url} is not ready (HTTP {status}): {payload[:200].decode('utf-8', 'replace')}")
    served = json.loads(payload)["bundle"]["name"]
    if served != name:
        raise InputError(f"{url} serves bundle {served!r}, not {name!r}: pass the server's bundle with --bundle")


def _run_clients(host: str, port: int, api_key: str | None, requests: Sequence[tuple[str, bytes, int | None]],
                 workload: Sequence[Call], reference: Sequence[Answer | None], version: str, clients: int,
                 queries: int, seed: int) -> tuple[RunReport, dict[str, int]]:
    # The same seeded orders as the in-process run with as many threads.
    orders = [random.Random(seed * 7919 + 31 * clients + i).choices(range(len(workload)), k=queries)
              for i in range(clients)]
    tallies = [Tally() for _ in range(clients)]
    seen: list[dict[str, int]] = [{} for _ in range(clients)]
    connections = [_Client(host, port, api_key) for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    workers = [threading.Thread(target=_worker, args=(connections[i], requests, workload, reference, version,
                                                      orders[i], start, tallies[i], seen[i]),
                                name=f"edgerec-http-load-{i}", daemon=True) for i in range(clients)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - began
    for connection in connections:
        connection.close()
    versions: dict[str, int] = {}
    for counts in seen:
        for served, count in counts.items():
            versions[served] = versions.get(served, 0) + count
    return summarize(clients, seconds, tallies, None, None), dict(sorted(versions.items()))


def format_http_report(report: HttpLoadReport) -> list[str]:
    mix = ", ".join(f"{count} {kind}" for kind, count in report.workload.items())
    lines = [
        f"{report.url}: bundle {report.bundle} {report.version}, {report.items} items; workload of "
        f"{sum(report.workload.values())} calls ({mix}), seed {report.seed}; warm-up {report.warmup} calls; "
        f"{report.queries_per_client} calls per client",
        "clients  calls      QPS   p50 ms   p95 ms   p99 ms   max ms  expected-4xx  unexpected  mismatches"
        "  answers by version",
    ]
    for run, versions in zip(report.runs, report.versions):
        by_version = ", ".join(f"{v}: {n}" for v, n in versions.items()) or "-"
        lines.append(
            f"{run.threads:>7}  {run.calls:>5}  {run.qps:>7.1f}  {run.p50_ms:>7.2f}  {run.p95_ms:>7.2f}  "
            f"{run.p99_ms:>7.2f}  {run.max_ms:>7.2f}  {run.expected_errors:>12}  {run.unexpected_errors:>10}  "
            f"{run.mismatches:>10}  {by_version}"
        )
        lines.extend(f"         ! {problem}" for problem in run.problems)
    return lines

