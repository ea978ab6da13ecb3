"""Text to vectors: a fast tokenizer, one ONNX Runtime session, numpy pooling.

Texts are padded only to the longest text of their batch (never to a fixed
length), and long lists are sorted by token count before batching so that
little padding is computed and dynamic-INT8 activation scales see little of
it.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .bundle.manifest import EncoderSpec
from .bundle.onnx_scan import check_self_contained
from .bundle.static_graph import StaticTable, read_static_table
from .errors import BundleError, EmptyQueryError, ProviderError, one_line
from .pooling import POOLERS, l2_normalize, pool_one, unit_vector

# Texts are cut to this many UTF-8 bytes before tokenizing: the model reads at
# most a few hundred tokens (about 1 KB of English), while tokenizing megabytes
# costs seconds and GBs. 32 KiB keeps the worst query under twice a 1 KB one.
MAX_TEXT_BYTES = 32 * 1024
DEFAULT_BATCH_SIZE = 32
_TOKENIZE_CHUNK = 1024
DEVICES = ("cpu", "cuda")
REPLACEMENT_CHARACTER = "\ufffd"
# What a text can consist of and still give the model nothing to read: whitespace,
# controls (Cc), format characters such as zero-width spaces, bidi marks and the
# BOM (Cf), and U+FFFD where undecodable bytes were. BERT's normaliser drops all of them.
_UNREADABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})

Progress = Callable[[int], None]


def clean_text(text: object, name: str = "text") -> str:
    """The one rule for a user's text before it reaches the tokenizer.

    - not a str: TypeError naming the parameter;
    - lone surrogates (invalid UTF-8 from argv arrives as these) become U+FFFD;
      a valid surrogate pair becomes its character;
    - more than MAX_TEXT_BYTES of UTF-8: the rest is dropped, at a character boundary;
    - surrounding whitespace is stripped;
    - nothing readable left: EmptyQueryError.
    """
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    head = text[:MAX_TEXT_BYTES]  # a character is at least one byte: bounds the work on huge texts
    try:
        data = head.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates; utf-16 round trip joins real pairs, replaces the rest
        head = head.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        data = head.encode("utf-8")
    if len(data) > MAX_TEXT_BYTES:
        head = data[:MAX_TEXT_BYTES].decode("utf-8", errors="ignore")  # drops only a split last character
    cleaned = head.strip()
    if not has_readable_character(cleaned):
        raise EmptyQueryError(
            f"{name} is empty: it has no words, only whitespace, control, zero-width or undecodable "
            "characters; give some words to search for"
        )
    return cleaned


def has_readable_character(text: str) -> bool:
    """True when ``text`` holds something besides whitespace, controls, format characters and U+FFFD."""
    # Stops at the first readable character, so ordinary text costs one lookup.
    return any(
        c != REPLACEMENT_CHARACTER and unicodedata.category(c) not in _UNREADABLE_CATEGORIES for c in text
    )


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def make_session(model_path: Path, *, threads: int | None = None, device: str = "cpu"):  # -> ort.InferenceSession
    """The one place an InferenceSession is built (never one per call)."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise ProviderError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ProviderError(
                "device 'cuda' asked for, but ONNX Runtime offers only "
                f"{', '.join(available)}; install onnxruntime-gpu with a matching CUDA, or use --device cpu"
            )
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads) if threads else 0  # 0: all cores
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle pool threads sleep instead of spinning: inside someone else's app an
    # encoder must not burn the cores it is not using between queries.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    check_self_contained(model_path)  # ONNX Runtime must not be led to read files outside the bundle
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own untyped errors, over several lines in some versions
        raise BundleError(f"{model_path}: ONNX Runtime cannot load the encoder ({one_line(exc)})") from None


def load_tokenizer(path: Path, spec: EncoderSpec):  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except BaseException as exc:  # the Rust side can panic; never let that escape as-is
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise BundleError(f"{path}: not a usable tokenizer ({one_line(exc)})") from None
    if tokenizer.get_vocab_size() > spec.vocab_size:
        raise BundleError(
            f"{path}: tokenizer has {tokenizer.get_vocab_size()} tokens but the model only "
            f"{spec.vocab_size}: the tokenizer does not belong to this encoder"
        )
    tokenizer.no_padding()  # we pad per batch ourselves
    tokenizer.enable_truncation(max_length=spec.max_length)
    return tokenizer


class TextEncoder:
    """Encodes texts into unit-length float32 vectors with a bundled model."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        tokenizer_path: str | os.PathLike[str],
        spec: EncoderSpec,
        *,
        threads: int | None = None,
        device: str = "cpu",
        tokenizer: Any = None,
    ) -> None:
        """``tokenizer``: one already loaded from ``tokenizer_path`` for a spec of the same max_length
        (a second model on the same bundle shares it instead of parsing the file again)."""
        self.spec = spec
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(Path(tokenizer_path), spec)
        # A static encoder (one table row per token) is computed by numpy on the CPU: same products,
        # no session to load, no call overhead (edgerec.bundle.static_graph).
        self.table = _static_table(Path(model_path), spec) if device == "cpu" else None
        if self.table is None:
            self.session = make_session(Path(model_path), threads=threads, device=device)
            self._input_names = self._check_graph(Path(model_path))
        else:
            self.session = None
            self._input_names = ["input_ids"]
        self._check_vocabulary(Path(model_path), Path(tokenizer_path))
        self._pool = POOLERS[spec.pooling]
        padding = self.tokenizer.padding
        pad_id = padding["pad_id"] if padding else self.tokenizer.token_to_id("[PAD]")
        self._pad_id = int(pad_id or 0)

    def _check_graph(self, model_path: Path) -> list[str]:
        graph_inputs = [i.name for i in self.session.get_inputs()]
        if sorted(graph_inputs) != sorted(self.spec.inputs):
            raise BundleError(
                f"{model_path}: the graph takes {graph_inputs}, the manifest says {list(self.spec.inputs)}"
            )
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        if self.spec.output not in outputs:
            raise BundleError(f"{model_path}: the graph has no output {self.spec.output!r} (it has {sorted(outputs)})")
        width = outputs[self.spec.output][-1]
        if isinstance(width, int) and width != self.spec.dim:
            raise BundleError(f"{model_path}: the graph outputs {width}-d vectors, the manifest says {self.spec.dim}")
        return graph_inputs

    def _check_vocabulary(self, model_path: Path, tokenizer_path: Path) -> None:
        """Run the model once on the tokenizer's highest token id.

        A tokenizer from another model (more tokens than this model has
        embedding rows) then fails at load, naming the file, instead of on the
        first query that happens to use a missing token. The manifest's
        vocab_size cannot be trusted for this: it is not covered by any hash.
        """
        highest = max(self.tokenizer.get_vocab(with_added_tokens=True).values(), default=0)
        if highest >= self.spec.vocab_size:
            raise BundleError(f"{tokenizer_path}: has token id {highest} but the model has {self.spec.vocab_size} "
                              "tokens: the tokenizer does not belong to this encoder; rebuild the bundle")
        if self.table is not None:
            if self.table.dim != self.spec.dim:
                raise BundleError(f"{model_path}: its table has {self.table.dim}-d rows, the manifest says "
                                  f"{self.spec.dim}")
            if highest >= self.table.vocab_size:
                raise BundleError(f"{tokenizer_path}: has token id {highest} but the model's table has "
                                  f"{self.table.vocab_size} rows: the tokenizer does not belong to this encoder; "
                                  "rebuild the bundle")
            return
        ids = np.asarray([[highest]], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        try:
            self.session.run([self.spec.output], {name: feed[name] for name in self._input_names})
        except Exception as exc:  # ORT raises its own untyped errors
            reason = str(exc).splitlines()[0][-160:]
            raise BundleError(
                f"{tokenizer_path}: the model {model_path.name} cannot read token id {highest} ({reason}): "
                "the tokenizer does not belong to this encoder; rebuild the bundle"
            ) from None

    @property
    def providers(self) -> list[str]:
        """ONNX Runtime's execution providers in use; ["numpy"] for a static encoder's table."""
        return ["numpy"] if self.session is None else list(self.session.get_providers())

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Vectors for ``texts``, shape (len(texts), dim), float32, in input order."""
        out = np.empty((len(texts), self.spec.dim), dtype=np.float32)
        for start in range(0, len(texts), _TOKENIZE_CHUNK):
            chunk = list(texts[start : start + _TOKENIZE_CHUNK])
            encodings = self.tokenizer.encode_batch(chunk)
            order = sorted(range(len(chunk)), key=lambda i: len(encodings[i].ids))
            for b in range(0, len(order), batch_size):
                rows = order[b : b + batch_size]
                out[[start + r for r in rows]] = self._run([encodings[r] for r in rows])
                if progress is not None:
                    progress(len(rows))
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """One text's vector: the query path. Same result as ``encode([text])[0]``, without
        padding, so pooling needs no mask."""
        encoding = self.tokenizer.encode(text)
        if self.table is not None:
            vector = self.table.mean(encoding.ids)
        else:
            ids = np.asarray([encoding.ids], dtype=np.int64)
            ones = np.ones_like(ids)
            feed = {"input_ids": ids, "attention_mask": ones, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run([self.spec.output], {name: feed[name] for name in self._input_names})[0]
            vector = pool_one(hidden[0], self.spec.pooling)
        if self.spec.normalize:
            vector = unit_vector(vector)
        return vector.astype(np.float32, copy=False)

    def model_inputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The graph's input arrays for one batch of texts (padded to the longest): for calibration and timing."""
        return self._feed(self.tokenizer.encode_batch(list(texts)))[0]

    def _feed(self, encodings: list) -> tuple[dict[str, np.ndarray], np.ndarray]:
        longest = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), longest), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), longest), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return {name: feed[name] for name in self._input_names}, mask

    def _run(self, encodings: list) -> np.ndarray:
        if self.table is not None:  # unpadded, text by text: numpy's gather is the whole cost
            vectors = np.stack([self.table.mean(e.ids) for e in encodings])
        else:
            feed, mask = self._feed(encodings)
            hidden = self.session.run([self.spec.output], feed)[0]
            vectors = self._pool(hidden, mask)
        if self.spec.normalize:
            vectors = l2_normalize(vectors)
        return vectors.astype(np.float32, copy=False)


def _static_table(model_path: Path, spec: EncoderSpec) -> StaticTable | None:
    """The table of a static encoder that mean-pools its rows; None for any other model."""
    if spec.pooling != "mean" or list(spec.inputs) != ["input_ids"]:
        return None
    return read_static_table(model_path, spec.output)
