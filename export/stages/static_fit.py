"""A static table (one row per token, a text is the mean of its tokens' rows) in torch, and fitting it
to chosen vectors.

The loss is fit.py's (target_loss): 1 - cosine to the text's own target, plus a softmax over all targets, so that
each text is closer to its own target than to any other's (neighbours are what a recommender
returns). Only the rows of tokens the texts use move; every other word keeps what the general
student learnt, which is what lets a fine-tuned table still read a user's descriptive query.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .fit import Progress, target_loss


@dataclass(frozen=True)
class StaticFitConfig:
    # Chosen on MovieLens-1M's validation split (results/students.md): the highest HR@10 among settings
    # that keep title@1 (each title finds its item) at 0.97 or above.
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 3e-3
    temperature: float = 0.05
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def tokenize(tokenizer_path: Path, texts: Sequence[str], max_tokens: int, special: bool) -> list[list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=special)]


def token_ids(tokenizer_path: Path, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Each text's token ids as the static model reads them: no [CLS]/[SEP]."""
    return tokenize(tokenizer_path, texts, max_tokens, special=False)


def flat(ids: Sequence[Sequence[int]], rows: np.ndarray):  # -> (values, offsets) for an EmbeddingBag
    import torch

    chosen = [ids[i] for i in rows]
    lengths = np.fromiter((len(c) for c in chosen), dtype=np.int64, count=len(chosen))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    values = np.fromiter((t for c in chosen for t in c), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(values), torch.from_numpy(offsets)


def make_static(rows: np.ndarray):  # -> torch.nn.EmbeddingBag
    import torch

    return torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(np.asarray(rows, dtype=np.float32)).clone(),
                                                 freeze=False, mode="mean")


def fit_static(rows: np.ndarray, ids: Sequence[Sequence[int]], targets: np.ndarray, config: StaticFitConfig,
               *, name: str = "fit", progress: Progress | None = None) -> tuple[np.ndarray, list[float]]:
    """(the fitted rows, mean 1 - cosine to the targets per epoch). Texts with no token are refused."""
    import torch
    import torch.nn.functional as F

    if len(ids) != len(targets):
        raise ValueError(f"{len(ids)} texts but {len(targets)} targets")
    empty = [i for i, t in enumerate(ids) if not t]
    if empty:
        raise ValueError(f"{len(empty)} text(s) have no token the table knows (first: text {empty[0]})")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    bag = make_static(rows)
    goal = F.normalize(torch.tensor(np.asarray(targets, dtype=np.float32)), dim=-1)
    optimizer = torch.optim.Adam(bag.parameters(), lr=config.learning_rate)
    total, done, losses = config.epochs * -(-len(ids) // config.batch_size), 0, []
    for _ in range(config.epochs):
        order = rng.permutation(len(ids))
        running = 0.0
        for start in range(0, len(order), config.batch_size):
            chunk = order[start : start + config.batch_size]
            values, offsets = flat(ids, chunk)
            vectors = F.normalize(bag(values, offsets), dim=-1)
            own = torch.from_numpy(chunk)
            loss, cosine = target_loss(vectors, goal, own, config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(cosine.detach()) * len(chunk)
            done += 1
            if progress is not None:
                progress(name, done, total)
        losses.append(running / len(ids))
    return bag.weight.detach().numpy().copy(), losses
