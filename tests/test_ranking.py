"""Interactions, the leave-last-out split and the ranking metrics, on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec.user import user_vector
from export.stages.ranking import (cooccurrence_scorer, evaluate, metrics, popularity_scorer, target_ranks,
                                    vector_scorer)
from export.stages.interactions import Split, load_split, next_item_examples

ITEMS = ["A (1990)", "B (1991)", "C (1992)", "D (1993)", "E (1994)"]


def write_ratings(path, rows):
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_split_keeps_positives_in_time_order_and_holds_out_the_last_two(tmp_path):
    path = write_ratings(tmp_path / "r.inter", [
        ("u1", "C (1992)", 5, 30), ("u1", "A (1990)", 4, 10), ("u1", "B (1991)", 2, 15),   # B is not positive
        ("u1", "D (1993)", 5, 40), ("u1", "E (1994)", 4, 20), ("u1", "Z (2000)", 5, 50),   # Z not in the catalogue
        ("u2", "A (1990)", 5, 1), ("u2", "B (1991)", 5, 2),                                  # too few positives
    ])
    split = load_split(ITEMS, path)
    assert split.users == 1 and split.item_count == 5
    assert split.train[0].tolist() == [0, 4]          # A (t=10), E (t=20)
    assert split.valid.tolist() == [2] and split.test.tolist() == [3]
    assert split.history("test")[0].tolist() == [0, 4, 2]  # the validation item is history for test
    assert split.popularity().tolist() == [1, 0, 0, 0, 1]
    with pytest.raises(ValueError):
        split.history("train")


def test_next_item_examples_pad_short_histories_on_the_left():
    contexts, targets = next_item_examples([np.array([3, 1, 4, 2])], window=2)
    assert contexts.tolist() == [[-1, 3], [3, 1], [1, 4]]
    assert targets.tolist() == [1, 4, 2]


def test_metrics_from_ranks():
    ranks = np.array([0, 1, 9, 10, 25])
    out = metrics(ranks, cutoffs=(10,))
    assert out["hr@10"] == pytest.approx(3 / 5)
    assert out["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)


def test_ranks_exclude_history_and_ties_count_against_the_target():
    scores = np.array([[5.0, 4.0, 3.0, 3.0, 0.0]])
    histories = [np.array([0])]                      # item 0 is removed before ranking
    assert target_ranks(lambda h: scores, histories, np.array([1])).tolist() == [0]
    assert target_ranks(lambda h: scores, histories, np.array([2])).tolist() == [2]  # tied with item 3
    flat = np.ones((1, 5))
    assert target_ranks(lambda h: flat, histories, np.array([4])).tolist() == [3]


def test_vector_scorer_is_the_runtime_user_representation():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    history = np.array([0, 1, 2, 3])
    scores = vector_scorer(vectors, window=2)([history])
    expected = vectors @ user_vector(vectors[history], 2)
    np.testing.assert_allclose(scores[0], expected, rtol=1e-5)
    # Only the window counts: older items do not change the vector.
    np.testing.assert_allclose(user_vector(vectors[[4, 2, 3]], 2), user_vector(vectors[[2, 3]], 2))
    with pytest.raises(ValueError):
        user_vector(vectors[:0], 2)


def _toy_split() -> Split:
    # Items 0-2 are liked together, 3-5 together; 6 is liked by everyone.
    train = tuple(np.array(s) for s in ([0, 1, 6], [1, 2, 6], [3, 4, 6], [4, 5, 6], [0, 2, 6], [3, 5, 6]))
    return Split(train, np.array([2, 0, 5, 3, 1, 4]), np.array([2, 0, 5, 3, 1, 4]), 7)


def test_popularity_and_cooccurrence_baselines():
    split = _toy_split()
    assert popularity_scorer(split)([np.array([0])]).argmax() == 6
    together = cooccurrence_scorer(split, window=1)([np.array([0])])[0]
    assert together[[1, 2]].min() > together[[3, 4, 5]].max()
    assert evaluate(cooccurrence_scorer(split, window=2), split, "valid")["hr@10"] == 1.0


@pytest.mark.needs_torch
def test_collaborative_targets_learn_what_is_liked_together():
    from export.stages.finetune import TargetConfig, collaborative_targets

    split = _toy_split()
    rng = np.random.default_rng(1)
    text = rng.normal(size=(7, 16)).astype(np.float32)
    config = TargetConfig(window=2, epochs=200, batch_size=64, learning_rate=0.05, stay_near_text=0.0)
    targets = collaborative_targets(split, text, config)
    np.testing.assert_allclose(np.linalg.norm(targets, axis=1), 1.0, rtol=1e-5)
    # Every user's held-out item (same group as their history) now ranks first; random vectors do not manage that.
    ranks = target_ranks(vector_scorer(targets, 2), split.history("valid"), split.valid)
    assert ranks.tolist() == [0] * split.users
    assert target_ranks(vector_scorer(text, 2), split.history("valid"), split.valid).sum() > 0
