"""The index lifecycle as a Hypothesis state machine, checked against a brute-force model.

Rules add and replace items, remove items, crash an update at a named step
(the fault hook raising instead of killing, so it runs in-process), reload a
running Recommender and query. The model is a list of items with their texts
and vectors (encoded one by one with the same fp32 graph) and exact search.
Invariants: what a fresh load of the home gives is exactly the last committed
state (ids in order, records, vectors; unchanged items' vectors bit for bit),
and queries return the brute-force top-k. The catalogue stays under 40 items,
where HNSW with ef=64 searches exhaustively, so top-k must be exact.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import edgerec.bundle.writer
import edgerec.update.store
from edgerec import Recommender
from edgerec.bundle.reader import open_bundle
from edgerec.encoder import TextEncoder
from edgerec.items import item_text
from edgerec.update.store import Store
from test_store import SWITCH_STEP, UPDATE_STEPS
from tiny import tiny_catalog

WORDS = ("space", "alien", "robot", "heist", "love", "war", "ghost", "king", "dog", "city", "night", "dark")
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi")
TEXT_FIELDS = ("title", "year", "genres")
START_ITEMS = 20


class SimulatedCrash(BaseException):
    """Raised at a fault point: like a kill, nothing after it runs (but finally blocks do)."""


@dataclass
class ModelItem:
    record: dict[str, Any]
    vector: np.ndarray  # the text encoded alone: equal to the store's up to float rounding
    stored: np.ndarray | None = None  # the store's vector as last loaded; None after the text changed


@pytest.fixture(scope="module")
def small_home(tiny_fp32_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgerec.update.build import build_bundle

    fp32 = open_bundle(tiny_fp32_bundle)
    work = tmp_path_factory.mktemp("stateful")
    # fp32, not INT8: its vectors do not depend on which texts share a batch, so the model can predict them.
    build_bundle(tiny_catalog()[:START_ITEMS], work / "bundle", model_path=fp32.path("encoder"),
                 tokenizer_path=fp32.path("tokenizer"), encoder_spec=fp32.manifest.encoder, text_fields=TEXT_FIELDS,
                 name="small", threads=1)
    Store.create(work / "home", work / "bundle")
    return work / "home"


def item_records(ids: list[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    record = st.fixed_dictionaries({
        "id": st.sampled_from(ids),
        "title": st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(lambda w: " ".join(w).title()),
        "year": st.integers(1950, 2000),
        "genres": st.lists(st.sampled_from(GENRES), min_size=1, max_size=2, unique=True),
    })
    return st.lists(record, min_size=1, max_size=4, unique_by=lambda r: r["id"])


# Existing ids (to replace) and new ones (to add).
ITEMS = item_records([f"item-{i:03d}" for i in range(0, START_ITEMS, 3)] + [f"new-{i}" for i in range(8)])


class IndexLifecycle(RuleBasedStateMachine):
    template: ClassVar[Path]
    encoder: ClassVar[TextEncoder]

    def __init__(self) -> None:
        super().__init__()
        self.work = Path(tempfile.mkdtemp(prefix="edgerec-stateful-"))
        self.home = Path(shutil.copytree(self.template, self.work / "home"))
        self.store = Store(self.home)
        self.reader = Recommender.load(self.home, threads=1)
        self.items: list[ModelItem] = []
        for label, record in enumerate(self.reader.items.records):
            self.items.append(ModelItem(dict(record), self._encode(record),
                                        self.reader.index.vectors([label])[0]))
        self.updates = 0
        self.crashed = False  # a killed writer's leftovers stay until the next writer clears them

    def teardown(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    # -- the model -----------------------------------------------------------------
    def _encode(self, record: dict[str, Any]) -> np.ndarray:
        return self.encoder.encode([item_text(record, TEXT_FIELDS)])[0]

    def _apply_add(self, records: list[dict[str, Any]]) -> None:
        position = {item.record["id"]: i for i, item in enumerate(self.items)}
        for record in records:
            text_changed = True
            if record["id"] in position:
                old = self.items[position[record["id"]]]
                text_changed = item_text(old.record, TEXT_FIELDS) != item_text(record, TEXT_FIELDS)
                old.record = dict(record)
                if text_changed:
                    old.vector, old.stored = self._encode(record), None
            else:
                self.items.append(ModelItem(dict(record), self._encode(record)))

    def _catalog(self, records: list[dict[str, Any]]) -> Path:
        self.updates += 1
        path = self.work / f"update-{self.updates}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return path

    # -- rules -------------------------------------------------------------------------
    @rule(records=ITEMS)
    def add(self, records: list[dict[str, Any]]) -> None:
        report = self.store.add(self._catalog(records), threads=1)
        known = {item.record["id"] for item in self.items}
        assert report.added == sum(r["id"] not in known for r in records)
        self._apply_add(records)
        self.crashed = False

    @precondition(lambda self: len(self.items) > 4)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        ids = [item.record["id"] for item in self.items]
        doomed = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3, unique=True), label="remove")
        self.store.remove(doomed, threads=1)
        self.items = [item for item in self.items if item.record["id"] not in doomed]
        self.crashed = False

    @rule(records=ITEMS, step=st.sampled_from(UPDATE_STEPS))
    def crash_during_add(self, records: list[dict[str, Any]], step: str) -> None:
        def crash_at(reached: str) -> None:
            if reached == step:
                raise SimulatedCrash(step)

        with mock.patch.object(edgerec.bundle.writer, "fault_point", crash_at), \
                mock.patch.object(edgerec.update.store, "fault_point", crash_at):
            try:
                self.store.add(self._catalog(records), threads=1)
            except SimulatedCrash:
                pass
            else:
                raise AssertionError(f"the update never reached {step}")
        self.crashed = True
        committed = UPDATE_STEPS.index(step) >= UPDATE_STEPS.index(SWITCH_STEP)
        event("crash after the switch" if committed else "crash before the switch")
        if committed:
            self._apply_add(records)  # the pointer was switched: the update is committed

    @rule()
    def reload(self) -> None:
        before = self.reader
        self.reader = self.reader.reload()
        assert [r["id"] for r in self.reader.items.records] == [item.record["id"] for item in self.items]
        assert self.reader.encoder is before.encoder  # same model files: the session is reused

    @rule(seed=st.integers(0, 2**32 - 1))
    def query(self, seed: int) -> None:
        rec = Recommender.load(self.home, threads=1)
        query = np.random.default_rng(seed).normal(size=rec.index.spec.dim).astype(np.float32)
        query /= np.linalg.norm(query)
        k = min(5, len(self.items))
        labels, scores = rec.index.search(query, k)
        exact = np.array([item.vector for item in self.items]) @ query
        assert np.allclose(scores, np.sort(exact)[::-1][:k], atol=1e-4), "not the brute-force top-k scores"
        assert np.allclose(scores, exact[labels], atol=1e-4), "a label points at the wrong item"

    # -- invariant: a fresh load is the last committed state --------------------------------
    @invariant()
    def loaded_state_is_the_last_committed(self) -> None:
        rec = Recommender.load(self.home, threads=1)
        assert [dict(r) for r in rec.items.records] == [item.record for item in self.items]
        vectors = rec.index.vectors(range(len(self.items)))
        for item, vector in zip(self.items, vectors):
            assert np.allclose(vector, item.vector, atol=1e-5), f"{item.record['id']}: not its text's vector"
            if item.stored is not None:
                assert np.array_equal(vector, item.stored), f"{item.record['id']}: unchanged, yet re-encoded"
            item.stored = vector
        if not self.crashed:  # after a completed write: the current and the previous version, no leftovers
            assert len(self.store.versions()) <= 2
            assert not [n for n in self.home.iterdir() if n.name.startswith(".") and n.name != ".lock"]


def test_index_lifecycle_against_a_brute_force_model(small_home: Path, tiny_fp32_bundle: Path) -> None:
    IndexLifecycle.template = small_home
    fp32 = open_bundle(tiny_fp32_bundle)
    IndexLifecycle.encoder = TextEncoder(fp32.path("encoder"), fp32.path("tokenizer"), fp32.manifest.encoder, threads=1)
    run_state_machine_as_test(IndexLifecycle, settings=settings(
        # No shrinking: each step writes a bundle, so shrinking a failure takes many minutes;
        # the failing sequence is printed as it was found.
        max_examples=6, stateful_step_count=6, deadline=None, derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))
