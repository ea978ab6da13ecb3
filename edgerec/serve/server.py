"""Run the app under uvicorn: the checks before listening, signals, and a clean exit.

Before a socket is opened: the API key file is read and the bind address checked (a non-loopback
address needs a key), so a misconfiguration is one line and exit 2, not a server that is open to
the network. uvicorn handles SIGTERM and SIGINT (stop accepting, let in-flight requests finish,
then exit); SIGHUP asks the reloader for the home's current version now.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass

from ..errors import EdgerecError
from .auth import ApiKey, check_exposure

# How long SIGTERM waits for in-flight requests; each takes milliseconds, so this is generous.
GRACEFUL_SHUTDOWN_SECONDS = 10


@dataclass(frozen=True)
class ServeOptions:
    bundle: str | None
    host: str = "127.0.0.1"
    port: int = 8080
    api_key_file: str | None = None
    threads: int | None = None  # requests answered at once; None: one per core
    poll_seconds: float = 2.0


def run_server(options: ServeOptions) -> None:
    """Serve until SIGTERM/SIGINT. Raises EdgerecError (exit codes as elsewhere) on a bad setup or
    a bundle that cannot be loaded."""
    key = ApiKey.from_file(options.api_key_file) if options.api_key_file is not None else None
    check_exposure(options.host, key)
    try:
        import uvicorn

        from .app import create_app
        from .reloader import LiveBundle
    except ImportError as exc:
        raise EdgerecError(f"edgerec serve needs the serve extra ({exc.name} is missing): "
                           "pip install 'edgerec[serve]'") from None

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    threads = options.threads or _cores()
    failure: list[EdgerecError] = []
    server: uvicorn.Server | None = None

    def stop_on_load_error(exc: EdgerecError) -> None:
        failure.append(exc)
        if server is not None:
            server.should_exit = True  # what SIGTERM does: exit, with the load error as the reason

    app = create_app(LiveBundle(options.bundle), api_key=key, threads=threads, poll_seconds=options.poll_seconds,
                     on_load_error=stop_on_load_error)
    config = uvicorn.Config(app, host=options.host, port=options.port, lifespan="on", log_level="warning",
                            access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                            server_header=False)
    server = uvicorn.Server(config)
    sock = _listen(options.host, options.port)
    # uvicorn installs its own SIGTERM/SIGINT handlers while it runs and leaves SIGHUP alone. Once it
    # has drained, it restores the handlers found and raises the signal again: with these, a graceful
    # stop ends the process with exit 0 instead of death by signal (or click's "Aborted!").
    previous = {signal.SIGHUP: signal.signal(signal.SIGHUP, lambda signum, frame: app.state.reloader.request()),
                **{sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}}
    logging.getLogger("edgerec.serve").info(
        "edgerec: starting on http://%s:%d (%d threads, %s, reload %s)", options.host, options.port, threads,
        "API key required on /v1" if key else "no API key", f"every {options.poll_seconds:g} s and on SIGHUP"
        if options.poll_seconds > 0 else "on SIGHUP")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        raise failure[0]


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, opened here so that a taken port is one line and exit 1 (uvicorn logs it
    and calls sys.exit).

    proto must say TCP: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    without it (socket.create_server leaves proto 0) Nagle's algorithm holds the response body back
    until the client's delayed ACK: 40 ms on every keep-alive request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise EdgerecError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _cores() -> int:
    """Cores this process may use (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no sched_getaffinity
        return os.cpu_count() or 1


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(0)
