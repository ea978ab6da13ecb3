"""The held-out film summaries measurement (export/measure/summaries.py): parsing, queries, matching, scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export.measure.summaries import description, films, match_movielens, score
from export.stages.text_packages import PackageFiles

SUMMARIES = {
    "Vertigo (film)": "Vertigo is a 1958 American film noir. A detective with a fear of heights follows a woman. "
                      "Vertigo was shot in San Francisco.\nIt is now called one of the greatest films.",
    "Heat (1995 film)": "Heat is a 1995 crime film. A thief and a detective meet in Los Angeles.",
    "Nothing": "",
}


@pytest.fixture
def package(tmp_path):
    folder = tmp_path / "pkg"
    (folder / "recommending_movies" / "data").mkdir(parents=True)
    (folder / "recommending_movies" / "data" / "movie_summaries.json").write_text(json.dumps(SUMMARIES))
    return PackageFiles.from_folder(folder)


def test_films_are_parsed_with_title_year_and_paragraphs(package) -> None:
    found = {f.title: f for f in films(package)}
    assert set(found) == {"Vertigo", "Heat"}  # an empty summary is no film
    assert found["Vertigo"].year == 1958 and len(found["Vertigo"].paragraphs) == 2
    assert found["Heat"].year == 1995 and found["Heat"].key == "Heat (1995 film)"


def test_a_description_drops_the_first_sentence_and_masks_the_title(package) -> None:
    vertigo = next(f for f in films(package) if f.title == "Vertigo")
    text = description(vertigo)
    assert text.startswith("A detective with a fear of heights") and "Vertigo" not in text
    assert "the film was shot in San Francisco" in text
    assert len(description(vertigo).split()) <= 60


def test_films_match_movielens_items_by_title_and_year(package) -> None:
    items = [{"id": "Vertigo (1958)", "title": "Vertigo", "year": 1958},
             {"id": "Heat (1995)", "title": "Heat", "year": 1995},
             {"id": "Heat (1972)", "title": "Heat", "year": 1972}]
    pairs = {film.title: row for film, row in match_movielens(items, films(package))}
    assert pairs == {"Vertigo": 0, "Heat": 1}
    assert match_movielens([{"id": "x", "title": "Vertigo", "year": 1990}], films(package)) == []


def test_score_counts_reciprocal_ranks_within_ten() -> None:
    ranked = {"a": [3, 1, 2], "b": list(range(20, 40)), "c": [5]}
    got = score(lambda q: ranked[q], ["a", "b", "c"], [1, 35, 5])  # 35 ranks 16th: not within ten
    assert got["hr@10"] == pytest.approx(2 / 3, abs=1e-4)
    assert got["mrr@10"] == pytest.approx(np.mean([1 / 2, 0.0, 1.0]), abs=1e-4)
