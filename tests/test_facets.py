"""Facets: the head for descriptive queries (edgerec.facets, export/facets.py).

The tiny bundle gets a head fit to a synthetic reading (a genre's words score
that genre high), so the tests know which genre a query describes."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgerec import Recommender
from edgerec.bundle import open_bundle
from edgerec.errors import BundleError, ManifestError
from edgerec.facets import QueryFacets, content_words
from edgerec.manifest import FacetSpec, Manifest
from export.facets import (STOPWORDS, FacetConfig, facets_file, fit_head, genre_centroids, write_with_facets)

from conftest import GENRES

# Words that describe each genre in the synthetic reading.
GENRE_WORDS = {
    "Horror": ("horror", "haunted", "scary", "ghost", "zombie", "monster"),
    "Sci-Fi": ("space", "alien", "robot", "future", "planet", "star"),
    "Romance": ("love", "romance"),
    "Comedy": ("funny", "comedy"),
}


def _reading(rec: Recommender) -> tuple[list[np.ndarray], np.ndarray]:
    """Phrases and their synthetic z-scores: 3 for the genre a phrase's word describes, -0.5 elsewhere."""
    ids, goal = [], []
    for genre, words in GENRE_WORDS.items():
        for word in words:
            for template in ("a {} movie", "{}", "something {}"):
                ids.append(rec.encoder.token_ids(template.format(word)))
                goal.append([3.0 if g == genre else -0.5 for g in GENRES])
    return ids, np.asarray(goal, dtype=np.float32)


def _with_facets(source: Path, out: Path, **spec_changes: object) -> Path:
    rec = Recommender.load(source, threads=1)
    ids, goal = _reading(rec)
    weights, bias, _ = fit_head(ids, goal, rec.encoder.spec.vocab_size, FacetConfig(epochs=60))
    records = [dict(r) for r in rec.items.records]
    popularity = np.arange(len(records)) % 7
    centroids = genre_centroids(rec.index.vectors(range(len(rec))), records, popularity, GENRES)
    spec = FacetSpec(names=GENRES, vocab_size=rec.encoder.spec.vocab_size, dim=rec.encoder.spec.dim,
                     temperature=0.2, max_margin=2.0, min_title_cover=2 / 3, weight=1.0, title_field="title",
                     stopwords=STOPWORDS)
    spec = replace(spec, **spec_changes)
    write_with_facets(open_bundle(source), out, facets_file(weights, bias, centroids), spec,
                      dict(rec.bundle.manifest.provenance))
    return out


@pytest.fixture(scope="module")
def facets_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _with_facets(tiny_bundle, tmp_path_factory.mktemp("facets") / "bundle")


@pytest.fixture(scope="module")
def facets_rec(facets_bundle: Path) -> Recommender:
    return Recommender.load(facets_bundle, threads=1)


def _genre_share(results: list, genre: str) -> float:
    return sum(genre in r.metadata["genres"] for r in results) / len(results)


def test_the_head_reads_the_genre_a_query_describes(facets_rec: Recommender) -> None:
    scores = facets_rec.facets.scores(facets_rec.encoder.token_ids("a scary haunted movie with a ghost"))
    assert int(np.argmax(scores)) == GENRES.index("Horror")
    # The mixture of a Horror reading lands among Horror films.
    mixed = facets_rec.facets.mix(scores)
    found = [facets_rec.items.records[label] for label in facets_rec.index.search(mixed, 10)[0]]
    horror_items = sum("Horror" in r["genres"] for r in facets_rec.items.records) / len(facets_rec)
    assert sum("Horror" in r["genres"] for r in found) / 10 > max(0.6, horror_items)


def test_a_blended_query_searches_the_encoder_vector_plus_the_weighted_mixture(facets_rec: Recommender) -> None:
    text = "a scary haunted movie with a ghost"
    assert facets_rec.query_reading(text) == "blend"
    encoded, ids = facets_rec.encoder.encode_one_with_ids(text)
    mixed = facets_rec.facets.mix(facets_rec.facets.scores(ids))
    expected = encoded + facets_rec.facets.spec.weight * mixed
    expected = (expected / np.linalg.norm(expected)).astype(np.float32)
    labels = facets_rec.index.search(expected, 10)[0]
    assert [facets_rec.items.records[label]["id"] for label in labels] == [r.item_id for r in facets_rec.query(text)]


def test_the_weight_sets_how_far_the_facets_pull(tiny_bundle: Path, tmp_path: Path) -> None:
    text = "a scary haunted movie with a ghost"
    horror = []
    for weight in (0.0, 1.0, 50.0):
        rec = Recommender.load(_with_facets(tiny_bundle, tmp_path / f"w{weight}", weight=weight), threads=1)
        horror.append(sum("Horror" in r.metadata["genres"] for r in rec.query(text, k=10)))
        if weight == 0.0:  # nothing added: the encoder's own answer
            assert [r.item_id for r in rec.query(text)] == [r.item_id for r in rec.query(text, facets=False)]
    assert horror[0] <= horror[1] <= horror[2] and horror[0] < horror[2]


def test_encoder_only_matches_a_bundle_without_facets(facets_rec: Recommender,
                                                        tiny_recommender: Recommender) -> None:
    text = "a scary haunted movie with a ghost"
    plain = [r.item_id for r in tiny_recommender.query(text, k=5)]
    assert [r.item_id for r in facets_rec.query(text, k=5, facets=False)] == plain
    assert [r.item_id for r in facets_rec.query(text, k=5)] != plain


def test_a_title_stays_with_the_encoder(facets_rec: Recommender) -> None:
    # Whatever the margin (this bundle's max_margin lets every margin through), a query whose
    # words the top title holds is the encoder's.
    checked = 0
    for record in facets_rec.items.records:
        top = facets_rec.query(record["title"], k=1, facets=False)[0]
        words = content_words(record["title"], frozenset(STOPWORDS))
        if words and words <= content_words(top.title, frozenset(STOPWORDS)):
            checked += 1
            assert facets_rec.query_reading(record["title"]) == "encoder"
            assert facets_rec.query(record["title"], k=1)[0].item_id == top.item_id
    assert checked >= 10


def test_a_clear_margin_stays_with_the_encoder(tiny_bundle: Path, tmp_path: Path) -> None:
    never = Recommender.load(_with_facets(tiny_bundle, tmp_path / "b", max_margin=0.0), threads=1)
    text = "a scary haunted movie with a ghost"
    assert never.query_reading(text) == "encoder"
    assert [r.item_id for r in never.query(text)] == [r.item_id for r in never.query(text, facets=False)]


@pytest.mark.parametrize(("scores", "title", "takes_part"), [
    ([0.50, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44, 0.43, 0.42, 0.41], "The Usual Suspects", True),
    ([0.90, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44, 0.43, 0.42, 0.41], "The Usual Suspects", False),  # clear winner
    ([0.50, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44, 0.43, 0.42, 0.41], "A Heist with a Twist", False),  # title match
    ([0.50, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44, 0.43, 0.42, 0.41], "Heist", True),  # 1 of 3 words
    ([0.50, 0.45], "Big", True),  # fewer than 10 items: the last score is the floor
    ([], "", False),
])
def test_when_the_facets_take_part(facets_rec: Recommender, scores: list[float], title: str,
                                  takes_part: bool) -> None:
    # max_margin 0.15 here: "a heist movie with a clever twist" has words {heist, clever, twist}.
    facets = QueryFacets(replace(facets_rec.facets.spec, max_margin=0.15), facets_rec.facets.weights,
                         facets_rec.facets.bias, facets_rec.facets.centroids)
    assert facets.take_part("a heist movie with a clever twist", np.asarray(scores, dtype=np.float32),
                            title) is takes_part


def test_a_query_of_stopwords_stays_with_the_encoder(facets_rec: Recommender) -> None:
    assert facets_rec.query_reading("a movie") == "encoder"


def test_manifest_round_trip_keeps_facets(facets_bundle: Path) -> None:
    manifest = open_bundle(facets_bundle).manifest
    assert manifest.schema_version == 2 and manifest.facets is not None
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.files["facets"].size == manifest.facets.file_size


def _edited(facets_bundle: Path, edit) -> str:
    body = json.loads((facets_bundle / "manifest.json").read_text())
    body.pop("checksum")
    edit(body)
    return json.dumps(body)


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda b: b.pop("facets"), "files.facets and the facets section come together"),
    (lambda b: b["files"].pop("facets"), "files.facets and the facets section come together"),
    (lambda b: b["facets"].update(dim=7), "facets.dim 7 differs from encoder.dim"),
    (lambda b: b["facets"].update(vocab_size=9), "facets.vocab_size 9 differs"),
    (lambda b: b["facets"].update(title_field="name"), "facets.title_field 'name' is not among items.columns"),
    (lambda b: b["facets"].update(names=["Horror"]), "files.facets is"),
    (lambda b: b["facets"].update(names=["Horror", "Horror"]), "facets.names must be distinct"),
    (lambda b: b["facets"].update(temperature=0), "facets.temperature must be a number"),
    (lambda b: b["facets"].update(max_margin=float("nan")), "facets.max_margin must be a number"),
    (lambda b: b["facets"].update(min_title_cover=True), "facets.min_title_cover must be a number"),
    (lambda b: b["facets"].update(colour="blue"), "unknown fields in facets: ['colour']"),
    (lambda b: b.update(schema_version=1), "a bundle with facets is version 2"),
])
def test_bad_facets_section_is_refused(facets_bundle: Path, edit, fragment: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(fragment)):
        Manifest.from_json(_edited(facets_bundle, edit))


def test_damaged_facets_values_are_refused_naming_the_file(facets_bundle: Path, tmp_path: Path) -> None:
    source = open_bundle(facets_bundle)
    spec = source.manifest.facets
    data = bytearray((facets_bundle / "facets.f32").read_bytes())
    nan = bytearray(data)
    nan[0:4] = np.float32(np.nan).tobytes()
    write_with_facets(source, tmp_path / "nan", bytes(nan), spec, {})
    with pytest.raises(BundleError, match=r"facets\.f32: holds NaN"):
        Recommender.load(tmp_path / "nan")
    zeros = bytes(len(data))  # right size, right hash, but no centroids
    write_with_facets(source, tmp_path / "zeros", zeros, spec, {})
    with pytest.raises(BundleError, match=r"facets\.f32: the centroids are not unit vectors"):
        Recommender.load(tmp_path / "zeros")


def test_a_replaced_facets_file_is_refused_before_loading(facets_bundle: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(facets_bundle, copy)
    (copy / "facets.f32").write_bytes(bytes((copy / "facets.f32").stat().st_size))
    with pytest.raises(BundleError, match=r"facets file's sha256"):
        Recommender.load(copy)


def test_home_updates_keep_facets_and_a_new_catalogue_drops_them(facets_bundle: Path, tmp_path: Path) -> None:
    from edgerec.build import build_from_catalog
    from edgerec.store import Store

    store = Store.create(tmp_path / "home", facets_bundle)
    assert open_bundle(tmp_path / "home").manifest.facets is not None
    catalog = tmp_path / "new.jsonl"
    catalog.write_text(json.dumps({"id": "new-1", "title": "Haunted Ghost House", "year": 2001,
                                   "genres": ["Horror"]}) + "\n")
    store.add(catalog)
    store.remove(["new-1"])
    updated = open_bundle(tmp_path / "home")
    assert updated.manifest.facets == open_bundle(facets_bundle).manifest.facets
    assert Recommender.load(tmp_path / "home").query_reading("a scary haunted movie with a ghost") == "blend"
    manifest = build_from_catalog(catalog, tmp_path / "built", base=facets_bundle)
    assert manifest.facets is None and "facets" not in manifest.files and manifest.schema_version == 1


def test_cli_encoder_only_and_info(facets_bundle: Path) -> None:
    from click.testing import CliRunner

    from edgerec.cli import main

    runner = CliRunner()
    text = "a scary haunted movie with a ghost"
    blended = runner.invoke(main, ["query", text, "--bundle", str(facets_bundle), "--json"])
    plain = runner.invoke(main, ["query", text, "--bundle", str(facets_bundle), "--json", "--encoder-only"])
    assert blended.exit_code == 0 and plain.exit_code == 0
    assert blended.output != plain.output
    info = runner.invoke(main, ["info", "--bundle", str(facets_bundle)])
    assert info.exit_code == 0 and "facets      8 (Action" in info.output


def _fake_reader_vectors(texts, model_dir, cache, progress=None) -> np.ndarray:
    """A stand-in for mpnet: each word a fixed random direction, a text the unit sum of its words."""
    import zlib

    rows = []
    for text in texts:
        total = np.zeros(16)
        for word in re.findall(r"[a-z']+", text.lower()):
            total += np.random.default_rng(zlib.crc32(word.encode())).standard_normal(16)
        rows.append(total / max(np.linalg.norm(total), 1e-9))
    return np.asarray(rows, dtype=np.float32)


def test_the_facets_stage_adds_a_measured_head_and_changes_no_other_file(tiny_export, tmp_path, monkeypatch):
    import shutil

    import export.facets as stage
    from conftest import WORDS
    from export.sources import QUERY_TEXTS, TeacherFacts

    _, config, records = tiny_export
    bundle = tmp_path / "bundle"
    shutil.copytree(config.out, bundle)
    monkeypatch.setattr(stage, "english_words", lambda count: [w for w in WORDS if len(w) > 2][:count])
    monkeypatch.setattr(stage, "mpnet_reader", lambda work: TeacherFacts(work, "fake reader", 32, "mean", True))
    monkeypatch.setattr(stage, "read_with_mpnet", _fake_reader_vectors)
    notice = tmp_path / "NOTICE"
    notice.write_text("test notice\n")
    small = FacetConfig(single_words=60, composed=300, composed_vocabulary=40, epochs=5)
    report = stage.stage_facets(records, np.arange(len(records)) % 5, bundle, tmp_path / "work", small,
                                notice=notice)
    before, after = open_bundle(config.out).manifest, open_bundle(bundle)
    assert {r: e for r, e in after.manifest.files.items() if r not in ("facets", "notice")} == {
        r: e for r, e in before.files.items() if r != "notice"}
    assert after.path("notice").read_text() == "test notice\n"
    assert after.manifest.facets.names == tuple(g for g in stage.GENRE_WORDS if g in GENRES)
    assert after.manifest.provenance["facets"] == report and report["held_out_queries"] == len(QUERY_TEXTS)
    assert report["title_at_1"]["titles"] == len(records) and 0 <= report["title_at_1"]["shipped"] <= 1
    assert after.manifest.facets.weight in small.weights
    assert report["blend_weight_chosen_on_held_out_phrases"]["weight"] == after.manifest.facets.weight
    assert Recommender.load(bundle).query("a haunted ghost house", k=3)
