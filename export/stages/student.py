"""Stage `student`: a small encoder trained to read text as a teacher reads it.

The teacher's unit vectors of the corpus texts come from the shards of ``python -m export teacher``
(as many as are written: the first shards are a random sample of the corpus). Two kinds of student:

- ``--layers 0``, a static table: one row per WordPiece token, a text is the mean of its tokens'
  rows (no [CLS]/[SEP]). The rows start as the teacher's reading of each token alone (model2vec's
  distillation) and are trained on the corpus against the teacher's vectors with a cosine loss
  (tokenlearn's recipe): a row's length becomes its token's weight in the mean. ``words``: the
  vocabulary first grows by the training texts' most frequent words it cuts into pieces (whole_words.py),
  each row starting as the mean of its pieces' rows;
- ``--layers n``, the teacher's first n transformer layers and its embeddings, mean pooling, trained
  the same way. It is saved as a sentence-transformers folder, so the ONNX, INT8 and fine-tuning
  stages take it as they take the teacher.

Validation: the first VALID_TEXTS texts of shard 0, never trained on; the score is the mean cosine
between student and teacher there, before and after each epoch. The text tasks of export/measure are
the test sets and play no part here. Training saves a checkpoint every CHECKPOINT_SECONDS and at the
end of each epoch; a rerun resumes from it; ``seconds`` stops a run at a step (resume later).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .sources import TeacherFacts
from .static_fit import flat, make_static, tokenize
from .whole_words import cut_words, extend_vocabulary, piece_means

VALID_TEXTS = 4096
MIN_TEXTS = 500             # fewer cannot both train and validate
MAX_TOKENS = 128            # the corpus texts are sentences and definitions: few are longer
MIN_WORD_COUNT = 10         # a whole word needs this many training texts to learn its row from
CHECKPOINT_SECONDS = 300
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json", "tokenizer.json",
                  "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")

Log = Callable[[str], None]


@dataclass(frozen=True)
class StudentConfig:
    layers: int = 0
    epochs: int = 3
    batch: int = 128
    lr: float = 0.0         # 0: the kind's default (static 3e-3 Adam; layers 1e-4 AdamW)
    seed: int = 0
    words: int = 0          # static only: whole words added to the vocabulary (at most this many)

    @property
    def learning_rate(self) -> float:
        return self.lr or (3e-3 if self.layers == 0 else 1e-4)

    @property
    def name(self) -> str:
        return f"L{self.layers}" + (f"-w{self.words}" if self.words else "")


# The general model's recipe, what `python -m export student --layers 0` trains unless told otherwise
# (chosen on the validation sets; results/students.md).
GENERAL_STUDENT = StudentConfig(layers=0, epochs=6, batch=1024, words=30000)


def default_config(layers: int, *, epochs: int | None = None, batch: int | None = None, lr: float = 0.0,
                   words: int | None = None) -> StudentConfig:
    """A student of ``layers`` with the kind's defaults for whatever is None: static, the general model's
    recipe; layered, 3 epochs of 128 texts and no added words."""
    base = GENERAL_STUDENT if layers == 0 else StudentConfig(layers=layers)
    return StudentConfig(layers=layers, epochs=epochs or base.epochs, batch=batch or base.batch, lr=lr,
                         words=base.words if words is None else words)


def split_rows(count: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, training rows) of texts in shard order: the first VALID_TEXTS are validation."""
    held = min(VALID_TEXTS, count // 10)
    return np.arange(held), np.arange(held, count)


# -- batches ---------------------------------------------------------------------------

def padded(ids: Sequence[Sequence[int]], rows: np.ndarray, device: str = "cpu"):  # -> (ids, mask) tensors
    import torch

    longest = max(len(ids[i]) for i in rows)
    batch = np.zeros((len(rows), longest), dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for r, i in enumerate(rows):
        batch[r, : len(ids[i])] = ids[i]
        mask[r, : len(ids[i])] = 1
    return torch.from_numpy(batch).to(device), torch.from_numpy(mask).to(device)


def length_batches(rows: np.ndarray, ids: Sequence[Sequence[int]], batch: int, rng: np.random.Generator
                   ) -> list[np.ndarray]:
    """Shuffled batches of texts of similar length (little padding), in a shuffled order."""
    order = rng.permutation(rows)
    out = []
    for start in range(0, len(order), batch * 64):
        block = order[start : start + batch * 64]
        block = block[np.argsort([len(ids[i]) for i in block], kind="stable")]
        out += [block[s : s + batch] for s in range(0, len(block), batch)]
    rng.shuffle(out)
    return out


def epoch_plan(config: StudentConfig, train: np.ndarray, ids: Sequence[Sequence[int]]) -> list[list[np.ndarray]]:
    """Every epoch's batches, fixed by the seed: a resumed run takes up the same plan at its step."""
    rng = np.random.default_rng(config.seed + config.layers)
    if config.layers == 0:
        return [[chunk for chunk in np.array_split(rng.permutation(train), max(1, len(train) // config.batch))]
                for _ in range(config.epochs)]
    return [length_batches(train, ids, config.batch, rng) for _ in range(config.epochs)]


# -- models ----------------------------------------------------------------------------

def make_student(teacher_dir: Path, layers: int, head_dims: int | None = None):  # -> torch.nn.Module
    """The teacher's embeddings and first ``layers`` transformer layers, mean pooling, and a linear head
    into the target space when the targets are not the teacher's own width."""
    import torch
    from transformers import BertModel

    class Student(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # No dropout: the targets are plentiful, and a run resumed from a checkpoint then retraces an
            # uninterrupted one exactly.
            body = BertModel.from_pretrained(str(teacher_dir), dtype=torch.float32, add_pooling_layer=False,
                                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
            body.encoder.layer = body.encoder.layer[:layers]
            body.config.num_hidden_layers = layers
            self.body = body
            self.head = torch.nn.Linear(body.config.hidden_size, head_dims, bias=False) if head_dims else None

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            hidden = self.body(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
            return self.head(pooled) if self.head is not None else pooled

    return Student()


def predict(model, ids: Sequence[Sequence[int]], rows: np.ndarray, layers: int, device: str = "cpu"):
    import torch

    if layers == 0:
        values, offsets = flat(ids, rows)
        return model(values.to(device), offsets.to(device))
    tokens, mask = padded(ids, rows, device)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
        return model(tokens, mask)


def mean_cosine(model, ids: Sequence[Sequence[int]], targets, rows: np.ndarray, layers: int,
                device: str = "cpu", chunk: int = 512) -> float:
    """Mean cosine between the model's vectors and the targets over ``rows``."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            predicted = predict(model, ids, part, layers, device).float()
            total += float(F.cosine_similarity(predicted, targets[torch.as_tensor(part, device=targets.device)],
                                               dim=1).sum())
    model.train()
    return total / len(rows)


def optimiser_for(model, config: StudentConfig, total_steps: int):  # -> (optimizer, scheduler)
    import torch

    if config.layers == 0:
        # The rate falls linearly to zero: at a constant rate the rows keep jittering about where the
        # teacher wants them (validation cosine 0.8668 constant, 0.8719 decaying; results/students.md).
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total_steps))
    head = [p for n, p in model.named_parameters() if n.startswith("head")]
    body = [p for n, p in model.named_parameters() if not n.startswith("head")]
    groups = [{"params": body, "lr": config.learning_rate}]
    if head:
        groups.append({"params": head, "lr": config.learning_rate * 10})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    warmup = max(1, min(500, total_steps // 10))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.05, 1 - step / total_steps))


def train(model, config: StudentConfig, ids: Sequence[Sequence[int]], targets, train_rows: np.ndarray,
          valid_rows: np.ndarray, checkpoint: Path, *, seconds: float | None = None, device: str = "cpu",
          log: Log = print) -> dict:
    """Train ``model`` on the fixed plan, resuming from ``checkpoint``; returns the history so far and
    whether the plan is finished."""
    import torch
    import torch.nn.functional as F

    plan = epoch_plan(config, train_rows, ids)
    steps = [batch for epoch in plan for batch in epoch]
    epoch_ends = set(np.cumsum([len(epoch) for epoch in plan]).tolist())
    optimizer, schedule = optimiser_for(model, config, len(steps))
    state = {"step": 0, "history": []}
    if checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        if saved["config"] != asdict(config):
            raise ValueError(f"{checkpoint} was made for {saved['config']}, not {asdict(config)}: delete it or "
                             "choose another --work")
        if saved.get("texts", len(ids)) != len(ids):  # more shards since: the saved plan is another plan
            raise ValueError(f"{checkpoint} was made on {saved['texts']:,} texts, not {len(ids):,}: delete it to "
                             "train on them all, or move it aside to keep that student")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = {"step": saved["step"], "history": saved["history"]}
        log(f"resumed at step {state['step']:,} of {len(steps):,}")
    else:
        state["history"].append({"step": 0, "valid_cosine": round(mean_cosine(model, ids, targets, valid_rows,
                                                                               config.layers, device), 4)})
        log(f"before training: validation cosine {state['history'][-1]['valid_cosine']}")

    def save() -> None:
        partial = checkpoint.with_suffix(".partial")
        torch.save({"config": asdict(config), "texts": len(ids), "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), **state}, partial)
        os.replace(partial, checkpoint)

    began = last_save = last_log = time.perf_counter()
    model.train()
    while state["step"] < len(steps):
        rows = steps[state["step"]]
        predicted = predict(model, ids, rows, config.layers, device).float()
        wanted = targets[torch.as_tensor(rows, device=targets.device)]
        loss = 1 - F.cosine_similarity(predicted, wanted, dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.layers:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        state["step"] += 1
        now = time.perf_counter()
        if state["step"] in epoch_ends:
            cosine = mean_cosine(model, ids, targets, valid_rows, config.layers, device)
            state["history"].append({"step": state["step"], "valid_cosine": round(cosine, 4)})
            log(f"epoch {len(state['history']) - 1}/{config.epochs}: validation cosine {cosine:.4f}")
            save()
            last_save = now
        elif now - last_save > CHECKPOINT_SECONDS:
            save()
            last_save = now
        if now - last_log > 30:
            log(f"step {state['step']:,}/{len(steps):,}, loss {loss.item():.4f}, "
                f"{(now - began) / 60:.1f} min this run")
            last_log = now
        if seconds is not None and now - began > seconds:
            save()
            break
    return {"steps": len(steps), "step": state["step"], "finished": state["step"] >= len(steps),
            "history": state["history"], "seconds": round(time.perf_counter() - began, 1)}


# -- the stage -------------------------------------------------------------------------

def student_dir(work: Path, teacher_name: str, config: StudentConfig) -> Path:
    """Where `python -m export student` keeps a student of ``teacher_name`` ('minilm') with ``config``'s layers."""
    return work / "students" / f"{teacher_name}-{config.name}"


def save_static(rows: np.ndarray, out: Path, tokenizer: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "rows.partial.npy"
    np.save(partial, rows.astype(np.float16))
    partial.replace(out / "rows.f16.npy")
    shutil.copy(tokenizer, out / "tokenizer.json")


def save_sentence_model(model, teacher_dir: Path, out: Path) -> None:
    """The trained body as a sentence-transformers folder: the teacher's tokenizer and pooling files beside it."""
    model.body.save_pretrained(str(out))
    for name in SENTENCE_FILES:
        if (teacher_dir / name).is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(teacher_dir / name, out / name)


def stage_student(corpus: Path, shards: Path, out: Path, teacher: TeacherFacts, config: StudentConfig, *,
                  tables: Path | None = None, seconds: float | None = None, threads: int | None = None,
                  log: Log = print) -> dict:
    """`python -m export student`: train on every shard of ``teacher``'s vectors in ``shards`` written so far;
    write ``out``/model (when the plan is finished), ``out``/checkpoint.pt and ``out``/report.json. A static
    student starts from the teacher's reading of each token, cached in ``tables`` (default: ``out``)."""
    import torch

    from .static_embed import sentence_teacher, teacher_table
    from .teacher import load_shards, read_corpus

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    lines, vectors = load_shards(shards)
    if len(lines) < MIN_TEXTS:
        raise ValueError(f"only {len(lines):,} teacher vectors in {shards}: run `python -m export teacher` "
                         f"first (at least {MIN_TEXTS:,} texts)")
    texts = read_corpus(corpus)
    chosen = [texts[i] for i in lines]
    del texts
    valid_rows, train_rows = split_rows(len(chosen))
    log(f"{len(chosen):,} texts with teacher vectors: {len(valid_rows):,} validation, {len(train_rows):,} training")
    tokenizer = teacher.path / "tokenizer.json"
    out.mkdir(parents=True, exist_ok=True)
    if config.words and config.layers:
        raise ValueError("whole words are added to a static student only (--layers 0)")
    if config.layers == 0:
        initial = np.load(teacher_table(tables or out, teacher.name,
                                        lambda: sentence_teacher(teacher.path, threads or 2), tokenizer, log=log))
    if config.words:
        words = cut_words(tokenizer, (chosen[i] for i in train_rows), config.words, MIN_WORD_COUNT)
        initial = np.concatenate([initial, piece_means(initial, tokenizer, words)])
        extend_vocabulary(tokenizer, words, out / "tokenizer.json")
        tokenizer = out / "tokenizer.json"
        log(f"{len(words):,} whole words join the vocabulary (each in at least {MIN_WORD_COUNT} training "
            f"texts; most frequent: {', '.join(words[:8])})")
    ids = tokenize(tokenizer, chosen, min(MAX_TOKENS, teacher.max_length), special=config.layers > 0)
    targets = torch.from_numpy(vectors)
    if config.layers == 0:
        model = make_static(initial)
    else:
        model = make_student(teacher.path, config.layers)
    result = train(model, config, ids, targets, train_rows, valid_rows, out / "checkpoint.pt", seconds=seconds,
                   log=log)
    if result["finished"]:
        if config.layers == 0:
            save_static(model.weight.detach().numpy(), out / "model", tokenizer)
        else:
            save_sentence_model(model, teacher.path, out / "model")
    report = {"teacher": teacher.name, "config": asdict(config), "texts": len(chosen),
              "validation_texts": len(valid_rows), "threads": torch.get_num_threads(), **result}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
