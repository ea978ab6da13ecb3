"""The Ray paths on a local Ray instance (2 CPUs): the encoding job's shards build the same bundle as
`edgerec build`, and the Ray Serve deployment (2 replicas) answers as the library does.

One Ray instance for the module: starting Ray costs several seconds.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
pytest.importorskip("ray.serve", reason="the ray extra is not installed: pip install -e '.[ray]'")
pytest.importorskip("starlette", reason="the serve extra is not installed: pip install -e '.[serve]'")

from edgerec import Recommender  # noqa: E402
from edgerec.cli import main  # noqa: E402
from edgerec.scale.encode_job import encode_catalog  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def answers(rec: Recommender) -> list[list[tuple[str, float]]]:
    return [[(r.item_id, round(r.score, 5)) for r in found] for found in
            (rec.query("space robot", k=10), rec.query("a love story", k=10), rec.similar("item-002", k=10),
             rec.recommend(["item-001", "item-002"], k=10))]


def test_shards_from_ray_build_the_bundle_edgerec_build_builds(local_ray: None, tiny_fp32_bundle: Path,
                                                                tmp_path: Path) -> None:
    catalog = shutil.copyfile(tiny_fp32_bundle / "items.jsonl", tmp_path / "items.jsonl")
    shards = encode_catalog(catalog, tmp_path / "shards", model=tiny_fp32_bundle, concurrency=2, shard_rows=25)
    assert len(shards) >= 5 and sum(s.count for s in shards) == 120  # 120 items, in batches of at most 25
    runner = CliRunner()
    for out, extra in (("from-shards", ["--vectors", str(tmp_path / "shards")]), ("plain", [])):
        result = runner.invoke(main, ["build", str(catalog), "--out", str(tmp_path / out),
                                      "--bundle", str(tiny_fp32_bundle), *extra])
        assert result.exit_code == 0, result.output
    assert answers(Recommender.load(tmp_path / "from-shards", threads=1)) == \
        answers(Recommender.load(tmp_path / "plain", threads=1))


def test_the_job_refuses_a_catalogue_it_cannot_split_by_lines(local_ray: None, tiny_fp32_bundle: Path,
                                                               tmp_path: Path) -> None:
    from edgerec.errors import CatalogError

    catalog = tmp_path / "items.csv"
    catalog.write_text("id,title\na,Space robots\nb,A love story\n")
    with pytest.raises(CatalogError, match="JSON Lines"):
        encode_catalog(catalog, tmp_path / "shards", model=tiny_fp32_bundle, concurrency=1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(port: int, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_ray_serve_replicas_answer_as_the_library(local_ray: None, tiny_bundle: Path,
                                                  tiny_recommender: Recommender) -> None:
    from ray import serve

    from edgerec.scale.serve_deployment import edgerec_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(edgerec_app(str(tiny_bundle), replicas=2), name="edgerec", route_prefix="/")
        status = serve.status().applications["edgerec"].deployments["edgerec"]
        assert status.replica_states.get("RUNNING") == 2
        for _ in range(6):  # several requests: the proxy spreads them over both replicas
            code, got = _post(port, "/v1/query", {"text": "space robot", "k": 5})
            assert code == 200
            assert [(i["item_id"], i["score"]) for i in got["items"]] == \
                [(r.item_id, round(r.score, 6)) for r in tiny_recommender.query("space robot", k=5)]
        code, got = _post(port, "/v1/similar", {"item_id": "no-such-item"})
        assert code == 404 and got["error"]["code"]  # the server's own error shape, through Ray
    finally:
        serve.shutdown()


def test_the_serve_config_file_builds_the_app() -> None:
    """deploy/ray-serve.yaml's import path and args make an application (no Ray instance needed)."""
    import importlib

    import yaml

    from bundle_damage import REPO

    config = yaml.safe_load((REPO / "deploy" / "ray-serve.yaml").read_text())["applications"][0]
    module, name = config["import_path"].split(":")
    builder = getattr(importlib.import_module(module), name)
    app = builder(config["args"])
    assert type(app).__name__ == "Application"
    with pytest.raises(ValueError, match="unknown \\['replica'\\]"):
        builder({**config["args"], "replica": 2})
