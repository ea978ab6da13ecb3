"""`python -m export student` on the tiny teacher: both kinds learn the teacher's vectors, a run stopped
at a step resumes to the same weights as one never stopped, and bad inputs get clear errors."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from tiny import WORDS, make_tiny_teacher

pytestmark = pytest.mark.needs_torch

TEXTS = 700
NEW_WORDS = ("spooky", "ghostly")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    """(corpus file, shards folder, teacher facts, token-table folder) for the tiny teacher."""
    import torch

    from export.stages.sources import read_teacher
    from export.stages.static_embed import teacher_table
    from export.stages.static_fit import tokenize
    from export.stages.student import make_student
    from export.stages.teacher import ShardPlan, file_sha256, read_shards

    root = tmp_path_factory.mktemp("student")
    teacher = read_teacher(make_tiny_teacher(root / "teacher"), "tiny-teacher")
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))) for _ in range(TEXTS)]
    # Words the tiny vocabulary spells letter by letter, for the whole-word students.
    texts = [f"{t} {rng.choice(NEW_WORDS)}" if rng.random() < 0.3 else t for t in texts]
    corpus = root / "train.txt.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(texts) + "\n")
    full = make_student(teacher.path, 2).eval()  # every layer: the teacher itself, mean pooled

    def read(batch) -> np.ndarray:
        from export.stages.student import padded

        ids = tokenize(teacher.path / "tokenizer.json", list(batch), teacher.max_length, special=True)
        with torch.no_grad():
            return full(*padded(ids, np.arange(len(ids)))).numpy()

    # A random BERT's vectors share one direction (cosines ~0.9999); without it they differ enough to learn.
    shared = read(texts).mean(axis=0)

    def encode(batch) -> np.ndarray:
        vectors = read(batch) - shared
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    plan = ShardPlan(teacher=teacher.name, corpus_sha256=file_sha256(corpus), count=TEXTS, shard_texts=128)
    read_shards(texts, encode, root / "shards", plan)
    tables = root / "tables"
    teacher_table(tables, teacher.name, lambda: encode, teacher.path / "tokenizer.json")
    return corpus, root / "shards", teacher, tables


def test_a_static_student_learns_the_teachers_vectors(setup, tmp_path: Path) -> None:
    from export.stages.student import StudentConfig, stage_student

    corpus, shards, teacher, tables = setup
    report = stage_student(corpus, shards, tmp_path / "L0", teacher, StudentConfig(layers=0, epochs=3, batch=32),
                           tables=tables, log=lambda m: None)
    cosines = [h["valid_cosine"] for h in report["history"]]
    assert report["finished"] and len(cosines) == 4
    assert cosines[-1] > cosines[0] + 0.05, cosines
    rows = np.load(tmp_path / "L0" / "model" / "rows.f16.npy")
    assert rows.shape[0] >= len(WORDS) and (tmp_path / "L0" / "model" / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "L0" / "report.json").read_text())["texts"] == TEXTS


def test_a_static_student_can_grow_whole_words_the_texts_use(setup, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    from export.stages.student import StudentConfig, stage_student

    corpus, shards, teacher, tables = setup
    said: list[str] = []
    config = StudentConfig(layers=0, epochs=3, batch=32, words=5)
    assert config.name == "L0-w5"
    report = stage_student(corpus, shards, tmp_path / "L0-w5", teacher, config, tables=tables, log=said.append)
    assert report["finished"] and report["history"][-1]["valid_cosine"] > report["history"][0]["valid_cosine"]
    assert any(line.startswith("2 whole words join the vocabulary") for line in said), said
    base = Tokenizer.from_file(str(teacher.path / "tokenizer.json")).get_vocab_size()
    grown = Tokenizer.from_file(str(tmp_path / "L0-w5" / "model" / "tokenizer.json"))
    assert grown.get_vocab_size() == base + 2
    assert sorted(grown.encode("spooky ghostly", add_special_tokens=False).ids) == [base, base + 1]
    rows = np.load(tmp_path / "L0-w5" / "model" / "rows.f16.npy")
    assert rows.shape[0] == base + 2 and np.abs(rows[base:]).sum(axis=1).min() > 0
    with pytest.raises(ValueError, match="static student only"):
        stage_student(corpus, shards, tmp_path / "L1-w", teacher, StudentConfig(layers=1, words=5), log=said.append)


def test_a_layered_student_resumes_where_it_stopped(setup, tmp_path: Path) -> None:
    import torch

    from export.stages.student import StudentConfig, stage_student

    corpus, shards, teacher, tables = setup
    config = StudentConfig(layers=1, epochs=2, batch=32, lr=1e-3)
    whole = stage_student(corpus, shards, tmp_path / "whole", teacher, config, log=lambda m: None)
    assert whole["finished"] and whole["history"][-1]["valid_cosine"] > whole["history"][0]["valid_cosine"]
    stopped = stage_student(corpus, shards, tmp_path / "parts", teacher, config, seconds=0.0, log=lambda m: None)
    assert not stopped["finished"] and 0 < stopped["step"] < stopped["steps"]
    assert not (tmp_path / "parts" / "model").exists()
    said: list[str] = []
    resumed = stage_student(corpus, shards, tmp_path / "parts", teacher, config, log=said.append)
    assert resumed["finished"] and any("resumed at step" in m for m in said)
    assert resumed["history"] == whole["history"]
    one = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model"]
    two = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.allclose(one[k], two[k], atol=1e-6) for k in one)
    # The saved model is a sentence-transformers folder with one layer, as the ONNX and INT8 stages read it.
    saved = json.loads((tmp_path / "whole" / "model" / "config.json").read_text())
    assert saved["num_hidden_layers"] == 1 and (tmp_path / "whole" / "model" / "tokenizer.json").is_file()


def test_another_config_other_texts_or_too_few_texts_are_refused(setup, tmp_path: Path) -> None:
    from export.stages.student import StudentConfig, stage_student

    corpus, shards, teacher, tables = setup
    stage_student(corpus, shards, tmp_path / "s", teacher, StudentConfig(layers=1, epochs=1, batch=32), seconds=0.0,
                  log=lambda m: None)
    with pytest.raises(ValueError, match="was made for"):
        stage_student(corpus, shards, tmp_path / "s", teacher, StudentConfig(layers=1, epochs=2, batch=32),
                      log=lambda m: None)
    # Shards added since a checkpoint make another plan: resuming it would train on the wrong steps.
    (tmp_path / "fewer").mkdir()
    for shard in sorted(shards.iterdir())[:-2]:  # all but the last shard (teacher.json sorts last)
        (tmp_path / "fewer" / shard.name).write_bytes(shard.read_bytes())
    (tmp_path / "fewer" / "teacher.json").write_text((shards / "teacher.json").read_text())
    with pytest.raises(ValueError, match="was made on 700 texts, not 640"):
        stage_student(corpus, tmp_path / "fewer", tmp_path / "s", teacher,
                      StudentConfig(layers=1, epochs=1, batch=32), log=lambda m: None)
    (tmp_path / "few").mkdir()
    (tmp_path / "few" / "teacher.json").write_text((shards / "teacher.json").read_text())
    (tmp_path / "few" / "shard-00000.f16.npy").write_bytes((shards / "shard-00000.f16.npy").read_bytes())
    with pytest.raises(ValueError, match="only 128 teacher vectors"):
        stage_student(corpus, tmp_path / "few", tmp_path / "t", teacher, StudentConfig(), log=lambda m: None)
