"""Shared fixtures.

The runtime tests use the tiny bundles checked in under tests/data (a real
INT8 bundle made by the export pipeline from a random-weight teacher, and the
same catalogue encoded with its fp32 graph; tests/data/make_tiny_bundle.py
makes them), so they run without torch. Tests of the export stage itself run
the pipeline in the session (``tiny_export``) and are marked ``needs_torch``:
where torch is not installed they are skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).parent / "data"
HAS_TORCH = importlib.util.find_spec("torch") is not None
NO_TORCH = "torch is not installed: pip install -e '.[export,test]'"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_TORCH:
        return
    skip = pytest.mark.skip(reason=NO_TORCH)
    for item in items:
        if item.get_closest_marker("needs_torch"):
            item.add_marker(skip)


def _checked_in(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of a checked-in bundle, so no test can change tests/data."""
    return shutil.copytree(DATA / name, tmp_path_factory.mktemp(name) / "bundle")


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory):
    """The export pipeline run end to end on the tiny teacher: (student facts, config, records).

    The student is the model inside the bundle (config.out), so it is what the runtime is compared with.
    """
    if not HAS_TORCH:
        pytest.skip(NO_TORCH)
    from tiny import run_tiny_export

    return run_tiny_export(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checked_in("tiny-bundle", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_fp32_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same catalogue encoded with the fp32 graph: a vector does not depend on its batch."""
    return _checked_in("tiny-fp32-bundle", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_recommender(tiny_bundle):
    from edgerec import Recommender

    return Recommender.load(tiny_bundle, threads=1)
