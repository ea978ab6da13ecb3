"""`python -m export encoders` without real data or torch: fake tasks and fake candidates (one-hot encoders)
prove the table, the ratios, the cache, the fusion scoring and the files; a fake teacher (words mapped to
fixed vectors) proves the static distillation's principal directions and mean pooling."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from export.measure import encoders
from export.measure.encoders import (ANCHOR, Candidate, EncodersConfig, cached_vectors, candidate_row,
                                     chosen_names, measure_speed, query_set, quality, run_encoders)
from export.measure.plots import Axis, Point, Region, Series, svg_chart
from export.measure.text_tasks import TaskSuite, TextTask, score, score_matrix, subsample
from export.measure.fusion import rank_positions, reciprocal_rank_fusion
from export.stages.sources import TeacherFacts
from export.stages.static_embed import (StaticEncoder, distilled_table, principal_directions, project_rows,
                                        teacher_rows, vocabulary_words, zipf_sif_weights)
from export.stages.text_heldout import RetrievalSet, SimilaritySet

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("river", "stone", "lantern", "garden", "violin", "harbour", "meadow", "candle", "orchard", "kettle")


def make_tokenizer(path: Path, words: Sequence[str] = WORDS, pieces: Sequence[str] = ("##s", "##ing")) -> Path:
    """A BERT-style WordPiece tokenizer (normaliser, pre-tokenizer, [CLS]/[SEP]) over a few words."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *pieces])}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer.save(str(path))
    return path


# --- fake tasks and candidates ------------------------------------------------------------

N = 12


def paired_task(name: str = "pairs", metric: str = "mrr@10") -> TextTask:
    data = RetrievalSet(name, "q{i} -> d{i}", tuple(f"q{i}" for i in range(N)), tuple(f"d{i}" for i in range(N)),
                        tuple(frozenset({i}) for i in range(N)))
    return TextTask(name, metric, data)


def similarity_task() -> TextTask:
    texts = tuple(f"s{i}" for i in range(6))
    pairs = tuple((0, j) for j in range(1, 6))
    data = SimilaritySet("sim", "angles", texts, pairs, tuple(float(5 - j) for j in range(1, 6)))
    return TextTask("sim", "spearman", data)


def one_hot(wrong: int = 0):
    """q{i} and d{i} on the same axis, except the first ``wrong`` queries, which point at d{i+1}; s{i} at angle i;
    any other text (the timed queries) on an axis by its checksum."""
    def vector(text: str) -> np.ndarray:
        out = np.zeros(N + 2, dtype=np.float32)
        if not text[1:].isdigit():
            out[zlib.crc32(text.encode()) % N] = 1.0
            return out
        i = int(text[1:])
        if text[0] == "s":
            out[N], out[N + 1] = np.cos(i * np.pi / 10), np.sin(i * np.pi / 10)
        else:
            out[(i + 1) % N if text[0] == "q" and i < wrong else i] = 1.0
        return out
    return vector


def fake_candidate(name: str, wrong: int = 0, calls: list[str] | None = None,
                   files: tuple[Path, ...] = ()) -> Candidate:
    vector = one_hot(wrong)

    def encode(texts: Sequence[str]) -> np.ndarray:
        if calls is not None:
            calls.extend(texts)
        return np.stack([vector(t) for t in texts])
    return Candidate(name, f"one-hot, {wrong} wrong", files, torch_free=True, fingerprint=f"{name}-{wrong}",
                     encode=encode, encode_one=vector)


def test_one_hot_candidates_score_as_expected(tmp_path: Path) -> None:
    tasks = [paired_task(), similarity_task()]
    perfect = quality(fake_candidate("perfect"), tasks, tmp_path, print)
    half = quality(fake_candidate("half", wrong=N // 2), tasks, tmp_path, print)
    assert perfect == {"pairs": pytest.approx(1.0), "sim": pytest.approx(1.0)}
    # Wrong query i finds d{i+1} first; its own d{i} ties at 0 with the rest, ranked by index: rank i + 2.
    expected = (sum(1 / (i + 2) for i in range(N // 2)) + N // 2) / N
    assert half == {"pairs": pytest.approx(expected), "sim": pytest.approx(1.0)}


def test_the_row_holds_ratios_to_the_anchor_and_the_lowest_task() -> None:
    anchor = {"a": 0.5, "b": 0.8, "lee": 0.4}
    scores = {"a": 0.6, "b": 0.4, "lee": None}
    speed = {"texts_per_second": 300.0, "titles": {"p50_ms": 1.0}, "descriptions": {"p50_ms": 2.0},
             "mixed": {"p50_ms": 1.5}}
    anchor_speed = {"texts_per_second": 100.0, "titles": {"p50_ms": 4.0}, "descriptions": {"p50_ms": 4.0},
                    "mixed": {"p50_ms": 5.0}}
    row = candidate_row(fake_candidate("x"), scores, speed, anchor, anchor_speed)
    assert row["tasks_scored"] == ["a", "b"]  # lee has no score: left out of the mean and of the anchor's mean
    assert row["mean"] == pytest.approx(0.5) and row["mean_ratio"] == pytest.approx(0.5 / 0.65, abs=1e-4)
    assert row["task_ratios"] == {"a": pytest.approx(1.2), "b": pytest.approx(0.5)}
    assert row["lowest_task_ratio"] == pytest.approx(0.5)
    assert row["ratios"] == {"p50_titles": 0.25, "p50_descriptions": 0.5, "p50_mixed": 0.3, "texts_per_second": 3.0}
    met = encoders.meets_targets({**row, "ratios": row["ratios"]})
    assert met["p50_mixed"] and met["texts_per_second"] and not met["quality_mean"] and not met["p50_descriptions"]
    untimed = candidate_row(fake_candidate("y"), scores, None, anchor, anchor_speed)
    assert untimed["p50_ms"] == {} and untimed["texts_per_second"] is None
    assert encoders.meets_targets(untimed)["p50_mixed"] is None


def test_task_vectors_are_cached_by_fingerprint_and_resume(tmp_path: Path) -> None:
    calls: list[str] = []
    candidate = fake_candidate("c", calls=calls)
    texts = [f"q{i}" for i in range(7)] + ["q1"]
    first = cached_vectors("c", "fp1", candidate.encode, texts, tmp_path, chunk=3)
    assert sorted(calls) == sorted(set(texts)) and len(first) == 7
    calls.clear()
    again = cached_vectors("c", "fp1", candidate.encode, texts, tmp_path, chunk=3)
    assert calls == [] and all(np.array_equal(first[t], again[t]) for t in first)
    cached_vectors("c", "fp2", candidate.encode, texts, tmp_path, chunk=3)  # another model: read again
    assert sorted(calls) == sorted(set(texts))
    # A run killed after its first chunk resumes from that chunk.
    calls.clear()
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("c-") and (p / "vectors.npy").is_file())
    (folder / "vectors.npy").unlink()
    np.save(folder / "part-00000.npy", np.stack([one_hot()(t) for t in ["q0", "q1", "q2"]]))
    cached_vectors("c", "fp1", candidate.encode, texts, tmp_path, chunk=3)
    assert sorted(calls) == ["q3", "q4", "q5", "q6"]


def test_a_bad_encoder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad: encode"):
        cached_vectors("bad", "f", lambda texts: np.zeros((1, 2)), ["a", "b"], tmp_path)


def test_speed_interleaves_every_timed_candidate(tmp_path: Path) -> None:
    catalogue = [f"d{i}" for i in range(N)]
    queries = encoders.QuerySet(("q1", "q2"), ("q3", "q4", "q5"))
    bm25 = Candidate("lexical", "", (), True, "l", scores=lambda q, d: np.zeros((len(q), len(d))))
    speed = measure_speed([fake_candidate(ANCHOR), fake_candidate("b", wrong=2), bm25], catalogue, queries,
                          rounds=4, warmup=1, seed=0, log=print)
    assert set(speed) == {ANCHOR, "b"}  # no vectors, no latency row
    for figures in speed.values():
        assert figures["titles"]["samples"] == 4 and figures["descriptions"]["samples"] == 4
        assert figures["mixed"]["samples"] == 8 and figures["texts_per_second"] > 0


def test_the_query_set_is_seeded_titles_and_descriptive_sentences() -> None:
    records = [{"title": f"Film {i}"} for i in range(100)]
    chosen = query_set(records, seed=0)
    assert chosen == query_set(records, seed=0) and len(chosen.titles) == encoders.TITLES
    assert chosen.descriptions and all(len(t.split()) >= encoders.MIN_DESCRIPTION_WORDS for t in chosen.descriptions)
    assert "Tom Hanks" not in chosen.descriptions


def test_only_adds_the_anchor_and_refuses_unknown_names() -> None:
    assert chosen_names(["static-mpnet"]) == [ANCHOR, "static-mpnet"]
    assert chosen_names([]) == [n for n in encoders.BUILDERS if "@" not in n]  # a weight grid runs when named
    assert "student-L0+bm25@0.1" in encoders.BUILDERS and chosen_names(["student-L0+bm25@0.1"])[-1].endswith("@0.1")
    with pytest.raises(ValueError, match="unknown candidate"):
        chosen_names(["nope"])


def test_the_whole_run_writes_table_json_and_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = make_tokenizer(tmp_path / "tokenizer.json")
    model_file = tmp_path / "model.bin"
    model_file.write_bytes(b"x" * 2000)
    suite = TaskSuite((paired_task("pairs"), paired_task("pairs-ndcg", "ndcg@10"), similarity_task()), {})
    records = [{"title": f"Film {i}"} for i in range(30)]
    monkeypatch.setattr(encoders, "text_tasks", lambda validation=False: suite)
    monkeypatch.setattr(encoders, "catalogue_of", lambda bundle: (records, [f"c{i}" for i in range(N)], "fake"))

    def lexical(ctx: encoders.Context) -> Candidate:  # a ranker with its own score matrix: the identity
        return Candidate("lexical", "scores only", (tokenizer,), True, "lex",
                         scores=lambda q, d: np.array([[float(a[1:] == b[1:]) for b in d] for a in q]))
    monkeypatch.setattr(encoders, "BUILDERS", {
        ANCHOR: lambda ctx: fake_candidate(ANCHOR, wrong=N // 2, files=(model_file,)),
        "perfect": lambda ctx: fake_candidate("perfect", files=(model_file, tokenizer)),
        "lexical": lexical,
    })
    config = EncodersConfig(work=tmp_path / "work", results=tmp_path / "results", rounds=3, warmup=1)
    body = run_encoders(config, TeacherFacts(tmp_path, "fake", 32, "mean", True), argv=["encoders", "--rounds", "3"])
    rows = {r["name"]: r for r in body["candidates"]}
    assert list(rows) == [ANCHOR, "perfect", "lexical"]
    anchor, perfect, lexical_row = rows[ANCHOR], rows["perfect"], rows["lexical"]
    assert anchor["mean_ratio"] == 1.0 and anchor["ratios"]["p50_mixed"] == 1.0 and anchor["ratios"]["size"] == 1.0
    assert perfect["tasks"] == {"pairs": 1.0, "pairs-ndcg": 1.0, "sim": 1.0}
    assert perfect["mean_ratio"] == pytest.approx(3.0 / sum(anchor["tasks"].values()), abs=1e-3)
    assert perfect["size_bytes"] == 2000 + tokenizer.stat().st_size
    assert lexical_row["tasks"]["sim"] is None and lexical_row["tasks"]["pairs"] == 1.0  # from its score matrix
    assert lexical_row["tasks_scored"] == ["pairs", "pairs-ndcg"] and lexical_row["p50_ms"] == {}
    written = json.loads((tmp_path / "results" / "encoders.json").read_text())
    assert written["command"] == "python -m export encoders --rounds 3" and written["anchor"] == ANCHOR
    md = (tmp_path / "results" / "encoders.md").read_text()
    assert "| `perfect` | 1.000 | 1.000 | 1.000 | 1.000 |" in md and "python -m export encoders --rounds 3" in md
    assert "| `lexical` |" in md and "Quick smoke run" not in md
    svg = (tmp_path / "results" / "encoders.svg").read_text()
    assert svg.startswith("<svg") and "target: quality &gt;= 0.95" in svg and ">perfect<" in svg
    assert ">lexical<" not in svg  # no latency: not on the plot
    # A rerun reads every task vector from the cache: only the catalogue is encoded (throughput).
    calls: list[str] = []
    monkeypatch.setattr(encoders, "BUILDERS", {ANCHOR: lambda ctx: fake_candidate(ANCHOR, wrong=N // 2, calls=calls)})
    run_encoders(config, TeacherFacts(tmp_path, "fake", 32, "mean", True))
    assert calls and all(t.startswith("c") for t in calls)


# --- scoring from a matrix, subsamples ------------------------------------------------------

def test_a_score_matrix_scores_like_the_vectors_it_came_from() -> None:
    vector = one_hot(wrong=5)
    task = paired_task()
    encode = lambda texts: np.stack([vector(t) for t in texts])  # noqa: E731
    via_matrix = score_matrix(task, lambda q, d: encode(q) @ encode(d).T)
    assert via_matrix == pytest.approx(score(task, encode))
    with pytest.raises(ValueError, match="expected"):
        score_matrix(task, lambda q, d: np.zeros((len(q), 2)))
    with pytest.raises(ValueError, match="ranks documents"):
        score_matrix(similarity_task(), lambda q, d: np.zeros((1, 1)))


def test_a_subsample_keeps_one_answer_per_query() -> None:
    docs = tuple(f"d{i}" for i in range(100))
    data = RetrievalSet("big", "", tuple(f"q{i}" for i in range(50)), docs,
                        tuple(frozenset({i, i + 50}) for i in range(50)))
    small = subsample(TextTask("big", "mrr@10", data), max_queries=10, max_docs=20, seed=0).data
    assert len(small.queries) == 10 and len(small.docs) == 20
    for query, relevant in zip(small.queries, small.relevant):
        i = int(query[1:])
        assert relevant and {small.docs[d] for d in relevant} <= {f"d{i}", f"d{i + 50}"}
    sim = subsample(similarity_task(), max_queries=10, max_docs=4).data
    assert len(sim.docs) == 4 and all(max(p) < 4 for p in sim.pairs)


# --- BM25 and fusion ---------------------------------------------------------------------

def test_reciprocal_rank_fusion_counts_only_what_bm25_retrieved() -> None:
    dense = np.array([[0.9, 0.5, 0.1, 0.3]])
    lexical = np.array([[0.0, 2.0, 0.0, 1.0]])
    assert rank_positions(dense).tolist() == [[1, 2, 4, 3]]
    fused = reciprocal_rank_fusion(dense, lexical, k=60)[0]
    assert fused == pytest.approx([1 / 61, 1 / 62 + 1 / 61, 1 / 64, 1 / 63 + 1 / 62])
    assert np.argsort(-fused)[:2].tolist() == [1, 3]  # two votes beat one
    with pytest.raises(ValueError, match="differ"):
        reciprocal_rank_fusion(dense, lexical[:, :3])


def test_score_fusion_scales_bm25_by_the_querys_best_score() -> None:
    from export.measure.fusion import score_fusion

    dense = np.array([[0.9, 0.5, 0.1], [0.2, 0.4, 0.3]])
    lexical = np.array([[0.0, 8.0, 4.0], [0.0, 0.0, 0.0]])  # the second query shares no word with any document
    fused = score_fusion(dense, lexical, 0.5)
    assert fused[0] == pytest.approx([0.9, 1.0, 0.35]) and fused[1] == pytest.approx(dense[1])
    assert score_fusion(dense, lexical * 10, 0.5) == pytest.approx(fused)  # only the query's own scale counts
    assert score_fusion(dense, lexical, 0.0) == pytest.approx(dense)
    with pytest.raises(ValueError, match="differ"):
        score_fusion(dense, lexical[:, :2], 0.1)
    # The runtime's damping: coverage 0.5 ** 4 for a 3-word query, none for a 40-word one.
    damped = score_fusion(dense, lexical, 0.5, ([3, 40], [0.5, 0.0]))
    assert damped[0] == pytest.approx([0.9, 0.5 + 0.5 / 16, 0.1 + 0.5 * 0.5 / 16]) and damped[1] == pytest.approx(dense[1])
    assert score_fusion(dense, lexical, 0.5, ([40, 40], [0.0, 0.0]))[0] == pytest.approx(fused[0])
    with pytest.raises(ValueError, match="word counts"):
        score_fusion(dense, lexical, 0.5, ([3], [0.5]))


def test_query_damping_reads_what_the_runtime_reads(tiny_bundle) -> None:
    from edgerec.lexical import LexicalIndex, WordSplitter
    from export.measure.fusion import query_damping

    index = LexicalIndex.build(["red fox", "blue whale", "red hen"], WordSplitter.from_file(tiny_bundle / "tokenizer.json"))
    words, coverage = query_damping(index, ["red fox", "a red whale zebra", "zebra"])
    assert words.tolist() == [2, 4, 1]
    assert coverage.tolist() == [index.matches(index.split(q), 1)[2] for q in ["red fox", "a red whale zebra", "zebra"]]
    assert coverage[0] == pytest.approx(1.0) and 0 < coverage[1] < 1 and coverage[2] == 0.0


# --- static distillation on a fake teacher ---------------------------------------------------

def fake_teacher(dim: int = 6, seed: int = 0):
    """Each word to a fixed unit vector (a hash-seeded draw); records what it was asked to read."""
    asked: list[str] = []

    def encode(texts: Sequence[str]) -> np.ndarray:
        asked.extend(texts)
        out = np.stack([np.random.default_rng(zlib.crc32(t.encode()) + seed).normal(size=dim) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
    return encode, asked


def test_vocabulary_words_strip_pieces_and_flag_specials(tmp_path: Path) -> None:
    words, special = vocabulary_words(make_tokenizer(tmp_path / "tok.json"))
    assert words[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and special[:5].all()
    assert words[-2:] == ["s", "ing"] and not special[5:].any()


def test_principal_directions_are_the_uncentred_ones() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)) * np.array([5.0, 3.0, 1.0, 0.5]) + np.array([0, 0, 0, 8.0])
    basis, values = principal_directions(x, 2)
    moment = x.T @ x / len(x)
    top = np.linalg.eigh(moment)[1][:, ::-1][:, :2].T
    assert np.allclose(np.abs(basis @ top.T), np.eye(2), atol=1e-5)  # same directions, up to sign
    assert abs(basis[0, 3]) > 0.9  # the mean direction leads: centring would have dropped it
    assert values[0] >= values[1] >= values[2] and values.sum() == pytest.approx(np.trace(moment))
    full, _ = principal_directions(x, 4)  # all of them: a rotation, inner products kept
    assert np.allclose((x @ full.T) @ (x @ full.T).T, x @ x.T, atol=1e-3)
    centred, _ = principal_directions(x, 2, centred=True)
    assert np.allclose(np.abs(centred), np.array([[1, 0, 0, 0], [0, 1, 0, 0]]), atol=0.05)  # the spread, not the mean
    with pytest.raises(ValueError):
        principal_directions(x, 5)


def test_distilled_rows_project_the_teacher_and_zero_the_specials(tmp_path: Path) -> None:
    tokenizer = make_tokenizer(tmp_path / "tok.json")
    words, special = vocabulary_words(tokenizer)
    teacher, asked = fake_teacher()
    raw = teacher_rows(teacher, words, special, chunk=4)
    assert asked == [w for w, s in zip(words, special) if not s]  # specials are never read
    readable = np.flatnonzero(~special)
    vectors = teacher([words[i] for i in readable])
    assert np.allclose(raw[readable], vectors) and not raw[special].any()
    rows, facts = project_rows(raw, special, dims=3)
    basis, _ = principal_directions(vectors, 3)
    assert np.allclose(rows[readable], vectors @ basis.T, atol=1e-5)
    assert not rows[special].any() and facts["dims"] == 3 and facts["teacher_dim"] == 6 and not facts["centred"]
    assert 0 < facts["variance_kept"] <= 1
    centred, facts = project_rows(raw, special, dims=3, centred=True)
    assert facts["centred"] and np.allclose(centred[readable].mean(axis=0), 0, atol=1e-5)


def test_a_static_text_is_the_normalised_mean_of_its_token_rows(tmp_path: Path) -> None:
    tokenizer = make_tokenizer(tmp_path / "tok.json")
    words, _ = vocabulary_words(tokenizer)
    rows = np.random.default_rng(2).normal(size=(len(words), 4)).astype(np.float32)
    model = StaticEncoder(rows, tokenizer)
    river, stones = words.index("river"), [words.index("stone"), len(words) - 2]  # "stones" = stone + ##s
    expected = rows[[river, *stones]].mean(axis=0)
    expected /= np.linalg.norm(expected)
    assert model.encode_one("River stones") == pytest.approx(expected, abs=1e-6)  # no [CLS]/[SEP]
    batch = model.encode(["River stones", "", "violin", "garden kettle candle"], batch_size=3)
    assert batch[0] == pytest.approx(expected, abs=1e-6) and not batch[1].any()  # nothing to read: zero
    assert batch[3] == pytest.approx(model.encode_one("garden kettle candle"), abs=1e-6)
    weights = zipf_sif_weights(len(words))
    weighted = StaticEncoder(rows, tokenizer, weights)
    mixed = rows[[river, *stones]] * weights[[river, *stones], None]
    assert weighted.encode_one("River stones") == pytest.approx(mixed.mean(0) / np.linalg.norm(mixed.mean(0)), abs=1e-6)
    with pytest.raises(ValueError, match="rows for a vocabulary"):
        StaticEncoder(rows[:-1], tokenizer)


def test_zipf_weights_are_model2vecs() -> None:
    w = zipf_sif_weights(5, coefficient=0.1)
    p = (1 / np.arange(2, 7)) / (1 / np.arange(2, 7)).sum()
    assert w == pytest.approx(0.1 / (0.1 + p))
    assert np.all(np.diff(w) > 0)  # rarer (later) tokens weigh more


def test_the_distilled_table_is_made_once(tmp_path: Path) -> None:
    tokenizer = make_tokenizer(tmp_path / "tok.json")
    loads: list[int] = []

    def load():
        loads.append(1)
        return fake_teacher()[0]
    path = distilled_table(tmp_path / "t" / "static-fake.npy", "org/fake", load, tokenizer, dims=3)
    again = distilled_table(tmp_path / "t" / "static-fake.npy", "org/fake", load, tokenizer, dims=3)
    assert path == again and len(loads) == 1 and np.load(path).shape == (len(vocabulary_words(tokenizer)[0]), 3)
    assert (tmp_path / "t" / "teacher-fake.npy").is_file()
    # Another projection: remade from the kept teacher rows, without the teacher.
    distilled_table(tmp_path / "t" / "static-fake.npy", "org/fake", load, tokenizer, dims=2)
    centred = distilled_table(tmp_path / "t" / "static-fake-centred.npy", "org/fake", load, tokenizer, dims=2,
                              centred=True)
    assert len(loads) == 1 and np.load(path).shape[1] == 2 and np.load(centred).shape[1] == 2


# --- the plot, and no torch ----------------------------------------------------------------

def test_a_region_is_drawn_and_kept_in_view() -> None:
    svg = svg_chart([Series("s", [Point(0.05, 0.7, "a"), Point(2.0, 1.0, "b")])], x=Axis("x", log=True),
                    y=Axis("y"), regions=[Region("target", x_max=0.3, y_min=0.95)])
    assert svg.count("<rect") == 2 and "fill-opacity" in svg and ">target<" in svg
    close = svg_chart([Series("s", [Point(1.0, 0.500, "first"), Point(1.0, 0.501, "second"), Point(3.0, 0.9, "far")])],
                      x=Axis("x"), y=Axis("y"))
    ys = [float(line.split('y="')[1].split('"')[0]) for line in close.splitlines() if line.startswith("<text")
          and line.endswith(("first</text>", "second</text>"))]
    assert len(ys) == 2 and abs(ys[0] - ys[1]) >= 12  # names of points close together do not overprint


def test_the_encoders_modules_need_no_torch() -> None:
    script = ("import sys, export.measure.encoders, export.stages.static_embed, export.measure.fusion\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', "
              "'sentence_transformers')))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.needs_torch  # the command refuses to start without the export extra
def test_the_command_line_checks_names_and_keeps_quick_runs_apart(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from export.__main__ import main as export_main
    from export.stages import sources

    assert export_main(["encoders", "--only", "nope"]) == 2
    seen: list[EncodersConfig] = []
    monkeypatch.setattr(encoders, "run_encoders", lambda config, stock, argv=(): seen.append(config))
    monkeypatch.setattr(sources, "minilm_teacher", lambda: TeacherFacts(tmp_path, "fake", 32, "mean", True))
    work = tmp_path / "work"
    assert export_main(["encoders", "--work", str(work), "--quick", "--only", "bm25", "--rounds", "7"]) == 0
    assert seen[-1].results == work / "encoders" / "quick" and seen[-1].only == ("bm25",) and seen[-1].quick
    assert seen[-1].rounds == 7
    assert export_main(["encoders", "--quick", "--results", str(tmp_path / "r")]) == 0
    assert seen[-1].results == tmp_path / "r"
    assert export_main(["encoders"]) == 0 and seen[-1].results == Path("results") and not seen[-1].quick


def test_an_untrained_student_is_skipped_and_named_unless_asked_for(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from export.measure.candidates import NotTrained

    suite = TaskSuite((paired_task("pairs"),), {})
    records = [{"title": f"Film {i}"} for i in range(30)]
    monkeypatch.setattr(encoders, "text_tasks", lambda validation=False: suite)
    monkeypatch.setattr(encoders, "catalogue_of", lambda bundle: (records, [f"c{i}" for i in range(N)], "fake"))

    def untrained(ctx: encoders.Context) -> Candidate:
        raise NotTrained("run `python -m export student --layers 9` first")
    monkeypatch.setattr(encoders, "BUILDERS", {ANCHOR: lambda ctx: fake_candidate(ANCHOR), "student-L9": untrained})
    config = EncodersConfig(work=tmp_path / "work", results=tmp_path / "results", rounds=2, warmup=1)
    body = run_encoders(config, TeacherFacts(tmp_path, "fake", 32, "mean", True))
    assert [r["name"] for r in body["candidates"]] == [ANCHOR]
    assert "--layers 9" in body["skipped"]["student-L9"]
    assert "`student-L9`: run `python -m export student --layers 9` first" in (tmp_path / "results" / "encoders.md").read_text()
    with pytest.raises(NotTrained):
        run_encoders(EncodersConfig(work=tmp_path / "work", results=tmp_path / "r2", rounds=2, warmup=1,
                                    only=("student-L9",)), TeacherFacts(tmp_path, "fake", 32, "mean", True))


def test_the_general_model_candidate_fuses_and_searches_as_the_runtime_does(tmp_path: Path) -> None:
    from edgerec.encoder import TextEncoder, clean_text
    from edgerec.lexical import LexicalIndex, WordSplitter
    from edgerec.bundle.reader import open_bundle
    from export.measure.candidates import Context, _edgerec_general
    from export.measure.fusion import bm25_matrix, query_damping, score_fusion
    from edgerec.recommender import default_model_path

    model = default_model_path()
    stock = tmp_path / "stock"
    stock.mkdir()
    (stock / "tokenizer.json").write_bytes((model / "tokenizer.json").read_bytes())  # the same normaliser
    catalogue = ["a shark attacks a beach town", "two friends sail to an island", "a heist in a casino",
                 "a love story in Paris", "robots take over the city"]
    ctx = Context(EncodersConfig(work=tmp_path / "work", model=model, bulk_threads=1),
                  TeacherFacts(stock, "stock", 128, "mean", True), catalogue, log=lambda m: None)
    candidate = _edgerec_general(ctx)
    queries = ["shark beach", "a film about a robot uprising in a big city"]
    manifest = open_bundle(model, model_ok=True).manifest
    encoder = TextEncoder(model / "encoder.onnx", model / "tokenizer.json", manifest.encoder, threads=1)
    vectors = encoder.encode([clean_text(t) for t in queries + catalogue])
    index = LexicalIndex.build(catalogue, WordSplitter.from_file(model / "tokenizer.json"))
    expected = score_fusion(vectors[:2] @ vectors[2:].T, bm25_matrix(index, queries), manifest.lexical.weight,
                            query_damping(index, queries))
    assert candidate.scores(queries, catalogue) == pytest.approx(expected, abs=1e-5)
    search = candidate.searcher(catalogue, vectors[2:])
    assert [r.item_id for r in search("shark beach")][:1] == ["0"]  # the query runs through edgerec itself
    assert [r.item_id for r in search("robots take over the city")][:1] == ["4"]
