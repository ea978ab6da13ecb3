"""Teacher targets and first students, in one run on a GPU machine (torch, sentence-transformers,
transformers, tokenizers, numpy, and the export/ folder of a checkout; nothing of edgerec).

all-mpnet-base-v2 reads every text of the training corpus (``python -m export corpus``). Its unit
vectors are projected onto their top principal directions (uncentred, so that inner products keep
the teacher's ranking: the mean direction is one of the kept ones), and the students learn those
targets with a cosine loss:

- ``static-distil``: each token of all-MiniLM-L6-v2's vocabulary read alone by mpnet and projected
  (model2vec's distillation); a text is the mean of its tokens' rows;
- ``static-trained``: those rows trained on the corpus against the targets (tokenlearn's recipe);
- ``student-L{n}``: the first n transformer layers of all-MiniLM-L6-v2 with mean pooling and a
  linear head into the target space, trained on the corpus.

The CPU of the machine that prepares a run would need hours for the teacher alone (~800k texts);
a GPU reads them in about a minute. Everything stays on the GPU machine's disk under ``--stage``;
``--emit`` copies a group of files (each under 16 MiB, the larger ones split into parts) to the
folder that comes back. Usage there, from the folder that holds export/:

    python3 -m export.stages.gpu_distil --inputs DIR --stage DIR --out "$OUT"   # train, emit group 1
    python3 -m export.stages.gpu_distil --stage DIR --out "$OUT" --emit 2       # emit group 2 only
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .static_embed import principal_directions, vocabulary_words
from .teacher import read_corpus

PART_BYTES = 15 * 2**20
VALID_TEXTS = 10_000
TARGET_SAMPLE = 100_000  # targets that come back for CPU-side experiments (int8, one scale per row)
GROUPS = {
    1: ("report.json", "pca.npz", "static-distil.f16.npy", "static-trained.f16.npy", "student-L2.pt"),
    2: ("student-L1.pt", "targets.i8.npy", "targets-scale.f16.npy", "targets-lines.npy"),
}
_started = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _started:7.1f} s] {message}", flush=True)


@torch.no_grad()
def teacher_vectors(model_dir: Path, texts: list[str], batch: int, device: str) -> torch.Tensor:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device=device)
    if device == "cuda":
        model.half()
    model.max_seq_length = 256
    vectors = model.encode(texts, batch_size=batch, convert_to_tensor=True, normalize_embeddings=True,
                           show_progress_bar=False)
    return vectors.float()


def tokenize(tokenizer_path: Path, texts: list[str], max_tokens: int, special: bool) -> list[list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=special)]


@torch.no_grad()
def distilled_rows(model_dir: Path, tokenizer_path: Path, basis: torch.Tensor, device: str) -> torch.Tensor:
    """model2vec's distillation: every vocabulary token read alone by the teacher, projected; the
    special tokens get zero rows (static_embed's rule)."""
    words, special = vocabulary_words(tokenizer_path)
    rows = teacher_vectors(model_dir, words, 2048, device) @ basis.T
    rows[torch.from_numpy(special).to(rows.device)] = 0.0
    return rows


def flat(ids: list[list[int]], rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = [ids[i] for i in rows]
    lengths = np.fromiter((len(c) for c in chosen), dtype=np.int64, count=len(chosen))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    values = np.fromiter((t for c in chosen for t in c), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(values), torch.from_numpy(offsets)


def train_static(rows: torch.Tensor, ids: list[list[int]], targets: torch.Tensor, train: np.ndarray,
                 valid: np.ndarray, *, epochs: int, batch: int, lr: float, device: str) -> tuple[torch.Tensor, list]:
    bag = torch.nn.EmbeddingBag.from_pretrained(rows.clone(), freeze=False, mode="mean").to(device)
    optimizer = torch.optim.Adam(bag.parameters(), lr=lr)
    history = [("init", static_cosine(bag, ids, targets, valid, device))]
    rng = np.random.default_rng(1)
    for epoch in range(epochs):
        order = rng.permutation(train)
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            values, offsets = flat(ids, chunk)
            predicted = bag(values.to(device), offsets.to(device))
            loss = 1 - F.cosine_similarity(predicted, targets[torch.as_tensor(chunk, device=device)], dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        history.append((f"epoch {epoch + 1}", static_cosine(bag, ids, targets, valid, device)))
        log(f"static epoch {epoch + 1}: valid cosine {history[-1][1]:.4f}")
    return bag.weight.detach(), history


@torch.no_grad()
def static_cosine(bag: torch.nn.EmbeddingBag, ids: list[list[int]], targets: torch.Tensor, valid: np.ndarray,
                  device: str) -> float:
    values, offsets = flat(ids, valid)
    predicted = bag(values.to(device), offsets.to(device))
    return float(F.cosine_similarity(predicted, targets[torch.as_tensor(valid, device=device)], dim=1).mean())


class Student(torch.nn.Module):
    """The first layers of a BERT, mean pooling, a linear head into the target space."""

    def __init__(self, minilm_dir: Path, layers: int, dims: int) -> None:
        super().__init__()
        from transformers import BertModel

        full = BertModel.from_pretrained(str(minilm_dir), dtype=torch.float32, add_pooling_layer=False)
        full.encoder.layer = full.encoder.layer[:layers]
        full.config.num_hidden_layers = layers
        self.body = full
        self.head = torch.nn.Linear(full.config.hidden_size, dims, bias=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.head(pooled)


def padded(ids: list[list[int]], rows: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(ids[i]) for i in rows)
    batch = np.zeros((len(rows), longest), dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for r, i in enumerate(rows):
        batch[r, : len(ids[i])] = ids[i]
        mask[r, : len(ids[i])] = 1
    return torch.from_numpy(batch).to(device), torch.from_numpy(mask).to(device)


def length_batches(rows: np.ndarray, ids: list[list[int]], batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of texts of similar length (little padding), in a shuffled order."""
    order = rng.permutation(rows)
    out = []
    for start in range(0, len(order), batch * 64):
        block = order[start : start + batch * 64]
        block = block[np.argsort([len(ids[i]) for i in block], kind="stable")]
        out += [block[s : s + batch] for s in range(0, len(block), batch)]
    rng.shuffle(out)
    return out


def train_student(minilm_dir: Path, layers: int, ids: list[list[int]], targets: torch.Tensor, train: np.ndarray,
                  valid: np.ndarray, *, epochs: int, batch: int, seconds: float, device: str) -> tuple[Student, list]:
    torch.manual_seed(layers)
    model = Student(minilm_dir, layers, targets.shape[1]).to(device)
    body = [p for n, p in model.named_parameters() if not n.startswith("head")]
    optimizer = torch.optim.AdamW([{"params": body, "lr": 1e-4}, {"params": model.head.parameters(), "lr": 1e-3}],
                                  weight_decay=0.01)
    rng = np.random.default_rng(layers)
    plan = [length_batches(train, ids, batch, rng) for _ in range(epochs)]
    total = sum(len(p) for p in plan)
    warmup = max(1, min(500, total // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.05, 1 - step / total))
    history = [("init", student_cosine(model, ids, targets, valid, device))]
    began, step = time.perf_counter(), 0
    for epoch, batches in enumerate(plan):
        model.train()
        for rows in batches:
            tokens, mask = padded(ids, rows, device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                predicted = model(tokens, mask)
            loss = 1 - F.cosine_similarity(predicted.float(), targets[torch.as_tensor(rows, device=device)], dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            if time.perf_counter() - began > seconds:
                break
        history.append((f"epoch {epoch + 1} ({step} steps)", student_cosine(model, ids, targets, valid, device)))
        log(f"student L{layers} epoch {epoch + 1}: {step} steps, valid cosine {history[-1][1]:.4f}")
        if time.perf_counter() - began > seconds:
            break
    return model, history


@torch.no_grad()
def student_cosine(model: Student, ids: list[list[int]], targets: torch.Tensor, valid: np.ndarray,
                   device: str) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(valid), 512):
        rows = valid[start : start + 512]
        tokens, mask = padded(ids, rows, device)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            predicted = model(tokens, mask)
        total += float(F.cosine_similarity(predicted.float(), targets[torch.as_tensor(rows, device=device)], dim=1).sum())
    return total / len(valid)


def save_split(path: Path, data: bytes) -> None:
    """One file, or parts ``name.0``, ``name.1``, ... of at most PART_BYTES (join them in order)."""
    if len(data) <= PART_BYTES:
        path.write_bytes(data)
        return
    for number, start in enumerate(range(0, len(data), PART_BYTES)):
        path.with_name(f"{path.name}.{number}").write_bytes(data[start : start + PART_BYTES])


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def emit(stage: Path, out: Path, group: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in GROUPS[group]:
        for path in sorted(stage.glob(f"{name}*")):
            shutil.copy(path, out / path.name)
            log(f"emit {path.name} ({path.stat().st_size / 2**20:.1f} MiB)")


def run(args: argparse.Namespace) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    stage = args.stage
    stage.mkdir(parents=True, exist_ok=True)
    inputs = args.inputs
    texts = read_corpus(inputs / "train.txt.gz")[: args.limit]
    log(f"{len(texts)} texts; device {device} {torch.cuda.get_device_name() if device == 'cuda' else ''}")
    report: dict = {"texts": len(texts), "device": device, "torch": torch.__version__, "dims": args.dims}

    vectors = teacher_vectors(inputs / "mpnet", texts, args.teacher_batch, device)
    log(f"teacher read {len(texts)} texts")
    report["teacher_seconds"] = round(time.perf_counter() - _started, 1)
    basis, values = principal_directions(vectors.cpu().numpy(), args.dims)
    basis = torch.from_numpy(basis).to(vectors.device)
    report["energy_kept"] = round(float(values[: args.dims].sum() / values.sum()), 4)
    targets = F.normalize(vectors @ basis.T, dim=1)
    # How much of the teacher's own ranking the projection keeps: cosine of projected pairs vs original pairs.
    probe = torch.randperm(len(vectors), generator=torch.Generator().manual_seed(0))[:2000].to(vectors.device)
    original = (vectors[probe] @ vectors[probe].T).flatten()
    projected = (targets[probe] @ targets[probe].T).flatten()
    report["pair_cosine_correlation"] = round(float(torch.corrcoef(torch.stack([original, projected]))[0, 1]), 4)
    np.savez(stage / "pca.npz", basis=basis.cpu().numpy(), eigenvalues=values)
    del vectors
    log(f"basis: {args.dims} dims keep {report['energy_kept']} of the energy; pair correlation "
        f"{report['pair_cosine_correlation']}")

    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    held = min(VALID_TEXTS, len(texts) // 10)
    valid, train = np.sort(order[:held]), order[held:]
    sample = np.sort(order[held : held + TARGET_SAMPLE])
    sampled = targets[sample].cpu().numpy()
    scale = np.abs(sampled).max(axis=1, keepdims=True) / 127
    save_split(stage / "targets.i8.npy", npy_bytes(np.round(sampled / scale).astype(np.int8)))
    (stage / "targets-scale.f16.npy").write_bytes(npy_bytes(scale[:, 0].astype(np.float16)))
    (stage / "targets-lines.npy").write_bytes(npy_bytes(sample.astype(np.int32)))

    tokenizer = inputs / "minilm" / "tokenizer.json"
    plain = tokenize(tokenizer, texts, 128, special=False)
    keep = np.array([len(p) > 0 for p in plain])
    train, valid = train[keep[train]], valid[keep[valid]]
    rows = distilled_rows(inputs / "mpnet", tokenizer, basis, device)
    (stage / "static-distil.f16.npy").write_bytes(npy_bytes(rows.cpu().numpy().astype(np.float16)))
    log("distilled rows written")
    trained, history = train_static(rows, plain, targets, train, valid, epochs=args.static_epochs,
                                    batch=args.static_batch, lr=args.static_lr, device=device)
    (stage / "static-trained.f16.npy").write_bytes(npy_bytes(trained.cpu().numpy().astype(np.float16)))
    report["static"] = history

    full = tokenize(tokenizer, texts, 128, special=True)
    report["students"] = {}
    for layers in args.student_layers:
        model, history = train_student(inputs / "minilm", layers, full, targets, train, valid,
                                       epochs=args.student_epochs, batch=args.student_batch,
                                       seconds=args.student_seconds, device=device)
        state = {k: v.detach().to("cpu", torch.float16) for k, v in model.state_dict().items()}
        import io

        buffer = io.BytesIO()
        torch.save({"layers": layers, "dims": args.dims, "state": state}, buffer)
        save_split(stage / f"student-L{layers}.pt", buffer.getvalue())
        report["students"][f"L{layers}"] = history
    report["seconds"] = round(time.perf_counter() - _started, 1)
    (stage / "report.json").write_text(json.dumps(report, indent=2))
    log(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=Path, help="mpnet/, minilm/ and train.txt.gz")
    parser.add_argument("--stage", type=Path, required=True, help="where results stay between calls")
    parser.add_argument("--out", type=Path, required=True, help="where emitted files go")
    parser.add_argument("--emit", type=int, choices=sorted(GROUPS), default=None, help="only copy a group out")
    parser.add_argument("--limit", type=int, default=None, help="first N texts only (a smoke run)")
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--teacher-batch", type=int, default=512)
    parser.add_argument("--static-epochs", type=int, default=4)
    parser.add_argument("--static-batch", type=int, default=2048)
    parser.add_argument("--static-lr", type=float, default=3e-3)
    parser.add_argument("--student-layers", type=int, nargs="*", default=[2, 1])
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--student-batch", type=int, default=256)
    parser.add_argument("--student-seconds", type=float, default=75.0)
    args = parser.parse_args()
    if args.emit is None:
        run(args)
        args.emit = 1
    emit(args.stage, args.out, args.emit)


if __name__ == "__main__":
    main()
