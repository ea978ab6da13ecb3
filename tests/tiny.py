"""The tiny model and catalogue the tests use: a random 2-layer BERT with its own
WordPiece vocabulary, seeded item records and synthetic interactions, and the
export settings that turn them into a bundle. Shared by conftest (the export
fixture) and tests/data/make_tiny_bundle.py (the checked-in bundle), so both
make the same kind of bundle. Heavy imports stay inside the functions: the
tests import this module without torch."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = (
    "the a an of and in on with for to movie film story love war space alien robot heist twist clever "
    "funny kids animated horror house haunted scary drama comedy action thriller crime romance family "
    "western music dance sea ship island city night dark light king queen dog cat car race game ghost "
    "detective murder mystery future time travel star planet school friends christmas monster zombie"
).split()
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Animation")


def tiny_catalog(n: int = 120) -> list[dict]:
    """Seeded item records shaped like the MovieLens ones: id, title, year, genres."""
    import random

    rng = random.Random(7)
    records = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))).title()
        records.append({
            "id": f"item-{i:03d}",
            "title": title,
            "year": 1950 + rng.randrange(50),
            "genres": sorted(rng.sample(GENRES, rng.randint(1, 3))),
        })
    return records


def tiny_split(records: list[dict], users: int = 60, seed: int = 3):
    """Synthetic interactions: each user likes items of one genre, in a random order."""
    import numpy as np

    from export.stages.interactions import Split

    rng = np.random.default_rng(seed)
    by_genre = {g: [i for i, r in enumerate(records) if g in r["genres"]] for g in GENRES}
    train, valid, test = [], [], []
    for u in range(users):
        pool = by_genre[GENRES[u % len(GENRES)]]
        sequence = rng.choice(pool, size=min(len(pool), 8), replace=False)
        train.append(sequence[:-2].astype(np.int64))
        valid.append(sequence[-2])
        test.append(sequence[-1])
    return Split(tuple(train), np.asarray(valid, dtype=np.int64), np.asarray(test, dtype=np.int64), len(records))


def make_tiny_teacher(path: Path) -> Path:
    """A randomly initialised 2-layer BERT with its own WordPiece vocabulary, saved like a
    sentence-transformers model (mean pooling, normalised, max 32 tokens)."""
    import torch
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = sorted({c for w in WORDS + [g.lower() for g in GENRES] for c in w} | set("0123456789-,.'"))
    vocab_list = specials + sorted(set(WORDS) | {g.lower() for g in GENRES}) + pieces + [f"##{c}" for c in pieces]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=32)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    path.mkdir(parents=True, exist_ok=True)
    BertModel(config).eval().save_pretrained(path)
    fast.save_pretrained(path)
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32, "do_lower_case": False}))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    return path


def run_tiny_export(root: Path):
    """The export pipeline run end to end on the tiny teacher, under root: (student facts, config, records).

    The student is the model inside the bundle (config.out), so it is what the runtime is compared with.
    """
    from export.stages.finetune import TargetConfig
    from export.stages.fit import FitConfig
    from export.stages.pipeline import ExportConfig, run_all, student_facts
    from export.stages.sources import read_teacher

    teacher = read_teacher(make_tiny_teacher(root / "teacher"), name="tiny-bert")
    records = tiny_catalog()
    config = ExportConfig(
        work=root / "work", out=root / "bundle", name="tiny", validation_items=60, timing_rounds=20,
        targets=TargetConfig(window=4, epochs=2, batch_size=64, learning_rate=0.05),
        teacher_fit=FitConfig(epochs=2, batch_size=32, learning_rate=1e-3),
        student_layers=(1,), student_fit=FitConfig(epochs=2, batch_size=32, learning_rate=1e-3),
        query_texts=40, anchors=20,
        # A random tiny model's vectors sit close together, so INT8 moves them
        # relatively more than a trained one; the real thresholds apply to real models.
        int8_min_mean_cosine=0.9, int8_min_cosine=0.5,
        catalog_provenance={"source": "synthetic test catalogue"},
    )
    run_all(teacher, records, tiny_split(records), config)
    return student_facts(config), config, records


def build_fp32_bundle(export, out: Path) -> Path:
    """The export's catalogue encoded with its fp32 graph instead of INT8: vectors that do not
    depend on which texts share a batch, and that equal torch's up to float rounding."""
    from edgerec.update.build import build_bundle
    from export.stages.onnx_export import encoder_spec
    from export.stages.pipeline import FP32_NAME, TOKENIZER_NAME

    student, config, records = export
    model = config.work / FP32_NAME
    build_bundle(records, out, model_path=model, tokenizer_path=config.work / TOKENIZER_NAME,
                 encoder_spec=encoder_spec(student, model), text_fields=config.text_fields, name="tiny-fp32")
    return out
