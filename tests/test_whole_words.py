"""Whole-word tokens for the description model (export/stages/whole_words.py), on the tiny teacher's
WordPiece vocabulary: its words are whole tokens, anything else is spelt out letter by letter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiny import make_tiny_teacher

pytestmark = pytest.mark.needs_torch  # the tiny teacher is a transformers model


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("whole-words") / "teacher")


def test_split_words_are_the_new_ones_cut_into_pieces_each_once_in_order(teacher: Path) -> None:
    from transformers import AutoTokenizer

    from export.stages.whole_words import split_words

    pieces = AutoTokenizer.from_pretrained(teacher)
    assert split_words(pieces, ["ghost", "spooky", "haunted", "ghostly", "spooky"]) == ["spooky", "ghostly"]


def test_the_tokenizer_holds_the_words_whole_and_the_runtime_reads_it_alike(teacher: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from export.stages.whole_words import with_whole_words

    pieces = AutoTokenizer.from_pretrained(teacher)
    grown = with_whole_words(pieces, ["spooky", "ghostly"], tmp_path / "tok")
    size = len(pieces)
    assert len(grown) == size + 2
    assert grown("spooky ghostly", add_special_tokens=False)["input_ids"] == [size, size + 1]
    assert grown.tokenize("spookyness")[0] == "spooky"  # longest match first: words built on it start with it
    assert grown("a ghost", add_special_tokens=False)["input_ids"] == pieces("a ghost", add_special_tokens=False)["input_ids"]
    runtime = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    text = "A Spooky ghostly house"
    assert runtime.encode(text).ids == grown(text)["input_ids"]
    lines = (tmp_path / "tok" / "vocab.txt").read_text().splitlines()
    assert len(lines) == size + 2 and lines[-2:] == ["spooky", "ghostly"]
    with pytest.raises(ValueError, match="already whole tokens: \\['ghost'\\]"):
        with_whole_words(pieces, ["ghost"], tmp_path / "again")


def test_a_new_row_starts_as_the_mean_of_its_pieces_rows(teacher: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from export.stages.whole_words import grow_embeddings

    pieces = AutoTokenizer.from_pretrained(teacher)
    model = AutoModel.from_pretrained(teacher)
    before = model.get_input_embeddings().weight.detach().clone()
    grow_embeddings(model, pieces, ["spooky", "ghostly"])
    after = model.get_input_embeddings().weight.detach()
    assert after.shape == (before.shape[0] + 2, before.shape[1]) and model.config.vocab_size == before.shape[0] + 2
    assert torch.equal(after[: before.shape[0]], before)
    ids = pieces("ghostly", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1
    np.testing.assert_allclose(after[-1].numpy(), before[ids].mean(dim=0).numpy(), rtol=1e-6)


def test_cut_words_are_the_frequent_words_the_vocabulary_lacks_and_the_runtime_reads_them_whole(
        teacher: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    from export.stages.whole_words import cut_words, extend_vocabulary

    source = teacher / "tokenizer.json"
    texts = ["A Spooky ghost", "spooky house", "ghostly 4242 4242", "Spooky!", "ghostly night", "eerie"]
    assert cut_words(source, texts, limit=5, min_count=2) == ["spooky", "ghostly"]  # most frequent first
    assert cut_words(source, texts, limit=1, min_count=2) == ["spooky"]
    assert cut_words(source, texts, limit=5, min_count=4) == []
    grown = tmp_path / "grown.json"
    assert extend_vocabulary(source, ["spooky", "ghostly"], grown)["ghostly"] == Tokenizer.from_file(
        str(source)).get_vocab_size() + 1
    before, after = Tokenizer.from_file(str(source)), Tokenizer.from_file(str(grown))
    size = before.get_vocab_size()
    assert after.get_vocab_size() == size + 2
    assert after.encode("Spooky ghostly", add_special_tokens=False).ids == [size, size + 1]
    assert after.encode("a ghost").ids == before.encode("a ghost").ids
