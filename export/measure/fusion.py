"""Fusing a dense ranking with BM25 over whole score matrices, for the encoder measurements.

BM25 itself is the runtime's (edgerec.lexical), so what is measured is what
ships; here are the fusions compared on the tasks: reciprocal rank fusion
(k = 60, Cormack et al. 2009) and score fusion (the runtime's rule, applied to
every document rather than to two candidate lists).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgerec.lexical import LexicalIndex, damping

RRF_K = 60


def bm25_matrix(index: LexicalIndex, queries: Sequence[str]) -> np.ndarray:
    """One row of BM25 scores over ``index``'s documents per query."""
    return np.stack([index.scores(q) for q in queries]) if queries else np.zeros((0, index.size), np.float32)


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


def query_damping(index: LexicalIndex, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(each query's word count, its best document's coverage): what the runtime's damping reads
    (edgerec.lexical.damping, LexicalIndex.matches)."""
    words = [index.split(q) for q in queries]
    return (np.array([len(w) for w in words], dtype=np.int64),
            np.array([index.matches(w, 1)[2] for w in words], dtype=np.float64))


def score_fusion(dense: np.ndarray, lexical: np.ndarray, weight: float,
                 damping_inputs: tuple[Sequence[int], Sequence[float]] | None = None) -> np.ndarray:
    """Cosine + ``weight`` x the BM25 score as a fraction of the query's best one (edgerec.lexical.fuse's
    rule, over every document). ``damping_inputs``: each query's (word count, coverage), ``query_damping``,
    for the runtime's damping of the share (edgerec.lexical.damping); None: no damping."""
    dense, lexical = np.atleast_2d(dense), np.atleast_2d(lexical)
    if dense.shape != lexical.shape:
        raise ValueError(f"dense scores {dense.shape} and lexical scores {lexical.shape} differ in shape")
    best = lexical.max(axis=1, keepdims=True)
    scaled = np.divide(lexical, best, out=np.zeros_like(lexical, dtype=np.float64), where=best > 0)
    if damping_inputs is None:
        return dense + weight * scaled
    words, coverage = (np.asarray(x)[:, None] for x in damping_inputs)
    if len(words) != len(scaled) or len(coverage) != len(scaled):
        raise ValueError(f"{len(words)} word counts and {len(coverage)} coverages for {len(scaled)} queries")
    return dense + weight * damping(coverage, words) * scaled
