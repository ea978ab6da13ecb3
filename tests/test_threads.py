"""One Recommender shared by 8 threads answers exactly as it does on one thread."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from edgerec import Recommender

THREADS = 8
PASSES = 3  # each thread runs every call this many times, in its own order

WORDS = "space alien robot heist twist love war haunted house funny kids night city ship sea king ghost".split()

Outcome = tuple  # ((item_id, score), ...), ("vectors", bytes) or (error type name, message)


def outcome(call: Callable[[Recommender], list], rec: Recommender) -> Outcome:
    """The exact answer (ids and float scores, or vector bytes), or the exact error."""
    try:
        answer = call(rec)
        if isinstance(answer, np.ndarray):
            return ("vectors", answer.tobytes())
        return tuple((r.item_id, r.score) for r in answer)
    except Exception as exc:  # noqa: BLE001 - compared, not hidden: a new error is a mismatch
        return (type(exc).__name__, str(exc))


def mixed_calls(seed: int = 11) -> list[Callable[[Recommender], list]]:
    rng = random.Random(seed)
    ids = [f"item-{i:03d}" for i in range(120)]
    calls: list[Callable[[Recommender], list]] = []
    for n in range(48):
        k = rng.randint(1, 15)
        if n % 4 == 1:
            item = rng.choice(ids)
            calls.append(lambda r, item=item, k=k: r.similar(item, k=k))
        elif n % 4 == 2:
            history = rng.sample(ids, rng.randint(1, 8))
            calls.append(lambda r, history=history, k=k: r.recommend(history, k=k))
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
            calls.append(lambda r, text=text, k=k: r.query(text, k=k))
    calls += [lambda r: r.query(""), lambda r: r.similar("nope"), lambda r: r.query("x" * 200_000, k=3),
              lambda r: r.query("dog", k=0), lambda r: r.encode(["dog", "space war", "night"])]
    return calls


def test_one_recommender_shared_by_8_threads_answers_as_on_one_thread(tiny_bundle):
    # Default ONNX Runtime threads: the session's own thread pool is shared too.
    rec = Recommender.load(tiny_bundle)
    calls = mixed_calls()
    reference = [outcome(call, rec) for call in calls]
    errors = [o[0] for o in reference if o and isinstance(o[0], str) and o[0] != "vectors"]
    assert errors == ["EmptyQueryError", "UnknownItemError", "InputError"]  # the bad inputs, nothing else
    start = threading.Barrier(THREADS)

    def worker(seed: int) -> list[tuple[int, Outcome]]:
        order = [i for _ in range(PASSES) for i in random.Random(seed).sample(range(len(calls)), len(calls))]
        start.wait()  # all threads call at once
        return [(i, outcome(calls[i], rec)) for i in order]

    with ThreadPoolExecutor(THREADS) as pool:
        answers = [pair for per_thread in pool.map(worker, range(THREADS)) for pair in per_thread]
    assert len(answers) == THREADS * PASSES * len(calls)
    different = [(i, got) for i, got in answers if got != reference[i]]
    assert different == []


def test_encode_batches_from_threads_match_one_thread(tiny_recommender):
    texts = [" ".join(WORDS[i : i + 1 + i % 5]) for i in range(len(WORDS))]
    expected = tiny_recommender.encode(texts, batch_size=4)

    def encode(_: int):
        return tiny_recommender.encode(texts, batch_size=4)

    with ThreadPoolExecutor(THREADS) as pool:
        for got in pool.map(encode, range(THREADS * 2)):
            assert (got == expected).all()
