"""`python -m export all --catalog --interactions --base`: the static path on a user's own data (a synthetic
shop whose customers each buy from one category), and bad data refused before any training."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from tiny import make_tiny_teacher

pytestmark = pytest.mark.needs_torch

CATEGORIES = {"garden": "spade hose rake", "kitchen": "pan knife kettle", "music": "guitar drum piano"}


def shop(folder: Path) -> tuple[Path, Path]:
    rng = random.Random(0)
    items = [{"sku": f"{c[:2]}-{i}", "name": f"{rng.choice(words.split())} {c} {i}", "tags": [c]}
             for c, words in CATEGORIES.items() for i in range(15)]
    catalog = folder / "items.jsonl"
    catalog.write_text("".join(json.dumps(item) + "\n" for item in items))
    lines = ["customer,product,time"]
    for customer in range(45):
        category = list(CATEGORIES)[customer % 3]
        bought = rng.sample([i for i in items if category in i["tags"]], 6)
        lines += [f"c{customer},{item['sku']},2024-01-{day + 1:02d}T10:00:00" for day, item in enumerate(bought)]
    events = folder / "events.csv"
    events.write_text("\n".join(lines) + "\n")
    return catalog, events


def static_model(folder: Path) -> Path:
    """A random static table over the tiny tokenizer, written as `python -m export general` writes one."""
    from edgerec.bundle.manifest import LexicalSpec
    from edgerec.bundle.writer import BundleWriter
    from export.stages.general_model import static_spec
    from export.stages.static_embed import vocabulary_words
    from export.stages.static_onnx import write_static_onnx

    tokenizer = make_tiny_teacher(folder / "teacher") / "tokenizer.json"
    words, special = vocabulary_words(tokenizer)
    rows = np.random.default_rng(0).normal(size=(len(words), 16)).astype(np.float32)
    rows[special] = 0.0
    with BundleWriter(folder / "model") as writer:
        writer.copy_in("encoder", write_static_onnx(rows, folder / "rows.onnx", "int8"))
        writer.copy_in("tokenizer", tokenizer)
        writer.finish(name="tiny-general", encoder=static_spec(rows), index=None, items=None, provenance={},
                      lexical=LexicalSpec(weight=0.3))
    return folder / "model"


def test_own_catalogue_and_interactions_make_a_bundle(tmp_path: Path, capsys) -> None:
    from edgerec import Recommender
    from export.__main__ import main

    catalog, events = shop(tmp_path)
    base = static_model(tmp_path)
    args = ["all", "--catalog", str(catalog), "--interactions", str(events), "--base", str(base),
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "bundle"), "--id-field", "sku",
            "--text-fields", "name,tags", "--title-field", "name", "--user-field", "customer",
            "--item-field", "product", "--time-field", "time", "--holdout-users", "0.2"]
    assert main(args) == 0
    assert "'users': 45" in capsys.readouterr().out
    rec = Recommender.load(tmp_path / "bundle", threads=1)
    manifest = rec.bundle.manifest
    assert manifest.items.id_field == "sku" and manifest.items.text_fields == ("name", "tags")
    assert manifest.lexical is not None and manifest.provenance["catalog"]["interactions"]["users"] == 45
    assert manifest.provenance["catalog"]["held_out_users"] == {"share": 0.2, "seed": 0, "users": 9}
    assert "prior" in manifest.provenance  # the prior was tried on validation (kept or not)
    # The evaluation on the same data: leave-last-out on the 36 training users, and the 9 held out.
    assert main(["evaluate", *args[1:], "--bundle", str(tmp_path / "bundle"), "--results", str(tmp_path / "r")]) == 0
    figures = json.loads((tmp_path / "r" / "items-evaluation.json").read_text())
    assert figures["leave_last_out"]["users"] == 36 and figures["by_users"]["users"] == 9
    rows = figures["by_users"]["rows"]
    assert {"popularity (their own histories)", "co-occurrence (training users)", "base model, item text alone",
            "bundle, no prior"} <= set(rows) and all(0 <= m["hr@10"] <= m["hr@20"] <= 1 for m in rows.values())
    assert (tmp_path / "r" / "items-evaluation.svg").read_text().startswith("<svg")
    assert "fitted to events.csv training interactions" in " ".join(manifest.provenance["model"]["stages"])
    history = ["ga-0", "ga-1", "ga-2"]
    assert sum(r.item_id.startswith("ga-") for r in rec.recommend(history, k=5)) >= 3  # co-buying is learnt


def test_users_are_held_out_by_a_seeded_share() -> None:
    from export.measure.recommendation import Holdout, split_by_users
    from export.stages.interactions import Split

    split = Split(tuple(np.array([i, i + 1]) for i in range(50)), np.arange(50) % 7, np.arange(50) % 5, 60)
    training, held = split_by_users(split, Holdout(0.2, seed=3))
    again, _ = split_by_users(split, Holdout(0.2, seed=3))
    assert held.users == 10 and training.users == 40 and [h.tolist() for h in again.train] == [
        h.tolist() for h in training.train]
    every = sorted(int(h[0]) for h in (*training.train, *held.train))
    assert every == list(range(50))  # each user on exactly one side
    assert split_by_users(split, Holdout(0.0)) == (split, None)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_by_users(split, Holdout(1.5))


def test_bad_own_data_is_refused_before_training(tmp_path: Path, capsys) -> None:
    from export.__main__ import main

    catalog, events = shop(tmp_path)
    events.write_text("customer,product,time\nc1,ga-0,last tuesday\n")
    args = ["all", "--catalog", str(catalog), "--interactions", str(events), "--base", str(tmp_path),
            "--work", str(tmp_path / "work"), "--id-field", "sku", "--user-field", "customer",
            "--item-field", "product", "--time-field", "time"]
    assert main(args) == 2
    assert "line 2: the timestamp 'last tuesday'" in capsys.readouterr().err and not (tmp_path / "work").exists()
    assert main(["all", "--catalog", str(catalog)]) == 2
    assert "go together" in capsys.readouterr().err


def test_the_movielens_example_writes_the_two_inputs(tmp_path: Path, monkeypatch) -> None:
    import export.examples.movielens as example
    from export.stages.interactions_file import InteractionColumns, read_interactions

    source = tmp_path / "ml-1m.inter"
    source.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                      + "".join(f"u1\t{m}\t{r}\t{t}\n" for m, r, t in (("A, The (1990)", 5, 3), ("B (1991)", 4, 1),
                                                                        ("C \"x\" (1992)", 2, 2), ("A, The (1990)", 4, 4))))
    monkeypatch.setattr(example, "ratings_path", lambda: source)
    monkeypatch.setattr(example, "movielens_1m_items", lambda: [
        {"id": i, "title": i[:-7], "year": int(i[-5:-1]), "genres": ["Drama"]}
        for i in ("A, The (1990)", "B (1991)", "C \"x\" (1992)")])
    movies, ratings = example.write_files(tmp_path / "out")
    ids = [json.loads(line)["id"] for line in movies.read_text().splitlines()]
    split, report = read_interactions(ratings, ids, InteractionColumns(rating="rating"), min_rating=4)
    assert report.events == 4 and report.below_min_rating == 1  # quotes and commas in ids survive the CSV
    assert split.train[0].tolist() == [1] and split.valid.tolist() == [0] and split.test.tolist() == [0]


def test_a_sentence_transformers_base_takes_the_layered_path(tmp_path: Path, capsys) -> None:
    """--base a transformer folder: fine-tune it on the events, distil a one-layer student, ONNX, INT8 (each
    validated against the stage before), bundle with an item prior chosen on validation."""
    from edgerec import Recommender
    from export.__main__ import main

    catalog, events = shop(tmp_path)
    teacher = make_tiny_teacher(tmp_path / "teacher")
    args = ["all", "--catalog", str(catalog), "--interactions", str(events), "--base", str(teacher),
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "bundle"), "--id-field", "sku",
            "--text-fields", "name,tags", "--title-field", "name", "--user-field", "customer",
            "--item-field", "product", "--time-field", "time", "--student-layers", "1"]
    assert main(args) == 0
    for stage in ("finetune", "distil", "onnx", "int8", "bundle"):
        assert (tmp_path / "work" / f"{stage}.json").is_file(), stage
    rec = Recommender.load(tmp_path / "bundle", threads=1)
    assert rec.bundle.manifest.name == "items-int8" and rec.bundle.manifest.encoder.inputs != ("input_ids",)
    assert len(rec.recommend(["ga-0", "ga-1"], k=5)) == 5
    assert main(["static", *args[1:]]) == 2  # the static fit needs a static base
    assert "sentence-transformers folder" in capsys.readouterr().err
