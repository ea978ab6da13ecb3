"""Saying when a query is not understood: the rule, the API flag, the CLI note and JSON field."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgerec import Recommender
from edgerec.cli import main
from edgerec.recommender import default_bundle_path
from edgerec.understood import understood


@pytest.fixture(scope="module")
def movies() -> Recommender:
    return Recommender.load(default_bundle_path(), threads=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("🚀👽", False),
        ("😂", False),
        ("😂😂 😂", False),
        ("???!!", False),  # punctuation alone: pieces without a letter or digit
        ("ᚠᚢᚦ", False),  # runes: not in the vocabulary
        ("மொழி", False),  # Tamil: not in the vocabulary
        ("😂 alien", True),
        ("日本語", True),  # CJK characters are in the vocabulary
        ("1999", True),
        ("The Matrix", True),
        ("zzzq", True),  # known pieces, no meaning: the rule is about pieces (module docstring)
    ],
)
def test_the_rule_on_the_movielens_tokenizer(movies, text, expected):
    assert understood(movies.encoder.tokenizer, text) is expected
    assert movies.query_understood(text) is expected


def test_not_understood_queries_all_get_the_same_list(movies):
    """Why the flag matters: every such query is the unknown token alone, so the list answers nothing."""
    lists = [[r.item_id for r in movies.query(text, k=5)] for text in ("🚀👽", "😂", "ᚠᚢᚦ")]
    assert lists[0] == lists[1] == lists[2] and len(lists[0]) == 5
    assert [r.item_id for r in movies.query("😂 alien", k=5)] != lists[0]


def test_query_understood_checks_its_argument(tiny_recommender):
    from edgerec import EmptyQueryError

    with pytest.raises(EmptyQueryError):
        tiny_recommender.query_understood("  ")
    with pytest.raises(TypeError):
        tiny_recommender.query_understood(None)  # type: ignore[arg-type]
    assert tiny_recommender.query_understood("😂 dog") and not tiny_recommender.query_understood("😂")


def test_cli_says_so_on_stderr_and_in_json(tiny_bundle):
    runner = CliRunner()
    args = ["--bundle", str(tiny_bundle), "-k", "3"]
    emoji = runner.invoke(main, ["query", "🚀👽", *args])
    assert emoji.exit_code == 0 and "the model knows no word of this query" in emoji.stderr
    assert len(emoji.stdout.splitlines()) == 3
    rows = [json.loads(line) for line in runner.invoke(main, ["query", "😂", "--json", *args]).stdout.splitlines()]
    assert len(rows) == 3 and all(row["understood"] is False for row in rows)
    plain = runner.invoke(main, ["query", "space dog", "--json", *args])
    assert plain.stderr == "" and all(json.loads(line)["understood"] is True for line in plain.stdout.splitlines())
