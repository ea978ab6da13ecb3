"""Metadata filters: parsing, which items pass, k under a selective filter (against brute force), BM25
candidates filtered too, and `--where` on the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import edgerec.filtered_search as filtered_search
from edgerec import InputError, Recommender
from edgerec.cli import main
from edgerec.filtered_search import search_allowed
from edgerec.filters import ItemColumns, Where, parse_filter, parse_where
from edgerec.index import ItemIndex
from edgerec.items import ItemTable
from edgerec.recommender import default_bundle_path

# -- parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("year<=1998", Where("year", "<=", ("1998",))),
        (" year >= 1990 ", Where("year", ">=", ("1990",))),
        ("year<1990.5", Where("year", "<", ("1990.5",))),
        ("genres=Comedy", Where("genres", "=", ("Comedy",))),
        ("genres==Comedy", Where("genres", "=", ("Comedy",))),
        ("genres=Comedy|Drama", Where("genres", "=", ("Comedy", "Drama"))),
        ("genres in Comedy|Drama", Where("genres", "=", ("Comedy", "Drama"))),
        ("genres!=Comedy | Drama", Where("genres", "!=", ("Comedy", "Drama"))),
        ("title=Sci-Fi: The Movie", Where("title", "=", ("Sci-Fi: The Movie",))),
    ],
)
def test_parse_where(text, expected):
    assert parse_where(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("year", "write FIELD OP VALUE"),
        ("<=1998", "write FIELD OP VALUE"),
        ("year<=", "an empty value"),
        ("genres=Comedy|", "an empty value"),
        ("year=<1998", "starts with an operator"),
        ("year<=abc", "<= needs one number"),
        ("year<1990|2000", "< needs one number"),
        ("year>nan", "> needs one number"),
    ],
)
def test_bad_clauses_are_named(text, fragment):
    with pytest.raises(InputError) as info:
        parse_where(text)
    assert f"bad filter {text!r}" in str(info.value) and fragment in str(info.value)


def test_the_api_forms_agree():
    clauses = (Where("year", "<=", ("1998",)), Where("genres", "=", ("Comedy", "Drama")))
    assert parse_filter(["year<=1998", "genres=Comedy|Drama"]) == clauses
    assert parse_filter([clauses[0], "genres=Comedy|Drama"]) == clauses
    assert parse_filter({"year": {"<=": 1998}, "genres": ["Comedy", "Drama"]}) == (
        Where("year", "<=", (1998,)), Where("genres", "=", ("Comedy", "Drama")))
    assert Where("year", "<=", 1998) == Where("year", "<=", (1998,))  # type: ignore[arg-type]
    assert parse_filter(Where("genres", "=", ["Comedy", "Drama"])) == (clauses[1],)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_filter(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_filter({"year": None})
    with pytest.raises(InputError, match="operator"):
        parse_filter({"year": {"~": 3}})


# -- which items pass ----------------------------------------------------------------

RECORDS = [
    {"id": "a", "year": 1990, "genres": ["Comedy", "Drama"], "shop": "North"},
    {"id": "b", "year": "1995", "genres": ["Horror"]},  # a CSV catalogue stores numbers as text
    {"id": "c", "year": 2001.0, "genres": "Comedy", "shop": "south"},
    {"id": "d", "genres": []},
    {"id": "e", "genres": "Drama | Western", "year": None},  # as a CSV column holds a list
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("year<=1995", "ab"),
        ("year>1995", "c"),
        ("year=1995", "b"),
        ("year=2001", "c"),
        ("year!=1990", "bcde"),  # an item without the field is not equal to it
        ("genres=comedy", "ac"),  # case does not matter; a list matches by any element
        ("genres=Horror|Drama", "abe"),
        ("genres!=Comedy", "bde"),  # != holds when no element equals
        ("shop=NORTH", "a"),
        (["genres=Comedy", "year<2000"], "a"),  # all clauses hold
        ({"genres": "Comedy", "year": {">": 1990, "<=": 2001}}, "c"),
        ("id=b|d", "bd"),
        ("genres=western", "e"),
        ("genres=Drama | Western", "ae"),  # one of, not the text whole
    ],
)
def test_masks(spec, expected):
    columns = ItemColumns(ItemTable.from_records(RECORDS, "id"))
    assert "".join(r["id"] for r, ok in zip(RECORDS, columns.mask(spec)) if ok) == expected


def test_an_unknown_field_lists_the_known_ones():
    columns = ItemColumns(ItemTable.from_records(RECORDS, "id"))
    with pytest.raises(InputError, match="no item has the field 'genre'; the fields are id, year, genres, shop"):
        columns.mask("genre=Comedy")


# -- k under a filter, against brute force --------------------------------------------

@pytest.fixture(scope="module")
def random_index():
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = ItemIndex.build(vectors, ef=400, threads=1)
    return index, vectors, rng


def brute_force(vectors, query, allowed, k, exclude=()):
    scores = vectors @ query
    scores[~allowed] = -np.inf
    scores[list(exclude)] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return set(order[np.isfinite(scores[order])].tolist())


@pytest.mark.parametrize("share", [0.5, 0.05, 0.004])
@pytest.mark.parametrize("exact", [False, None, True])  # False: through HNSW, widening as needed; None: chosen
def test_filtered_search_equals_brute_force(random_index, share, exact):
    index, vectors, rng = random_index
    for trial in range(5):
        allowed = rng.random(len(vectors)) < share
        query = vectors[rng.integers(len(vectors))]
        exclude = [int(i) for i in rng.choice(len(vectors), 3, replace=False)]
        for k in (1, 10, 50):
            labels, scores = search_allowed(index, query, k, allowed, exclude, exact=exact)
            assert len(labels) == min(k, int(allowed.sum() - allowed[exclude].sum()))
            assert set(labels.tolist()) == brute_force(vectors, query, allowed, k, exclude)
            assert np.all(np.diff(scores) <= 1e-6)  # best first
            np.testing.assert_allclose(scores, vectors[labels] @ query, atol=1e-5)


def test_a_filter_keeping_fewer_than_k_gives_them_all(random_index):
    index, vectors, _ = random_index
    allowed = np.zeros(len(vectors), dtype=bool)
    allowed[[5, 900, 2999]] = True
    labels, _ = search_allowed(index, vectors[0], 10, allowed, exact=False)
    assert sorted(labels.tolist()) == [5, 900, 2999]
    assert len(search_allowed(index, vectors[0], 10, np.zeros(len(vectors), dtype=bool))[0]) == 0


def test_recommender_filters_equal_brute_force_on_the_tiny_bundle(tiny_bundle, monkeypatch):
    rec = Recommender.load(tiny_bundle, threads=1, ef=500)
    vectors = rec.index.vectors(range(len(rec)))
    ids = [r["id"] for r in rec.items.scan()]
    for share in (1e-9, 4.0, 1e9):  # always HNSW, the default choice, always a scan
        monkeypatch.setattr(filtered_search, "HNSW_SHARE", share)
        for spec in ("year<=1970", "genres=Horror|Sci-Fi", ["year>1980", "genres!=Comedy"]):
            allowed = rec.columns.mask(spec)
            assert 0 < allowed.sum() < len(rec)
            got = rec.similar("item-005", k=7, filter=spec)
            expected = brute_force(vectors, vectors[5], allowed, 7, exclude=[5])
            assert {r.item_id for r in got} == {ids[i] for i in expected}
            text = rec.query("space alien robot", k=7, filter=spec, descriptions=False)
            query = rec.encoder.encode_one("space alien robot")
            assert {r.item_id for r in text} == {ids[i] for i in brute_force(vectors, query, allowed, 7)}
            history = rec.recommend(["item-001", "item-002"], k=5, filter=spec)
            assert len(history) == 5 and all(allowed[rec.items.labels[r.item_id]] for r in history)
            assert not {"item-001", "item-002"} & {r.item_id for r in history}


# -- BM25 under a filter (the MovieLens bundle has postings) ----------------------------

@pytest.fixture(scope="module")
def movies() -> Recommender:
    return Recommender.load(default_bundle_path(), threads=1, ef=1000)  # near exact, to compare with brute force


def fused_brute_force(rec: Recommender, text: str, allowed: np.ndarray, k: int) -> list[str]:
    """cosine + weight x damping x BM25 / best over every passing item, best and its coverage among passing
    items (the query's words weighed by idf over the whole catalogue)."""
    from edgerec.lexical import damping, idf

    vectors = rec.index.vectors(range(len(rec)))
    cosine = vectors @ rec.encoder.encode_one(text)
    bm25 = np.where(allowed, rec.lexical.scores(text), 0.0)
    if bm25.max() > 0:
        best = int(np.argmax(bm25))
        words = rec.lexical.split(text)
        holds = [bool(rec.lexical.scores(word)[best] > 0) for word in words]
        counts = [int((rec.lexical.scores(word) > 0).sum()) for word in words]
        weights = idf(np.array(counts), len(rec))
        coverage = float(weights[holds].sum() / weights.sum())
        cosine = cosine + rec.bundle.manifest.lexical.weight * damping(coverage, len(words)) * bm25 / bm25[best]
    cosine[~allowed] = -np.inf
    order = np.argsort(-cosine, kind="stable")[:k]
    return [rec.items.records[int(i)]["id"] for i in order]


@pytest.mark.parametrize(("text", "spec"), [
    ("jaws", "year<1976"), ("jaws", "year>1976"), ("space adventure", "year<=1980"),
    ("star wars", ["genres=Action", "year>=1980"]), ("a funny film about a dog", "genres=Comedy|Children's"),
])
def test_text_queries_filter_both_signals(movies, text, spec):
    allowed = movies.columns.mask(spec)
    got = [r.item_id for r in movies.query(text, k=10, filter=spec, descriptions=False)]
    assert got == fused_brute_force(movies, text, allowed, 10)


def test_bm25_best_is_taken_among_passing_items(movies):
    # Unfiltered, "Jaws 2" holds both words; among films before 1978 the best holds "jaws" alone, and
    # the share is scaled and damped by that film's BM25 and coverage (the brute force above agrees).
    plain = [r.item_id for r in movies.query("jaws 2", k=3)]
    early = movies.query("jaws 2", k=3, filter="year<1978")
    assert plain[0] == "Jaws 2 (1978)" and early[0].item_id == "Jaws (1975)"
    assert [r.item_id for r in early] == fused_brute_force(movies, "jaws 2", movies.columns.mask("year<1978"), 3)


def test_k_stays_right_under_a_selective_filter(movies):
    for spec, count in (("year<=1930", None), ("genres=Film-Noir", None), ("year=1919", None)):
        passing = int(movies.columns.mask(spec).sum())
        for k in (5, 50):
            results = movies.query("a classic film", k=k, filter=spec)
            assert len(results) == min(k, passing)
            assert all(movies.columns.mask(spec)[movies.items.labels[r.item_id]] for r in results)


# -- the command line -----------------------------------------------------------------

def test_cli_where(tiny_bundle):
    runner = CliRunner()
    args = ["--bundle", str(tiny_bundle), "--json", "-k", "6"]
    rows = [json.loads(line) for line in runner.invoke(
        main, ["query", "space alien", "--where", "year<=1970", "--where", "genres=Comedy|Drama", *args]).output.splitlines()]
    assert len(rows) == 6 and all(r["year"] <= 1970 and {"Comedy", "Drama"} & set(r["genres"]) for r in rows)
    similar = runner.invoke(main, ["similar", "item-005", "--where", "year>1990", *args])
    assert similar.exit_code == 0 and all(json.loads(line)["year"] > 1990 for line in similar.output.splitlines())
    recommend = runner.invoke(main, ["recommend", "item-001", "--where", "genres!=Comedy", *args])
    assert recommend.exit_code == 0
    assert all("Comedy" not in json.loads(line)["genres"] for line in recommend.output.splitlines())


@pytest.mark.parametrize(("clause", "fragment"), [
    ("yeer<=1970", "no item has the field 'yeer'; the fields are id, title, year, genres"),
    ("year<=soon", "bad filter 'year<=soon': <= needs one number"),
    ("year", "bad filter 'year'"),
])
def test_cli_bad_where_is_one_line_exit_2(tiny_bundle, clause, fragment):
    result = CliRunner().invoke(main, ["query", "dog", "--where", clause, "--bundle", str(tiny_bundle)])
    assert result.exit_code == 2 and result.stdout == "" and fragment in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output


def test_cli_a_filter_nothing_passes_says_so(tiny_bundle):
    result = CliRunner().invoke(main, ["query", "dog", "--where", "year>3000", "--bundle", str(tiny_bundle)])
    assert result.exit_code == 0 and result.stdout == "" and "no item passes the --where filter" in result.stderr


def test_bm25_top_drops_filtered_documents_before_ranking(movies):
    allowed = movies.columns.mask("year>=1980")
    labels, scores = movies.lexical.top("alien", 3, allowed)
    everything, all_scores = movies.lexical.top("alien", movies.lexical.size)
    passing = allowed[everything]
    assert labels.tolist() == everything[passing][:3].tolist() and len(labels) == 3
    np.testing.assert_allclose(scores, all_scores[passing][:3])
    assert "Alien (1979)" not in {movies.items.records[int(i)]["id"] for i in labels}
