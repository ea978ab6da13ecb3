"""Stage `finetune`: teach the teacher what people watch together.

Two steps, both on the training split only:

1. Collaborative targets. One free vector per item, started from the
   teacher's own text vectors, is trained so that the runtime's user
   representation (edgerec.user: the normalised mean of the last `window`
   history vectors) ranks the next item first, with a softmax over the whole
   catalogue. A penalty on the distance from the text vectors keeps the space
   close enough to the text space that free-text queries still land well.
2. Text fit. The teacher is trained to produce those vectors from each item's
   text (fit.py), while query-like texts keep their original vectors. The item
   text stays the model's only input, so a new item still gets a vector.

A full softmax over 3,883 items is cheap, while back-propagating every history
item through the transformer on each step is not (a 2-core CPU manages ~70 texts
a second): splitting the work this way trains on all 560k training examples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from .interactions import Split, next_item_examples

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TargetConfig:
    window: int = 10             # history items in the user representation: the runtime's too
    temperature: float = 0.05
    stay_near_text: float = 1.0  # weight of the squared distance to the text vectors
    epochs: int = 3
    batch_size: int = 1024
    learning_rate: float = 1e-2
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def collaborative_targets(split: Split, text_vectors: np.ndarray, config: TargetConfig,
                          progress: Progress | None = None) -> np.ndarray:
    """Unit item vectors (rows in catalogue order) trained on next-item prediction."""
    import torch

    torch.manual_seed(config.seed)
    contexts, targets = (torch.from_numpy(a) for a in next_item_examples(split.train, config.window))
    start = torch.nn.functional.normalize(torch.tensor(text_vectors, dtype=torch.float32), dim=-1)
    table = torch.nn.Parameter(start.clone())
    optimizer = torch.optim.Adam([table], lr=config.learning_rate)
    steps = -(-len(targets) // config.batch_size)
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(config.epochs):
        order = torch.randperm(len(targets), generator=generator)
        for step in range(steps):
            rows = order[step * config.batch_size : (step + 1) * config.batch_size]
            context = contexts[rows]
            present = (context >= 0).float().unsqueeze(-1)  # histories shorter than the window are padded with -1
            items = torch.nn.functional.normalize(table, dim=-1)
            users = (items[context.clamp(min=0)] * present).sum(1) / present.sum(1)
            users = torch.nn.functional.normalize(users, dim=-1)
            loss = torch.nn.functional.cross_entropy(users @ items.T / config.temperature, targets[rows])
            loss = loss + config.stay_near_text * ((items - start) ** 2).sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress("collaborative targets", epoch * steps + step + 1, config.epochs * steps)
    return torch.nn.functional.normalize(table.detach(), dim=-1).numpy()
