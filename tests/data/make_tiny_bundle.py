"""Make the tiny bundles checked in under tests/data, so the runtime tests run without torch.

    pip install -e '.[export,test]' && python tests/data/make_tiny_bundle.py

Runs the real export pipeline on the tests' tiny random-weight teacher (tests/tiny.py)
and writes its INT8 bundle to tests/data/tiny-bundle and the same catalogue encoded
with the fp32 graph to tests/data/tiny-fp32-bundle. The weights are random, so a
run with another torch version makes other bytes; the tests only need a real
bundle of this kind, not these bytes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent
sys.path[:0] = [str(DATA.parents[1]), str(DATA.parent)]  # the repository (export/) and tests/ (tiny.py)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny import build_fp32_bundle, run_tiny_export  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        export = run_tiny_export(Path(work))
        fp32 = build_fp32_bundle(export, Path(work) / "bundle-fp32")
        for source, name in ((export[1].out, "tiny-bundle"), (fp32, "tiny-fp32-bundle")):
            target = DATA / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for file in sorted(source.iterdir()):  # a bundle is flat
                shutil.copyfile(file, target / file.name)
            size = sum(f.stat().st_size for f in target.iterdir())
            print(f"{target.relative_to(DATA.parents[1])}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
