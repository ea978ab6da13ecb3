"""The item prior (edgerec.prior, `edgerec prior`) and disliked items in recommend: answers checked against
scoring every item by hand, counts carried through updates, bad files refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgerec import Recommender
from edgerec.bundle.manifest import Manifest
from edgerec.cli import main
from edgerec.errors import BundleError, EventsError, InputError, ManifestError
from edgerec.events import EventColumns
from edgerec.prior import ItemPrior, event_counts
from edgerec.update.store import Store
from edgerec.user import away_from, best_scores, user_vector

DAY = 86_400.0


def write_events(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    lines = ["user,item,timestamp"] + [f'{u},"{i}",{t}' for u, i, t in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def home(tiny_bundle: Path, tmp_path: Path) -> Path:
    Store.create(tmp_path / "home", tiny_bundle)
    return tmp_path / "home"


def ids_of(rec: Recommender) -> list[str]:
    return [r[rec.items.id_field] for r in rec.items.records]


def brute_force(rec: Recommender, vector: np.ndarray, extra: np.ndarray, exclude: list[int], k: int) -> list[str]:
    """Every item scored: cosine + extra, excluded items left out, ties to the lower label."""
    vectors = rec.index.vectors(range(len(rec)))
    scores = vectors @ vector + extra
    scores[exclude] = -np.inf
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [ids_of(rec)[i] for i in order]


def test_counts_by_hand_with_and_without_recency() -> None:
    events = {"a": [(0.0, 1), (10 * DAY, 2)], "b": [(10 * DAY, 2), (5 * DAY, 0)]}
    assert event_counts(events, 4).tolist() == [1, 1, 2, 0]
    halved = event_counts(events, 4, half_life_days=5)  # the newest event is at day 10
    assert halved == pytest.approx([0.5, 0.25, 2.0, 0.0])
    prior = ItemPrior(np.array([0, 1, 3, 0], dtype=np.float32))
    assert prior.scores == pytest.approx([0, math.log(2) / math.log(4), 1, 0])
    assert prior.ranked[:2].tolist() == [2, 1]
    assert ItemPrior(np.zeros(3, dtype=np.float32)).scores.tolist() == [0, 0, 0]


def test_the_prior_file_round_trips_and_a_bad_one_is_refused() -> None:
    counts = np.array([0, 2, 5], dtype=np.float32)
    assert ItemPrior.from_bytes(ItemPrior(counts).to_bytes(), size=3).counts.tolist() == [0, 2, 5]
    for bad in (counts[:2], np.array([0, -1, 2], np.float32), np.array([0, np.nan, 2], np.float32),
                counts.astype(np.float64)):
        with pytest.raises(BundleError, match="do not fit"):
            ItemPrior.from_bytes(_npy(bad), size=3)
    with pytest.raises(BundleError, match="not a readable item prior"):
        ItemPrior.from_bytes(b"\x93NUMPY garbage", size=3)


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_recommend_with_a_prior_is_cosine_plus_weight_times_prior_over_every_item(home: Path, tmp_path: Path) -> None:
    rec = Recommender.load(home)
    ids = ids_of(rec)
    rng = np.random.default_rng(0)
    rows = [(f"u{rng.integers(30)}", ids[int(i)], float(t)) for t, i in enumerate(rng.zipf(1.5, 400) % len(ids))]
    report = Store(home).set_prior(write_events(tmp_path / "events.csv", rows), weight=0.5)
    assert report.version == "v000002" and report.events.kept == 400 and report.weight == 0.5
    rec = Recommender.load(home)
    assert rec.bundle.manifest.prior.weight == 0.5 and rec.bundle.manifest.schema_version == 5
    history = ids[3:9]
    labels = [rec.items.labels[i] for i in history]
    vector = user_vector(rec.index.vectors(labels), rec.bundle.manifest.user.window)
    for weight in (None, 0.0, 0.3, 2.0):
        used = 0.5 if weight is None else weight
        expected = brute_force(rec, vector, used * rec.prior.scores, labels, 10)
        assert [r.item_id for r in rec.recommend(history, k=10, prior=weight)] == expected, weight
    assert [r.item_id for r in rec.recommend(history, prior=0)] == [r.item_id for r in Recommender.load(
        home.parent / "home" / "v000001").recommend(history)]


def test_a_bundle_without_a_prior_and_bad_weights(tiny_bundle: Path) -> None:
    rec = Recommender.load(tiny_bundle)
    history = ids_of(rec)[:3]
    assert rec.recommend(history, prior=0.0) == rec.recommend(history)
    with pytest.raises(InputError, match="no item prior"):
        rec.recommend(history, prior=0.2)
    with pytest.raises(InputError, match="between 0 and 10"):
        rec.recommend(history, prior=-1.0)
    with pytest.raises(InputError, match="between 0 and 10"):
        rec.recommend(history, prior=float("nan"))
    with pytest.raises(TypeError, match="prior must be a number"):
        rec.recommend(history, prior="high")  # type: ignore[arg-type]


def test_disliked_items_are_never_answered_and_move_the_answer(tiny_bundle: Path) -> None:
    rec = Recommender.load(tiny_bundle)
    ids = ids_of(rec)
    history, disliked = ids[10:16], ids[20:23]
    liked = [rec.items.labels[i] for i in history]
    against = [rec.items.labels[i] for i in disliked]
    window = rec.bundle.manifest.user.window
    vector = away_from(user_vector(rec.index.vectors(liked), window), rec.index.vectors(against))
    average = [r.item_id for r in rec.recommend(history, k=8, disliked=disliked, strategy="average")]
    assert average == brute_force(rec, vector, 0.0, liked + against, 8)
    plain = user_vector(rec.index.vectors(liked), window)
    assert [r.item_id for r in rec.recommend(history, k=8, disliked=disliked)] == brute_force(
        rec, plain, 0.0, liked + against, 8)  # the default only leaves them out
    best = rec.recommend(history, k=8, disliked=disliked, strategy="best_score")
    scores = best_scores(rec.index.vectors(range(len(rec))), rec.index.vectors(liked[-window:]),
                         rec.index.vectors(against)).astype(np.float64)
    scores[liked + against] = -np.inf
    expected = np.lexsort((np.arange(len(scores)), -scores))[:8]
    assert [r.item_id for r in best] == [ids[i] for i in expected]
    assert [r.score for r in best] == pytest.approx(scores[expected].tolist(), abs=1e-6)
    assert not {r.item_id for r in rec.recommend(history, k=len(rec), disliked=disliked, exclude_seen=False)} & set(disliked)
    with pytest.raises(InputError, match="strategy"):
        rec.recommend(history, disliked=disliked, strategy="worst")
    with pytest.raises(TypeError, match="disliked must be a sequence"):
        rec.recommend(history, disliked=disliked[0])  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="nope"):
        rec.recommend(history, disliked=["nope"])


def test_updates_keep_each_items_count_by_id(home: Path, tmp_path: Path) -> None:
    ids = ids_of(Recommender.load(home))
    rows = [("a", ids[0], 1), ("b", ids[0], 2), ("a", ids[5], 3), ("c", ids[7], 4), ("c", ids[7], 5), ("d", ids[7], 6)]
    Store(home).set_prior(write_events(tmp_path / "events.csv", rows))
    (tmp_path / "new.jsonl").write_text('{"id": "item-new", "title": "A brand new film", "year": 2030, "genres": []}\n')
    Store(home).add(tmp_path / "new.jsonl")
    Store(home).remove([ids[5]])
    rec = Recommender.load(home)
    counts = {item_id: float(rec.prior.counts[label]) for item_id, label in rec.items.labels.items()}
    assert counts[ids[0]] == 2 and counts[ids[7]] == 3 and counts["item-new"] == 0 and ids[5] not in counts
    assert rec.bundle.manifest.prior.weight == 0.2  # the default when the bundle had none


def test_bad_events_are_refused_with_the_line(home: Path, tmp_path: Path) -> None:
    ids = ids_of(Recommender.load(home))
    with pytest.raises(EventsError, match="line 3: the timestamp 'soon'"):
        Store(home).set_prior(write_events(tmp_path / "a.csv", [("u", ids[0], 1), ("u", ids[1], "soon")]))
    with pytest.raises(EventsError, match="name items the catalogue lacks"):
        Store(home).set_prior(write_events(tmp_path / "b.csv", [("u", ids[0], 1), ("u", "unknown film", 2)]))
    with pytest.raises(EventsError, match="no 'who'"):
        Store(home).set_prior(write_events(tmp_path / "c.csv", [("u", ids[0], 1)]), columns=EventColumns(user="who"))
    assert Store(home).versions() == ["v000001"]  # nothing was written


def test_the_manifest_keeps_prior_file_and_section_together(home: Path, tmp_path: Path) -> None:
    ids = ids_of(Recommender.load(home))
    Store(home).set_prior(write_events(tmp_path / "events.csv", [("u", ids[0], 1)]))
    manifest = Recommender.load(home).bundle.manifest
    files = {role: entry for role, entry in manifest.files.items() if role != "prior"}
    with pytest.raises(ManifestError, match="files.prior and the prior section"):
        Manifest(name=manifest.name, files=files, encoder=manifest.encoder, index=manifest.index,
                 items=manifest.items, prior=manifest.prior)
    with pytest.raises(ManifestError, match="prior.weight"):
        type(manifest.prior)(weight=11.0, events=1, source="x")


def test_the_cli_counts_events_and_recommends_with_them(home: Path, tmp_path: Path) -> None:
    ids = ids_of(Recommender.load(home))
    events = write_events(tmp_path / "events.csv", [("a", ids[2], 1), ("b", ids[2], 2), ("c", ids[4], 3)])
    runner = CliRunner()
    done = runner.invoke(main, ["prior", str(events), "--bundle", str(home), "--weight", "5"])
    assert done.exit_code == 0 and "3 events from 3 users, weight 5" in done.output
    assert "prior       recommend adds 5" in runner.invoke(main, ["info", "--bundle", str(home)]).output
    answer = runner.invoke(main, ["recommend", ids[50], "--bundle", str(home), "-k", "2", "--json"])
    assert answer.exit_code == 0 and ids[2] in answer.output.splitlines()[0]  # a weight of 5 puts it first
    plain = runner.invoke(main, ["recommend", ids[50], "--bundle", str(home), "-k", "2", "--prior", "0",
                                 "--dislike", ids[2], "--strategy", "best_score"])
    assert plain.exit_code == 0 and ids[2] not in plain.output
    bad = runner.invoke(main, ["prior", str(tmp_path / "missing.csv"), "--bundle", str(home)])
    assert bad.exit_code == 2 and "cannot be read" in bad.output and "Traceback" not in bad.output


def test_a_filter_holds_with_a_prior_and_dislikes(home: Path, tmp_path: Path) -> None:
    rec = Recommender.load(home)
    ids = ids_of(rec)
    Store(home).set_prior(write_events(tmp_path / "events.csv", [(f"u{i}", ids[i % 40], i) for i in range(200)]),
                          weight=1.0)
    rec = Recommender.load(home)
    history, disliked = ids[60:66], ids[70:72]
    liked = [rec.items.labels[i] for i in history]
    allowed = np.array([int(r["year"]) <= 1980 for r in rec.items.records])
    extra = rec.prior.scores.astype(np.float64)
    extra[~allowed] = -np.inf
    vector = user_vector(rec.index.vectors(liked), rec.bundle.manifest.user.window)
    expected = brute_force(rec, vector, extra, liked + [rec.items.labels[i] for i in disliked], 6)
    answer = rec.recommend(history, k=6, disliked=disliked, filter="year<=1980")
    assert [r.item_id for r in answer] == expected and all(r.metadata["year"] <= 1980 for r in answer)
