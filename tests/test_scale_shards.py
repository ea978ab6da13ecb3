"""`edgerec build --vectors DIR`: vector shards (edgerec.scale.shards) become the bundle `edgerec build`
makes from the same catalogue, and shards that do not fit the catalogue or the model are refused in
one line. The shards here are written without Ray (tests/test_scale_ray.py runs the Ray job).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

from edgerec import Recommender
from edgerec.bundle.reader import open_bundle
from edgerec.cli import main
from edgerec.encoder import TextEncoder
from edgerec.items import item_text
from edgerec.scale.shards import MANIFEST_NAME, write_manifest, write_shard
from edgerec.update.build import plan_catalog

FIELDS = ("title", "genres")


def make_shards(model: Path, catalog: Path, out: Path, sizes: tuple[int, ...] = (50, 7, 63),
                change: Callable[[list[str], np.ndarray], None] | None = None) -> Path:
    """Shards of ``catalog`` by ``model``'s encoder, as the Ray job writes them (``change`` spoils them)."""
    bundle = open_bundle(model, model_ok=True)
    encoder = TextEncoder(bundle.path("encoder"), bundle.path("tokenizer"), bundle.manifest.encoder, threads=1)
    _, survey, _ = plan_catalog(catalog, FIELDS, "id")
    records = [json.loads(line) for line in catalog.read_text().splitlines()]
    ids = [r["id"] for r in records]
    vectors = encoder.encode([item_text(r, FIELDS) for r in records])
    if change is not None:
        change(ids, vectors)
    out.mkdir()
    shards, start = [], 0
    for number, size in enumerate(sizes):
        shards.append(write_shard(out, f"shard-{number}", ids[start : start + size], vectors[start : start + size]))
        start += size
    files = bundle.manifest.files
    write_manifest(out, shards, dim=bundle.manifest.encoder.dim, encoder_sha256=files["encoder"].sha256,
                   tokenizer_sha256=files["tokenizer"].sha256, id_field="id", text_fields=FIELDS,
                   catalog_sha256=survey.sha256)
    return out


@pytest.fixture()
def catalog(tiny_fp32_bundle: Path, tmp_path: Path) -> Path:
    return shutil.copyfile(tiny_fp32_bundle / "items.jsonl", tmp_path / "items.jsonl")


def build(catalog: Path, out: Path, model: Path, *extra: str):
    return CliRunner().invoke(main, ["build", str(catalog), "--out", str(out), "--bundle", str(model), *extra])


def test_a_bundle_from_shards_answers_as_one_built_by_encoding(tiny_fp32_bundle: Path, catalog: Path,
                                                                tmp_path: Path) -> None:
    shards = make_shards(tiny_fp32_bundle, catalog, tmp_path / "shards")
    assert build(catalog, tmp_path / "from-shards", tiny_fp32_bundle, "--vectors", str(shards)).exit_code == 0
    assert build(catalog, tmp_path / "plain", tiny_fp32_bundle, "--text-fields", ",".join(FIELDS)).exit_code == 0
    made, plain = (Recommender.load(tmp_path / name, threads=1) for name in ("from-shards", "plain"))
    for ask in (lambda r: r.query("space robot", k=20), lambda r: r.similar("item-002", k=20),
                lambda r: r.recommend(["item-001", "item-002"], k=20)):
        assert [(r.item_id, round(r.score, 5)) for r in ask(made)] == [(r.item_id, round(r.score, 5)) for r in ask(plain)]


def _swap_two(ids: list[str], vectors: np.ndarray) -> None:
    ids[3], ids[4] = ids[4], ids[3]


def _not_finite(ids: list[str], vectors: np.ndarray) -> None:
    vectors[60, 0] = np.nan


def _not_unit(ids: list[str], vectors: np.ndarray) -> None:
    vectors[100] *= 2


@pytest.mark.parametrize("change, message", [
    (_swap_two, "row 3 is item 'item-004' but the catalogue has 'item-003'"),
    (_not_finite, "row 60 is not finite"),
    (_not_unit, "row 100 has length 2.0000, not 1"),
])
def test_spoilt_vectors_are_refused(tiny_fp32_bundle: Path, catalog: Path, tmp_path: Path, change, message) -> None:
    shards = make_shards(tiny_fp32_bundle, catalog, tmp_path / "shards", change=change)
    result = build(catalog, tmp_path / "out", tiny_fp32_bundle, "--vectors", str(shards))
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing half-built is left


def _damage(shards: Path) -> None:
    data = bytearray((shards / "shard-1.npy").read_bytes())
    data[-1] ^= 1
    (shards / "shard-1.npy").write_bytes(bytes(data))


def _edit_catalog(catalog: Path) -> None:
    catalog.write_text(catalog.read_text().replace("Monster", "Monsters", 1))


@pytest.mark.parametrize("spoil, extra, message", [
    (lambda shards, catalog: _damage(shards), [], "shard-1.npy: its sha256 differs"),
    (lambda shards, catalog: (shards / MANIFEST_NAME).unlink(), [], "the encoding job did not finish"),
    (lambda shards, catalog: (shards / MANIFEST_NAME).write_text("{"), [], "not valid JSON"),
    (lambda shards, catalog: _edit_catalog(catalog), [], "not the catalogue the vectors"),
    (lambda shards, catalog: None, ["--text-fields", "title"], "were encoded from ['title', 'genres']"),
    (lambda shards, catalog: None, ["--id-field", "title"], "name items by 'id'"),
])
def test_shards_that_do_not_fit_are_refused(tiny_fp32_bundle: Path, catalog: Path, tmp_path: Path, spoil, extra,
                                            message) -> None:
    shards = make_shards(tiny_fp32_bundle, catalog, tmp_path / "shards")
    spoil(shards, catalog)
    result = build(catalog, tmp_path / "out", tiny_fp32_bundle, "--vectors", str(shards), *extra)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_vectors_of_another_model_are_refused(tiny_fp32_bundle: Path, tiny_bundle: Path, catalog: Path,
                                              tmp_path: Path) -> None:
    shards = make_shards(tiny_fp32_bundle, catalog, tmp_path / "shards")  # the INT8 bundle has the same dim
    result = build(catalog, tmp_path / "out", tiny_bundle, "--vectors", str(shards))
    assert result.exit_code == 2 and "made by another encoder" in result.output


def test_building_from_shards_needs_no_ray(tiny_fp32_bundle: Path, catalog: Path, tmp_path: Path) -> None:
    """`import edgerec`, `edgerec --help` and `edgerec build --vectors` import neither Ray nor what it brings."""
    import subprocess
    import sys

    from bundle_damage import REPO, child_env

    shards = make_shards(tiny_fp32_bundle, catalog, tmp_path / "shards")
    code = ("import sys, edgerec, edgerec.cli; from click.testing import CliRunner; "
            "assert CliRunner().invoke(edgerec.cli.main, ['--help']).exit_code == 0; "
            f"args = ['build', {str(catalog)!r}, '--out', {str(tmp_path / 'out')!r}, '--bundle', "
            f"{str(tiny_fp32_bundle)!r}, '--vectors', {str(shards)!r}]; "
            "assert CliRunner().invoke(edgerec.cli.main, args).exit_code == 0; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'pyarrow', 'pandas', 'starlette')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env(), capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]" and (tmp_path / "out" / "manifest.json").is_file()


def test_shards_do_not_build_into_a_bundle_home(tiny_fp32_bundle: Path, catalog: Path, tmp_path: Path) -> None:
    shards = make_shards(tiny_fp32_bundle, catalog, tmp_path / "shards")
    assert CliRunner().invoke(main, ["init", str(tmp_path / "home"), "--from", str(tiny_fp32_bundle)]).exit_code == 0
    result = build(catalog, tmp_path / "home", tiny_fp32_bundle, "--vectors", str(shards))
    assert result.exit_code == 2 and "is a bundle home; --vectors builds a new bundle directory" in result.output
