"""The Python API on the tiny bundle: typed results, exclusions, encoding, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgerec import (
    EmptyQueryError,
    InputError,
    ProviderError,
    Recommendation,
    Recommender,
    UnknownItemError,
)

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["tiny-bundle", "tiny-fp32-bundle"])
def test_the_checked_in_bundles_open_in_place_and_answer(name):
    """The other tests use copies of these (tests/data/make_tiny_bundle.py makes them); loading
    verifies every file against the manifest and writes nothing there."""
    root = DATA / name
    before = {f.name: f.read_bytes() for f in root.iterdir()}
    rec = Recommender.load(root, threads=1)
    assert set(before) == {entry.path for entry in rec.bundle.manifest.files.values()} | {"manifest.json"}
    results = rec.query("space alien", k=5)
    assert len(results) == 5 and all(r.item_id.startswith("item-") for r in results)
    assert {f.name: f.read_bytes() for f in root.iterdir()} == before


def test_query_returns_k_typed_results_best_first(tiny_recommender):
    results = tiny_recommender.query("space alien robot", k=5)
    assert len(results) == 5
    assert all(isinstance(r, Recommendation) for r in results)
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    first = results[0]
    assert first.item_id.startswith("item-") and {"title", "year", "genres"} <= set(first.metadata)
    assert "id" not in first.metadata  # the id is carried by item_id, not repeated


def test_query_scores_are_cosines_of_the_encoded_text(tiny_recommender):
    text = "haunted house horror"
    results = tiny_recommender.query(text, k=3)
    query = tiny_recommender.encode(text)[0]
    labels = [tiny_recommender.items.labels[r.item_id] for r in results]
    expected = tiny_recommender.index.vectors(labels) @ query
    np.testing.assert_allclose([r.score for r in results], expected, atol=1e-4)


def test_k_is_clamped_to_the_item_count(tiny_recommender):
    assert len(tiny_recommender.query("love", k=500)) == len(tiny_recommender)


def test_similar_leaves_out_the_item_itself(tiny_recommender):
    results = tiny_recommender.similar("item-007", k=10)
    assert len(results) == 10 and "item-007" not in [r.item_id for r in results]


def test_recommend_excludes_history_unless_asked(tiny_recommender):
    history = ["item-001", "item-002", "item-003"]
    results = tiny_recommender.recommend(history, k=10)
    assert len(results) == 10 and not set(history) & {r.item_id for r in results}
    with_seen = tiny_recommender.recommend(history, k=len(tiny_recommender), exclude_seen=False)
    assert set(history) <= {r.item_id for r in with_seen}


def test_recommend_uses_the_mean_of_history_vectors(tiny_recommender):
    history = ["item-010", "item-020"]
    labels = [tiny_recommender.items.labels[i] for i in history]
    mean = tiny_recommender.index.vectors(labels).mean(axis=0)
    mean /= np.linalg.norm(mean)
    scores = tiny_recommender.index.vectors(range(len(tiny_recommender))) @ mean
    scores[labels] = -np.inf
    exact = [tiny_recommender.items.records[i]["id"] for i in np.argsort(-scores)[:5]]
    assert [r.item_id for r in tiny_recommender.recommend(history, k=5)] == exact


def test_encode_gives_unit_float32_rows(tiny_recommender):
    vectors = tiny_recommender.encode(["a", "space alien robot story", "love"])
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert tiny_recommender.encode([]).shape == (0, 32)


def test_batching_pads_dynamically_without_changing_fp32_vectors(tiny_fp32_bundle):
    """fp32: a text's vector is the same alone or padded in a batch with longer texts."""
    rec = Recommender.load(tiny_fp32_bundle, threads=1)
    texts = ["dog", "a clever heist twist in the dark city at night", "war", "love story"] * 20
    alone = np.concatenate([rec.encode(t) for t in texts[:4]])
    batched = rec.encode(texts, batch_size=7)
    np.testing.assert_allclose(batched[:4], alone, atol=1e-5)
    np.testing.assert_allclose(batched[4:8], alone, atol=1e-5)


def test_the_session_sees_only_the_batch_longest_length(tiny_recommender, monkeypatch):
    seen = []
    session = tiny_recommender.encoder.session
    original = session.run

    class Spy:
        def run(self, names, feed):
            seen.append(feed["input_ids"].shape)
            return original(names, feed)

        def __getattr__(self, name):
            return getattr(session, name)

    monkeypatch.setattr(tiny_recommender.encoder, "session", Spy())
    tiny_recommender.encode(["dog"])
    assert seen == [(1, 3)]  # [CLS] dog [SEP]: no padding to a fixed length


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.query(""), EmptyQueryError),
        (lambda r: r.query(" \n\t\u200b"), EmptyQueryError),
        (lambda r: r.query("love", k=0), InputError),
        (lambda r: r.query("love", k=-3), InputError),
        (lambda r: r.query("love", k=10**9), InputError),
        (lambda r: r.query("love", k=2.5), TypeError),
        (lambda r: r.query("love", k=True), TypeError),
        (lambda r: r.query(None), TypeError),
        (lambda r: r.query(b"love"), TypeError),
        (lambda r: r.similar("no-such-item"), UnknownItemError),
        (lambda r: r.similar(7), TypeError),
        (lambda r: r.recommend([]), EmptyQueryError),
        (lambda r: r.recommend("item-001"), TypeError),
        (lambda r: r.recommend(["item-001", "nope"]), UnknownItemError),
        (lambda r: r.encode(5), TypeError),
        (lambda r: r.encode(["ok", ""]), EmptyQueryError),
    ],
)
def test_bad_input_gets_a_typed_error(tiny_recommender, call, error):
    with pytest.raises(error):
        call(tiny_recommender)


def test_awkward_text_is_answered(tiny_recommender):
    for text in ["\ud800 lone surrogate", "\x1b[31mred\x1b[0m", "x" * 1_000_000, "😀👨‍👩‍👧 日本語 \u202e"]:
        assert len(tiny_recommender.query(text, k=3)) == 3


def test_unknown_item_error_names_the_id(tiny_recommender):
    with pytest.raises(UnknownItemError, match="no-such-item"):
        tiny_recommender.similar("no-such-item")


def test_cuda_when_unavailable_lists_the_providers(tiny_bundle):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ProviderError, match="CPUExecutionProvider"):
        Recommender.load(tiny_bundle, device="cuda")


def test_threads_are_passed_to_the_session(tiny_bundle):
    rec = Recommender.load(tiny_bundle, threads=3)
    assert rec.encoder.session.get_session_options().intra_op_num_threads == 3
    assert rec.encoder.providers == ["CPUExecutionProvider"]
    # One thread unless asked: the fastest for single queries; None hands ONNX Runtime every core (0).
    assert Recommender.load(tiny_bundle).encoder.session.get_session_options().intra_op_num_threads == 1
    assert Recommender.load(tiny_bundle, threads=None).encoder.session.get_session_options().intra_op_num_threads == 0


def test_bundle_path_from_environment(tiny_bundle, monkeypatch):
    monkeypatch.setenv("EDGEREC_BUNDLE", str(tiny_bundle))
    assert Recommender.load().bundle.manifest.name == "tiny"


def test_runtime_never_imports_torch(tiny_bundle, tmp_path):
    """In a fresh interpreter: load, query, build a bundle; torch and transformers stay out."""
    catalog = tmp_path / "items.jsonl"
    catalog.write_text("\n".join(json.dumps({"id": f"x{i}", "title": f"dog {i}"}) for i in range(5)))
    script = textwrap.dedent(f"""
        import sys
        import edgerec
        from edgerec import Recommender
        from edgerec.update.build import build_from_catalog
        from edgerec.cli import main
        rec = Recommender.load({str(tiny_bundle)!r})
        rec.query("dog", k=3)
        build_from_catalog({str(catalog)!r}, {str(tmp_path / 'b')!r}, base={str(tiny_bundle)!r}, text_fields=["title"])
        heavy = sorted(m for m in ("torch", "transformers", "optimum", "pandas") if m in sys.modules)
        print(heavy)
        sys.exit(1 if heavy else 0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_build_from_catalog_works_with_torch_unimportable(tiny_bundle, tmp_path):
    """`edgerec build` on a machine without torch: make `import torch` fail outright."""
    catalog = tmp_path / "items.csv"
    catalog.write_text("sku,name,about\nA1,Red dog,a dog story\nA2,Blue car,car race\nA3,Night ghost,haunted house\n")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now raises ImportError
        sys.modules["transformers"] = None
        from edgerec.cli import main
        sys.argv = ["edgerec", "build", {str(catalog)!r}, "--out", {str(tmp_path / 'mine')!r},
                    "--bundle", {str(tiny_bundle)!r}, "--id-field", "sku", "--text-fields", "name,about"]
        main()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rec = Recommender.load(tmp_path / "mine")
    assert len(rec) == 3 and rec.bundle.manifest.items.text_fields == ("name", "about")
    # The item text is made from the chosen fields and encoded by the base bundle's model.
    stored = rec.index.vectors([rec.items.labels["A3"]])[0]
    assert float(stored @ rec.encode("Night ghost. haunted house")[0]) > 0.95


def test_json_record_keeps_id_and_score_when_metadata_has_the_same_names():
    record = Recommendation(item_id="a", score=0.5, metadata={"score": "5 stars", "item_id": "x", "title": "T"})
    assert record.to_dict() == {"item_id": "a", "score": 0.5, "title": "T"}


def test_the_single_text_query_path_gives_the_batch_path_vector(tiny_recommender):
    encoder = tiny_recommender.encoder
    for text in ["dog", "A Space War Story. 1977. Action, Sci-Fi", "word " * 100]:
        np.testing.assert_allclose(encoder.encode_one(text), encoder.encode([text])[0], atol=1e-6)
