"""Long coverage-guided fuzzing with atheris (libFuzzer for Python): a command, not a test.

    pip install atheris
    python tests/fuzz_atheris.py query    -max_total_time=600   # edgerec query text and k, on the default bundle
    mkdir -p /tmp/corpus && cp artifacts/default/manifest.json /tmp/corpus/
    python tests/fuzz_atheris.py manifest /tmp/corpus -max_total_time=600   # the manifest parser, on raw bytes

The oracle is the same as the Hypothesis fuzzers in the suite (tests/test_fuzz.py,
tests/test_bundle_fuzz.py), run for longer and guided by coverage: query returns
min(k, items) distinct results or raises one of edgerec's input errors; the
manifest parser returns a Manifest or raises ManifestError. Anything else
(TypeError, RuntimeError, a tokenizers panic, a crash) stops the run with the
input that caused it.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from edgerec import InputError, Recommender
    from edgerec.errors import ManifestError
    from edgerec.bundle.manifest import Manifest


def fuzz_query(recommender: Recommender):
    def one(data: bytes) -> None:
        provider = atheris.FuzzedDataProvider(data)
        k = provider.ConsumeIntInRange(-5, 10**6)
        text = provider.ConsumeUnicode(provider.remaining_bytes())  # may hold lone surrogates
        try:
            results = recommender.query(text, k=k)
        except InputError:
            return
        ids = [r.item_id for r in results]
        assert len(ids) == min(k, len(recommender)), (k, len(ids))
        assert len(set(ids)) == len(ids), "duplicate results"
    return one


def fuzz_manifest(data: bytes) -> None:
    try:
        Manifest.from_json(data.decode("utf-8", errors="surrogateescape"))
    except ManifestError:
        pass


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else ""
    if target not in ("query", "manifest"):
        sys.exit("usage: python tests/fuzz_atheris.py query|manifest [libFuzzer options]")
    test = fuzz_query(Recommender.load(threads=1)) if target == "query" else fuzz_manifest
    atheris.Setup([sys.argv[0], *sys.argv[2:]], test)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
