"""Leave-last-out ranking quality: HR@k and NDCG@k over the full catalogue.

Every scorer gives each user a score for every item; items already in the
user's history are removed before ranking, so the target competes with the
whole rest of the catalogue.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from edgerec.user import user_vector

from ..stages.interactions import Split

# A scorer maps (histories of a block of users) -> scores (users x items).
Scorer = Callable[[Sequence[np.ndarray]], np.ndarray]
CUTOFFS = (10, 20)


def target_ranks(scorer: Scorer, histories: Sequence[np.ndarray], targets: np.ndarray, block: int = 512) -> np.ndarray:
    """0-based rank of each user's target among the items not in their history."""
    ranks = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), block):
        rows = slice(start, start + block)
        scores = np.array(scorer(histories[rows]), dtype=np.float64)
        for i, history in enumerate(histories[rows]):
            scores[i, history] = -np.inf
        own = scores[np.arange(len(scores)), targets[rows]][:, None]
        # Ties count against the target, so a scorer cannot win by giving everything the same score.
        ranks[rows] = (scores >= own).sum(axis=1) - 1
    return ranks


def metrics(ranks: np.ndarray, cutoffs: Sequence[int] = CUTOFFS) -> dict[str, float]:
    out = {}
    for k in cutoffs:
        hit = ranks < k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    return out


def evaluate(scorer: Scorer, split: Split, which: str = "test") -> dict[str, float]:
    return metrics(target_ranks(scorer, split.history(which), split.targets(which)))


# -- scorers -------------------------------------------------------------------
def popularity_scorer(split: Split) -> Scorer:
    counts = split.popularity().astype(np.float64)
    return lambda histories: np.tile(counts, (len(histories), 1))


def cooccurrence_scorer(split: Split, window: int) -> Scorer:
    """Item-to-item: cosine-normalised counts of users who liked both, summed over the recent history."""
    n = split.item_count
    users = np.repeat(np.arange(split.users), [len(h) for h in split.train])
    liked = np.zeros((split.users, n), dtype=np.float32)
    liked[users, np.concatenate(split.train)] = 1.0
    together = liked.T @ liked
    norms = np.sqrt(np.maximum(np.diag(together), 1.0))
    similarity = together / norms[:, None] / norms[None, :]
    np.fill_diagonal(similarity, 0.0)
    return lambda histories: np.stack([similarity[h[-window:]].sum(axis=0) for h in histories])


def vector_scorer(item_vectors: np.ndarray, window: int) -> Scorer:
    """The runtime's `recommend`: user vector (edgerec.user) against every item vector."""
    vectors = item_vectors / np.linalg.norm(item_vectors, axis=1, keepdims=True)
    return lambda histories: np.stack([user_vector(vectors[h], window) for h in histories]) @ vectors.T


def prior_scorer(item_vectors: np.ndarray, window: int, counts: np.ndarray, weight: float) -> Scorer:
    """The runtime's `recommend` with an item prior (edgerec.prior): cosine + weight x the counts' prior."""
    from edgerec.prior import ItemPrior

    vectors, prior = vector_scorer(item_vectors, window), ItemPrior(counts).scores.astype(np.float64)
    return lambda histories: vectors(histories) + weight * prior
