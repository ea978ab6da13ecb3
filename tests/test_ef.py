"""The HNSW search breadth: the bundle's default, set at build, overridden at load, refused when nonsense."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tiny import tiny_catalog
from edgerec import Recommender
from edgerec.update.build import build_from_catalog
from edgerec.cli import main
from edgerec.errors import InputError
from edgerec import index as index_module
from edgerec.index import IndexBuilder, default_ef


def test_ef_given_at_load_is_the_one_searched_with(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "EXACT_UP_TO", 0)  # through the graph, as a large catalogue is
    default = Recommender.load(tiny_bundle, threads=1)
    wide = Recommender.load(tiny_bundle, threads=1, ef=500)
    assert default.index._graph().ef == default.index.ef == default.bundle.manifest.index.ef
    assert wide.index._graph().ef == wide.index.ef == 500
    # A breadth above the item count makes the walk exhaustive: the answer is the exact one.
    vector = wide.encode("dog")[0]
    exact = (wide.index.vectors(range(len(wide))) @ vector).argsort()[::-1][:10]
    assert wide.index.search(vector, 10)[0].tolist() == exact.tolist()
    assert wide.reload() is wide  # nothing changed on disk


@pytest.mark.parametrize("ef, error", [(0, InputError), (-3, InputError), ("64", TypeError), (2.5, TypeError),
                                       (True, TypeError)])
def test_nonsense_ef_is_refused_by_name(tiny_bundle: Path, ef: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="ef"):
        Recommender.load(tiny_bundle, threads=1, ef=ef)  # type: ignore[arg-type]


def test_cli_ef_options(tiny_bundle: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    answered = runner.invoke(main, ["query", "dog", "--ef", "200", "--json", "--bundle", str(tiny_bundle)])
    assert answered.exit_code == 0 and len(answered.output.splitlines()) == 10
    refused = runner.invoke(main, ["query", "dog", "--ef", "0", "--bundle", str(tiny_bundle)])
    assert refused.exit_code == 2 and "--ef" in refused.output

    catalog = tmp_path / "items.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in tiny_catalog(40)))
    built = runner.invoke(main, ["build", str(catalog), "--out", str(tmp_path / "b"), "--ef", "321",
                                 "--bundle", str(tiny_bundle)])
    assert built.exit_code == 0, built.output
    assert Recommender.load(tmp_path / "b", threads=1).bundle.manifest.index.ef == 321


def test_a_new_bundle_searches_wider_the_more_items_it_holds(tiny_bundle: Path, tmp_path: Path) -> None:
    assert [default_ef(n) for n in (1, 5_000, 5_001, 100_000, 100_001, 10**6)] == [64, 64, 256, 256, 512, 512]
    assert IndexBuilder(6_000, 4).spec.ef == 256  # hnswlib allocates lazily: a capacity costs nothing here
    catalog = tmp_path / "items.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in tiny_catalog(40)))
    assert build_from_catalog(catalog, tmp_path / "b", base=tiny_bundle, threads=1).index.ef == 64
