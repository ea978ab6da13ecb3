"""A lexical signal: Okapi BM25 over words, and reciprocal-rank fusion with a dense ranking.

Words come from the MiniLM tokenizer's own normaliser and pre-tokenizer
(lower case, accents stripped, split at whitespace and punctuation), so the
lexical side reads text exactly as the encoder's tokenizer does before
WordPiece; pieces without a letter or digit (punctuation) are dropped. No stop
list: BM25's idf gives common words little weight. The parameters are the
textbook ones (k1 = 1.2, b = 0.75; RRF's k = 60 from Cormack et al. 2009), not
tuned on anything.

Pure numpy: per (word, document) the BM25 term weight is computed once at
indexing, so a query's scores are a sum of posting lists.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

K1 = 1.2
B = 0.75
RRF_K = 60
# score_fusion's weight for the static student: of 0.05-0.5, the one whose lowest validation task ratio to
# stock MiniLM is highest (0.86 at 0.05; 0.80 at 0.1, 0.50 at 0.5: BM25 helps headlines and hurts WordNet
# definitions); results/encoders-validation.md, never the test sets.
FUSION_WEIGHT = 0.05


class WordSplitter:
    """The tokenizer's normaliser and pre-tokenizer, without WordPiece: text -> words."""

    def __init__(self, tokenizer_path: Path) -> None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        if tokenizer.normalizer is None or tokenizer.pre_tokenizer is None:
            raise ValueError(f"{tokenizer_path}: needs a normaliser and a pre-tokenizer to split words")
        self.normalizer = tokenizer.normalizer
        self.pre_tokenizer = tokenizer.pre_tokenizer

    def __call__(self, text: str) -> list[str]:
        pieces = self.pre_tokenizer.pre_tokenize_str(self.normalizer.normalize_str(text))
        return [word for word, _ in pieces if any(c.isalnum() for c in word)]


class Bm25:
    """Okapi BM25 over a fixed set of documents: idf = ln(1 + (N - n + 0.5) / (n + 0.5)) (Lucene's, never
    negative), term weight = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / mean length))."""

    def __init__(self, documents: Sequence[str], split: WordSplitter, k1: float = K1, b: float = B) -> None:
        if not documents:
            raise ValueError("BM25 needs at least one document")
        self.split, self.size = split, len(documents)
        counts = [Counter(split(d)) for d in documents]
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for doc, count in enumerate(counts):
            for word, tf in count.items():
                docs, tfs = postings.setdefault(word, ([], []))
                docs.append(doc)
                tfs.append(tf)
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for word, (docs, tfs) in postings.items():
            d, tf = np.asarray(docs, dtype=np.int32), np.asarray(tfs, dtype=np.float64)
            idf = np.log(1 + (self.size - len(d) + 0.5) / (len(d) + 0.5))
            self.postings[word] = (d, (idf * tf * (k1 + 1) / (tf + norm[d])).astype(np.float32))

    @property
    def nbytes(self) -> int:
        """Bytes of the posting arrays (the words themselves not counted)."""
        return sum(d.nbytes + w.nbytes for d, w in self.postings.values())

    def scores(self, query: str) -> np.ndarray:
        """One score per document (0 where no query word occurs); a repeated query word counts each time."""
        out = np.zeros(self.size, dtype=np.float32)
        for word in self.split(query):
            found = self.postings.get(word)
            if found is not None:
                out[found[0]] += found[1]
        return out

    def matrix(self, queries: Sequence[str]) -> np.ndarray:
        return np.stack([self.scores(q) for q in queries]) if queries else np.zeros((0, self.size), np.float32)


def rank_positions(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every entry of each row, best first; ties go to the lower index (as the task metrics)."""
    scores = np.atleast_2d(scores)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def reciprocal_rank_fusion(dense: np.ndarray, lexical: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """RRF of a dense ranking of every document and a lexical one: sum of 1 / (k + rank). A document the
    lexical ranker did not retrieve (score 0: no shared word) gets nothing from it, as in fusing result lists;
    otherwise zero-score ties would be ranked by document order."""
    dense, lexical = np.atleast_2d(dense), np.atleast_2d(lexical)
    if dense.shape != lexical.shape:
        raise ValueError(f"dense scores {dense.shape} and lexical scores {lexical.shape} differ in shape")
    fused = 1.0 / (k + rank_positions(dense))
    return fused + np.where(lexical > 0, 1.0 / (k + rank_positions(lexical)), 0.0)


def score_fusion(dense: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """Cosine + ``weight`` x the BM25 score as a fraction of the query's best one: per-query scaling makes one
    weight fit short and long queries (raw BM25 grows with the query's length, a cosine does not)."""
    dense, lexical = np.atleast_2d(dense), np.atleast_2d(lexical)
    if dense.shape != lexical.shape:
        raise ValueError(f"dense scores {dense.shape} and lexical scores {lexical.shape} differ in shape")
    best = lexical.max(axis=1, keepdims=True)
    return dense + weight * np.divide(lexical, best, out=np.zeros_like(lexical, dtype=np.float64), where=best > 0)
