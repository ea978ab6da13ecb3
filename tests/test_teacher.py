"""The teacher's shards: written whole, resumed where a run stopped, refused for another corpus or teacher."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from export.stages.teacher import ShardPlan, load_shards, read_corpus, read_shards, shard_path


def fake_teacher(calls: list[int]):
    """Each text's vector is its length in one dimension and 1 in another (then normalised)."""
    def encode(texts):
        calls.append(len(texts))
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)
    return encode


def texts_and_plan(count: int = 10) -> tuple[list[str], ShardPlan]:
    texts = ["x" * (i + 1) for i in range(count)]
    return texts, ShardPlan(teacher="fake", corpus_sha256="0" * 64, count=count, shard_texts=4)


def test_every_text_is_read_once_into_unit_rows_in_the_planned_order(tmp_path: Path) -> None:
    texts, plan = texts_and_plan()
    calls: list[int] = []
    report = read_shards(texts, fake_teacher(calls), tmp_path, plan)
    assert calls == [4, 4, 2] and report["shards_done"] == 3 and report["texts_encoded_now"] == 10
    lines, vectors = load_shards(tmp_path)
    assert sorted(lines.tolist()) == list(range(10))
    expected = np.array([[len(texts[i]), 1.0, 0.0] for i in lines])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-3)  # float16 rows
    assert not list(tmp_path.glob("*.tmp"))


def test_a_rerun_reads_only_the_missing_shards(tmp_path: Path) -> None:
    texts, plan = texts_and_plan()
    read_shards(texts, fake_teacher([]), tmp_path, plan)
    shard_path(tmp_path, 1).unlink()
    calls: list[int] = []
    report = read_shards(texts, fake_teacher(calls), tmp_path, plan)
    assert calls == [4] and report["texts_encoded_now"] == 4 and report["shards_done"] == 3


def test_a_time_limit_stops_at_a_shard_boundary(tmp_path: Path) -> None:
    import time

    texts, plan = texts_and_plan()
    calls: list[int] = []
    slow = fake_teacher(calls)
    report = read_shards(texts, lambda batch: time.sleep(0.2) or slow(batch), tmp_path, plan, seconds=0.1)
    assert calls == [4] and report["shards_done"] == 1  # the first shard, then the limit is seen
    lines, vectors = load_shards(tmp_path)
    assert len(lines) == len(vectors) == 4
    assert read_shards(texts, fake_teacher([]), tmp_path, plan, seconds=0.0)["texts_encoded_now"] == 0


def test_shards_of_another_plan_are_refused(tmp_path: Path) -> None:
    texts, plan = texts_and_plan()
    read_shards(texts, fake_teacher([]), tmp_path, plan)
    other = ShardPlan(teacher="another", corpus_sha256="0" * 64, count=10, shard_texts=4)
    with pytest.raises(ValueError, match="made for"):
        read_shards(texts, fake_teacher([]), tmp_path, other)


def test_the_corpus_file_is_read_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "train.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("one text\n\nanother, with a comma\n")
    assert read_corpus(path) == ["one text", "another, with a comma"]
