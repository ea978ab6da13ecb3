"""Query-like texts made from the catalogue: what people type into a search box.

Used to keep the query side of the model in place while fine-tuning moves the
item side, and as distillation data so the student learns queries as well as
item texts. Generated, not collected: no user's words are stored anywhere.
"""

from __future__ import annotations

import random
from typing import Sequence

from .sources import QUERY_TEXTS

GENRE_WORDS = {
    "Action": "action", "Adventure": "adventure", "Animation": "animated", "Children's": "kids",
    "Comedy": "comedy", "Crime": "crime", "Documentary": "documentary", "Drama": "drama",
    "Fantasy": "fantasy", "Film-Noir": "film noir", "Horror": "horror", "Musical": "musical",
    "Mystery": "mystery", "Romance": "romance", "Sci-Fi": "science fiction", "Thriller": "thriller",
    "War": "war", "Western": "western",
}
_GENRE_TEMPLATES = ("{g} movies", "a good {g} film", "best {g} movies of the {d}s", "{g} and {h}",
                    "something {g} to watch tonight", "classic {g}")
_TITLE_TEMPLATES = ("{t}", "movies like {t}", "something like {t}", "if you liked {t}", "{t} ({y})")


def genre_queries() -> dict[str, str]:
    """One plain query per genre ('comedy movies' -> Comedy): the evaluation's text-query check."""
    return {genre: f"{word} movies" for genre, word in GENRE_WORDS.items()}


def query_like_texts(records: Sequence[dict], count: int, seed: int = 0, title_field: str = "title") -> list[str]:
    """``count`` distinct query-like texts (plus the fixed QUERY_TEXTS), reproducible by seed: genre phrases
    and each item's ``title_field`` in a few shapes (with its year where the record has one)."""
    rng = random.Random(seed)
    words = list(GENRE_WORDS.values())
    texts: set[str] = set(QUERY_TEXTS)
    target = count + len(texts)
    for _ in range(50 * target):  # a bound, in case a tiny catalogue cannot give `count` distinct texts
        if len(texts) >= target:
            break
        if rng.random() < 0.3:
            g, h = rng.sample(words, 2)
            decade = rng.choice(range(1930, 2001, 10))
            texts.add(rng.choice(_GENRE_TEMPLATES).format(g=g, h=h, d=decade))
        else:
            record = rng.choice(records)
            title = str(record.get(title_field) or "").strip()
            if not title:  # a catalogue without titles: its items are found by their texts, not by name
                continue
            shapes = _TITLE_TEMPLATES if record.get("year") else _TITLE_TEMPLATES[:-1]
            texts.add(rng.choice(shapes).format(t=title, y=record.get("year")))
    return sorted(texts)
