"""The peers as a user would write them today, without edgerec: the code `python -m export peers` times.

- ``PlainOnnxEncoder``: a tokenizers tokenizer + one ONNX Runtime session +
  numpy mean pooling and normalisation (any of the stock ONNX files);
- ``TorchSentenceEncoder``: sentence-transformers' ``encode`` on torch.

Each is given the one fix every guide names, so the comparison is with a
careful user rather than a naive one: the plain tokenizer pads nothing for a
single query and pads a batch only to its longest text (the tokenizer.json
shipped with all-MiniLM-L6-v2 pads every text to 128 tokens).

Run as a script, this file is the cold-start child: it imports only what its
variant needs (never the export package), answers one query against
catalogue vectors saved beforehand, prints ``answered``, then its peak RSS in KiB:

    python export/measure/peer_client.py onnx MODEL.onnx TOKENIZER.json MAX_LENGTH VECTORS.npy TEXT THREADS
    python export/measure/peer_client.py torch MODEL_DIR - - VECTORS.npy TEXT THREADS
"""

from __future__ import annotations

import resource
import sys
from typing import Sequence

import numpy as np


def top_k(vectors: np.ndarray, query: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact top-k by inner product, best first: what a user without an index does."""
    scores = vectors @ query
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top])]


class PlainOnnxEncoder:
    """tokenizer + session + mean pool + normalise."""

    def __init__(self, model_path: str, tokenizer_path: str, max_length: int, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.tokenizer = Tokenizer.from_file(tokenizer_path)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length)
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {name: feed[name] for name in self.input_names})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def encode_one(self, text: str) -> np.ndarray:
        ids = np.asarray([self.tokenizer.encode(text).ids], dtype=np.int64)
        return self._run(ids, np.ones_like(ids))[0]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """In the order given, each batch padded to its longest text."""
        out = []
        for start in range(0, len(texts), batch_size):
            encodings = self.tokenizer.encode_batch(list(texts[start : start + batch_size]))
            longest = max(len(e.ids) for e in encodings)
            ids = np.full((len(encodings), longest), self.pad_id, dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, encoding in enumerate(encodings):
                ids[row, : len(encoding.ids)] = encoding.ids
                mask[row, : len(encoding.ids)] = 1
            out.append(self._run(ids, mask))
        return np.concatenate(out).astype(np.float32)


class TorchSentenceEncoder:
    """sentence-transformers on torch fp32, the way its README shows."""

    def __init__(self, model_dir: str, threads: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.threads = threads
        torch.set_num_threads(threads)
        self.model = SentenceTransformer(model_dir, device="cpu")

    def use_threads(self) -> None:
        """torch's thread count is process-wide: set it again before a block of timed calls."""
        import torch

        torch.set_num_threads(self.threads)

    def encode_one(self, text: str) -> np.ndarray:
        return self.model.encode([text], convert_to_numpy=True)[0]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True).astype(np.float32)


def peak_rss_kib() -> int:
    """Peak RSS in KiB: VmHWM on Linux, because a child's ru_maxrss starts at its parent's RSS
    (a copy of edgerec.tools.timing.peak_rss_kib: this script must not import edgerec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def main(argv: Sequence[str]) -> int:
    kind, model, tokenizer, max_length, vectors_path, text, threads = argv
    if kind == "onnx":
        encoder: PlainOnnxEncoder | TorchSentenceEncoder = PlainOnnxEncoder(model, tokenizer, int(max_length),
                                                                            int(threads))
    elif kind == "torch":
        encoder = TorchSentenceEncoder(model, int(threads))
    else:
        print(f"unknown peer kind {kind!r}", file=sys.stderr)
        return 2
    top_k(np.load(vectors_path), encoder.encode_one(text))
    print("answered", flush=True)
    print(peak_rss_kib(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
