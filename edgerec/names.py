"""Items by name: find an item from what a person types ("The Matrix", "matrix, the (1999)", "Alien3").

Ids and titles are compared in a normalised form: accents folded (NFKD, combining
marks dropped, so "³" reads "3"), case folded, punctuation dropped, an article
ignored (leading "the/a/an", or MovieLens's trailing ", The" and its foreign
kin: ", La", ", Les", ...), and a year in parentheses at the end set apart: a
query that gives one must agree with the item's, a query without one matches
any year.

Ranking, best first: the exact normalised name, then names starting with the
query, then names holding every query word, then names like it (difflib's
ratio of at least 0.7, for typos). Spaces do not separate an exact match:
"alien 3" is "Alien³". Candidates come from an inverted index of character
trigrams, so a lookup reads a few posting lists, not every name.

The table is built on first use (it parses every item once: ~0.1 s for
MovieLens's 3,883 items, ~5 s for 200,000 on a busy 2-vCPU machine): loading a
bundle, exact ids and queries never pay for it.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import UnknownItemError
from .items import ItemTable

# How a name matched, best first; the order is the ranking's first key.
EXACT, PREFIX, WORDS, SIMILAR = "exact", "prefix", "words", "similar"
_TIERS = (EXACT, PREFIX, WORDS, SIMILAR)
# Names kept as typo candidates (by trigram overlap) before difflib ranks them, and the ratio they need.
_FUZZY_POOL = 200
MIN_SIMILARITY = 0.7

_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
# Articles only in the trailing form ("Haine, La"): a leading "die" or "la" is often a word ("Die Hard").
_TRAILING_ARTICLE = re.compile(r",\s*(the|a|an|le|la|les|l'|il|el|los|las|lo|der|die|das|det|den)\s*$")
_LEADING_ARTICLES = frozenset({"the", "a", "an"})
_APOSTROPHES = re.compile(r"['\u2019`]")
_NOT_WORD = re.compile(r"[^0-9a-z]+")


def fold(text: str) -> str:
    """Lower case without accents: NFKD (which also turns "³" into "3"), combining marks dropped."""
    if text.isascii():
        return text.lower()  # most names: nothing to decompose
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def split_name(text: str) -> tuple[str, int | None]:
    """(normalised name, year or None): "Matrix, The (1999)" and "The Matrix" both give "matrix"."""
    name = fold(text).strip()
    year = None
    found = _YEAR.search(name)
    if found:
        year, name = int(found.group(1)), name[: found.start()]
    name = _TRAILING_ARTICLE.sub("", name)
    words = _NOT_WORD.sub(" ", _APOSTROPHES.sub("", name)).split()
    if len(words) > 1 and words[0] in _LEADING_ARTICLES:
        words = words[1:]
    return " ".join(words), year


def _trigrams(name: str) -> set[str]:
    """Trigrams of each word padded with spaces: word order does not change them."""
    return {padded[i : i + 3] for padded in (f" {word} " for word in name.split()) for i in range(len(padded) - 2)}


@dataclass(frozen=True)
class NameMatch:
    """An item found by name: how it matched (exact, prefix, words, similar) and how alike the names are
    (difflib's ratio of the normalised names, 1.0 when equal)."""

    item_id: str
    match: str
    score: float
    metadata: Mapping[str, Any]

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", self.item_id))

    def to_dict(self) -> dict[str, Any]:
        body = {k: v for k, v in self.metadata.items() if k not in ("item_id", "match", "score")}
        return {"item_id": self.item_id, "match": self.match, "score": round(self.score, 6), **body}


class NameIndex:
    """Every item's normalised names (its title and its id), with a trigram index over them."""

    def __init__(self, records: Iterable[Mapping[str, Any]], id_field: str) -> None:
        labels: list[int] = []
        names: list[str] = []
        years: list[int | None] = []
        gram_counts: list[int] = []
        all_grams: list[str] = []  # every name's trigrams, one name after another
        for label, record in enumerate(records):
            item_year = _metadata_year(record.get("year"))
            seen: set[str] = set()
            for text in (record.get("title"), record.get(id_field)):
                if not isinstance(text, str):
                    continue
                name, year = split_name(text)
                if not name or name in seen:
                    continue
                seen.add(name)
                grams = _trigrams(name)
                all_grams.extend(grams)
                gram_counts.append(len(grams))
                labels.append(label)
                names.append(name)
                years.append(year if year is not None else item_year)
        self._labels = np.asarray(labels, dtype=np.int64)
        self._names = names
        self._years = years
        self._gram_counts = np.asarray(gram_counts, dtype=np.int64)
        # Postings as one array grouped by numpy (CSR), not a list per trigram: fewer Python objects to make.
        self._gram_ids: dict[str, int] = {}
        ids = np.fromiter((self._gram_ids.setdefault(g, len(self._gram_ids)) for g in all_grams), dtype=np.int64,
                          count=len(all_grams))
        owners = np.repeat(np.arange(len(names), dtype=np.int32), self._gram_counts)
        self._entries = owners[np.argsort(ids, kind="stable")]
        self._starts = np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=len(self._gram_ids)))])

    def search(self, text: str, k: int) -> list[tuple[int, str, float]]:
        """The ``k`` best (label, how it matched, similarity), one entry per item, best first."""
        query, year = split_name(text)
        if not query:
            return []
        grams = _trigrams(query)
        found = [self._gram_ids[g] for g in grams if g in self._gram_ids]
        lists = [self._entries[self._starts[i] : self._starts[i + 1]] for i in found]
        if not lists:
            return []
        shared = np.bincount(np.concatenate(lists), minlength=len(self._names))
        # A name holding every query word has all their trigrams; one starting with the query lacks at most
        # the last word's closing one. The rest are only typo candidates: the best few by trigram overlap.
        structured = np.flatnonzero(shared >= max(1, len(grams) - 1))
        overlap = shared / (len(grams) + self._gram_counts - shared)
        pool = min(_FUZZY_POOL, len(overlap))
        fuzzy = np.argpartition(-overlap, pool - 1)[:pool]  # unordered: the ranking below orders them
        fuzzy = fuzzy[shared[fuzzy] > 0]
        query_words = set(query.split())
        compact = query.replace(" ", "")  # "alien 3" is "Alien³"; "star wars" is not "starwars" otherwise
        best: dict[int, tuple[int, float]] = {}  # label -> (tier index, similarity)
        for entry in dict.fromkeys([*structured.tolist(), *fuzzy.tolist()]):
            name = self._names[entry]
            if name == query or name.replace(" ", "") == compact:
                tier, similarity = EXACT, 1.0
            elif name.startswith(query):
                tier, similarity = PREFIX, 2 * len(query) / (len(query) + len(name))  # difflib's ratio for a prefix
            elif query_words <= set(name.split()):
                tier, similarity = WORDS, SequenceMatcher(None, query, name).ratio()
            else:
                # Typos: difflib's cheap upper bounds first, as get_close_matches does (a long query costs
                # seconds in ratio() against every candidate, and cannot reach the bound anyway).
                matcher = SequenceMatcher(None, query, name)
                if matcher.real_quick_ratio() < MIN_SIMILARITY or matcher.quick_ratio() < MIN_SIMILARITY:
                    continue
                tier, similarity = SIMILAR, matcher.ratio()
                if similarity < MIN_SIMILARITY:
                    continue
            if year is not None and self._years[entry] != year:
                tier = SIMILAR  # the name fits but the year does not: a candidate, never a match
            key = (_TIERS.index(tier), -similarity)
            label = int(self._labels[entry])
            if label not in best or key < best[label]:
                best[label] = key
        ranked = sorted(best.items(), key=lambda item: (item[1], item[0]))[:k]
        return [(label, _TIERS[tier], -negative) for label, (tier, negative) in ranked]

    def resolve(self, text: str) -> tuple[int | None, list[int]]:
        """(the one item ``text`` names, or None; the best candidates). ``text`` names an item when exactly
        one item is in the best of the exact, prefix and words tiers: "Matrix" and "Shawshank" do, "Star
        Wars" (several start so) and "Matirx" (a typo is only ever a candidate) do not."""
        found = self.search(text, 64)
        firm = [(label, how) for label, how, _ in found if how != SIMILAR]
        if firm:
            top = [label for label, how in firm if how == firm[0][1]]
            if len(top) == 1:
                return top[0], [top[0]]
        return None, [label for label, _, _ in found[:5]]


def _metadata_year(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class ItemNames:
    """Find and resolve the items of a table by name; the NameIndex is built on first use, once, even when
    threads ask at the same time."""

    def __init__(self, items: ItemTable) -> None:
        self.items = items
        self._index: NameIndex | None = None
        self._lock = threading.Lock()

    def index(self) -> NameIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = NameIndex(self.items.scan(), self.items.id_field)
        return self._index

    def find(self, text: str, k: int) -> list[NameMatch]:
        return [NameMatch(item_id=self._id(label), match=how, score=score, metadata=self._metadata(label))
                for label, how, score in self.index().search(text, k)]

    def label(self, item_id: str) -> int:
        """The label of an exact id, else of the one item ``item_id`` names (``NameIndex.resolve``); else
        UnknownItemError with the candidates. Exact ids never build the name table."""
        label = self.items.labels.get(item_id)
        if label is not None:
            return label
        if not item_id.strip():
            raise UnknownItemError(item_id)
        label, candidates = self.index().resolve(item_id)
        if label is None:
            raise UnknownItemError(item_id, tuple(self._id(c) for c in candidates))
        return label

    def _id(self, label: int) -> str:
        return str(self.items.records[label][self.items.id_field])

    def _metadata(self, label: int) -> dict[str, Any]:
        return {f: v for f, v in self.items.records[label].items() if f != self.items.id_field}
