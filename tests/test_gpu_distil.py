"""The GPU run's own arithmetic, on small arrays (the run itself needs the teacher and a GPU machine)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_torch


def test_flat_gives_embedding_bag_offsets() -> None:
    from export.stages.static_fit import flat

    values, offsets = flat([[1, 2], [3], [4, 5, 6]], np.array([2, 0]))
    assert values.tolist() == [4, 5, 6, 1, 2] and offsets.tolist() == [0, 3]


def test_large_files_are_split_into_parts_that_join_back(tmp_path, monkeypatch) -> None:
    from export.stages import gpu_distil

    monkeypatch.setattr(gpu_distil, "PART_BYTES", 10)
    data = bytes(range(25))
    gpu_distil.save_split(tmp_path / "model.pt", data)
    parts = sorted(tmp_path.glob("model.pt.*"))
    assert [p.name for p in parts] == ["model.pt.0", "model.pt.1", "model.pt.2"]
    assert b"".join(p.read_bytes() for p in parts) == data
    gpu_distil.save_split(tmp_path / "small.npy", b"abc")
    assert (tmp_path / "small.npy").read_bytes() == b"abc"


def test_length_batches_cover_every_row_once() -> None:
    from export.stages.student import length_batches

    ids = [[0] * (i % 7 + 1) for i in range(1000)]
    rows = np.arange(1000)
    batches = length_batches(rows, ids, 32, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == rows.tolist()
    assert max(len(b) for b in batches) == 32
