"""Train a sentence encoder to give chosen vectors for chosen texts.

One loop serves two stages: fine-tuning (targets are item vectors learned from
interactions, see finetune.py) and distillation (targets are the fine-tuned
teacher's own vectors, see distil.py). Each text's vector (pooled and
normalised as the runtime does in numpy) should point at its own target and be
closer to it than to any other text's target: the loss is 1 - cosine plus a
softmax over all targets. The cosine alone barely moves a model whose vectors
already sit at cosine 0.93 from their targets; the softmax term is what
separates neighbours, and neighbours are what a recommender returns.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

# Files that make a directory a sentence-transformers model (read by sources.read_teacher).
SENTENCE_FILES = ("sentence_bert_config.json", "modules.json", "1_Pooling")

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 1e-4
    # The embedding tables learn faster: memorising what each title's words
    # mean for its item happens there, and a transformer-sized rate is too slow.
    embedding_learning_rate: float | None = None
    warmup: float = 0.05        # fraction of steps with a rising learning rate
    max_length: int = 64        # item and query texts are short; longer ones are cut in training only
    temperature: float = 0.05   # of the softmax over all targets
    seed: int = 0


def mean_pool(hidden: Any, mask: Any) -> Any:
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def encode(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 128, max_length: int = 64) -> np.ndarray:
    """Unit vectors from a transformers encoder on torch (mean pooling), in order."""
    import torch

    model.eval()
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            rows.append(mean_pool(model(**batch).last_hidden_state, batch["attention_mask"]).numpy())
    return np.concatenate(rows).astype(np.float32)


def target_loss(vectors: Any, goal: Any, own: Any, temperature: float) -> tuple[Any, Any]:
    """(loss, mean 1 - cosine): each unit vector toward its own row of ``goal`` (rows ``own``), plus a
    softmax over every row so that it is closer to its own than to any other."""
    import torch

    cosine = (1.0 - (vectors * goal[own]).sum(-1)).mean()
    return cosine + torch.nn.functional.cross_entropy(vectors @ goal.T / temperature, own), cosine


def fit(model: Any, tokenizer: Any, texts: Sequence[str], targets: np.ndarray, config: FitConfig,
        *, name: str = "fit", progress: Progress | None = None) -> list[float]:
    """Train ``model`` in place so that each text's vector points at its target row.

    Returns the mean 1 - cosine to the targets per epoch.
    """
    import torch

    if len(texts) != len(targets):
        raise ValueError(f"{len(texts)} texts but {len(targets)} targets")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    goal = torch.nn.functional.normalize(torch.tensor(np.asarray(targets, dtype=np.float32)), dim=-1)
    embeddings = [p for n, p in model.named_parameters() if n.startswith("embeddings.")]
    others = [p for n, p in model.named_parameters() if not n.startswith("embeddings.")]
    groups = [{"params": embeddings, "lr": config.embedding_learning_rate or config.learning_rate}]
    if others:
        groups.append({"params": others, "lr": config.learning_rate})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    steps_per_epoch = -(-len(texts) // config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(total * config.warmup))
    # Linear warm-up, then linear decay to zero.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))))
    losses, done = [], 0
    model.train()
    for _ in range(config.epochs):
        order = rng.permutation(len(texts))
        running = 0.0
        for start in range(0, len(texts), config.batch_size):
            rows = order[start : start + config.batch_size]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                              max_length=config.max_length, return_tensors="pt")
            vectors = mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])
            own = torch.from_numpy(rows)
            loss, cosine = target_loss(vectors, goal, own, config.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            running += float(cosine.detach()) * len(rows)
            done += 1
            if progress is not None:
                progress(name, done, total)
        losses.append(running / len(texts))
    model.eval()
    return losses


def save(model: Any, tokenizer: Any, out: Path, like: Path, record: dict[str, Any]) -> Path:
    """Write a sentence-transformers directory: weights, tokenizer, pooling files copied from ``like``."""
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for name in SENTENCE_FILES:
        source = like / name
        if source.is_dir():
            shutil.copytree(source, out / name)
        elif source.is_file():
            shutil.copy2(source, out / name)
    (out / "edgerec_training.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return out


def config_record(config: FitConfig) -> dict[str, Any]:
    return asdict(config)
