"""Golden vectors: what the torch reference says for a few texts, stored as JSON
so that tests can check the runtime's tokenisation and pooling without torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .sources import TeacherFacts
from .static_embed import MAX_TOKENS, StaticEncoder
from .validate import torch_reference

GOLDEN_TEXTS = (
    "a heist movie with a clever twist",
    "The Matrix. 1999. Action, Sci-Fi, Thriller",
    "Toy Story. 1995. Animation, Children's, Comedy",
    "Amélie — a whimsical Parisian romance ☕",
    "UPPER case, punctuation!!! and numbers 12345",
    "Il Postino (The Postman). 1994. Drama, Romance",
    "x",
    " ".join(["a very long text that goes on"] * 100),  # longer than the model's limit: truncation
)


def write_golden(teacher: TeacherFacts, path: Path) -> None:
    """A transformer student: its torch vectors."""
    vectors = torch_reference(teacher.path, GOLDEN_TEXTS, max_length=teacher.max_length,
                              pooling=teacher.pooling, normalize=teacher.normalize)
    _write(path, f"{teacher.name} on torch (transformers), {teacher.pooling} pooling, normalize={teacher.normalize}, "
           f"max_length={teacher.max_length}", _reference_ids(teacher.path, teacher.max_length), vectors)


def write_static_golden(rows: Path, tokenizer: Path, teacher: TeacherFacts, path: Path) -> None:
    """A static table (python -m export static): the numpy mean of its rows, as StaticEncoder computes it."""
    table = np.load(rows).astype(np.float32)
    vectors = StaticEncoder(table, tokenizer).encode(list(GOLDEN_TEXTS))
    _write(path, f"the static table {rows} read by StaticEncoder (numpy), max {MAX_TOKENS} tokens",
           _reference_ids(teacher.path, MAX_TOKENS), vectors)


def _reference_ids(model_dir: Path, max_length: int) -> list[list[int]]:
    """The token ids transformers' tokenizer of ``model_dir`` gives, cut at ``max_length``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in GOLDEN_TEXTS]


def _write(path: Path, source: str, ids: list[list[int]], vectors: np.ndarray) -> None:
    body = {
        "source": source,
        "texts": list(GOLDEN_TEXTS),
        "input_ids": ids,
        "vectors": [[round(float(x), 6) for x in row] for row in vectors],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body) + "\n", encoding="utf-8")
    print(f"[golden] wrote {len(GOLDEN_TEXTS)} reference vectors to {path}")
