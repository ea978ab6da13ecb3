"""Numerical checks between stages: every conversion is compared with the one before.

Vectors of the new stage are compared with the reference row by row (cosine)
and by the neighbours they give (top-10 overlap within the validation set).
All checks are reported; failures are collected and raised together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


class ValidationFailed(RuntimeError):
    """A stage's vectors moved further from the reference than its threshold allows."""


@dataclass(frozen=True)
class Agreement:
    """How closely one set of vectors follows a reference set."""

    texts: int
    mean_cosine: float
    min_cosine: float
    top10_overlap: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def agreement(vectors: np.ndarray, reference: np.ndarray, k: int = 10) -> Agreement:
    """Row cosines, and how many of each row's k nearest rows stay the same."""
    a = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    b = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cosines = (a * b).sum(axis=1)
    k = min(k, len(a) - 1)
    overlap = 1.0
    if k > 0:
        def neighbours(x: np.ndarray) -> np.ndarray:
            sims = x @ x.T
            np.fill_diagonal(sims, -np.inf)
            return np.argsort(-sims, axis=1)[:, :k]

        mine, theirs = neighbours(a), neighbours(b)
        overlap = float(np.mean([len(set(m) & set(t)) / k for m, t in zip(mine, theirs)]))
    return Agreement(len(a), float(cosines.mean()), float(cosines.min()), overlap)


def check(name: str, result: Agreement, *, min_mean_cosine: float, min_cosine: float) -> list[str]:
    """Print a verdict for one comparison and return its failures (empty when it passes)."""
    failures = []
    if result.mean_cosine < min_mean_cosine:
        failures.append(f"{name}: mean cosine {result.mean_cosine:.5f} < {min_mean_cosine}")
    if result.min_cosine < min_cosine:
        failures.append(f"{name}: min cosine {result.min_cosine:.5f} < {min_cosine}")
    verdict = "ok" if not failures else "FAILED"
    print(f"  {name}: {verdict}  mean cos {result.mean_cosine:.5f}  min cos {result.min_cosine:.5f}  "
          f"top-10 overlap {result.top10_overlap:.3f}  ({result.texts} texts)")
    return failures


def torch_reference(model_dir: Path, texts: Sequence[str], *, max_length: int, pooling: str,
                    normalize: bool, batch_size: int = 32) -> np.ndarray:
    """Vectors from the model run by transformers on torch: the reference every stage is held to."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            rows.append(pooled.numpy())
    return np.concatenate(rows).astype(np.float32)
