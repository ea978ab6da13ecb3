"""`edgerec serve` over real HTTP on loopback, on the tiny test bundles.

Each server is the real app under uvicorn in a background thread, on a port the OS picked; one
test runs `edgerec serve` as a process, for the signals (SIGHUP reloads, SIGTERM exits cleanly).
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install -e '.[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("prometheus_client", reason="the serve extra is not installed: pip install -e '.[serve]'")

from bundle_damage import REPO, child_env  # noqa: E402
from edgerec import Recommender  # noqa: E402
from edgerec.cli import main  # noqa: E402
from edgerec.recommender import MAX_K  # noqa: E402
from edgerec.serve.app import create_app  # noqa: E402
from edgerec.serve.server import _listen  # noqa: E402
from edgerec.serve.reloader import Loaded, LiveBundle, bundle_identity  # noqa: E402
from edgerec.update.store import Store  # noqa: E402

KEY = "test-key-0123456789"
UPDATE = [
    {"id": "new-1", "title": "Space Robot Heist", "year": 2001, "genres": ["Sci-Fi"]},
    {"id": "item-003", "title": "Changed Title Of War", "year": 1990, "genres": ["Drama"]},
]


class Served:
    """A running server: its base URL, the app (for its state) and uvicorn's Server."""

    def __init__(self, app: Any, server: Any, port: int) -> None:
        self.app, self.server, self.port = app, server, port
        self.url = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            connection.request(method, path, body=data, headers=headers or {})
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        is_json = response.getheader("content-type", "").startswith("application/json")
        return response.status, json.loads(payload) if is_json else payload.decode()

    def wait_ready(self, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.call("GET", "/readyz")
            if status == 200:
                return body
            time.sleep(0.02)
        raise AssertionError(f"not ready after {timeout} s: {body}")


@contextmanager
def serving(app: Any) -> Iterator[Served]:
    sock = _listen("127.0.0.1", 0)  # the socket `edgerec serve` opens
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield Served(app, server, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def server(tiny_bundle: Path) -> Iterator[Served]:
    with serving(create_app(LiveBundle(tiny_bundle), threads=2, poll_seconds=0)) as served:
        served.wait_ready()
        yield served


@pytest.fixture(scope="module")
def keyed(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from edgerec.serve.auth import ApiKey

    key_file = tmp_path_factory.mktemp("key") / "key"
    key_file.write_text(KEY + "\n")
    with serving(create_app(LiveBundle(tiny_bundle), api_key=ApiKey.from_file(key_file), poll_seconds=0)) as served:
        served.wait_ready()
        yield served


def library(results: list) -> list[dict]:
    return [{"item_id": r.item_id, "score": round(r.score, 6), "metadata": dict(r.metadata)} for r in results]


# -- health, readiness, answers -------------------------------------------------------------------

def test_alive_and_ready_name_the_bundle(server: Served) -> None:
    assert server.call("GET", "/healthz") == (200, {"status": "alive"})
    status, body = server.call("GET", "/readyz")
    assert status == 200 and body["bundle"]["name"] == "tiny" and body["bundle"]["version"].startswith("sha256:")


def test_not_ready_until_loaded_and_warm(tiny_recommender: Recommender) -> None:
    release = threading.Event()

    class SlowToLoad(LiveBundle):
        def load(self) -> Loaded:
            release.wait(10)
            return super().load()

    with serving(create_app(SlowToLoad(tiny_recommender.bundle.root), poll_seconds=0)) as served:
        assert served.call("GET", "/healthz")[0] == 200  # alive while loading
        status, body = served.call("GET", "/readyz")
        assert status == 503 and body["error"]["code"] == "not_ready"
        status, body = served.call("POST", "/v1/query", {"text": "space"})
        assert status == 503 and body["error"]["code"] == "not_ready"
        release.set()
        served.wait_ready()
        assert served.call("POST", "/v1/query", {"text": "space"})[0] == 200


@pytest.mark.parametrize("path, body, answer", [
    ("/v1/query", {"text": "space robot", "k": 5}, lambda r: r.query("space robot", k=5)),
    ("/v1/query", {"text": "a love story"}, lambda r: r.query("a love story")),  # k defaults to 10
    ("/v1/similar", {"item_id": "item-002", "k": 3}, lambda r: r.similar("item-002", k=3)),
    ("/v1/recommend", {"history": ["item-001", "item-002"], "k": 4},
     lambda r: r.recommend(["item-001", "item-002"], k=4)),
    ("/v1/recommend", {"history": ["item-001", "item-002"], "k": 4, "exclude_seen": False},
     lambda r: r.recommend(["item-001", "item-002"], k=4, exclude_seen=False)),
])
def test_answers_equal_the_library(server: Served, tiny_recommender: Recommender, path: str, body: dict,
                                   answer: Any) -> None:
    status, got = server.call("POST", path, body)
    assert status == 200
    assert got["items"] == library(answer(tiny_recommender))
    assert got["bundle"] == server.call("GET", "/readyz")[1]["bundle"]


def test_item_lookup(server: Served, tiny_recommender: Recommender) -> None:
    status, got = server.call("GET", "/v1/items/item-001")
    record = tiny_recommender.items.records[tiny_recommender.items.labels["item-001"]]
    assert status == 200 and got["item"] == {"item_id": "item-001",
                                             "metadata": {k: v for k, v in record.items() if k != "id"}}


def test_keep_alive_requests_are_not_held_back_by_nagle(server: Served) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    times = []
    try:
        for _ in range(9):
            began = time.perf_counter()
            connection.request("POST", "/v1/query", body=b'{"text": "space robot"}')
            assert connection.getresponse().read()
            times.append(time.perf_counter() - began)
    finally:
        connection.close()
    assert sorted(times)[4] < 0.02, times  # Nagle + delayed ACK would make each about 40 ms


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, raw, status, code", [
    ("POST", "/v1/query", b"{not json", 400, "malformed_json"),
    ("POST", "/v1/query", b'{"text": "\xff\xfe"}', 400, "malformed_json"),
    ("POST", "/v1/query", b"[" * 60_000, 400, "malformed_json"),
    ("POST", "/v1/query", b"", 400, "malformed_json"),
    ("POST", "/v1/query", b'["space"]', 422, "invalid_body"),
    ("POST", "/v1/query", b'{"text": "space", "K": 5}', 422, "unknown_field"),
    ("POST", "/v1/query", b'{"k": 5}', 422, "missing_field"),
    ("POST", "/v1/query", b'{"text": 5}', 422, "invalid_type"),
    ("POST", "/v1/query", b'{"text": "space", "k": "5"}', 422, "invalid_type"),
    ("POST", "/v1/query", b'{"text": "space", "k": true}', 422, "invalid_type"),
    ("POST", "/v1/query", b'{"text": "space", "k": 2.0}', 422, "invalid_type"),
    ("POST", "/v1/query", b'{"text": "space", "k": 0}', 422, "invalid_value"),
    ("POST", "/v1/query", json.dumps({"text": "space", "k": MAX_K + 1}).encode(), 422, "invalid_value"),
    ("POST", "/v1/query", b'{"text": "space", "k": 1e999}', 422, "invalid_type"),
    ("POST", "/v1/query", b'{"text": " \\t\\u200b "}', 422, "empty_query"),
    ("POST", "/v1/similar", b'{"item_id": "no such item \\u001b[2J"}', 404, "unknown_item"),
    ("POST", "/v1/similar", b'{"item_id": ["item-001"]}', 422, "invalid_type"),
    ("POST", "/v1/recommend", b'{"history": ["item-001", "nope"]}', 404, "unknown_item"),
    ("POST", "/v1/recommend", b'{"history": "item-001"}', 422, "invalid_type"),
    ("POST", "/v1/recommend", b'{"history": []}', 422, "empty_query"),
    ("POST", "/v1/recommend", b'{"history": ["item-001"], "exclude_seen": "no"}', 422, "invalid_type"),
    ("GET", "/v1/items/no-such-item", None, 404, "unknown_item"),
    ("GET", "/v1/nothing-here", None, 404, "not_found"),
    ("GET", "/v1/query", None, 405, "method_not_allowed"),
    ("POST", "/v1/query", json.dumps({"text": "word " * 20_000}).encode(), 413, "body_too_large"),
])
def test_errors_are_json_with_the_right_status(server: Served, method: str, path: str, raw: bytes | None,
                                               status: int, code: str) -> None:
    got_status, body = server.call(method, path, raw=raw)
    assert (got_status, body["error"]["code"]) == (status, code), body
    message = body["error"]["message"]
    assert isinstance(message, str) and 0 < len(message) <= 300 and "Traceback" not in message


def test_a_body_over_the_limit_without_content_length_is_413(server: Served) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        chunks = (b'{"text": "' + b"word " * 5000, b"word " * 10_000 + b'"}')
        connection.request("POST", "/v1/query", body=iter(chunks), encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413 and json.loads(response.read())["error"]["code"] == "body_too_large"
    finally:
        connection.close()
    assert server.call("GET", "/healthz")[0] == 200


def test_unforeseen_errors_are_500_json_without_internals(tiny_recommender: Recommender) -> None:
    class Broken(Recommender):
        def query(self, text: str, k: int = 10, **kw: Any) -> list:
            raise RuntimeError("secret internals")

    r = tiny_recommender
    live = LiveBundle(r.bundle.root)
    live.current = Loaded(Broken(r.bundle, r.encoder, r.index, r.items), "tiny", "broken")
    with serving(create_app(live, poll_seconds=0)) as served:
        status, body = served.call("POST", "/v1/query", {"text": "space"})
        assert status == 500 and body["error"]["code"] == "internal"
        assert "secret" not in body["error"]["message"]
        assert served.call("POST", "/v1/similar", {"item_id": "item-001"})[0] == 200


# -- auth -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                                     {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer "}])
def test_v1_needs_the_key(keyed: Served, headers: dict) -> None:
    status, body = keyed.call("POST", "/v1/query", {"text": "space"}, headers=headers)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert keyed.call("GET", "/v1/items/item-001", headers=headers)[0] == 401


def test_the_key_opens_v1_and_probes_stay_open(keyed: Served) -> None:
    assert keyed.call("POST", "/v1/query", {"text": "space"}, headers={"Authorization": f"Bearer {KEY}"})[0] == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert keyed.call("GET", path)[0] == 200


@pytest.mark.parametrize("args, message", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0 without --api-key-file"),
    (["--host", "example.com"], "--host example.com without --api-key-file"),
    (["--api-key-file", "/no/such/key"], "no such file"),
    (["--api-key-file", "EMPTY"], "is empty"),
])
def test_unsafe_or_broken_setups_are_refused_before_listening(tiny_bundle: Path, tmp_path: Path, args: list,
                                                              message: str) -> None:
    (tmp_path / "empty").write_text(" \n")
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    result = CliRunner().invoke(main, ["serve", "--bundle", str(tiny_bundle), *args])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert result.stderr.startswith("edgerec: error: ")


def test_without_the_extra_serve_says_how_to_install_it(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what an absent package looks like to import
    result = CliRunner().invoke(main, ["serve", "--bundle", str(tiny_bundle)])
    assert result.exit_code == 1, result.output
    assert result.stderr == "edgerec: error: edgerec serve needs the serve extra (uvicorn is missing): " \
                            "pip install 'edgerec[serve]'\n"


def test_a_taken_port_is_one_line_and_exit_1(tiny_bundle: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--bundle", str(tiny_bundle), "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"edgerec: error: cannot listen on 127.0.0.1:{port}: ")
    assert len(result.stderr.splitlines()) == 1


def test_a_bundle_that_cannot_load_exits_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--bundle", str(tmp_path / "missing"), "--port", "0"])
    assert result.exit_code == 3, result.output
    assert result.stderr.splitlines()[-1].startswith("edgerec: error: ") and "no such bundle" in result.stderr


# -- metrics --------------------------------------------------------------------------------------

def test_metrics_text_has_the_series(server: Served) -> None:
    server.call("POST", "/v1/query", {"text": "space"})
    server.call("POST", "/v1/query", {"text": ""})
    server.call("GET", "/no/such/route/123")
    status, text = server.call("GET", "/metrics")
    assert status == 200
    assert 'edgerec_requests_total{endpoint="/v1/query",status="200"}' in text
    assert 'edgerec_requests_total{endpoint="/v1/query",status="422"}' in text
    assert 'edgerec_requests_total{endpoint="other",status="404"}' in text  # raw paths never become labels
    assert 'edgerec_request_duration_seconds_bucket{endpoint="/v1/query",le="0.005"}' in text
    version = server.call("GET", "/readyz")[1]["bundle"]["version"]
    assert f'edgerec_bundle_info{{name="tiny",version="{version}"}} 1.0' in text
    assert "edgerec_ready 1.0" in text


# -- reload, drain --------------------------------------------------------------------------------

def _update(home: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "update.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in UPDATE))
    Store(home).add(catalog, threads=1)


def _wait_for_version(served: Served, version: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while served.call("GET", "/readyz")[1]["bundle"]["version"] != version:
        assert time.monotonic() < deadline, f"still not serving {version}"
        time.sleep(0.05)


def test_polling_picks_up_a_new_home_version(tiny_bundle: Path, tmp_path: Path) -> None:
    home = Store.create(tmp_path / "home", tiny_bundle).home
    with serving(create_app(LiveBundle(home), poll_seconds=0.1)) as served:
        assert served.wait_ready()["bundle"]["version"] == "v000001"
        status, before = served.call("POST", "/v1/similar", {"item_id": "item-002", "k": 5})
        assert status == 200 and before["bundle"]["version"] == "v000001"
        _update(home, tmp_path)
        _wait_for_version(served, "v000002")
        status, after = served.call("POST", "/v1/similar", {"item_id": "item-002", "k": 5})
        assert after["bundle"]["version"] == "v000002"
        assert after["items"] == library(Recommender.load(home).similar("item-002", k=5))
        assert served.call("GET", "/v1/items/new-1")[1]["item"]["metadata"]["title"] == "Space Robot Heist"
        text = served.call("GET", "/metrics")[1]
        assert 'edgerec_reloads_total{outcome="swapped"} 1.0' in text
        assert 'edgerec_bundle_info{name="tiny",version="v000002"} 1.0' in text
        assert 'version="v000001"' not in text


def test_no_request_fails_while_a_new_version_is_swapped_in(tiny_bundle: Path, tmp_path: Path) -> None:
    from edgerec.tools.loadtest_http import run_http_loadtest

    home = Store.create(tmp_path / "home", tiny_bundle).home
    reference = Recommender.load(home)  # v000001: its answers are compared, v000002's counted
    reports: list = []
    with serving(create_app(LiveBundle(home), poll_seconds=0.05)) as served:
        served.wait_ready()
        load = threading.Thread(target=lambda: reports.append(
            run_http_loadtest(served.url, reference, clients=[4], queries=1000, warmup=0)))
        load.start()
        # The update starts once the load has reached the server (the load test first works out its
        # expected answers, which takes a while on a busy machine).
        deadline = time.monotonic() + 60
        while 'endpoint="/v1/query",status="200"' not in served.call("GET", "/metrics")[1]:
            assert time.monotonic() < deadline, "no load reached the server"
            time.sleep(0.02)
        _update(home, tmp_path)
        load.join(120)
    run, versions = reports[0].runs[0], reports[0].versions[0]
    assert run.unexpected_errors == 0 and run.mismatches == 0, run.problems
    assert versions.get("v000001", 0) > 0 and versions.get("v000002", 0) > 0, versions


def test_a_damaged_new_version_is_not_served(tiny_bundle: Path, tmp_path: Path) -> None:
    home = Store.create(tmp_path / "home", tiny_bundle).home
    with serving(create_app(LiveBundle(home), poll_seconds=0.05)) as served:
        served.wait_ready()
        shutil.copytree(home / "v000001", home / "v000002")
        with open(home / "v000002" / "items.jsonl", "r+b") as items:
            items.write(b"X")  # one byte changed: its sha256 no longer matches the manifest
        (home / "current").write_text(json.dumps({"format": "edgerec-home", "current": "v000002",
                                                  "previous": "v000001"}))
        deadline = time.monotonic() + 20
        while 'edgerec_reloads_total{outcome="failed"} 1.0' not in served.call("GET", "/metrics")[1]:
            assert time.monotonic() < deadline, "the reload never failed"
            time.sleep(0.05)
        assert served.call("GET", "/readyz")[1]["bundle"]["version"] == "v000001"
        status, body = served.call("POST", "/v1/similar", {"item_id": "item-001"})
        assert status == 200 and body["bundle"]["version"] == "v000001"
        time.sleep(0.3)  # a failed version is not retried on every poll
        assert 'edgerec_reloads_total{outcome="failed"} 1.0' in served.call("GET", "/metrics")[1]


def test_sighup_reloads_and_sigterm_exits_cleanly(tiny_bundle: Path, tmp_path: Path) -> None:
    home = Store.create(tmp_path / "home", tiny_bundle).home
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "edgerec", "serve", "--bundle", str(home), "--port", str(port),
                                "--poll-seconds", "0", "--threads", "1"], cwd=REPO, env=child_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        served = Served(None, None, port)
        deadline = time.monotonic() + 30
        while True:
            try:
                served.wait_ready(timeout=1)
                break
            except (OSError, AssertionError):
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
                time.sleep(0.1)
        _update(home, tmp_path)
        time.sleep(0.3)
        assert served.call("GET", "/readyz")[1]["bundle"]["version"] == "v000001"  # no polling: still the old one
        process.send_signal(signal.SIGHUP)
        _wait_for_version(served, "v000002")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_shutdown_lets_in_flight_requests_finish(tiny_recommender: Recommender) -> None:
    entered = threading.Event()

    class Slow(Recommender):
        def query(self, text: str, k: int = 10, **kw: Any) -> list:
            entered.set()
            time.sleep(0.5)
            return super().query(text, k)

    r = tiny_recommender
    live = LiveBundle(r.bundle.root)
    live.current = Loaded(Slow(r.bundle, r.encoder, r.index, r.items), "tiny", "slow")
    outcome: list = []
    with serving(create_app(live, poll_seconds=0)) as served:
        client = threading.Thread(target=lambda: outcome.append(served.call("POST", "/v1/query", {"text": "space"})))
        client.start()
        assert entered.wait(10)
        served.server.should_exit = True  # what uvicorn's SIGTERM handler does
        client.join(10)
    assert outcome and outcome[0][0] == 200 and outcome[0][1]["items"] == library(r.query("space"))


# -- the HTTP load test, and the runtime without the extra ------------------------------------------

def test_loadtest_over_http(server: Served, tiny_bundle: Path) -> None:
    result = CliRunner().invoke(main, ["loadtest", "--url", server.url, "--bundle", str(tiny_bundle),
                                       "--threads", "1,3", "--queries", "40", "--warmup", "10", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["items"] == 120
    for run, versions in zip(report["runs"], report["versions"]):
        assert run["calls"] == 40 * run["threads"] and run["unexpected_errors"] == 0 and run["mismatches"] == 0
        assert run["expected_errors"] > 0 and 0 < run["p50_ms"] <= run["p99_ms"]
        assert versions == {report["version"]: run["calls"] - run["expected_errors"]}


def test_loadtest_finds_wrong_answers_over_http(tiny_recommender: Recommender, tiny_bundle: Path) -> None:
    class Reversed(Recommender):
        def similar(self, item_id: str, k: int = 10) -> list:
            return super().similar(item_id, k)[::-1]

    r = tiny_recommender
    live = LiveBundle(r.bundle.root)
    live.current = Loaded(Reversed(r.bundle, r.encoder, r.index, r.items), *bundle_identity(r.bundle))
    with serving(create_app(live, poll_seconds=0)) as served:
        result = CliRunner().invoke(main, ["loadtest", "--url", served.url, "--bundle", str(tiny_bundle),
                                           "--threads", "2", "--queries", "60", "--warmup", "0"])
    assert result.exit_code == 1
    assert "answer differs from the in-process one" in result.stdout
    assert result.stderr.startswith("edgerec: error: loadtest failed: 0 unexpected errors, ")


@pytest.mark.parametrize("url", ["http://10.1.2.3:8080", "https://127.0.0.1:8080", "http://example.com",
                                 "http://127.0.0.1:99999", "127.0.0.1:8080"])
def test_loadtest_only_drives_loopback_servers(tiny_bundle: Path, url: str) -> None:
    result = CliRunner().invoke(main, ["loadtest", "--url", url, "--bundle", str(tiny_bundle)])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and "--url" in result.stderr


def test_the_runtime_does_not_import_the_serve_extra() -> None:
    code = ("import sys, edgerec, edgerec.cli; from click.testing import CliRunner; "
            "assert CliRunner().invoke(edgerec.cli.main, ['--help']).exit_code == 0; "
            "print(sorted(m for m in sys.modules "
            "             if m.split('.')[0] in ('starlette', 'uvicorn', 'prometheus_client', 'anyio')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env(), capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
