"""Where a cold load of a bundle goes, step by step, with resident memory after each: for results/scale.md.

The steps are those of Recommender.load, timed one by one:

    python results/scale_load.py /tmp/bundle-1m
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def resident_mb() -> float:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def main() -> None:
    started_all = time.perf_counter()
    from edgerec.bundle.reader import open_bundle
    from edgerec.encoder import TextEncoder
    from edgerec.index import ItemIndex
    from edgerec.items import ItemTable

    steps: list[tuple[str, float, float]] = []

    def timed(name: str, work):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        result = work()
        steps.append((name, time.perf_counter() - started, resident_mb()))
        return result

    bundle = timed("sizes and sha256 of every file", lambda: open_bundle(Path(sys.argv[1])))
    manifest = bundle.manifest
    # Each part is kept, as a Recommender keeps it, so resident memory adds up.
    kept = [
        timed("item table (every line checked)", lambda: ItemTable.load(bundle.path("items"), manifest.items)),
        timed("index: validated, then loaded by hnswlib",
              lambda: ItemIndex.load(bundle.path("index"), manifest.index)),
        timed("ONNX Runtime session", lambda: TextEncoder(bundle.path("encoder"), bundle.path("tokenizer"),
                                                           manifest.encoder, threads=1)),
    ]
    for name, seconds, mb in steps:
        print(f"{name:42s} {seconds:6.2f} s   resident after {mb:7.0f} MB")
    print(f"total, imports included {time.perf_counter() - started_all:.2f} s; {len(kept)} parts held")


if __name__ == "__main__":
    main()
