"""Static (model2vec-style) encoders: one row per WordPiece token, distilled from a sentence encoder.

Distillation: every token of the MiniLM WordPiece vocabulary is read alone by
the teacher ("##" stripped, so "##ing" is read as "ing"); the teacher's unit
vectors are projected onto their top principal directions, *uncentred* (the
eigenvectors of the second moment, not of the covariance), so that inner
products between projected rows keep the teacher's ranking: the mean direction
that centring would remove is one of the kept ones. Special tokens ([PAD],
[CLS], [SEP], [UNK], [MASK], [unusedN]) get zero rows: they carry no meaning
of their own. No text of any task is read: the distillation needs the
vocabulary alone.

Encoding: a text is the mean of its tokens' rows (no [CLS]/[SEP]), normalised;
pure numpy after the tokenizer, so the query path is a row gather and a mean.

model2vec itself centres before its PCA (``centred=True`` here): the mean
direction is removed, which also removes the component every token shares.
Both are offered; neither is chosen on the tasks.

Optional weighting (``zipf_sif_weights``): model2vec's published default,
weight = a / (a + p(rank)) with p the Zipf law over the vocabulary index and
a = 1e-4. It assumes the vocabulary is ordered by frequency, as BERT's
WordPiece vocabulary roughly is after its first ~2,000 entries (the, of, and,
... come first); it is the default model2vec applies to this same vocabulary
(potion's teacher, bge-base-en-v1.5, uses it), and nothing here tunes it.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

VERSION = 2  # bump when the recipe below changes: cached tables are rebuilt
DIMS = 256
SIF_COEFFICIENT = 1e-4  # model2vec's default (model2vec.distill), not tuned here
MAX_TOKENS = 512  # model2vec's default max_length for encode; the static model has no position limit
TeacherEncode = Callable[[Sequence[str]], np.ndarray]  # texts -> unit vectors
Log = Callable[[str], None]


def vocabulary_words(tokenizer_path: Path) -> tuple[list[str], np.ndarray]:
    """(the text each token id is read as, a mask of the special tokens), in token-id order."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_path)).get_vocab(with_added_tokens=True)
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"{tokenizer_path}: token ids are not 0..{len(vocab) - 1}")
    words = [""] * len(vocab)
    special = np.zeros(len(vocab), dtype=bool)
    for token, index in vocab.items():
        words[index] = token[2:] if token.startswith("##") else token
        special[index] = token.startswith("[") and token.endswith("]")
    return words, special


def principal_directions(vectors: np.ndarray, dims: int, centred: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(the top ``dims`` eigenvectors of the uncentred second moment, or of the covariance when ``centred``,
    as rows; all eigenvalues, largest first). Projecting uncentred onto all of them is a rotation: inner
    products are kept exactly."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or not 1 <= dims <= x.shape[1]:
        raise ValueError(f"cannot keep {dims} directions of {x.shape} vectors")
    if centred:
        x = x - x.mean(axis=0)
    values, basis = np.linalg.eigh(x.T @ x / len(x))
    order = np.argsort(values)[::-1]
    return basis[:, order[:dims]].T.astype(np.float32), values[order]


def sentence_teacher(path: Path, threads: int) -> TeacherEncode:
    """A sentence-transformers model as ``texts -> unit vectors`` on ``threads`` cores (for distillation)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")

    def encode(texts: Sequence[str]) -> np.ndarray:
        torch.set_num_threads(threads)
        return model.encode(list(texts), batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    return encode


def teacher_rows(teacher: TeacherEncode, words: Sequence[str], special: np.ndarray, chunk: int = 2048,
                 log: Log | None = None) -> np.ndarray:
    """Each non-special word read alone by ``teacher`` (a row per token id; zero rows for special tokens)."""
    readable = np.flatnonzero(~special)
    started = time.perf_counter()
    parts = []
    for start in range(0, len(readable), chunk):
        parts.append(np.asarray(teacher([words[i] for i in readable[start:start + chunk]]), dtype=np.float32))
        if log is not None:
            done = min(start + chunk, len(readable))
            log(f"teacher read {done:,}/{len(readable):,} tokens ({time.perf_counter() - started:.0f} s)")
    vectors = np.concatenate(parts)
    rows = np.zeros((len(words), vectors.shape[1]), dtype=np.float32)
    rows[readable] = vectors
    return rows


def project_rows(rows: np.ndarray, special: np.ndarray, dims: int = DIMS, centred: bool = False
                 ) -> tuple[np.ndarray, dict]:
    """The teacher's rows of the non-special tokens projected onto their top ``dims`` principal directions
    (uncentred by default; ``centred``: model2vec's PCA, the mean subtracted first); special rows stay zero.
    Returns (rows, facts about the projection)."""
    readable = np.flatnonzero(~special)
    vectors = rows[readable].astype(np.float64)
    basis, values = principal_directions(vectors, dims, centred)
    out = np.zeros((len(rows), dims), dtype=np.float32)
    out[readable] = (vectors - vectors.mean(axis=0) if centred else vectors) @ basis.T
    return out, {"tokens_read": int(len(readable)), "teacher_dim": int(rows.shape[1]), "dims": dims,
                 "centred": centred, "variance_kept": round(float(values[:dims].sum() / values.sum()), 4)}


def zipf_sif_weights(count: int, coefficient: float = SIF_COEFFICIENT) -> np.ndarray:
    """model2vec's weight per token id: a / (a + p), p the Zipf probability of rank id + 1 (so id 0 has rank 1)."""
    inverse_rank = 1.0 / np.arange(2, count + 2)
    probability = inverse_rank / inverse_rank.sum()
    return (coefficient / (coefficient + probability)).astype(np.float32)


def _cached(path: Path, key: dict, make: Callable[[], tuple[np.ndarray, dict]]) -> Path:
    """``path`` (an .npy) made by ``make`` unless one made with the same ``key`` is there (``path``.json)."""
    facts_path = path.with_suffix(".json")
    if path.is_file() and facts_path.is_file() and json.loads(facts_path.read_text()).get("key") == key:
        return path
    array, facts = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, array)
    partial.replace(path)
    facts_path.write_text(json.dumps({"key": key, **facts}, indent=2) + "\n")
    return path


def teacher_table(folder: Path, teacher_name: str, load_teacher: Callable[[], TeacherEncode], tokenizer_path: Path,
                  log: Log | None = None) -> Path:
    """``folder``/teacher-<slug>.npy: every vocabulary token read alone by the teacher (``teacher_rows``),
    made once per teacher and vocabulary."""
    vocabulary = hashlib.sha256(tokenizer_path.read_bytes()).hexdigest()[:16]
    slug = "".join(c if c.isalnum() else "-" for c in teacher_name.rsplit("/", 1)[-1].lower())
    words, special = vocabulary_words(tokenizer_path)

    def read() -> tuple[np.ndarray, dict]:
        if log is not None:
            log(f"{teacher_name} reads {int((~special).sum()):,} vocabulary tokens, each alone")
        started = time.perf_counter()
        rows = teacher_rows(load_teacher(), words, special, log=log)
        return rows, {"seconds": round(time.perf_counter() - started, 1)}
    key = {"version": VERSION, "teacher": teacher_name, "vocabulary": vocabulary}
    return _cached(folder / f"teacher-{slug}.npy", key, read)


def distilled_table(path: Path, teacher_name: str, load_teacher: Callable[[], TeacherEncode], tokenizer_path: Path,
                    dims: int = DIMS, centred: bool = False, log: Log | None = None) -> Path:
    """``path`` (an .npy of rows): made once per recipe, teacher and vocabulary. The teacher's rows are kept
    beside it (``teacher_table``), so another projection of them costs no teacher run."""
    raw = teacher_table(path.parent, teacher_name, load_teacher, tokenizer_path, log)
    _, special = vocabulary_words(tokenizer_path)
    key = {**json.loads(raw.with_suffix(".json").read_text())["key"], "dims": dims, "centred": centred}
    return _cached(path, key, lambda: project_rows(np.load(raw), special, dims, centred))


class StaticEncoder:
    """Token rows, mean-pooled and normalised: the whole model. Pure numpy after the tokenizer."""

    def __init__(self, rows: np.ndarray, tokenizer_path: Path, weights: np.ndarray | None = None,
                 max_tokens: int = MAX_TOKENS) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)
        size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        if rows.ndim != 2 or rows.shape[0] != size:
            raise ValueError(f"{rows.shape[0] if rows.ndim == 2 else rows.shape} rows for a vocabulary of {size}")
        table = np.asarray(rows, dtype=np.float32)
        if weights is not None:
            table = table * np.asarray(weights, dtype=np.float32)[:, None]
        self.rows = np.ascontiguousarray(table)

    @property
    def dim(self) -> int:
        return int(self.rows.shape[1])

    def encode_one(self, text: str) -> np.ndarray:
        """The query path: tokenize, gather, mean, normalise."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        vector = self.rows[ids].mean(axis=0)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors, one row per text, in order (``batch_size`` texts tokenized at a time)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            encodings = self.tokenizer.encode_batch(list(texts[start:start + batch_size]), add_special_tokens=False)
            lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
            filled = np.flatnonzero(lengths)
            if not len(filled):
                continue
            ids = np.fromiter((t for e in encodings for t in e.ids), dtype=np.int64, count=int(lengths.sum()))
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])[filled]
            sums = np.add.reduceat(self.rows[ids], offsets, axis=0)
            out[start + filled] = sums / lengths[filled, None]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
