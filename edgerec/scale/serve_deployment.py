"""`edgerec serve` as a Ray Serve deployment: the same starlette app (edgerec.serve.app), one per replica.

Each replica loads the bundle once, in its constructor, then hands Ray Serve the app from
``create_app`` through Serve's ASGI ingress: same routes, bodies, errors, auth and reloading as
`edgerec serve`, no second API. Ray Serve's proxy spreads requests over the replicas and its
autoscaler adds or removes replicas by requests in flight.

    python -m edgerec.scale.serve_deployment --bundle B --replicas 2
    python -m edgerec.scale.serve_deployment --bundle B --min-replicas 1 --max-replicas 4
    serve run deploy/ray-serve.yaml          # the same, from a Serve config file

What changes behind Ray: /metrics answers for whichever replica the request reached (Ray exports
its own per-deployment metrics for the whole); /readyz is ready once a replica is up, as Serve
starts routing to a replica only after its constructor has loaded the bundle.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Mapping, Sequence

from ..errors import EdgerecError, one_line

# Requests one replica holds at once: its app answers ``threads`` at a time, the rest wait in its queue.
QUEUED_PER_THREAD = 4


class EdgerecReplica:
    """One replica: a LiveBundle loaded here, so a replica that cannot load it fails to start (and Serve
    says why) instead of answering 503 for ever."""

    def __init__(self, bundle: str, threads: int = 1, poll_seconds: float = 2.0,
                 api_key_file: str | None = None) -> None:
        from ..serve.auth import ApiKey
        from ..serve.reloader import LiveBundle

        self.key = ApiKey.from_file(api_key_file) if api_key_file else None
        self.threads = threads
        self.poll_seconds = poll_seconds
        self.live = LiveBundle(bundle, ort_threads=threads)
        self.live.load()

    async def __serve_build_asgi_app__(self) -> Any:
        from ..serve.app import create_app

        return create_app(self.live, api_key=self.key, threads=self.threads, poll_seconds=self.poll_seconds)

    def check_health(self) -> None:
        """Ray Serve's health check: a replica whose bundle went away is replaced."""
        if self.live.current is None:
            raise RuntimeError("edgerec: no bundle loaded")


def deployment_options(*, replicas: int | None, min_replicas: int | None, max_replicas: int | None,
                       threads: int) -> dict[str, Any]:
    """Ray Serve's options: a fixed number of replicas, or autoscaling between min and max."""
    options: dict[str, Any] = {"name": "edgerec", "ray_actor_options": {"num_cpus": threads},
                               "max_ongoing_requests": QUEUED_PER_THREAD * threads}
    if max_replicas is None:
        options["num_replicas"] = replicas or 1
        return options
    low = 1 if min_replicas is None else min_replicas
    if not 0 <= low <= max_replicas or max_replicas < 1:
        raise ValueError(f"need 0 <= --min-replicas <= --max-replicas and --max-replicas >= 1, "
                         f"got {low} and {max_replicas}")
    # Scale up when replicas hold more requests than their threads answer at once.
    options["autoscaling_config"] = {"min_replicas": low, "max_replicas": max_replicas,
                                     "target_ongoing_requests": threads, "upscale_delay_s": 10,
                                     "downscale_delay_s": 120}
    return options


def edgerec_app(bundle: str, *, replicas: int | None = 1, min_replicas: int | None = None,
                max_replicas: int | None = None, threads: int = 1, poll_seconds: float = 2.0,
                api_key_file: str | None = None) -> Any:
    """The Ray Serve application (a bound deployment), for ``serve.run``."""
    from ray import serve

    options = deployment_options(replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas,
                                 threads=threads)
    deployment = serve.deployment(**options)(serve.ingress()(EdgerecReplica))
    return deployment.bind(bundle, threads, poll_seconds, api_key_file)


def build(args: Mapping[str, Any]) -> Any:
    """Application builder for a Serve config file (deploy/ray-serve.yaml): ``args`` are its ``args:``."""
    known = {"bundle", "replicas", "min_replicas", "max_replicas", "threads", "poll_seconds", "api_key_file"}
    unknown = sorted(set(args) - known)
    if unknown or "bundle" not in args:
        raise ValueError(f"edgerec: args needs 'bundle' and takes only {sorted(known)}; got unknown {unknown}")
    rest = {k: v for k, v in args.items() if k != "bundle"}
    return edgerec_app(str(args["bundle"]), **rest)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edgerec.scale.serve_deployment",
                                     description="Serve a bundle on Ray Serve, with replicas.")
    parser.add_argument("--bundle", required=True, help="bundle directory or bundle home (every node must see it)")
    parser.add_argument("--replicas", type=int, default=1, help="fixed number of replicas")
    parser.add_argument("--min-replicas", type=int, default=None, help="with --max-replicas: autoscale")
    parser.add_argument("--max-replicas", type=int, default=None, help="autoscale up to this many replicas")
    parser.add_argument("--threads", type=int, default=1, help="requests a replica answers at once (its CPUs)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key-file", default=None, help="as `edgerec serve`: needed off loopback")
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance")
    args = parser.parse_args(argv)
    try:
        from ..bundle.reader import open_bundle
        from ..serve.auth import ApiKey, check_exposure

        check_exposure(args.host, ApiKey.from_file(args.api_key_file) if args.api_key_file else None)
        open_bundle(args.bundle)  # a bad bundle is one line here, not a replica that keeps failing to start
        options = deployment_options(replicas=args.replicas, min_replicas=args.min_replicas,
                                     max_replicas=args.max_replicas, threads=args.threads)
    except EdgerecError as exc:
        print(f"edgerec: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"edgerec: error: {one_line(exc)}", file=sys.stderr)
        return 2
    try:
        import ray
        from ray import serve
    except ImportError:
        print("edgerec: error: Ray Serve needs the ray extra: pip install 'edgerec[ray]'", file=sys.stderr)
        return 1
    ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False, configure_logging=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(edgerec_app(args.bundle, replicas=args.replicas, min_replicas=args.min_replicas,
                              max_replicas=args.max_replicas, threads=args.threads,
                              api_key_file=args.api_key_file), name="edgerec", route_prefix="/")
        scaling = options.get("autoscaling_config")
        print(f"edgerec: serving {args.bundle} on http://{args.host}:{args.port} with "
              + (f"{scaling['min_replicas']}-{scaling['max_replicas']} replicas (autoscaling)" if scaling
                 else f"{options['num_replicas']} replicas"), file=sys.stderr)
        stop.wait()
    except Exception as exc:  # noqa: BLE001 - a replica that cannot start arrives as Ray's error, many lines long
        print(f"edgerec: error: Ray Serve could not run the deployment: {type(exc).__name__}: {one_line(exc)}",
              file=sys.stderr)
        return 1
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
