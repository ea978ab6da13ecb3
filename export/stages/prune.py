"""Stage `prune`: a trained transformer student made narrower by structured pruning.

Whole attention heads and whole feed-forward neurons are taken out, so the result is a smaller dense
BERT that the ONNX export and INT8 stages take as they take any student (no sparse kernels needed).
What goes is chosen on calibration texts:

- a head's importance is the mean length, over real tokens, of what it adds to the residual stream:
  its context vectors through its own columns of the attention output projection;
- a neuron's importance is its mean absolute activation (after GELU) times the length of its column of
  the FFN output projection: how much it moves the output on these texts.

Each layer keeps the same share (``heads_kept``, ``ffn_kept``) of its best heads and neurons, so one
``intermediate_size`` holds for every layer and the heads dropped are recorded in the config's
``pruned_heads`` (transformers rebuilds the narrower attention from it on load). An optional short
recovery fine-tune trains the pruned model against the teacher's vectors, as the student was trained.
The saved folder is checked against the pruned model in memory, and its vectors compared with the unpruned
student's on held-out texts (validate.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .validate import ValidationFailed, agreement, check, torch_reference

CALIBRATION_TEXTS = 1024
RECOVERY_TEXTS = 100_000    # a seeded sample of the training texts: more than a short recovery can read
CHECK_TEXTS = 1024          # held-out texts for the comparison with the unpruned student
SAVED_MIN_COSINE = 0.9999   # the saved folder against the model in memory: float rounding only

Log = Callable[[str], None]


@dataclass(frozen=True)
class PruneConfig:
    heads_kept: float = 0.5        # share of each layer's attention heads kept
    ffn_kept: float = 0.5          # share of each layer's FFN neurons kept
    recover_seconds: float = 0.0   # 0: no recovery fine-tune
    recover_lr: float = 1e-4       # the rate the layered student was trained at
    batch: int = 128
    seed: int = 0

    def __post_init__(self) -> None:  # refused before minutes of loading, not after
        for share in (self.heads_kept, self.ffn_kept):
            kept_count(1, share)
        if self.recover_seconds < 0:
            raise ValueError(f"recover_seconds must be >= 0, got {self.recover_seconds}")

    @property
    def suffix(self) -> str:
        """'h50-f50' (or 'h50-f50-rec' after recovery): the shares kept, in percent, for folder and candidate
        names."""
        return f"h{round(self.heads_kept * 100)}-f{round(self.ffn_kept * 100)}" + ("-rec" if self.recover_seconds else "")


def kept_count(total: int, share: float) -> int:
    if not 0 < share <= 1:
        raise ValueError(f"a kept share must be in (0, 1], got {share}")
    return max(1, min(total, round(total * share)))


# -- importance --------------------------------------------------------------------------

def importance(body, batches: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """(head scores [layers, heads], neuron scores [layers, intermediate]) of a BertModel over
    ``batches`` of (ids, mask) tensors; higher means it matters more."""
    import torch

    layers = body.encoder.layer
    heads = layers[0].attention.self.num_attention_heads
    head_size = layers[0].attention.self.attention_head_size
    head_sums = torch.zeros(len(layers), heads, dtype=torch.float64)
    neuron_sums = torch.zeros(len(layers), body.config.intermediate_size, dtype=torch.float64)
    state = {"mask": None, "tokens": 0}

    def on_context(index: int):
        def hook(module, inputs, output) -> None:
            context = output[0] if isinstance(output, tuple) else output      # (batch, seq, heads * head_size)
            weight = layers[index].attention.output.dense.weight               # (hidden, heads * head_size)
            parts = context.reshape(*context.shape[:2], heads, head_size)
            columns = weight.reshape(weight.shape[0], heads, head_size)
            added = torch.einsum("bshd,ohd->bsho", parts, columns).norm(dim=-1)  # (batch, seq, heads)
            head_sums[index] += (added * state["mask"][..., None]).sum((0, 1)).double()
        return hook

    def on_neurons(index: int):
        def hook(module, inputs, output) -> None:
            mean_abs = (output.abs() * state["mask"][..., None]).sum((0, 1))
            column_norms = layers[index].output.dense.weight.norm(dim=0)
            neuron_sums[index] += (mean_abs * column_norms).double()
        return hook

    handles = []
    for index, layer in enumerate(layers):
        handles.append(layer.attention.self.register_forward_hook(on_context(index)))
        handles.append(layer.intermediate.register_forward_hook(on_neurons(index)))
    body.eval()
    try:
        with torch.no_grad():
            for ids, mask in batches:
                state["mask"] = mask.to(torch.float32)
                state["tokens"] += int(mask.sum())
                body(input_ids=ids, attention_mask=mask)
    finally:
        for handle in handles:
            handle.remove()
    tokens = max(state["tokens"], 1)
    return (head_sums / tokens).numpy(), (neuron_sums / tokens).numpy()


# -- pruning ---------------------------------------------------------------------------

def prune_body(body, head_scores: np.ndarray, neuron_scores: np.ndarray, heads_kept: float, ffn_kept: float
               ) -> dict:
    """Drop each layer's least important heads and neurons from the BertModel ``body`` in place; returns
    what was kept (original indices)."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    if body.config.pruned_heads:
        raise ValueError("this model is already pruned: prune the unpruned student instead")
    layers = body.encoder.layer
    heads, neurons = head_scores.shape[1], neuron_scores.shape[1]
    keep_heads, keep_neurons = kept_count(heads, heads_kept), kept_count(neurons, ffn_kept)
    kept: dict = {"heads": {}, "neurons": {}}
    dropped_heads = {}
    for index, layer in enumerate(layers):
        best_heads = np.sort(np.argsort(-head_scores[index], kind="stable")[:keep_heads])
        kept["heads"][index] = best_heads.tolist()
        if keep_heads < heads:
            dropped_heads[index] = sorted(set(range(heads)) - set(best_heads.tolist()))
        best_neurons = np.sort(np.argsort(-neuron_scores[index], kind="stable")[:keep_neurons])
        kept["neurons"][index] = len(best_neurons)
        if keep_neurons < neurons:
            index_tensor = torch.as_tensor(best_neurons, dtype=torch.long)
            layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, index_tensor, dim=0)
            layer.output.dense = prune_linear_layer(layer.output.dense, index_tensor, dim=1)
    if dropped_heads:
        body.prune_heads(dropped_heads)  # also records them in config.pruned_heads, which a reload replays
    body.config.intermediate_size = keep_neurons
    return kept


def parameter_count(body) -> int:
    return sum(p.numel() for p in body.parameters())


# -- recovery --------------------------------------------------------------------------

def recover(model, ids: Sequence[Sequence[int]], targets, rows: np.ndarray, config: PruneConfig, log: Log) -> int:
    """Train ``model`` (student.make_student's wrapper) against the teacher's vectors for about
    ``config.recover_seconds``: a short warm-up, then a constant rate; returns the steps taken."""
    import torch
    import torch.nn.functional as F

    from .student import length_batches, predict

    batches = length_batches(rows, ids, config.batch, np.random.default_rng(config.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.recover_lr, weight_decay=0.01)
    warmup = 20
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    model.train()
    began = last_log = time.perf_counter()
    step = 0
    for step, batch in enumerate(batches, start=1):
        predicted = predict(model, ids, batch, 1).float()
        loss = 1 - F.cosine_similarity(predicted, targets[torch.as_tensor(batch)], dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        now = time.perf_counter()
        if now - last_log > 30:
            log(f"recovery step {step:,}, loss {loss.item():.4f}, {now - began:.0f} s")
            last_log = now
        if now - began > config.recover_seconds:
            break
    model.eval()
    return step


# -- the stage -------------------------------------------------------------------------

def pruned_dir(student: Path, config: PruneConfig) -> Path:
    """students/minilm-L1 -> students/minilm-L1-h50-f50: beside the student, never over it."""
    return student.parent / f"{student.name}-{config.suffix}"


@dataclass
class PruneTexts:
    """The student's texts, tokenized once: ``valid``, ``calibration`` and ``recovery`` index ``ids`` and
    ``targets`` (the teacher's vectors); ``held_out`` are the validation texts themselves."""

    ids: list
    targets: object        # torch float32 tensor
    valid: np.ndarray
    calibration: np.ndarray
    recovery: np.ndarray
    held_out: list


def prune_texts(corpus: Path, shards: Path, tokenizer: Path, max_length: int, seed: int = 0) -> PruneTexts:
    """Calibration and recovery texts drawn (seeded) from the student's training texts; validation: its own
    validation texts (student.split_rows), never trained on."""
    import torch

    from .static_fit import tokenize
    from .student import MAX_TOKENS, split_rows
    from .teacher import load_shards, read_corpus

    lines, vectors = load_shards(shards)
    texts = read_corpus(corpus)
    chosen = [texts[i] for i in lines]
    del texts
    valid_rows, train_rows = split_rows(len(chosen))
    rng = np.random.default_rng(seed)
    calibration = rng.choice(train_rows, min(CALIBRATION_TEXTS, len(train_rows)), replace=False)
    recovery = rng.choice(train_rows, min(RECOVERY_TEXTS, len(train_rows)), replace=False)
    picked = np.concatenate([valid_rows, calibration, recovery])  # only the texts used are tokenized
    ids = tokenize(tokenizer, [chosen[i] for i in picked], min(MAX_TOKENS, max_length), special=True)
    at = np.cumsum([0, len(valid_rows), len(calibration), len(recovery)])
    valid, calib, train = (np.arange(at[i], at[i + 1]) for i in range(3))
    return PruneTexts(ids, torch.from_numpy(vectors[picked]), valid, calib, train,
                      [chosen[i] for i in valid_rows])


def stage_prune(student: Path, out: Path, corpus: Path, shards: Path, config: PruneConfig, *,
                log: Log = print) -> dict:
    """`python -m export prune`: the student in ``student``/model pruned (and optionally recovered) into
    ``out``/model, with ``out``/report.json. Calibration and recovery texts are the student's training
    texts; the checks use its validation texts (student.split_rows), never trained on."""
    import torch

    from .sources import read_teacher
    from .student import MAX_TOKENS, make_student, mean_cosine, padded, save_sentence_model

    source = student / "model"
    facts = read_teacher(source, student.name)
    torch.manual_seed(config.seed)
    body_config = json.loads((source / "config.json").read_text())
    layers = int(body_config["num_hidden_layers"])
    if layers < 1:
        raise ValueError(f"{source}: a static student has no heads or neurons to prune")

    data = prune_texts(corpus, shards, source / "tokenizer.json", facts.max_length, config.seed)
    ids, targets, valid, calib, train = data.ids, data.targets, data.valid, data.calibration, data.recovery

    model = make_student(source, layers).eval()
    before = {"parameters": parameter_count(model.body),
              "valid_cosine_to_teacher": round(mean_cosine(model, ids, targets, valid, layers), 4)}
    log(f"unpruned: {before['parameters']:,} parameters, validation cosine to the teacher "
        f"{before['valid_cosine_to_teacher']}")

    batches = [padded(ids, calib[s : s + 64]) for s in range(0, len(calib), 64)]
    head_scores, neuron_scores = importance(model.body, batches)
    kept = prune_body(model.body, head_scores, neuron_scores, config.heads_kept, config.ffn_kept)
    pruned = {"parameters": parameter_count(model.body),
              "valid_cosine_to_teacher": round(mean_cosine(model, ids, targets, valid, layers), 4)}
    log(f"pruned ({config.suffix}): {pruned['parameters']:,} parameters, validation cosine to the teacher "
        f"{pruned['valid_cosine_to_teacher']}")
    report = {"student": str(student), "config": asdict(config), "layers": layers,
              "heads": body_config["num_attention_heads"], "intermediate_size": body_config["intermediate_size"],
              "kept": kept, "head_scores": np.round(head_scores, 5).tolist(), "before": before, "pruned": pruned,
              "calibration_texts": len(calib), "validation_texts": len(valid)}
    if config.recover_seconds > 0:
        began = time.perf_counter()
        steps = recover(model, ids, targets, train, config, log)
        report["recovered"] = {"steps": steps, "texts": steps * config.batch,
                               "seconds": round(time.perf_counter() - began, 1),
                               "valid_cosine_to_teacher": round(mean_cosine(model, ids, targets, valid, layers), 4)}
        log(f"recovered: {steps} steps, validation cosine to the teacher "
            f"{report['recovered']['valid_cosine_to_teacher']}")

    out.mkdir(parents=True, exist_ok=True)
    save_sentence_model(model, source, out / "model")
    # The saved folder, reloaded by transformers as the ONNX export reads it, must give the vectors of the
    # model just pruned (the config's pruned_heads and intermediate_size rebuild its shapes); how far both
    # moved from the unpruned student is a figure, not a check: pruning is meant to move them.
    held_out = data.held_out[:CHECK_TEXTS]
    settings = {"max_length": min(MAX_TOKENS, facts.max_length), "pooling": facts.pooling, "normalize": True}
    reloaded = torch_reference(out / "model", held_out, **settings)
    with torch.no_grad():
        in_memory = torch.cat([model(*padded(ids, data.valid[s : s + 64]))
                               for s in range(0, len(held_out), 64)]).numpy()
    saved = agreement(reloaded, in_memory)
    unpruned = agreement(reloaded, torch_reference(source, held_out, **settings))
    report["saved_vs_in_memory"] = saved.as_dict()
    report["agreement_with_unpruned"] = unpruned.as_dict()
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"against the unpruned student on {unpruned.texts:,} held-out texts: mean cosine {unpruned.mean_cosine:.4f}, "
        f"min {unpruned.min_cosine:.4f}, top-10 overlap {unpruned.top10_overlap:.3f}")
    failures = check(f"{out.name}/model reloaded vs pruned in memory", saved, min_mean_cosine=SAVED_MIN_COSINE,
                     min_cosine=SAVED_MIN_COSINE)
    if failures:
        raise ValidationFailed("; ".join(failures))
    return report
