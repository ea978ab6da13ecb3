"""The description model for descriptive queries (edgerec.descriptions, export/stages/descriptions.py).

Runtime tests use a handmade model with a known reading: a one-node ONNX
graph whose token vectors are the Horror centroid for horror words and zero
for every other token, so the tests know where it pulls. The export stage is
run whole at the end, with a stand-in for mpnet."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgerec import Recommender
from edgerec.bundle.reader import open_bundle
from edgerec.descriptions import DescriptionModel, content_words
from edgerec.errors import BundleError, ManifestError
from edgerec.bundle.manifest import DescriptionSpec, EncoderSpec, Manifest
from export.stages.descriptions import STOPWORDS, DescriptionConfig, hard_words, word_phrases, write_with_descriptions

HORROR_WORDS = ("horror", "haunted", "scary", "ghost", "zombie", "monster")
TEXT = "a scary haunted movie with a ghost"


def handmade_model(path: Path, table: np.ndarray) -> Path:
    """An ONNX graph that gives each token its row of ``table`` (mean pooling then averages them)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"], axis=0)], "handmade",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", table.shape[1]])],
        [numpy_helper.from_array(table.astype(np.float32), "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _horror_model(rec: Recommender, path: Path) -> Path:
    horror = np.array(["Horror" in r["genres"] for r in rec.items.records])
    centroid = rec.index.vectors(np.flatnonzero(horror)).mean(axis=0)
    table = np.zeros((rec.encoder.spec.vocab_size, rec.encoder.spec.dim), dtype=np.float32)
    for word in HORROR_WORDS:
        table[rec.encoder.tokenizer.token_to_id(word)] = centroid / np.linalg.norm(centroid)
    return handmade_model(path, table)


def _with_model(source: Path, out: Path, **spec_changes: object) -> Path:
    rec = Recommender.load(source, threads=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = _horror_model(rec, out.parent / f"{out.name}-model.onnx")
    model_spec = EncoderSpec(max_length=32, pooling="mean", normalize=True, dim=rec.encoder.spec.dim,
                             inputs=("input_ids",), output="last_hidden_state", vocab_size=rec.encoder.spec.vocab_size)
    spec = DescriptionSpec(model=model_spec, max_margin=2.0, min_title_cover=2 / 3, weight=1.0, title_field="title",
                           stopwords=STOPWORDS)
    write_with_descriptions(open_bundle(source), out, model, replace(spec, **spec_changes),
                            dict(rec.bundle.manifest.provenance))
    return out


@pytest.fixture(scope="module")
def described_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _with_model(tiny_bundle, tmp_path_factory.mktemp("descriptions") / "bundle")


@pytest.fixture(scope="module")
def described_rec(described_bundle: Path) -> Recommender:
    return Recommender.load(described_bundle, threads=1)


def _horror_count(results: list) -> int:
    return sum("Horror" in r.metadata["genres"] for r in results)


def test_a_blended_query_searches_the_encoder_vector_plus_the_weighted_reading(described_rec: Recommender) -> None:
    assert described_rec.query_reading(TEXT) == "blend"
    reading = described_rec.descriptions.read(TEXT)
    assert np.isclose(np.linalg.norm(reading), 1.0, atol=1e-5)
    expected = described_rec.encoder.encode_one(TEXT) + described_rec.descriptions.spec.weight * reading
    expected = (expected / np.linalg.norm(expected)).astype(np.float32)
    labels = described_rec.index.search(expected, 10)[0]
    assert [described_rec.items.records[label]["id"] for label in labels] == [
        r.item_id for r in described_rec.query(TEXT)]


def test_the_model_shares_the_encoders_tokenizer_only_when_both_cut_at_the_same_length(
        described_rec: Recommender, described_bundle: Path) -> None:
    assert described_rec.descriptions.model.tokenizer is described_rec.encoder.tokenizer
    bundle = open_bundle(described_bundle)
    spec = bundle.manifest.descriptions
    shorter = replace(spec, model=replace(spec.model, max_length=5))
    own = DescriptionModel.load(bundle.path("descriptions"), bundle.path("tokenizer"), shorter, threads=1,
                                encoder=described_rec.encoder)
    assert own.model.tokenizer is not described_rec.encoder.tokenizer
    assert len(own.model.tokenizer.encode(" ".join(["ghost"] * 20)).ids) == 5


def test_a_model_with_its_own_tokenizer_reads_its_whole_words(tiny_bundle: Path, tmp_path: Path) -> None:
    # "spooky" is spelt out letter by letter by the bundle's tokenizer; the model's own holds it whole.
    rec = Recommender.load(tiny_bundle, threads=1)
    body = json.loads(open_bundle(tiny_bundle).path("tokenizer").read_text())
    spooky = len(body["model"]["vocab"])
    body["model"]["vocab"]["spooky"] = spooky
    tokenizer = tmp_path / "own-tokenizer.json"
    tokenizer.write_text(json.dumps(body))
    table = np.zeros((spooky + 1, rec.encoder.spec.dim), dtype=np.float32)
    horror = np.array(["Horror" in r["genres"] for r in rec.items.records])
    centroid = rec.index.vectors(np.flatnonzero(horror)).mean(axis=0)
    table[spooky] = centroid / np.linalg.norm(centroid)
    model = handmade_model(tmp_path / "own.onnx", table)
    spec = open_bundle(_with_model(tiny_bundle, tmp_path / "shared")).manifest.descriptions
    spec = replace(spec, model=replace(spec.model, vocab_size=spooky + 1))
    with pytest.raises(ManifestError, match="differs from encoder.vocab_size"):  # it cannot read the shared ids
        write_with_descriptions(open_bundle(tiny_bundle), tmp_path / "refused", model, spec, {})
    write_with_descriptions(open_bundle(tiny_bundle), tmp_path / "own", model, spec, {}, tokenizer=tokenizer)
    described = Recommender.load(tmp_path / "own", threads=1)
    assert open_bundle(tmp_path / "own").manifest.files["descriptions_tokenizer"].path == "descriptions-tokenizer.json"
    assert described.descriptions.model.tokenizer is not described.encoder.tokenizer
    np.testing.assert_allclose(described.descriptions.read("a spooky film"), table[spooky], atol=1e-6)
    assert _horror_count(described.query("a spooky film")) > _horror_count(described.query("a spooky film",
                                                                                          descriptions=False))
    from edgerec.update.store import Store  # home updates carry the model's tokenizer with it

    store = Store.create(tmp_path / "home", tmp_path / "own")
    store.remove([rec.items.records[0]["id"]])
    updated = Recommender.load(tmp_path / "home", threads=1)
    assert "descriptions_tokenizer" in updated.bundle.manifest.files
    np.testing.assert_allclose(updated.descriptions.read("a spooky film"), table[spooky], atol=1e-6)


def test_the_weight_sets_how_far_the_model_pulls(tiny_bundle: Path, tmp_path: Path) -> None:
    horror = []
    for weight in (0.0, 1.0, 50.0):
        rec = Recommender.load(_with_model(tiny_bundle, tmp_path / f"w{weight}", weight=weight), threads=1)
        horror.append(_horror_count(rec.query(TEXT, k=10)))
        if weight == 0.0:  # nothing added: the encoder's own answer
            assert [r.item_id for r in rec.query(TEXT)] == [r.item_id for r in rec.query(TEXT, descriptions=False)]
    assert horror[0] <= horror[1] <= horror[2] and horror[0] < horror[2]
    all_horror = sum("Horror" in r["genres"] for r in rec.items.records)
    assert horror[2] == min(10, all_horror)  # the model alone lands among Horror films


def test_encoder_only_matches_a_bundle_without_the_model(described_rec: Recommender,
                                                        tiny_recommender: Recommender) -> None:
    plain = [r.item_id for r in tiny_recommender.query(TEXT, k=5)]
    assert [r.item_id for r in described_rec.query(TEXT, k=5, descriptions=False)] == plain
    assert [r.item_id for r in described_rec.query(TEXT, k=5)] != plain
    with pytest.raises(TypeError, match="descriptions must be a bool"):
        described_rec.query(TEXT, descriptions="no")  # type: ignore[arg-type]


def test_a_title_stays_with_the_encoder(described_rec: Recommender) -> None:
    # Whatever the margin (this bundle's max_margin lets every margin through), a query whose
    # words the top title holds is the encoder's.
    checked = 0
    for record in described_rec.items.records:
        top = described_rec.query(record["title"], k=1, descriptions=False)[0]
        words = content_words(record["title"], frozenset(STOPWORDS))
        if words and words <= content_words(top.title, frozenset(STOPWORDS)):
            checked += 1
            assert described_rec.query_reading(record["title"]) == "encoder"
            assert described_rec.query(record["title"], k=1)[0].item_id == top.item_id
    assert checked >= 10


def test_a_clear_margin_stays_with_the_encoder(tiny_bundle: Path, tmp_path: Path) -> None:
    never = Recommender.load(_with_model(tiny_bundle, tmp_path / "b", max_margin=0.0), threads=1)
    assert never.query_reading(TEXT) == "encoder"
    assert [r.item_id for r in never.query(TEXT)] == [r.item_id for r in never.query(TEXT, descriptions=False)]


@pytest.mark.parametrize(("scores", "title", "takes_part"), [
    ([0.50, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44, 0.43, 0.42, 0.41], "The Usual Suspects", True),
    ([0.90, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44, 0.43, 0.42, 0.41], "The Usual Suspects", False),  # clear winner
    ([0.50, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44, 0.43, 0.42, 0.41], "A Heist with a Twist", False),  # title match
    ([0.50, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44, 0.43, 0.42, 0.41], "Heist", True),  # 1 of 3 words
    ([0.50, 0.45], "Big", True),  # fewer than 10 items: the last score is the floor
    ([], "", False),
])
def test_when_the_model_takes_part(described_rec: Recommender, scores: list[float], title: str,
                                   takes_part: bool) -> None:
    # max_margin 0.15 here: "a heist movie with a clever twist" has words {heist, clever, twist}.
    model = DescriptionModel(replace(described_rec.descriptions.spec, max_margin=0.15),
                             described_rec.descriptions.model)
    assert model.take_part("a heist movie with a clever twist", np.asarray(scores, dtype=np.float32),
                           title) is takes_part


def test_a_query_of_stopwords_stays_with_the_encoder(described_rec: Recommender) -> None:
    assert described_rec.query_reading("a movie") == "encoder"


def test_manifest_round_trip_keeps_the_model(described_bundle: Path) -> None:
    manifest = open_bundle(described_bundle).manifest
    assert manifest.schema_version == 3 and manifest.descriptions is not None
    assert manifest.files["descriptions"].path == "descriptions.onnx"
    assert Manifest.from_json(manifest.to_json()) == manifest


def _edited(bundle: Path, edit) -> str:
    body = json.loads((bundle / "manifest.json").read_text())
    body.pop("checksum")
    edit(body)
    return json.dumps(body)


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda b: b.pop("descriptions"), "files.descriptions and the descriptions section come together"),
    (lambda b: b["files"].pop("descriptions"), "files.descriptions and the descriptions section come together"),
    (lambda b: (b["files"].update(descriptions_tokenizer=b["files"].pop("descriptions")), b.pop("descriptions")),
     "files.descriptions_tokenizer without a description model"),
    (lambda b: b["descriptions"]["model"].update(dim=7), "descriptions.model.dim 7 differs from encoder.dim"),
    (lambda b: b["descriptions"]["model"].update(vocab_size=9), "descriptions.model.vocab_size 9 differs"),
    (lambda b: b["descriptions"]["model"].update(pooling="max"), "descriptions.model.pooling must be one of"),
    (lambda b: b["descriptions"]["model"].update(max_length=0), "descriptions.model.max_length must be a positive"),
    (lambda b: b["descriptions"]["model"].update(colour="blue"), "unknown fields in descriptions.model: ['colour']"),
    (lambda b: b["descriptions"].pop("model"), "descriptions lacks ['model']"),
    (lambda b: b["descriptions"].update(model=[1]), "descriptions.model must be an object"),
    (lambda b: b["descriptions"].update(title_field="name"),
     "descriptions.title_field 'name' is not among items.columns"),
    (lambda b: b["descriptions"].update(max_margin=float("nan")), "descriptions.max_margin must be a number"),
    (lambda b: b["descriptions"].update(min_title_cover=True), "descriptions.min_title_cover must be a number"),
    (lambda b: b["descriptions"].update(weight=-1), "descriptions.weight must be a number"),
    (lambda b: b["descriptions"].update(colour="blue"), "unknown fields in descriptions: ['colour']"),
    (lambda b: b.update(schema_version=1), "does not fit the content, which is version 3"),
    (lambda b: b.update(schema_version=2), "schema_version 2 is not supported"),
])
def test_bad_descriptions_section_is_refused(described_bundle: Path, edit, fragment: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(fragment)):
        Manifest.from_json(_edited(described_bundle, edit))


def test_a_replaced_model_file_is_refused_before_loading(described_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(described_bundle, copy)
    (copy / "descriptions.onnx").write_bytes(bytes((copy / "descriptions.onnx").stat().st_size))
    with pytest.raises(BundleError, match=r"descriptions file's sha256"):
        Recommender.load(copy)


def test_a_model_that_does_not_fit_its_section_is_refused_naming_the_file(tiny_bundle: Path, tmp_path: Path) -> None:
    rec = Recommender.load(tiny_bundle, threads=1)
    narrow = handmade_model(tmp_path / "narrow.onnx", np.ones((rec.encoder.spec.vocab_size, 3), dtype=np.float32))
    spec = open_bundle(_with_model(tiny_bundle, tmp_path / "ok")).manifest.descriptions
    write_with_descriptions(open_bundle(tiny_bundle), tmp_path / "bad", narrow, spec, {})
    with pytest.raises(BundleError, match=r"descriptions\.onnx: the graph outputs 3-d vectors"):
        Recommender.load(tmp_path / "bad")


def test_home_updates_keep_the_model_and_a_new_catalogue_drops_it(described_bundle: Path, tmp_path: Path) -> None:
    from edgerec.update.build import build_from_catalog
    from edgerec.update.store import Store

    store = Store.create(tmp_path / "home", described_bundle)
    assert open_bundle(tmp_path / "home").manifest.descriptions is not None
    catalog = tmp_path / "new.jsonl"
    catalog.write_text(json.dumps({"id": "new-1", "title": "Haunted Ghost House", "year": 2001,
                                   "genres": ["Horror"]}) + "\n")
    store.add(catalog)
    store.remove(["new-1"])
    updated = open_bundle(tmp_path / "home")
    assert updated.manifest.descriptions == open_bundle(described_bundle).manifest.descriptions
    assert Recommender.load(tmp_path / "home").query_reading(TEXT) == "blend"
    manifest = build_from_catalog(catalog, tmp_path / "built", base=described_bundle)
    assert manifest.descriptions is None and "descriptions" not in manifest.files and manifest.schema_version == 1


def test_cli_encoder_only_and_info(described_bundle: Path) -> None:
    from click.testing import CliRunner

    from edgerec.cli import main

    runner = CliRunner()
    blended = runner.invoke(main, ["query", TEXT, "--bundle", str(described_bundle), "--json"])
    plain = runner.invoke(main, ["query", TEXT, "--bundle", str(described_bundle), "--json", "--encoder-only"])
    assert blended.exit_code == 0 and plain.exit_code == 0
    assert blended.output != plain.output
    info = runner.invoke(main, ["info", "--bundle", str(described_bundle)])
    assert info.exit_code == 0 and "descriptions 32-d model; it takes part when" in info.output


def test_the_rule_kept_agrees_best_among_those_that_keep_titles() -> None:
    from export.stages.descriptions import choose_rule

    # Columns: encoder, blend at two weights, model alone. Two texts, two margins.
    overlaps = np.array([[0.2, 0.5, 0.9, 0.6], [0.4, 0.3, 0.1, 0.2]], dtype=np.float32)
    take_part = np.array([[True, True], [False, True]])  # the wider margin lets the second text in too
    titles = np.array([[0.9, 0.9], [0.9, 0.9]])
    assert choose_rule(overlaps, take_part, 0.9, titles) == (0, 1)  # (0.9 + 0.4) / 2 beats all else
    titles[0, 1] = 0.8  # that pair loses titles: the next best that keeps them, (0.9 + 0.1) / 2
    assert choose_rule(overlaps, take_part, 0.9, titles) == (1, 1)
    assert choose_rule(overlaps, take_part, 0.95, titles) == (-1, -1)


def test_word_phrases_put_each_word_in_new_distinct_phrases() -> None:
    common = ["red", "old", "city", "night", "river", "train", "song", "cold"]
    taken = {"a heist movie with a red old"}
    pairs = word_phrases(["heist", "ghost"], 5, common, seed=1, taken=taken)
    phrases = [p for _, p in pairs]
    assert [w for w, _ in pairs] == ["heist"] * 5 + ["ghost"] * 5
    assert all(word in phrase.split() for word, phrase in pairs)
    assert len(set(phrases)) == len(phrases) and not taken & set(phrases)
    assert pairs == word_phrases(["heist", "ghost"], 5, common, seed=1, taken=taken)  # reproducible


def test_hard_words_are_those_read_furthest_from_their_targets() -> None:
    probes = [("near", "p1"), ("far", "p2"), ("middle", "p3")]
    targets = np.eye(3, dtype=np.float32)
    readings = np.array([[1, 0, 0], [0, 0, 1], [0, 0.6, 0.8]], dtype=np.float32)  # cosines 1, 0, 0.6
    assert hard_words(probes, readings, targets, 2) == ["far", "middle"]


def _fake_reader_vectors(texts, model_dir, cache, progress=None) -> np.ndarray:
    """A stand-in for mpnet: each word a fixed random direction, a text the unit sum of its words."""
    import zlib

    rows = []
    for text in texts:
        total = np.zeros(16)
        for word in re.findall(r"[a-z']+", text.lower()):
            total += np.random.default_rng(zlib.crc32(word.encode())).standard_normal(16)
        rows.append(total / max(np.linalg.norm(total), 1e-9))
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.needs_torch
def test_the_stage_adds_a_checked_measured_model_and_changes_no_other_file(tiny_export, tmp_path, monkeypatch):
    import export.stages.descriptions as stage
    from export.stages.fit import FitConfig
    from export.stages.sources import QUERY_TEXTS, TeacherFacts
    from tiny import WORDS

    student, config, records = tiny_export
    bundle = tmp_path / "bundle"
    shutil.copytree(config.out, bundle)
    # Two words the tiny vocabulary spells out letter by letter: they get tokens of their own.
    monkeypatch.setattr(stage, "english_words",
                        lambda count: (["spooky", "ghostly"] + [w for w in WORDS if len(w) > 2])[:count])
    monkeypatch.setattr(stage, "mpnet_reader", lambda work: TeacherFacts(work, "fake reader", 32, "mean", True))
    monkeypatch.setattr(stage, "read_with_mpnet", _fake_reader_vectors)
    notice = tmp_path / "NOTICE"
    notice.write_text("test notice\n")
    # A random tiny model's vectors sit close together, so INT8 moves them relatively more.
    small = DescriptionConfig(single_words=60, composed=300, composed_vocabulary=40, query_texts=30, layers=(0,),
                              fit=FitConfig(epochs=2, batch_size=32, learning_rate=1e-3),
                              int8_min_mean_cosine=0.9, int8_min_cosine=0.5)
    report = stage.stage_descriptions(records, np.arange(len(records)) % 5, bundle, tmp_path / "work", student,
                                      small, notice=notice)
    before, after = open_bundle(config.out).manifest, open_bundle(bundle)
    assert {r: e for r, e in after.manifest.files.items()
            if r not in ("descriptions", "descriptions_tokenizer", "notice")} == {
        r: e for r, e in before.files.items() if r != "notice"}
    own = after.path("descriptions_tokenizer").read_text()
    assert '"spooky":' in own and '"ghostly":' in own
    assert after.path("notice").read_text() == "test notice\n"
    assert after.manifest.provenance["descriptions"] == report and report["held_out_queries"] == len(QUERY_TEXTS)
    rounds = report["hard_word_rounds"]
    assert len(rounds) == small.hard_word_rounds == 2
    assert all(r["hard_words"] == min(small.hard_words, r["probe_phrases"]) and r["contexts"] > 0 for r in rounds)
    assert report["fp32_vs_torch"]["mean_cosine"] > 0.9999 and report["int8_vs_fp32"]["mean_cosine"] > 0.9
    assert report["title_at_1"]["titles"] == len(records) and 0 <= report["title_at_1"]["shipped"] <= 1
    chosen, spec = report["rule_chosen_on_held_out_texts"], after.manifest.descriptions
    assert (spec.max_margin, spec.weight) == (chosen["max_margin"], chosen["weight"])
    assert spec.max_margin in small.margins and spec.weight in small.weights
    key = f"{spec.max_margin}/{spec.weight}"
    assert chosen["overlap_by_margin_and_weight"][key] == max(chosen["overlap_by_margin_and_weight"][k]
        for k, t in chosen["title_at_1_by_margin_and_weight"].items() if t >= chosen["title_at_1_encoder_only"])
    rec = Recommender.load(bundle)
    assert rec.query("a haunted ghost house", k=3)
    assert rec.descriptions.model.tokenizer.encode("spooky", add_special_tokens=False).ids == [
        rec.encoder.spec.vocab_size]
    # The shipped file is the INT8 model the stage checked.
    assert after.path("descriptions").read_bytes() == (tmp_path / "work" / "descriptions" / "int8.onnx").read_bytes()
