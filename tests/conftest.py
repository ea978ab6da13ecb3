"""Shared fixtures: a tiny BERT built in the test session, run through the real
export pipeline (fine-tune on synthetic interactions, distil, ONNX, INT8
variants, validation, bundle), so every test has a real bundle without network
access, rating files or large files. The tiny model itself is in tiny.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory):
    """The export pipeline run end to end on the tiny teacher: (student facts, config, records).

    The student is the model inside the bundle, so it is what the runtime is compared with.
    """
    from tiny import run_tiny_export

    return run_tiny_export(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_export) -> Path:
    return tiny_export[1].out


@pytest.fixture(scope="session")
def tiny_fp32_bundle(tiny_export) -> Path:
    """The same catalogue encoded with the fp32 graph: for exact comparisons with torch."""
    from tiny import build_fp32_bundle

    return build_fp32_bundle(tiny_export, tiny_export[1].out.parent / "bundle-fp32")


@pytest.fixture(scope="session")
def tiny_recommender(tiny_bundle):
    from edgerec import Recommender

    return Recommender.load(tiny_bundle, threads=1)
