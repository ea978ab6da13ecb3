"""Bad input (RELIABILITY.md, table A1-A19), each case through the API and through the CLI.

API: a typed edgerec error (TypeError for a wrong type, naming the parameter),
or an answer where the rule is to answer (huge text is cut, undecodable bytes
become U+FFFD, k above the item count is clamped). CLI: one line on stderr,
the documented exit code (2 bad input, 3 bundle, 4 device), never a traceback,
never a raw ESC byte.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

from edgerec import EmptyQueryError, InputError, Recommender, UnknownItemError
from edgerec import index as index_module
from edgerec.cli import main
from edgerec.encoder import MAX_TEXT_BYTES, clean_text
from edgerec.recommender import MAX_ENCODE_TEXTS, MAX_K

ITEMS = 120  # the tiny bundle's item count
TEN_MB = "love story " * 953_000  # ~10 MB of ordinary words
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"


@dataclass(frozen=True)
class Case:
    """One bad input. ``error`` None means the input is answered with ``results`` records/lines."""

    name: str
    api: Callable[[Recommender], object] | None
    argv: tuple[str, ...] | None
    error: type[BaseException] | None = None
    message: str = ""  # in the exception text and in the CLI's line
    exit_code: int = 2
    cli_message: str | None = None  # when click words it differently
    stdin: bytes | None = None
    results: int | None = None


CASES = [
    # A1, A2: nothing to search for
    Case("empty", lambda r: r.query(""), ("query", ""), EmptyQueryError, "text is empty"),
    Case("whitespace", lambda r: r.query(" \n\t\r "), ("query", " \n\t\r "), EmptyQueryError, "text is empty"),
    Case("zero-width only", lambda r: r.query(ZERO_WIDTH), ("query", ZERO_WIDTH), EmptyQueryError, "text is empty"),
    Case("controls only", lambda r: r.query("\x00\x1b\x7f\x85"), ("query", "\x00\x1b\x7f\x85"), EmptyQueryError,
         "text is empty"),
    Case("empty stdin", None, ("query", "-"), EmptyQueryError, "text is empty", stdin=b""),
    # A3: huge text is cut at MAX_TEXT_BYTES and answered
    Case("10 MB of words", lambda r: r.query(TEN_MB, k=3), ("query", "-", "-k", "3"), results=3,
         stdin=TEN_MB.encode()),
    Case("1 MB without spaces", lambda r: r.query("x" * 1_000_000, k=3), ("query", "x" * 1_000_000, "-k", "3"),
         results=3),
    # A4, A5: undecodable bytes and lone surrogates become U+FFFD
    Case("invalid UTF-8 in argv", None, ("query", "caf\udcff dog", "-k", "2"), results=2),
    Case("invalid UTF-8 on stdin", None, ("query", "-", "-k", "2"), stdin=b"caf\xff dog", results=2),
    Case("truncated multibyte on stdin", None, ("query", "-", "-k", "2"), stdin=b"dog \xe2\x82", results=2),
    Case("only invalid bytes on stdin", None, ("query", "-"), EmptyQueryError, "text is empty",
         stdin=b"\xff\xfe\xc0\xaf"),
    Case("only invalid bytes in argv", None, ("query", "\udcff\udcfe"), EmptyQueryError, "text is empty"),
    Case("lone surrogates", lambda r: r.query("\ud800 dog \udfff", k=2), ("query", "\ud800 dog \udfff", "-k", "2"),
         results=2),
    # A6: controls are read, never echoed raw
    Case("ANSI escapes", lambda r: r.query("\x1b[31mdog\x1b[0m \x07\x00", k=2),
         ("query", "\x1b[31mdog\x1b[0m \x07\x00", "-k", "2"), results=2),
    Case("unknown id with ESC", lambda r: r.similar("\x1b[2Jgone"), ("similar", "\x1b[2Jgone"), UnknownItemError,
         "unknown item id '\\x1b[2Jgone'"),
    # A7: any script is answered
    Case("emoji, CJK, RTL override, BOM", lambda r: r.query("😀👨‍👩‍👧 日本語 \u202e\ufeff", k=4),
         ("query", "😀👨‍👩‍👧 日本語 \u202e\ufeff", "-k", "4"), results=4),
    Case("10k combining marks", lambda r: r.query("e" + "\u0301" * 10_000, k=4),
         ("query", "e" + "\u0301" * 10_000, "-k", "4"), results=4),
    # A8: wrong types (API only: argv is always text)
    Case("bytes text", lambda r: r.query(b"dog"), None, TypeError, "text must be a str, got bytes"),
    Case("None text", lambda r: r.query(None), None, TypeError, "text must be a str, got NoneType"),
    Case("int text", lambda r: r.query(7), None, TypeError, "text must be a str, got int"),
    Case("list text", lambda r: r.query(["dog"]), None, TypeError, "text must be a str, got list"),
    Case("float k", lambda r: r.query("dog", k=2.5), None, TypeError, "k must be an int, got float"),
    Case("bool k", lambda r: r.query("dog", k=True), None, TypeError, "k must be an int, got bool"),
    Case("str k", lambda r: r.query("dog", k="3"), ("query", "dog", "-k", "abc"), TypeError, "k must be an int",
         cli_message="'abc' is not a valid integer"),
    Case("int item id", lambda r: r.similar(7), None, TypeError, "item_id must be a str item id, got int"),
    Case("int in history", lambda r: r.recommend(["item-001", 5]), None, TypeError,
         "history[1] must be a str item id, got int"),
    Case("str history", lambda r: r.recommend("item-001"), None, TypeError, "history must be a sequence"),
    Case("bytes to encode", lambda r: r.encode(b"dog"), None, TypeError, "texts must be a str or a sequence"),
    # A9, A10: k
    Case("k = 0", lambda r: r.query("dog", k=0), ("query", "dog", "-k", "0"), InputError,
         f"k must be between 1 and {MAX_K}, got 0", cli_message="0 is not in the range x>=1"),
    Case("k < 0", lambda r: r.query("dog", k=-1), ("query", "dog", "-k", "-1"), InputError,
         f"k must be between 1 and {MAX_K}, got -1", cli_message="-1 is not in the range x>=1"),
    Case("k huge", lambda r: r.query("dog", k=10**9), ("query", "dog", "-k", str(10**9)), InputError,
         f"k must be between 1 and {MAX_K}, got 1000000000"),
    Case("k above the item count", lambda r: r.query("dog", k=500), ("query", "dog", "-k", "500"), results=ITEMS),
    Case("similar, k above the item count", lambda r: r.similar("item-003", k=MAX_K),
         ("similar", "item-003", "-k", str(MAX_K)), results=ITEMS - 1),
    # A11 and histories
    Case("unknown item id", lambda r: r.similar("no-such-item"), ("similar", "no-such-item"), UnknownItemError,
         "unknown item id 'no-such-item'"),
    Case("unknown id in history", lambda r: r.recommend(["item-001", "nope"]), ("recommend", "item-001", "nope"),
         UnknownItemError, "unknown item id 'nope'"),
    Case("empty history", lambda r: r.recommend([]), ("recommend",), EmptyQueryError, "history is empty",
         cli_message="Missing argument 'HISTORY...'"),
    Case("duplicate history", lambda r: r.recommend(["item-001", "item-002", "item-001"], k=ITEMS),
         ("recommend", "item-001", "item-002", "item-001", "-k", str(ITEMS)), results=ITEMS - 2),
    # A15: batches
    Case("encode of nothing", lambda r: r.encode([]), None, results=0),
    Case("encode batch too large", lambda r: r.encode(["dog"] * (MAX_ENCODE_TEXTS + 1)), None, InputError,
         f"the limit is {MAX_ENCODE_TEXTS}"),
    Case("encode batch_size 0", lambda r: r.encode(["dog"], batch_size=0), None, InputError,
         "batch_size must be between 1"),
    Case("encode empty text in a batch", lambda r: r.encode(["dog", " "]), None, EmptyQueryError,
         "texts[1] is empty"),
    # A19: the command line itself
    Case("unknown flag", None, ("query", "dog", "--bogus"), message="No such option '--bogus'"),
    Case("unknown flag with ESC", None, ("query", "dog", "--\x1b[31m"), message="No such option '--\\x1b[31m'"),
    Case("missing text", None, ("query",), message="Missing argument 'TEXT'"),
    Case("bad device", None, ("query", "dog", "--device", "tpu"), message="'tpu' is not one of"),
]

API_CASES = [c for c in CASES if c.api is not None]
CLI_CASES = [c for c in CASES if c.argv is not None]


@pytest.mark.parametrize("case", API_CASES, ids=[c.name for c in API_CASES])
def test_api(tiny_recommender, case: Case):
    if case.error is None:
        answer = case.api(tiny_recommender)
        assert len(answer) == case.results
        return
    with pytest.raises(case.error, match=re.escape(case.message)) as caught:
        case.api(tiny_recommender)
    assert type(caught.value) is case.error  # the exact class, not a broader one


@pytest.fixture()
def cli(tiny_bundle):
    runner = CliRunner()

    def invoke(argv: tuple[str, ...], stdin: bytes | None):
        return runner.invoke(main, [*argv, "--bundle", str(tiny_bundle)], input=stdin)

    return invoke


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli(cli, case: Case):
    result = cli(case.argv, case.stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "\x1b" not in result.output
    if case.error is None and case.results is not None:
        assert result.exit_code == 0, result.output
        assert len(result.stdout.splitlines()) == case.results
        # Answered; at most a note that the model read no word (emoji, a word longer than WordPiece's limit).
        assert all(line.startswith("edgerec: note: ") for line in result.stderr.splitlines()), result.stderr
        return
    assert result.exit_code == case.exit_code
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgerec: error: "), result.stderr
    assert (case.cli_message or case.message) in lines[0]
    assert result.stdout == ""


def test_every_class_is_covered_both_ways():
    """The table keeps both sides honest: enough cases, and most run through the API and the CLI."""
    both = [c for c in CASES if c.api is not None and c.argv is not None]
    assert len(CASES) >= 40 and len(both) >= 15


# -- the rules behind the table ------------------------------------------------


def test_text_is_cut_at_the_byte_cap_on_a_character_boundary():
    assert len(clean_text("é" * 20_000).encode()) == MAX_TEXT_BYTES  # 2 bytes each: an exact fit
    cut = clean_text("€" * 12_000)  # 3 bytes each: 32768 is not a multiple of 3
    assert cut == "€" * (MAX_TEXT_BYTES // 3) and len(cut.encode()) == MAX_TEXT_BYTES - 2
    assert clean_text("ab" + "😀" * 9_000)[-1] == "😀"  # never half a character
    assert clean_text("dog " * 20_000) == ("dog " * 20_000)[:MAX_TEXT_BYTES].strip()


def test_lone_surrogates_become_the_replacement_character():
    assert clean_text("a\ud800b\udcff") == "a\ufffdb\ufffd"
    assert clean_text("\ud83d\ude00 pair") == "😀 pair"  # a valid pair is its character


def test_a_10_mb_text_costs_what_its_first_32_kib_costs(tiny_recommender, monkeypatch):
    seen: list[int] = []
    encode_one = tiny_recommender.encoder.encode_one
    monkeypatch.setattr(tiny_recommender.encoder, "encode_one", lambda text: seen.append(len(text)) or encode_one(text))
    started = time.perf_counter()
    huge = tiny_recommender.query(TEN_MB, k=5)
    elapsed = time.perf_counter() - started
    assert seen == [len(clean_text(TEN_MB))] and len(clean_text(TEN_MB).encode()) <= MAX_TEXT_BYTES
    assert huge == tiny_recommender.query(TEN_MB[:MAX_TEXT_BYTES], k=5)
    # Raw tokenizers takes 4-8 s and up to 1.3 GB on 10 MB; the cut keeps it to milliseconds.
    assert elapsed < 1.0


def test_invalid_utf8_is_decoded_the_same_from_argv_stdin_and_the_api(cli, tiny_recommender):
    raw = b"caf\xff dog \xe2\x82 night"
    from_argv = cli(("query", raw.decode("utf-8", "surrogateescape"), "--json"), None)
    from_stdin = cli(("query", "-", "--json"), raw)
    assert from_argv.exit_code == 0 and from_argv.stdout == from_stdin.stdout
    api = tiny_recommender.query(raw.decode("utf-8", "replace"))
    assert [r.item_id for r in api] == [json.loads(line)["item_id"] for line in from_stdin.stdout.splitlines()]


def test_a_huge_stdin_is_read_only_up_to_the_cap(cli):
    long_text = ("haunted house " * 100_000).encode()
    assert cli(("query", "-", "--json"), long_text).stdout == cli(
        ("query", "-", "--json"), long_text[:MAX_TEXT_BYTES]
    ).stdout


@pytest.mark.parametrize("text", ["", "   ", ZERO_WIDTH, "\x00\x1b", "\ufffd\ud800"])
def test_empty_text_never_reaches_the_tokenizer_or_the_model(tiny_recommender, monkeypatch, text):
    def refuse(*args: object) -> None:
        raise AssertionError("the encoder was called for an empty text")

    monkeypatch.setattr(tiny_recommender.encoder, "encode_one", refuse)
    with pytest.raises(EmptyQueryError):
        tiny_recommender.query(text)


def test_duplicates_in_a_history_count_once_at_their_latest_position(tiny_recommender, monkeypatch):
    rec = tiny_recommender
    window = rec.bundle.manifest.user.window
    ids = [f"item-{i:03d}" for i in range(window + 1)]
    history = [*ids, ids[0]]  # ids[0] seen first and again last: it is the most recent item
    latest_first = [*ids[1:], ids[0]]
    used: list[list[int]] = []
    user_vector = rec.user_vector
    monkeypatch.setattr(rec, "user_vector", lambda labels: (used.append(list(labels)), user_vector(labels))[1])
    assert rec.recommend(history, k=10) == rec.recommend(latest_first, k=10)
    assert used[0] == [rec.items.labels[i] for i in latest_first]
    # Kept at its first position instead, ids[0] would fall out of the window.
    assert rec.recommend(history, k=10) != rec.recommend(ids, k=10)


def test_only_the_window_of_a_long_history_is_read(tiny_recommender, monkeypatch):
    rec = tiny_recommender
    window = rec.bundle.manifest.user.window
    history = [f"item-{i:03d}" for i in range(ITEMS)] * 50  # 6000 ids, 120 unique
    asked: list[int] = []
    vectors = rec.index.vectors
    monkeypatch.setattr(rec.index, "vectors", lambda labels: (asked.append(len(list(labels))), vectors(labels))[1])
    assert rec.recommend(history, k=5) == []  # every item is in the history, so nothing is left to suggest
    assert asked[0] == window  # the user vector's read (an exact-search fallback may read all, once)
    assert len(rec.recommend(history, k=5, exclude_seen=False)) == 5


def test_k_near_the_item_count_never_leaks_a_hnswlib_error(tiny_recommender, monkeypatch):
    """hnswlib raises RuntimeError when its graph walk finds fewer than k items; the index falls back
    to an exact search, which must agree with brute force."""
    rec = tiny_recommender
    vectors = rec.index.vectors(range(ITEMS))
    query = rec.encode("haunted house")[0]
    exact = np.argsort(-(vectors @ query), kind="stable")
    labels, scores = rec.index._exact_top(query, ITEMS, set())
    assert labels.tolist() == exact.tolist()
    np.testing.assert_allclose(scores, vectors[exact] @ query, atol=1e-6)
    monkeypatch.setattr(index_module, "EXACT_UP_TO", 0)  # through the graph, as a large catalogue is
    for k in (ITEMS - 1, ITEMS):
        assert len({r.item_id for r in rec.query("haunted house", k=k)}) == k


def test_exact_fallback_is_used_when_hnswlib_gives_up(tiny_recommender, monkeypatch):
    rec = tiny_recommender
    monkeypatch.setattr(index_module, "EXACT_UP_TO", 0)  # through the graph, as a large catalogue is
    expected = rec.query("space war", k=10)

    class GivesUp:
        def knn_query(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("Cannot return the results in a contiguous 2D array. Probably ef or M is too small")

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    real = rec.index._graph()
    monkeypatch.setattr(rec.index, "_native", GivesUp())
    fallback = rec.query("space war", k=10)
    # On 120 items hnswlib's search is exact, so the two must agree.
    assert [r.item_id for r in fallback] == [r.item_id for r in expected]
    np.testing.assert_allclose([r.score for r in fallback], [r.score for r in expected], atol=1e-5)


def test_device_not_available_exits_4(tiny_bundle):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(main, ["query", "dog", "--device", "cuda", "--bundle", str(tiny_bundle)])
    assert result.exit_code == 4 and len(result.stderr.splitlines()) == 1
    assert "CPUExecutionProvider" in result.stderr


@pytest.mark.parametrize(("setup", "fragment"), [
    (lambda p: p, "no such bundle directory"),
    (lambda p: (p.write_text("x"), p)[1], "not a directory"),
])
def test_bad_bundle_path_exits_3_in_one_line(tmp_path, setup, fragment):
    path = setup(tmp_path / "b\x1b[2J")
    result = CliRunner().invoke(main, ["similar", "item-001", "--bundle", str(path)])
    assert result.exit_code == 3 and fragment in result.stderr and len(result.stderr.splitlines()) == 1
    assert "\x1b" not in result.output


def test_an_unexpected_library_failure_is_one_line_exit_1(tiny_bundle, monkeypatch):
    """A bug or a native panic must still not print a traceback (exit 1: anything else)."""
    class Panic(BaseException):  # what pyo3's PanicException derives from
        pass

    def panics(self: Recommender, text: str, k: int = 10, *, descriptions: bool = True, filter: object = None) -> None:
        raise Panic("tokenizer panicked")

    monkeypatch.setattr(Recommender, "query", panics)
    result = CliRunner().invoke(main, ["query", "dog", "--bundle", str(tiny_bundle)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr == "edgerec: error: unexpected Panic: tokenizer panicked (please report this)\n"
