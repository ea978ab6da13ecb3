"""Whole-word tokens for the description model.

A few transformer layers do not put a word cut into pieces back together
inside a sentence: "heist" is `he ##ist`, and both pieces sit in thousands of
other words, so what one training round teaches about "heist" a later round
overwrites through "he". A token of its own for each frequent word the
tokenizer cuts keeps the word's meaning in one row of the embedding table that
only its own phrases train. The row starts as the mean of its pieces' rows.
The model then needs its own tokenizer (edgerec.descriptions loads it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence


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
    body = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    if body["model"]["type"] != "WordPiece":
        raise ValueError(f"whole-word tokens need a WordPiece tokenizer, not {body['model']['type']}")
    vocab = body["model"]["vocab"]
    taken = [w for w in words if w in vocab]
    if taken:
        raise ValueError(f"already whole tokens: {taken[:5]}")
    for word in words:
        vocab[word] = len(vocab)
    (out / "tokenizer.json").write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
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
