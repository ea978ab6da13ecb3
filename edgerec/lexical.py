"""The lexical signal: Okapi BM25 over the items' words, fused with the encoder's cosine.

A static encoder reads a sentence as the mean of its word pieces, so a rare
word that names exactly what the user wants ("shark", a product code, an
author) weighs no more than "the". BM25 gives such words their weight back.
Fused as ``cosine + weight * damping * bm25 / best``, best being the query's
best BM25 score: scaling by it makes one weight fit short and long queries.
For a query of up to 10 words the damping is the coverage to the fourth power:
the share of the query's word weight (idf) that its best BM25 item holds. BM25
counts when one item holds the query's telling words (a headline's names, a
product code), and little when the best item shares one incidental word with
it (a dictionary example and a definition). A long query's best item holds a
small share of its many words even when it is right, while those many matching
words make BM25 at its most reliable: from 10 to 30 words the damping fades to
none (``damping``; both chosen on the validation sets, results/fusion-damping.md).

Words come from the bundle tokenizer's own normaliser and pre-tokenizer (lower
case, accents stripped, split at whitespace and punctuation), so both signals
read text the same way; pieces with no letter or digit are dropped. No stop
list: idf gives common words little weight. k1 and b are the textbook values.

The postings are computed once, when a bundle is built (every term weight
stored), so a query's scores are a sum of a few posting lists.
"""

from __future__ import annotations

import io
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import BundleError

K1 = 1.2
B = 0.75
# Candidates the lexical side brings to the fusion: its best this many, besides the encoder's top k.
LEXICAL_POOL = 100
# A query's coverage damps its BM25 share up to this many words, and not at all from LONG_QUERY words on.
SHORT_QUERY, LONG_QUERY = 10, 30
COVERAGE_POWER = 4  # the coverage counts to this power: a best item holding half the word weight counts 1/16
# Catalogues larger than this sum a query's few postings sparsely; smaller ones count into one array.
SPARSE_FROM = 65536
_FORMAT = "edgerec-bm25-1"


class WordSplitter:
    """The tokenizer's normaliser and pre-tokenizer, without WordPiece: text -> words."""

    def __init__(self, tokenizer: Any) -> None:
        """``tokenizer``: a loaded ``tokenizers.Tokenizer`` (the encoder's)."""
        if tokenizer.normalizer is None or tokenizer.pre_tokenizer is None:
            raise BundleError("the tokenizer has no normaliser or pre-tokenizer to split words for BM25")
        self._normalizer = tokenizer.normalizer
        self._pre_tokenizer = tokenizer.pre_tokenizer

    @classmethod
    def from_file(cls, path: Any) -> "WordSplitter":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def __call__(self, text: str) -> list[str]:
        pieces = self._pre_tokenizer.pre_tokenize_str(self._normalizer.normalize_str(text))
        return [word for word, _ in pieces if any(c.isalnum() for c in word)]


class LexicalBuilder:
    """Word counts of documents added in order (document i: the item with label i); ``finish`` weighs them."""

    def __init__(self, split: WordSplitter, k1: float = K1, b: float = B) -> None:
        self.split, self.k1, self.b = split, k1, b
        self._postings: dict[str, list[tuple[int, int]]] = {}
        self._lengths: list[int] = []

    def add(self, texts: Iterable[str]) -> None:
        for text in texts:
            doc = len(self._lengths)
            counts = Counter(self.split(text))
            self._lengths.append(sum(counts.values()))
            for word, tf in counts.items():
                self._postings.setdefault(word, []).append((doc, tf))

    def finish(self) -> "LexicalIndex":
        """BM25 term weights: ``idf`` times tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / mean length))."""
        size = len(self._lengths)
        if size == 0:
            raise ValueError("BM25 needs at least one document")
        lengths = np.asarray(self._lengths, dtype=np.float64)
        norm = self.k1 * (1 - self.b + self.b * lengths / max(lengths.mean(), 1e-9))
        words = sorted(self._postings)
        weights_of_word = idf(np.array([len(self._postings[word]) for word in words]), size)
        starts = np.zeros(len(words) + 1, dtype=np.int64)
        docs_parts, weight_parts = [], []
        for i, word in enumerate(words):
            pairs = np.asarray(self._postings[word], dtype=np.int64)
            docs, tf = pairs[:, 0], pairs[:, 1].astype(np.float64)
            docs_parts.append(docs.astype(np.int32))
            weight_parts.append((weights_of_word[i] * tf * (self.k1 + 1) / (tf + norm[docs])).astype(np.float32))
            starts[i + 1] = starts[i] + len(docs)
        self._postings.clear()
        empty_i, empty_f = np.empty(0, np.int32), np.empty(0, np.float32)
        return LexicalIndex(words, starts, np.concatenate(docs_parts) if docs_parts else empty_i,
                            np.concatenate(weight_parts) if weight_parts else empty_f, size, self.split)


@dataclass
class LexicalIndex:
    """BM25 postings: word ``words[i]`` occurs in ``docs[starts[i]:starts[i+1]]`` with those ``weights``."""

    words: Sequence[str]
    starts: np.ndarray
    docs: np.ndarray
    weights: np.ndarray
    size: int
    split: WordSplitter

    def __post_init__(self) -> None:
        self._ids = {word: i for i, word in enumerate(self.words)}
        # idf as the weights were made with (LexicalBuilder.finish); a word no item has gets the most.
        self._idf = idf(np.diff(self.starts), self.size)
        self._unseen_idf = float(idf(np.zeros(1), self.size)[0])

    @classmethod
    def build(cls, texts: Iterable[str], split: WordSplitter, k1: float = K1, b: float = B) -> "LexicalIndex":
        builder = LexicalBuilder(split, k1, b)
        builder.add(texts)
        return builder.finish()

    # -- the file ----------------------------------------------------------
    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        blob = "\n".join(self.words).encode("utf-8")  # words never hold whitespace
        np.savez(buffer, format=np.array(_FORMAT), size=np.array(self.size, dtype=np.int64),
                 words=np.frombuffer(blob, dtype=np.uint8), starts=self.starts, docs=self.docs, weights=self.weights)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, split: WordSplitter, *, size: int, name: str = "lexical file") -> "LexicalIndex":
        """Read and check a file ``to_bytes`` wrote for a table of ``size`` items."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                fmt, stored = str(arrays["format"]), int(arrays["size"])
                words = bytes(arrays["words"]).decode("utf-8")
                starts, docs, weights = arrays["starts"], arrays["docs"], arrays["weights"]
        except Exception as exc:  # a damaged zip or array: numpy and zipfile raise many kinds
            raise BundleError(f"{name}: not a readable BM25 index ({type(exc).__name__}); rebuild the bundle") from None
        words_list = words.split("\n") if words else []
        ok = (fmt == _FORMAT and stored == size and starts.dtype == np.int64 and docs.dtype == np.int32
              and weights.dtype == np.float32 and len(starts) == len(words_list) + 1 and starts[0] == 0
              and bool(np.all(np.diff(starts) > 0)) and starts[-1] == len(docs) == len(weights)
              and (len(docs) == 0 or (int(docs.min()) >= 0 and int(docs.max()) < size))
              and bool(np.isfinite(weights).all()))
        if not ok:
            raise BundleError(f"{name}: its BM25 postings do not fit the bundle's {size} items; rebuild the bundle")
        return cls(words_list, starts, docs, weights, size, split)

    # -- queries -----------------------------------------------------------
    def top(self, query: str, n: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best (labels, BM25 scores), best first; only documents sharing a word with ``query``
        (and, given ``allowed``, a bool per document, only those it allows). A word repeated in the query
        counts each time."""
        return self.top_of_words(self.split(query), n, allowed)

    def top_of_words(self, words: Sequence[str], n: int,
                     allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``top`` for a query already split into ``words`` (``split``)."""
        return self.matches(words, n, allowed)[:2]

    def matches(self, words: Sequence[str], n: int,
                allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """``top_of_words`` and the coverage of the best: the share of the words' idf (each time a word
        occurs) that the first document holds; 0 when none matches."""
        known = [i for i in map(self._ids.get, words) if i is not None]
        if not known:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), 0.0
        starts = self.starts
        spans = [(starts[i], starts[i + 1]) for i in known]
        docs = np.concatenate([self.docs[s:e] for s, e in spans])
        weights = np.concatenate([self.weights[s:e] for s, e in spans])
        if self.size > SPARSE_FROM and len(docs) * 8 < self.size:  # a few postings in many items: sum sparsely
            labels, inverse = np.unique(docs, return_inverse=True)
            scores = np.bincount(inverse, weights=weights)
        else:
            scores = np.bincount(docs, weights=weights, minlength=self.size)
            labels = np.flatnonzero(scores)
            scores = scores[labels]
        if allowed is not None:  # a filter: dropped before ranking, so n passing documents come back
            passing = allowed[labels]
            labels, scores = labels[passing], scores[passing]
        if len(labels) > n:
            keep = np.argpartition(-scores, n - 1)[:n]
            labels, scores = labels[keep], scores[keep]
        order = np.lexsort((labels, -scores))  # best first; ties to the lower label
        labels, scores = labels[order].astype(np.int64), scores[order].astype(np.float32)
        if not len(labels):
            return labels, scores, 0.0
        # The best document occurs at most once in each word's postings: the spans it occurs in are the
        # query words it holds (a word the query repeats has a span each time). A query has a few words:
        # plain Python over them costs less than numpy's calls.
        ends = list(accumulate(int(e - s) for s, e in spans))
        weight = [float(self._idf[i]) for i in known]
        held = sum(weight[bisect_right(ends, hit)] for hit in np.flatnonzero(docs == labels[0]).tolist())
        return labels, scores, held / (sum(weight) + self._unseen_idf * (len(words) - len(known)))

    def scores(self, query: str) -> np.ndarray:
        """One BM25 score per document (0 where no query word occurs)."""
        out = np.zeros(self.size, dtype=np.float32)
        labels, scores = self.top(query, self.size)
        out[labels] = scores
        return out

    @property
    def nbytes(self) -> int:
        return int(self.starts.nbytes + self.docs.nbytes + self.weights.nbytes)


def idf(document_counts: np.ndarray, size: int) -> np.ndarray:
    """BM25's idf for words in that many of ``size`` documents: ln(1 + (N - n + 0.5) / (n + 0.5)) (Lucene's,
    never negative)."""
    counts = np.asarray(document_counts, dtype=np.float64)
    return np.log(1 + (size - counts + 0.5) / (counts + 0.5))


def damping(coverage: Any, words: Any) -> Any:
    """How much of a query's BM25 share counts, for its best document's ``coverage`` (``LexicalIndex.matches``)
    and its word count (numbers or arrays alike): coverage ** COVERAGE_POWER up to SHORT_QUERY words, fading
    linearly to 1 at LONG_QUERY."""
    trust = coverage ** COVERAGE_POWER
    fade = (words - SHORT_QUERY) / (LONG_QUERY - SHORT_QUERY)
    # numpy's clip costs a query ~10 us on plain numbers
    fade = np.clip(fade, 0.0, 1.0) if isinstance(fade, np.ndarray) else min(1.0, max(0.0, fade))
    return trust + (1.0 - trust) * fade


def fuse(dense_labels: np.ndarray, dense_scores: np.ndarray, lexical_labels: np.ndarray,
         lexical_scores: np.ndarray, cosine_of: Any, weight: float, k: int, *,
         words: int, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of cosine + ``weight`` x damping x BM25 / best over the two candidate lists (best: the
    query's best BM25 score, ``lexical_scores`` being best first; damping: ``damping`` of the best's
    ``coverage`` and the query's ``words``).

    ``cosine_of(labels)``: the exact cosine of those items to the query, asked only for lexical candidates
    the encoder's search did not return and that could still make the top ``k``: such an item's cosine is
    at most the encoder's k-th, so one whose share cannot lift that past the k-th fused score is skipped
    unread (a tie with the k-th stays with the encoder's own list). An item in neither list has a lower
    fused score than the encoder's k-th, unless its BM25 beats the lexical pool's last: the pool is sized
    so that this is rare.
    """
    if len(lexical_labels) == 0:
        return dense_labels[:k], dense_scores[:k]
    best = float(lexical_scores[0])
    shares = (lexical_scores * (weight * float(damping(coverage, words)) / best)).astype(np.float64)
    dense = dense_scores.astype(np.float64)
    # Each lexical candidate's place in the encoder's list (the lists are short: one comparison table).
    same = lexical_labels[:, None] == dense_labels[None, :]
    dense = dense + shares @ same
    outside = ~same.any(axis=1)
    out_labels, out_shares = lexical_labels[outside], shares[outside]
    if len(dense_labels) >= k and len(out_labels):
        ceiling = float(dense_scores[k - 1])  # the most an item the search did not return can have
        floor = float(np.partition(dense, len(dense) - k)[len(dense) - k])  # the k-th fused score
        lifted = ceiling + out_shares > floor
        out_labels, out_shares = out_labels[lifted], out_shares[lifted]
    if len(out_labels):
        out_shares = out_shares + np.asarray(cosine_of(out_labels), dtype=np.float64)
    labels = np.concatenate([dense_labels.astype(np.int64), out_labels.astype(np.int64)])
    scores = np.concatenate([dense, out_shares])
    order = np.lexsort((labels, -scores))[:k]  # best first; ties to the lower label
    return labels[order], scores[order].astype(np.float32)
