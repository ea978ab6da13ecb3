"""Items by name: normalisation, ranking, titles accepted by similar/recommend, and `edgerec items search`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgerec import Recommender, UnknownItemError
from edgerec.cli import main
from edgerec.names import EXACT, PREFIX, SIMILAR, WORDS, NameIndex, split_name
from edgerec.recommender import default_bundle_path


@pytest.fixture(scope="module")
def movies() -> Recommender:
    return Recommender.load(default_bundle_path(), threads=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Matrix, The (1999)", ("matrix", 1999)),
        ("The Matrix", ("matrix", None)),
        ("  the   MATRIX  ", ("matrix", None)),
        ("Alien³ (1992)", ("alien3", 1992)),
        ("Amélie", ("amelie", None)),
        ("Haine, La (1995)", ("haine", 1995)),
        ("Schindler's List", ("schindlers list", None)),
        ("Star Wars: Episode IV - A New Hope (1977)", ("star wars episode iv a new hope", 1977)),
        ("Die Hard", ("die hard", None)),  # a leading foreign article is often a word: kept
        ("The", ("the", None)),  # an article alone is the name
        ("A Bug's Life", ("bugs life", None)),
        ("🚀👽", ("", None)),
    ],
)
def test_split_name(text, expected):
    assert split_name(text) == expected


def index_of(*titles: str) -> NameIndex:
    return NameIndex(({"id": f"i{n}", "title": t} for n, t in enumerate(titles)), "id")


def test_ranking_exact_then_prefix_then_words_then_typos():
    index = index_of("Aliens (1986)", "Alien Nation (1988)", "Alien (1979)", "Nation of Aliens", "Alive (1993)",
                     "Dune (1984)")
    found = index.search("alien", 10)
    assert [(label, how) for label, how, _ in found] == [
        (2, EXACT), (0, PREFIX), (1, PREFIX), (4, SIMILAR)]
    assert found[0][2] == 1.0 and all(0 < score < 1 for _, _, score in found[1:])
    assert [(label, how) for label, how, _ in index.search("nation alien", 10)][:1] == [(1, WORDS)]
    assert index.search("dune", 10)[0][:2] == (5, EXACT)
    assert index.search("🚀", 10) == [] and index.search("zzzzqqqq", 10) == []


def test_a_year_given_must_agree():
    index = index_of("Hamlet (1948)", "Hamlet (1990)", "Hamlet (1996)")
    assert [how for _, how, _ in index.search("hamlet", 5)] == [EXACT] * 3
    assert index.search("Hamlet (1990)", 5)[0][:2] == (1, EXACT)
    assert [how for _, how, _ in index.search("Hamlet (1990)", 5)][1:] == [SIMILAR, SIMILAR]
    assert index.resolve("Hamlet (1990)") == (1, [1])
    assert index.resolve("Hamlet")[0] is None  # three items: ambiguous


def test_the_year_may_come_from_metadata():
    index = NameIndex([{"id": "x1", "title": "Heat", "year": 1995}, {"id": "x2", "title": "Heat", "year": 1986}], "id")
    assert index.resolve("Heat (1986)") == (1, [1])


@pytest.mark.parametrize(
    ("typed", "item_id"),
    [
        ("The Matrix", "Matrix, The (1999)"),
        ("Matrix", "Matrix, The (1999)"),
        ("matrix, the (1999)", "Matrix, The (1999)"),
        ("MATRIX (1999)", "Matrix, The (1999)"),
        ("Alien3", "Alien³ (1992)"),
        ("alien 3", "Alien³ (1992)"),  # spaces do not count in an exact match
        ("Alein", None),  # a typo is only ever a candidate
        ("Alien", "Alien (1979)"),
        ("Shawshank", "Shawshank Redemption, The (1994)"),  # the one title starting so
        ("godfather", "Godfather, The (1972)"),
    ],
)
def test_movielens_titles_resolve(movies, typed, item_id):
    if item_id is None:
        with pytest.raises(UnknownItemError):
            movies.names.label(typed)
    else:
        assert movies.items.records[movies.names.label(typed)]["id"] == item_id


def test_find_on_movielens(movies):
    found = movies.find("matrix", k=3)
    assert found[0].item_id == "Matrix, The (1999)" and found[0].match == EXACT and found[0].title == "The Matrix"
    assert found[0].metadata["year"] == 1999 and "id" not in found[0].metadata
    assert movies.find("Matirx", k=1)[0].item_id == "Matrix, The (1999)"  # a typo
    assert movies.find("Alien³")[0].item_id == "Alien³ (1992)"
    assert [m.item_id for m in movies.find("star wars", k=4)] == [
        m.item_id for m in movies.find("star wars", k=10) if m.match == PREFIX][:4]
    assert len(movies.find("love", k=7)) == 7


def test_similar_and_recommend_accept_titles(movies):
    assert [r.item_id for r in movies.similar("The Matrix", k=5)] == \
        [r.item_id for r in movies.similar("Matrix, The (1999)", k=5)]
    by_title = movies.recommend(["Alien", "Blade Runner", "The Terminator"], k=5)
    by_id = movies.recommend(["Alien (1979)", "Blade Runner (1982)", "Terminator, The (1984)"], k=5)
    assert [r.item_id for r in by_title] == [r.item_id for r in by_id]


def test_an_exact_id_wins_over_a_title():
    # Item b's id is item a's title: the id names b.
    index_records = [{"id": "a", "title": "b"}, {"id": "b", "title": "Something else"}]
    from edgerec.items import ItemTable
    from edgerec.names import ItemNames

    names = ItemNames(ItemTable.from_records(index_records, "id"))
    assert names.label("b") == 1 and names.label("Something Else") == 1
    # By name alone "b" is ambiguous (a's title, b's id): only the exact id decides.
    assert names.index().resolve("b") == (None, [0, 1])


def test_unknown_titles_list_candidates_without_naming_a_command(movies):
    with pytest.raises(UnknownItemError) as info:
        movies.similar("Matirx")
    assert info.value.candidates[0] == "Matrix, The (1999)"
    assert "did you mean: 'Matrix, The (1999)'" in str(info.value) and "edgerec" not in str(info.value)
    with pytest.raises(UnknownItemError) as info:
        movies.recommend(["Alien (1979)", "Hamlet"])
    assert len(info.value.candidates) == 5 and all(c.startswith("Hamlet (") for c in info.value.candidates)
    with pytest.raises(UnknownItemError, match="no item has a name like it"):
        movies.similar("🚀👽")


def test_the_name_table_is_built_only_when_a_name_is_needed(tiny_bundle):
    rec = Recommender.load(tiny_bundle, threads=1)
    rec.similar("item-001", k=2)
    rec.query("dog", k=2)
    assert rec.names._index is None
    rec.find("monster")
    assert rec.names._index is not None
    assert rec.similar("dog story", k=2) == rec.similar("item-006", k=2)


def test_find_checks_its_arguments(tiny_recommender):
    from edgerec import EmptyQueryError, InputError

    with pytest.raises(EmptyQueryError):
        tiny_recommender.find("   ")
    with pytest.raises(InputError):
        tiny_recommender.find("monster", k=0)
    with pytest.raises(TypeError):
        tiny_recommender.find(None)  # type: ignore[arg-type]


# -- the command line ----------------------------------------------------------

def test_cli_items_search(tiny_bundle):
    runner = CliRunner()
    result = runner.invoke(main, ["items", "search", "monster", "--bundle", str(tiny_bundle), "-k", "4"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 4 and [line.split()[1] for line in lines] == ["exact", "exact", "exact", "prefix"]
    assert {line.split("[")[1].split("]")[0] for line in lines[:3]} == {"item-001", "item-047", "item-083"}
    rows = [json.loads(line) for line in runner.invoke(
        main, ["items", "search", "DOG story", "--json", "--bundle", str(tiny_bundle)]).output.splitlines()]
    assert rows[0]["item_id"] == "item-006" and rows[0]["match"] == "exact" and rows[0]["title"] == "Dog Story"
    none = runner.invoke(main, ["items", "search", "🚀", "--bundle", str(tiny_bundle)])
    assert none.exit_code == 0 and none.stdout == "" and "no item has a name like" in none.stderr


def test_cli_similar_by_title_and_unknown_title(tiny_bundle):
    runner = CliRunner()
    by_title = runner.invoke(main, ["similar", "dog story", "--json", "--bundle", str(tiny_bundle)])
    by_id = runner.invoke(main, ["similar", "item-006", "--json", "--bundle", str(tiny_bundle)])
    assert by_title.exit_code == 0 and by_title.output == by_id.output
    by_year = runner.invoke(main, ["recommend", "Monster (1984)", "--json", "-k", "3", "--bundle", str(tiny_bundle)])
    assert by_year.output == runner.invoke(
        main, ["recommend", "item-083", "--json", "-k", "3", "--bundle", str(tiny_bundle)]).output
    ambiguous = runner.invoke(main, ["similar", "Monster", "--bundle", str(tiny_bundle)])
    assert ambiguous.exit_code == 2 and "Traceback" not in ambiguous.output
    assert ambiguous.stderr.startswith("edgerec: error: unknown item id 'Monster'; did you mean: 'item-001', ")
    typo = runner.invoke(main, ["similar", "Dgo Story", "--bundle", str(tiny_bundle)])
    assert typo.exit_code == 2 and "did you mean: 'item-006'" in typo.stderr


def test_a_huge_name_is_refused_quickly_and_shown_cut(movies):
    import time

    pasted = "ab cd " * 30_000  # before difflib's cheap bounds were checked first: ~6 s
    started = time.perf_counter()
    with pytest.raises(UnknownItemError) as info:
        movies.similar(pasted)
    assert time.perf_counter() - started < 2.0
    assert len(str(info.value)) < 300 and "'..." in str(info.value)
