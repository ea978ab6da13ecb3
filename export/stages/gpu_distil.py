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
from .static_fit import make_static, tokenize
from .student import MAX_TOKENS, StudentConfig, make_student, train
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


@torch.no_grad()
def distilled_rows(model_dir: Path, tokenizer_path: Path, basis: torch.Tensor, device: str) -> torch.Tensor:
    """model2vec's distillation: every vocabulary token read alone by the teacher, projected; the
    special tokens get zero rows (static_embed's rule)."""
    words, special = vocabulary_words(tokenizer_path)
    rows = teacher_vectors(model_dir, words, 2048, device) @ basis.T
    rows[torch.from_numpy(special).to(rows.device)] = 0.0
    return rows


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
    valid, training = np.sort(order[:held]), order[held:]
    sample = np.sort(order[held : held + TARGET_SAMPLE])
    sampled = targets[sample].cpu().numpy()
    scale = np.abs(sampled).max(axis=1, keepdims=True) / 127
    save_split(stage / "targets.i8.npy", npy_bytes(np.round(sampled / scale).astype(np.int8)))
    (stage / "targets-scale.f16.npy").write_bytes(npy_bytes(scale[:, 0].astype(np.float16)))
    (stage / "targets-lines.npy").write_bytes(npy_bytes(sample.astype(np.int32)))

    tokenizer = inputs / "minilm" / "tokenizer.json"
    plain = tokenize(tokenizer, texts, MAX_TOKENS, special=False)
    keep = np.array([len(p) > 0 for p in plain])
    train_rows, valid = training[keep[training]], valid[keep[valid]]
    rows = distilled_rows(inputs / "mpnet", tokenizer, basis, device)
    (stage / "static-distil.f16.npy").write_bytes(npy_bytes(rows.cpu().numpy().astype(np.float16)))
    log("distilled rows written")
    config = StudentConfig(layers=0, epochs=args.static_epochs, batch=args.static_batch, lr=args.static_lr)
    bag = make_static(rows.cpu().numpy()).to(device)
    report["static"] = train(bag, config, plain, targets, train_rows, valid, stage / "static.ckpt", device=device,
                             log=log)
    (stage / "static-trained.f16.npy").write_bytes(npy_bytes(bag.weight.detach().cpu().numpy().astype(np.float16)))

    full = tokenize(tokenizer, texts, MAX_TOKENS, special=True)
    report["students"] = {}
    for layers in args.student_layers:
        config = StudentConfig(layers=layers, epochs=args.student_epochs, batch=args.student_batch)
        model = make_student(inputs / "minilm", layers, head_dims=targets.shape[1]).to(device)
        report["students"][f"L{layers}"] = train(model, config, full, targets, train_rows, valid,
                                                 stage / f"student-L{layers}.ckpt", seconds=args.student_seconds,
                                                 device=device, log=log)
        state = {k: v.detach().to("cpu", torch.float16) for k, v in model.state_dict().items()}
        import io

        buffer = io.BytesIO()
        torch.save({"layers": layers, "dims": args.dims, "state": state}, buffer)
        save_split(stage / f"student-L{layers}.pt", buffer.getvalue())
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
