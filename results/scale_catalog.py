"""Write a synthetic catalogue shaped like the MovieLens movies, at any size, for scale tests.

Titles are drawn (seeded) from the words of the shipped bundle's 3,883 movie
titles, by word frequency, with as many words as real titles have, so their
length in tokens and their vocabulary resemble real titles; each item also gets a year and 1-3 of the
18 MovieLens genres. Used for results/scale.md:

    python results/scale_catalog.py 1000000 /tmp/catalog-1m.jsonl
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


def title_words(items: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Words of the bundle's titles, how often each occurs, and how often a title has 1, 2, ... words."""
    counts: Counter[str] = Counter()
    lengths: Counter[int] = Counter()
    with open(items, encoding="utf-8") as handle:
        for line in handle:
            found = re.findall(r"[A-Za-z][a-z']+", json.loads(line)["title"])
            counts.update(found)
            if found:
                lengths[len(found)] += 1
    words = sorted(counts)
    weights = np.array([counts[w] for w in words], dtype=np.float64)
    per_length = np.array([lengths[n] for n in range(1, max(lengths) + 1)], dtype=np.float64)
    return words, weights / weights.sum(), per_length / per_length.sum()


def write_catalog(count: int, out: Path, seed: int = 0) -> None:
    words, weights, title_lengths = title_words(REPO / "artifacts" / "default" / "items.jsonl")
    rng = np.random.default_rng(seed)
    with open(out, "w", encoding="utf-8") as handle:
        for start in range(0, count, 10_000):
            n = min(10_000, count - start)
            lengths = rng.choice(len(title_lengths), size=n, p=title_lengths) + 1
            drawn = rng.choice(len(words), size=int(lengths.sum()), p=weights)
            years = rng.integers(1920, 2021, size=n)
            genre_counts = rng.integers(1, 4, size=n)
            position = 0
            lines = []
            for i in range(n):
                title = " ".join(words[w] for w in drawn[position : position + lengths[i]])
                position += lengths[i]
                genres = sorted(rng.choice(len(GENRES), size=genre_counts[i], replace=False).tolist())
                lines.append(json.dumps({"id": f"m{start + i:07d}", "title": title.title(), "year": int(years[i]),
                                         "genres": [GENRES[g] for g in genres]}))
            handle.write("\n".join(lines) + "\n")
    print(f"wrote {out}: {count} items from {len(words)} title words", file=sys.stderr)


if __name__ == "__main__":
    write_catalog(int(sys.argv[1]), Path(sys.argv[2]))
