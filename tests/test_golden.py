"""Tokenisation and pooling against the torch reference.

- The tiny model: the runtime's fp32 path must reproduce transformers-on-torch
  (same tokens, same mean pooling, same normalisation) to 1e-5.
- The shipped default bundle: its tokenizer must give exactly the token ids of
  the reference tokenizer, and its INT8 vectors must stay within cosine 0.97 of
  the reference vectors of the same model (for the static table: numpy's mean of
  its rows) stored in tests/golden/default.json by `python -m export golden`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgerec import Recommender
from edgerec.recommender import default_bundle_path

GOLDEN = Path(__file__).parent / "golden" / "default.json"
INT8_MIN_COSINE = 0.97


@pytest.mark.needs_torch
def test_tiny_fp32_runtime_matches_torch(tiny_export, tmp_path):
    from export.stages.validate import torch_reference
    from tiny import build_fp32_bundle

    teacher = tiny_export[0]
    texts = ["dog", "A Space War Story. 1977. Action, Sci-Fi", "the the the " * 20, "Ünïcode & punctuation!?"]
    reference = torch_reference(teacher.path, texts, max_length=teacher.max_length, pooling="mean", normalize=True)
    runtime = Recommender.load(build_fp32_bundle(tiny_export, tmp_path / "fp32")).encode(texts)
    np.testing.assert_allclose(runtime, reference, atol=1e-5)


@pytest.mark.needs_torch
def test_tiny_tokens_match_the_reference_tokenizer(tiny_export):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(tiny_export[0].path)
    tokenizer = Recommender.load(tiny_export[1].out, threads=1).encoder.tokenizer
    for text in ["dog", "A clever heist, twisted!", "word " * 100]:
        expected = reference(text, truncation=True, max_length=32)["input_ids"]
        assert tokenizer.encode(text).ids == expected


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def default_recommender():
    return Recommender.load(default_bundle_path(), threads=1)


def test_default_bundle_tokens_match_the_reference(golden, default_recommender):
    tokenizer = default_recommender.encoder.tokenizer
    for text, expected in zip(golden["texts"], golden["input_ids"]):
        assert tokenizer.encode(text).ids == expected, text
    assert max(len(ids) for ids in golden["input_ids"]) == default_recommender.encoder.spec.max_length


def test_default_bundle_vectors_match_the_reference(golden, default_recommender):
    reference = np.asarray(golden["vectors"], dtype=np.float32)
    for text, expected in zip(golden["texts"], reference):
        cosine = float(default_recommender.encode(text)[0] @ expected)
        assert cosine >= INT8_MIN_COSINE, (text, cosine)


def test_default_bundle_recommends_science_fiction_for_a_science_fiction_history(default_recommender):
    history = ["Star Wars: Episode IV - A New Hope (1977)", "Alien (1979)", "Blade Runner (1982)",
               "Terminator, The (1984)"]
    results = default_recommender.recommend(history, k=10)
    assert not set(history) & {r.item_id for r in results}
    assert sum("Sci-Fi" in r.metadata["genres"] for r in results) >= 7


def test_default_bundle_reads_descriptions(default_recommender):
    # The table learnt descriptive phrases from the previous bundle's description model (static_teach.py):
    # a description finds films of its genre, also where no title shares its words.
    described = {"western with gunfights and outlaws": "Western",
                 "scary horror movie set in a haunted house": "Horror",
                 "gangster film about the mafia": "Crime",
                 "a war film about soldiers in vietnam": "War",
                 "a movie about a robbery": "Crime"}
    for text, genre in described.items():
        assert sum(genre in r.metadata["genres"] for r in default_recommender.query(text, k=10)) >= 8, text


def test_default_bundle_fuses_bm25_for_a_rare_word(default_recommender):
    # "jaws" names three films; BM25's margin over other titles lets the word count.
    assert {r.item_id for r in default_recommender.query("jaws", k=3)} == {"Jaws (1975)", "Jaws 2 (1978)",
                                                                           "Jaws 3-D (1983)"}
    assert default_recommender.bundle.manifest.lexical is not None


def test_default_bundle_finds_titles(default_recommender):
    rec = default_recommender
    assert rec.query("The Matrix", k=1)[0].item_id == "Matrix, The (1999)"
    assert rec.query("something like Pulp Fiction", k=1)[0].item_id == "Pulp Fiction (1994)"
