"""Golden vectors: what the torch reference says for a few texts, stored as JSON
so that tests can check the runtime's tokenisation and pooling without torch."""

from __future__ import annotations

import json
from pathlib import Path

from .sources import TeacherFacts
from .validate import torch_reference

GOLDEN_TEXTS = (
    "a heist movie with a clever twist",
    "The Matrix. 1999. Action, Sci-Fi, Thriller",
    "Toy Story. 1995. Animation, Children's, Comedy",
    "Amélie — a whimsical Parisian romance ☕",
    "UPPER case, punctuation!!! and numbers 12345",
    "Il Postino (The Postman). 1994. Drama, Romance",
    "x",
    " ".join(["a very long text that goes on"] * 60),  # longer than the model's limit: truncation
)


def write_golden(teacher: TeacherFacts, path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher.path)
    ids = [tokenizer(t, truncation=True, max_length=teacher.max_length)["input_ids"] for t in GOLDEN_TEXTS]
    vectors = torch_reference(teacher.path, GOLDEN_TEXTS, max_length=teacher.max_length,
                              pooling=teacher.pooling, normalize=teacher.normalize)
    body = {
        "source": f"{teacher.name} on torch (transformers), {teacher.pooling} pooling, "
                  f"normalize={teacher.normalize}, max_length={teacher.max_length}",
        "texts": list(GOLDEN_TEXTS),
        "input_ids": ids,
        "vectors": [[round(float(x), 6) for x in row] for row in vectors],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body) + "\n", encoding="utf-8")
    print(f"[golden] wrote {len(GOLDEN_TEXTS)} reference vectors to {path}")
