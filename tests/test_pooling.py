"""Pooling and normalisation: pure numpy, checked against plain loops."""

from __future__ import annotations

import numpy as np
from edgerec.bundle.manifest import POOLINGS
from edgerec.pooling import POOLERS, cls_pool, l2_normalize, mean_pool


def test_mean_pool_ignores_padded_positions() -> None:
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(4, 6, 5)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=np.int64)
    expected = np.stack([
        np.mean([hidden[b, t] for t in range(6) if mask[b, t]], axis=0) for b in range(4)
    ])
    pooled = mean_pool(hidden, mask)
    assert pooled.shape == (4, 5)
    np.testing.assert_allclose(pooled, expected, rtol=1e-6, atol=1e-6)


def test_mean_pool_is_unmoved_by_garbage_in_padding() -> None:
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(2, 5, 3))
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    noisy = hidden.copy()
    noisy[mask == 0] = 1e6
    np.testing.assert_allclose(mean_pool(noisy, mask), mean_pool(hidden, mask))


def test_mean_pool_of_fully_masked_row_is_zero_not_nan() -> None:
    hidden = np.ones((1, 3, 2), dtype=np.float32)
    pooled = mean_pool(hidden, np.zeros((1, 3), dtype=np.int64))
    assert np.array_equal(pooled, np.zeros((1, 2), dtype=np.float32))


def test_cls_pool_takes_token_zero() -> None:
    rng = np.random.default_rng(2)
    hidden = rng.normal(size=(3, 4, 5))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    pooled = cls_pool(hidden, mask)
    assert pooled.shape == (3, 5)
    for b in range(3):
        assert np.array_equal(pooled[b], hidden[b, 0])


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(6, 8)) * rng.uniform(0.01, 100, size=(6, 1))
    vectors[2] = 0.0
    normed = l2_normalize(vectors)
    norms = np.linalg.norm(normed, axis=1)
    np.testing.assert_allclose(np.delete(norms, 2), 1.0, rtol=1e-12)
    assert np.array_equal(normed[2], np.zeros(8))
    assert np.isfinite(normed).all()
    # direction is kept: each row is a positive multiple of the input row
    for i in (0, 1, 3, 4, 5):
        np.testing.assert_allclose(normed[i] * np.linalg.norm(vectors[i]), vectors[i])


def test_every_manifest_pooling_has_a_pooler() -> None:
    assert POOLERS == {"mean": mean_pool, "cls": cls_pool}
    assert set(POOLERS) == set(POOLINGS)
