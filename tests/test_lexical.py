"""BM25 postings built with a bundle and fused into text queries (edgerec.lexical), and models: the
general encoder with no items that `edgerec build` starts from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgerec import Recommender
from edgerec.bundle.manifest import LexicalSpec, Manifest
from edgerec.bundle.reader import open_bundle
from edgerec.bundle.writer import BundleWriter
from edgerec.cli import main
from edgerec.errors import BundleError, ManifestError
from edgerec.lexical import LexicalIndex, WordSplitter, fuse
from edgerec.recommender import default_model_path
from edgerec.update.build import build_from_catalog
from edgerec.update.store import Store

DOCS = ["The shark and the beach", "A beach holiday", "Sharks, sharks everywhere", "Nothing here at all"]


@pytest.fixture(scope="module")
def split(tiny_bundle: Path) -> WordSplitter:
    return WordSplitter.from_file(tiny_bundle / "tokenizer.json")


@pytest.fixture(scope="module")
def tiny_model(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle's encoder as a model with a lexical setting (what `python -m export general` writes)."""
    source = open_bundle(tiny_bundle)
    out = tmp_path_factory.mktemp("model") / "model"
    with BundleWriter(out) as writer:
        for role in ("encoder", "tokenizer"):
            writer.copy_in(role, source.path(role))
        writer.finish(name="tiny-model", encoder=source.manifest.encoder, index=None, items=None,
                      provenance={"model": {"teacher": "tiny"}}, lexical=LexicalSpec(weight=0.3))
    return out


def catalogue(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_bm25_matches_the_formula_by_hand(split: WordSplitter) -> None:
    assert split("The River, the STONE!") == ["the", "river", "the", "stone"]  # punctuation dropped
    docs = ["river stone river", "stone garden", "violin"]
    index = LexicalIndex.build(docs, split)
    mean = 2.0  # document lengths 3, 2, 1

    def weight(tf: int, df: int, length: int) -> float:
        idf = math.log(1 + (3 - df + 0.5) / (df + 0.5))
        return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * length / mean))
    expected = [weight(2, 1, 3) + weight(1, 2, 3), weight(1, 2, 2), 0.0]
    assert index.scores("river stone") == pytest.approx(np.array(expected, dtype=np.float32), rel=1e-5)
    assert index.scores("RIVER stone!") == pytest.approx(index.scores("river stone"))  # the tokenizer's normaliser
    assert index.scores("violin violin") == pytest.approx(2 * index.scores("violin"))  # a repeated word counts twice

def test_top_is_best_first_and_ties_go_to_the_lower_label(split: WordSplitter) -> None:
    index = LexicalIndex.build(["cat", "cat", "dog cat", "dog"], split)
    labels, scores = index.top("cat", 10)
    assert labels.tolist() == [0, 1, 2] and scores[0] == scores[1] > scores[2]
    assert index.top("cat", 2)[0].tolist() == [0, 1]
    assert index.top("", 3)[0].size == 0 and index.top("...", 3)[0].size == 0


def test_the_file_round_trips_and_a_damaged_one_is_refused(split: WordSplitter) -> None:
    index = LexicalIndex.build(DOCS, split)
    again = LexicalIndex.from_bytes(index.to_bytes(), split, size=len(DOCS))
    for query in ("shark beach", "sharks", "nothing"):
        assert again.scores(query) == pytest.approx(index.scores(query))
    with pytest.raises(BundleError, match="do not fit the bundle's 5 items"):
        LexicalIndex.from_bytes(index.to_bytes(), split, size=5)
    with pytest.raises(BundleError, match="not a readable BM25 index"):
        LexicalIndex.from_bytes(index.to_bytes()[:100], split, size=len(DOCS))


def test_fuse_scores_both_lists_and_looks_up_the_cosine_of_lexical_only_items() -> None:
    cosines = np.array([0.9, 0.1, 0.5, 0.2])
    dense_labels, dense_scores = np.array([0, 2]), cosines[[0, 2]]
    lexical_labels, lexical_scores = np.array([1, 2]), np.array([4.0, 2.0])
    looked_up = []

    def cosine_of(labels):
        looked_up.extend(labels)
        return cosines[labels]

    # coverage 0.5 ** 4 = 1/16 for a short query: item 1 gets 0.1 + 1/16 x 1, item 2 0.5 + 1/16 x 0.5
    labels, scores = fuse(dense_labels, dense_scores, lexical_labels, lexical_scores, cosine_of, 1.0, 3, words=2,
                          coverage=0.5)
    assert looked_up == [1]
    assert labels.tolist() == [0, 2, 1] and scores == pytest.approx([0.9, 0.5 + 0.5 / 16, 0.1 + 1 / 16])
    whole = fuse(dense_labels, dense_scores, lexical_labels, lexical_scores, cosine_of, 1.0, 3, words=2, coverage=1.0)
    assert whole[0].tolist() == [1, 2, 0] and whole[1] == pytest.approx([1.1, 1.0, 0.9])
    none = fuse(dense_labels, dense_scores, lexical_labels, lexical_scores, cosine_of, 1.0, 3, words=2, coverage=0.0)
    assert none[1] == pytest.approx([0.9, 0.5, 0.1])  # the best holds none of the query's weight: BM25 adds nothing
    # A long query's share is not damped: 20 words fade the damping halfway, 30 or more not at all.
    halfway = fuse(dense_labels, dense_scores, lexical_labels, lexical_scores, cosine_of, 1.0, 3, words=20,
                   coverage=0.0)
    # damping 0 + 1 x 0.5: item 2 gets 0.5 + 0.5 x 0.5, item 1 0.1 + 0.5 x 1
    assert halfway[0].tolist() == [0, 2, 1] and halfway[1] == pytest.approx([0.9, 0.75, 0.6])
    long = fuse(dense_labels, dense_scores, lexical_labels, np.array([3.0, 3.0]), cosine_of, 1.0, 3, words=45,
                coverage=0.0)
    assert long[0].tolist() == [2, 1, 0] and long[1] == pytest.approx([1.5, 1.1, 0.9])  # counts in full
    same = fuse(dense_labels, dense_scores, np.array([], int), np.array([]), cosine_of, 1.0, 1, words=2, coverage=0.0)
    assert same[0].tolist() == [0]


def test_the_damping_is_the_coverage_to_the_fourth_for_short_queries_and_fades_for_long_ones() -> None:
    from edgerec.lexical import COVERAGE_POWER, LONG_QUERY, SHORT_QUERY, damping

    assert (SHORT_QUERY, LONG_QUERY, COVERAGE_POWER) == (10, 30, 4)
    assert [float(damping(0.5, n)) for n in (0, 10, 20, 30, 300)] == pytest.approx(
        [0.0625, 0.0625, 0.53125, 1.0, 1.0])
    assert float(damping(1.0, 3)) == 1.0 and float(damping(0.0, 25)) == pytest.approx(0.75)
    np.testing.assert_allclose(damping(np.array([[0.5], [0.5]]), np.array([[5], [40]])), [[0.0625], [1.0]])


def test_coverage_is_the_share_of_the_query_word_weight_the_best_document_holds(split: WordSplitter) -> None:
    from edgerec.lexical import idf

    index = LexicalIndex.build(["red fox den", "red hen", "blue whale", "red fox"], split)
    weight = {w: float(idf(np.array([n]), 4)[0]) for w, n in (("red", 3), ("fox", 2), ("whale", 1), ("zebra", 0))}
    labels, scores, coverage = index.matches(index.split("red fox"), 3)
    assert labels[0] == 3 and coverage == pytest.approx(1.0)  # the short "red fox" holds both words
    labels, _, coverage = index.matches(index.split("red whale zebra"), 3)
    assert labels[0] == 2  # "whale" is rarer than "red"; "zebra" is in no document, yet weighs in the total
    assert coverage == pytest.approx(weight["whale"] / (weight["red"] + weight["whale"] + weight["zebra"]))
    _, _, twice = index.matches(index.split("fox fox red"), 3)  # a repeated word counts each time
    assert twice == pytest.approx(1.0)
    assert index.matches(index.split("zebra"), 3)[2] == 0.0 and index.matches([], 3)[2] == 0.0
    allowed = np.array([False, True, True, False])
    labels, _, coverage = index.matches(index.split("red fox"), 3, allowed)  # the best passing document
    assert labels[0] == 1 and coverage == pytest.approx(weight["red"] / (weight["red"] + weight["fox"]))
    assert index.top_of_words(index.split("red fox"), 3)[0].tolist() == index.matches(index.split("red fox"), 3)[0].tolist()


def test_fuse_reads_only_the_lexical_items_that_can_reach_the_top_k() -> None:
    rng = np.random.default_rng(3)
    for trial in range(200):
        cosines = rng.uniform(-0.2, 0.9, size=60)
        k = int(rng.integers(1, 8))
        dense_labels = np.argsort(-cosines, kind="stable")[:k]  # an exact search
        lexical_labels = rng.choice(60, size=int(rng.integers(1, 30)), replace=False)
        lexical_scores = np.sort(rng.exponential(size=len(lexical_labels)))[::-1] * 5
        weight = float(rng.uniform(0.1, 2.0))
        looked_up: list[int] = []

        def cosine_of(labels):
            looked_up.extend(labels.tolist())
            return cosines[labels]

        words = int(rng.integers(1, 40))
        coverage = float(rng.uniform(0, 1))
        labels, scores = fuse(dense_labels, cosines[dense_labels], lexical_labels, lexical_scores, cosine_of, weight, k,
                              words=words, coverage=coverage)
        best = lexical_scores[0]
        trust = coverage ** 4
        fade = min(1.0, max(0.0, (words - 10) / 20))
        every = cosines.copy()  # scoring every item by hand
        every[lexical_labels] += weight * (trust + (1 - trust) * fade) * lexical_scores / best
        candidates = np.union1d(dense_labels, lexical_labels)
        expected = candidates[np.lexsort((candidates, -every[candidates]))][:k]
        assert labels.tolist() == expected.tolist(), trial
        assert scores == pytest.approx(every[expected], abs=1e-6)
        assert set(looked_up) <= set(lexical_labels.tolist()) - set(dense_labels.tolist())
    flat = fuse(np.array([0, 1]), np.array([0.9, 0.8]), np.array([5, 6]), np.array([2.0, 2.0]),
                lambda labels: pytest.fail("no lexical item can pass the k-th with a share of 0"), 1.0, 2, words=3,
                coverage=0.0)
    assert flat[0].tolist() == [0, 1]


def test_a_bundle_built_from_a_model_fuses_exactly_as_scoring_every_item(tiny_model: Path, tmp_path: Path) -> None:
    from tiny import tiny_catalog

    records = tiny_catalog(120)
    built = build_from_catalog(catalogue(tmp_path / "items.jsonl", records), tmp_path / "b", base=tiny_model)
    assert built.lexical == LexicalSpec(weight=0.3) and "lexical" in built.files and built.schema_version == 4
    rec = Recommender.load(tmp_path / "b", threads=1)
    vectors = rec.index.vectors(range(len(rec)))
    texts = [" ".join(str(r[f]) if not isinstance(r[f], list) else " ".join(r[f]) for f in ("title", "genres"))
             for r in records]
    split = WordSplitter(rec.encoder.tokenizer)
    bm25 = LexicalIndex.build(texts, split)
    holds = [set(split(t)) for t in texts]
    long = "a haunted house and a space alien robot in a love story about a clever heist with a twist " * 2
    for query in ("haunted house", "space alien robot", "Love Story", "a clever heist with a twist", "zzz",
                  "haunted zzz", long, long[:100]):
        cosine = vectors @ rec.encode(query)[0]
        lexical = bm25.scores(query)
        best = np.sort(lexical)[-1]
        words = split(query)
        weights = np.array([math.log(1 + (len(texts) - n + 0.5) / (n + 0.5))
                            for n in (sum(w in h for h in holds) for w in words)])
        top = holds[int(np.argmax(lexical))]
        coverage = weights[[w in top for w in words]].sum() / weights.sum()
        fade = min(1.0, max(0.0, (len(query.split()) - 10) / 20))  # 36 and 18 words for the long ones
        trust = coverage ** 4
        fused = cosine + (0.3 * (trust + (1 - trust) * fade) * lexical / best if best > 0 else 0)
        expected = np.argsort(-fused, kind="stable")[:5]
        got = rec.query(query, k=5)
        assert [r.item_id for r in got] == [records[i]["id"] for i in expected], query
        assert [r.score for r in got] == pytest.approx(fused[expected].tolist(), abs=1e-4)


def test_updates_write_postings_of_the_new_version(tiny_model: Path, tmp_path: Path) -> None:
    from tiny import tiny_catalog

    build_from_catalog(catalogue(tmp_path / "items.jsonl", tiny_catalog(40)), tmp_path / "b", base=tiny_model)
    store = Store.create(tmp_path / "home", tmp_path / "b")
    store.add(catalogue(tmp_path / "new.jsonl", [{"id": "new", "title": "Zanzibar", "genres": ["Drama"]}]))
    rec = Recommender.load(tmp_path / "home", threads=1)
    assert rec.lexical is not None and rec.lexical.size == 41
    assert rec.lexical.top("zanzibar", 1)[0].tolist() == [rec.items.labels["new"]]
    store.remove(["new"])
    assert Recommender.load(tmp_path / "home", threads=1).lexical.top("zanzibar", 1)[0].size == 0


def test_a_model_answers_no_queries_and_says_how_to_build_from_it(tiny_model: Path) -> None:
    with pytest.raises(BundleError, match="a model with no items.*edgerec build CATALOG"):
        Recommender.load(tiny_model)
    result = CliRunner().invoke(main, ["query", "anything", "--bundle", str(tiny_model)])
    assert result.exit_code != 0 and "a model with no items" in result.output and "Traceback" not in result.output
    info = CliRunner().invoke(main, ["info", "--bundle", str(tiny_model)])
    assert info.exit_code == 0 and info.output.startswith("model") and "lexical     BM25 (k1 1.2, b 0.75) fused: cosine + 0.3 x damping" in info.output


def test_manifest_sections_and_files_must_agree(tiny_model: Path) -> None:
    body = json.loads((tiny_model / "manifest.json").read_text())
    del body["checksum"]
    assert body["schema_version"] == 4 and "index" not in body and "items" not in body
    bundle_like = dict(body, items={"count": 1, "id_field": "id", "text_fields": ["t"], "columns": ["id", "t"]})
    with pytest.raises(ManifestError, match="index and items come together"):
        Manifest.from_json(json.dumps(bundle_like))
    with pytest.raises(ManifestError, match="holds only"):
        Manifest.from_json(json.dumps(dict(body, files={**body["files"],
                                                        "lexical": dict(body["files"]["encoder"], path="x.npz")})))
    with pytest.raises(ManifestError, match="lexical.weight must be a number"):
        Manifest.from_json(json.dumps(dict(body, lexical={"weight": -1})))
    with pytest.raises(ManifestError, match="schema_version 3 does not fit"):
        Manifest.from_json(json.dumps(dict(body, schema_version=3)))


def test_build_starts_from_the_shipped_general_model(tmp_path: Path) -> None:
    model = open_bundle(default_model_path(), model_ok=True)
    assert model.manifest.is_model and model.manifest.lexical is not None
    records = [{"id": "a", "title": "A shark terrorises a beach town"}, {"id": "b", "title": "Two friends open a bakery"},
               {"id": "c", "description": "A haunted house on a hill"}]
    result = CliRunner().invoke(main, ["build", str(catalogue(tmp_path / "items.jsonl", records)),
                                       "--out", str(tmp_path / "own")])
    assert result.exit_code == 0, result.output
    manifest = open_bundle(tmp_path / "own").manifest
    assert manifest.files["encoder"].sha256 == model.manifest.files["encoder"].sha256
    assert manifest.items.text_fields == ("title", "description") and manifest.lexical == model.manifest.lexical
    rec = Recommender.load(tmp_path / "own", threads=1)
    assert rec.query("shark attack", k=1)[0].item_id == "a"
    assert rec.query("a ghost story", k=1)[0].item_id == "c"
