"""Text evaluation tasks for comparing sentence encoders, scored with any `encode(texts) -> vectors`.

The data come from export/stages/text_heldout.py, the module that also tells
the distillation corpus what it must never train on; this one adds what is
measured on each set and the metrics. Every task is scored by cosine
similarity between the encoder's vectors (re-normalised here, so an encoder
that forgets to normalise is still compared fairly); a retrieval task can also
be scored from a ranker's score matrix (``score_matrix``: BM25, fusions), with
the same metrics.

    lee           Spearman between cosine and mean human similarity, 1,225 document pairs
    semanlink     nDCG@10: arXiv abstract -> its tags among all tag texts
    bbc-headline  MRR@10: headline -> its article among the held-out BBC articles
    bbc-topic     precision@10: plain topic queries over the held-out BBC articles
    film-review   MRR@10: review snippet -> the film's plot synopsis
    wordnet       MRR@10: example sentence -> its definition among held-out definitions

Sizes are chosen so that a 6-layer MiniLM encodes every task's texts in a few
minutes on two cores: about 15.9k distinct texts, most of them short; timed on
samples of each task, all-MiniLM-L6-v2 needs about 8 minutes on one shared core.
Each task's description says what was subsampled, with which seed.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ..stages.text_heldout import EvaluationSet, RetrievalSet, SimilaritySet, evaluation_sets
from ..stages.text_packages import SourcesConfig

Encoder = Callable[[Sequence[str]], np.ndarray]
ScoreMatrix = Callable[[Sequence[str], Sequence[str]], np.ndarray]  # (queries, documents) -> scores, higher better

K = 10
RETRIEVAL_METRICS = ("mrr@10", "ndcg@10", "precision@10")
TASK_METRICS = {
    "lee": "spearman",
    "semanlink": "ndcg@10",
    "bbc-headline": "mrr@10",
    "bbc-topic": "precision@10",
    "film-review": "mrr@10",
    "wordnet": "mrr@10",
    "bbc-headline-val": "mrr@10",
    "bbc-paragraph-val": "mrr@10",
    "wordnet-val": "mrr@10",
}


@dataclass(frozen=True)
class TextTask:
    """One evaluation set and the metric it is scored with."""

    name: str
    metric: str
    data: EvaluationSet = field(repr=False)

    def __post_init__(self) -> None:
        fits = (self.metric == "spearman") if isinstance(self.data, SimilaritySet) else self.metric in RETRIEVAL_METRICS
        if not fits:
            raise ValueError(f"task {self.name}: metric {self.metric!r} does not fit a {type(self.data).__name__}")

    @property
    def description(self) -> str:
        return self.data.description

    @property
    def size(self) -> int:
        """What the score averages over: pairs for a similarity task, queries for a retrieval task."""
        return len(self.data.pairs) if isinstance(self.data, SimilaritySet) else len(self.data.queries)

    @property
    def texts(self) -> int:
        """Texts the encoder reads for this task."""
        if isinstance(self.data, SimilaritySet):
            return len(self.data.docs)
        return len(self.data.queries) + len(self.data.docs)


@dataclass(frozen=True)
class TaskSuite:
    tasks: tuple[TextTask, ...]
    missing: dict[str, str]  # task name -> why its package is not here (with the fetch command)


def text_tasks(config: SourcesConfig | None = None, validation: bool = False) -> TaskSuite:
    """Every text task whose package is here, each with its name, metric and size: the test sets, or with
    ``validation`` the validation sets (the training side, for choosing settings)."""
    sets, missing = evaluation_sets(config or SourcesConfig(), validation)
    return TaskSuite(tuple(TextTask(name, TASK_METRICS[name], data) for name, data in sets.items()), missing)


# --- Metrics: pure numpy ------------------------------------------------------------------

def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (as scipy.stats.rankdata)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of the 1-based positions start+1 .. end
    out = np.empty(len(values))
    out[order] = np.repeat(average, ends - starts)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson on average ranks); 0.0 when either side is constant."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else 0.0


def top_k(queries: np.ndarray, docs: np.ndarray, k: int = K, chunk: int = 1024) -> np.ndarray:
    """Indices of the k most similar documents per query, best first; ties go to the lower index."""
    k = min(k, len(docs))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        out[start:start + chunk] = top_k_of_scores(queries[start:start + chunk] @ docs.T, k)
    return out


def top_k_of_scores(scores: np.ndarray, k: int = K) -> np.ndarray:
    """Indices of the k highest scores per row, best first; ties go to the lower index (as ``top_k``)."""
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :min(k, scores.shape[1])]


def mrr_at_k(top: np.ndarray, relevant: Sequence[frozenset[int]]) -> float:
    total = 0.0
    for row, rel in zip(top, relevant):
        hits = [i for i, d in enumerate(row) if int(d) in rel]
        total += 1.0 / (hits[0] + 1) if hits else 0.0
    return total / len(relevant)


def ndcg_at_k(top: np.ndarray, relevant: Sequence[frozenset[int]]) -> float:
    """Binary-relevance nDCG: the ideal list puts min(|relevant|, k) relevant documents first."""
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    total = 0.0
    for row, rel in zip(top, relevant):
        gain = sum(discounts[i] for i, d in enumerate(row) if int(d) in rel)
        total += gain / discounts[:min(len(rel), top.shape[1])].sum()
    return total / len(relevant)


def precision_at_k(top: np.ndarray, relevant: Sequence[frozenset[int]]) -> float:
    return float(np.mean([sum(int(d) in rel for d in row) / top.shape[1] for row, rel in zip(top, relevant)]))


_RETRIEVAL = {"mrr@10": mrr_at_k, "ndcg@10": ndcg_at_k, "precision@10": precision_at_k}


# --- Scoring ------------------------------------------------------------------------------

def _vectors(encode: Encoder, texts: Sequence[str], task: str) -> np.ndarray:
    vectors = np.asarray(encode(list(texts)), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(f"task {task}: encode() gave shape {vectors.shape} for {len(texts)} texts; "
                         f"expected ({len(texts)}, dim)")
    if not np.isfinite(vectors).all():
        raise ValueError(f"task {task}: encode() gave non-finite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def score(task: TextTask, encode: Encoder) -> float:
    """The task's metric for one encoder: higher is better, 1.0 the best."""
    data = task.data
    if isinstance(data, SimilaritySet):
        vectors = _vectors(encode, data.docs, task.name)
        cosine = np.array([float(vectors[i] @ vectors[j]) for i, j in data.pairs])
        return spearman(cosine, np.asarray(data.human))
    top = top_k(_vectors(encode, data.queries, task.name), _vectors(encode, data.docs, task.name))
    return _RETRIEVAL[task.metric](top, data.relevant)


def score_matrix(task: TextTask, scores: ScoreMatrix) -> float:
    """A retrieval task's metric for a ranker that scores (queries, documents) directly instead of encoding
    them (BM25, a fusion of rankers): same metric, same tie rule as ``score``."""
    data = task.data
    if not isinstance(data, RetrievalSet):
        raise ValueError(f"task {task.name}: a score matrix ranks documents; a {type(data).__name__} has none")
    matrix = np.asarray(scores(list(data.queries), list(data.docs)), dtype=np.float64)
    if matrix.shape != (len(data.queries), len(data.docs)):
        raise ValueError(f"task {task.name}: scores() gave shape {matrix.shape}; expected "
                         f"({len(data.queries)}, {len(data.docs)})")
    if np.isnan(matrix).any():
        raise ValueError(f"task {task.name}: scores() gave NaN")
    return _RETRIEVAL[task.metric](top_k_of_scores(matrix), data.relevant)


def subsample(task: TextTask, max_queries: int, max_docs: int, seed: int = 0) -> TextTask:
    """A smaller copy of ``task`` for smoke runs: at most ``max_queries`` queries (seeded draw), one relevant
    document of each, other documents drawn up to ``max_docs`` in all (relevance kept where it falls on them);
    a similarity task keeps the pairs within its first ``max_docs`` texts. Scores on it are not comparable
    with the full task's."""
    rng = random.Random(seed)
    data = task.data
    if isinstance(data, SimilaritySet):
        keep = [(p, h) for p, h in zip(data.pairs, data.human) if max(p) < max_docs]
        if len(keep) < 3:
            return task
        return replace(task, data=replace(data, docs=data.docs[:max_docs], pairs=tuple(p for p, _ in keep),
                                          human=tuple(h for _, h in keep)))
    chosen = sorted(rng.sample(range(len(data.queries)), min(max_queries, len(data.queries))))
    needed = {rng.choice(sorted(data.relevant[i])) for i in chosen}
    others = [d for d in range(len(data.docs)) if d not in needed]
    extra = rng.sample(others, max(0, min(len(others), max_docs - len(needed))))
    docs = sorted(needed | set(extra))
    position = {d: i for i, d in enumerate(docs)}
    return replace(task, data=replace(
        data, queries=tuple(data.queries[i] for i in chosen), docs=tuple(data.docs[d] for d in docs),
        relevant=tuple(frozenset(position[d] for d in data.relevant[i] if d in position) for i in chosen),
        reserved=()))


def memoised(encode: Encoder) -> Encoder:
    """``encode`` reading each distinct text once across calls: tasks share texts (both BBC tasks read
    the same 430 articles), and a long article costs a small model ~0.1 s on one core."""
    cache: dict[str, np.ndarray] = {}

    def wrapped(texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            vectors = np.asarray(encode(new), dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != len(new):
                raise ValueError(f"encode() gave shape {vectors.shape} for {len(new)} texts; expected ({len(new)}, dim)")
            cache.update(zip(new, vectors))
        return np.stack([cache[t] for t in texts])

    return wrapped


@dataclass(frozen=True)
class TaskScore:
    name: str
    metric: str
    value: float
    size: int
    seconds: float


def score_all(tasks: Sequence[TextTask], encode: Encoder,
              log: Callable[[str], None] | None = None) -> list[TaskScore]:
    """Every task's score, in order, with the time each took (encoding included; a text two tasks share
    is encoded once)."""
    encode = memoised(encode)
    out = []
    for task in tasks:
        started = time.perf_counter()
        value = score(task, encode)
        out.append(TaskScore(task.name, task.metric, value, task.size, time.perf_counter() - started))
        if log is not None:
            log(f"{task.name:<14} {task.metric:<13} {value:.4f}  ({task.size:,} scored, {out[-1].seconds:.1f} s)")
    return out
