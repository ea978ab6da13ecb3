"""Whole-word tokens for the description model.

A few transformer layers do not put a word cut into pieces back together
inside a sentence: "heist" is `he ##ist`, and both pieces sit in thousands of
other words, so what one training round teaches about "heist" a later round
overwrites through "he". A token of its own for each frequent word the
tokenizer cuts keeps the word's meaning in one row of the embedding table that
only its own phrases train. The row starts as the mean of its pieces' rows.
The model then needs its own tokenizer (edgerec.descriptions loads it).

A static student gains the same way (``cut_words``, ``extend_vocabulary``): a
name or rare word read as the mean of its pieces' rows means little, while a
row of its own learns what the teacher reads in the texts that use it. The row
starts as the mean of its pieces' rows here too (``piece_means``).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence


def split_words(tokenizer: Any, words: Sequence[str]) -> list[str]:
    """The distinct ``words``, in order, that ``tokenizer`` (a fast transformers tokenizer) cuts into
    more than one piece."""
    out, seen = [], set()
    for word in words:
        if word not in seen and len(tokenizer(word, add_special_tokens=False)["input_ids"]) > 1:
            seen.add(word)
            out.append(word)
    return out


def with_whole_words(tokenizer: Any, words: Sequence[str], out: Path) -> Any:
    """A copy of WordPiece ``tokenizer`` whose vocabulary also holds ``words`` whole (new ids after the
    existing ones, in order), saved in ``out``. WordPiece takes the longest match first, so a word in
    the vocabulary is one token, and words built on it ("heists") start with it."""
    from transformers import AutoTokenizer

    if out.exists():
        shutil.rmtree(out)
    tokenizer.save_pretrained(out)
    vocab = extend_vocabulary(out / "tokenizer.json", words, out / "tokenizer.json")
    # vocab.txt is the slow tokenizer's copy of the same list: keep the two equal.
    ordered = sorted(vocab, key=vocab.__getitem__)
    (out / "vocab.txt").write_text("".join(f"{token}\n" for token in ordered), encoding="utf-8")
    return AutoTokenizer.from_pretrained(out)


def grow_embeddings(model: Any, pieces_of: Any, words: Sequence[str]) -> Any:
    """``model`` (a transformers encoder) with a word-embedding row for each of ``words``, appended in
    order: the mean of the rows of the pieces ``pieces_of`` (the tokenizer before) cuts it into."""
    import torch

    table = model.get_input_embeddings().weight
    before = table.shape[0]
    starts = torch.stack([table[pieces_of(w, add_special_tokens=False)["input_ids"]].mean(dim=0) for w in words]) \
        if words else table[:0]
    model.resize_token_embeddings(before + len(words), mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[before:] = starts.detach()
    return model


def extend_vocabulary(source: Path, words: Sequence[str], out: Path) -> dict[str, int]:
    """Write ``source`` (a WordPiece tokenizer.json) to ``out`` holding ``words`` whole (new ids after the
    existing ones, in order); returns the new vocabulary. Needs only the tokenizer file, so the static
    student's runtime reads it as it is."""
    body = json.loads(source.read_text(encoding="utf-8"))
    if body["model"]["type"] != "WordPiece":
        raise ValueError(f"whole-word tokens need a WordPiece tokenizer, not {body['model']['type']}")
    vocab = body["model"]["vocab"]
    taken = [w for w in words if w in vocab]
    if taken:
        raise ValueError(f"already whole tokens: {taken[:5]}")
    for word in words:
        vocab[word] = len(vocab)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    partial.replace(out)
    return vocab


def cut_words(tokenizer_path: Path, texts: Iterable[str], limit: int, min_count: int) -> list[str]:
    """The ``limit`` most frequent words of ``texts`` (as the tokenizer normalises and splits them) that
    its vocabulary lacks, so cuts into pieces, each seen at least ``min_count`` times; letters only, since
    numbers and codes read well enough piece by piece. Most frequent first, ties in alphabetical order."""
    from tokenizers import Tokenizer

    from edgerec.lexical import WordSplitter  # BM25's words: the tokenizer's normaliser and pre-tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    split = WordSplitter(tokenizer)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(split(text))
    kept = [(-count, word) for word, count in counts.items()
            if count >= min_count and word not in vocab and word.isalpha()]
    return [word for _, word in sorted(kept)[:limit]]


def piece_means(rows: Any, tokenizer_path: Path, words: Sequence[str]) -> Any:
    """(len(words), dim): for each word, the mean of the ``rows`` (a static table, one row per token id of
    ``tokenizer_path``) of the pieces that tokenizer cuts it into."""
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    out = np.zeros((len(words), rows.shape[1]), dtype=rows.dtype)
    for i, encoding in enumerate(tokenizer.encode_batch(list(words), add_special_tokens=False)):
        if encoding.ids:
            out[i] = rows[encoding.ids].mean(axis=0)
    return out
