"""Issue 22's smaller frictions of the CLI: each one as a new user met it, and what it does now."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgerec.cli import _table, main
from edgerec.recommender import Recommendation
from edgerec.tools.progress import StageProgress


@pytest.fixture()
def run(tiny_bundle):
    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(main, [*args, "--bundle", str(tiny_bundle)], input=input, catch_exceptions=False)

    return invoke


def _catalog(path, titles):
    path.write_text("".join(json.dumps({"id": f"m{i}", "title": t}) + "\n" for i, t in enumerate(titles)))
    return str(path)


def test_build_onto_an_existing_bundle_is_bad_input_suggesting_force(run, tmp_path):
    catalog = _catalog(tmp_path / "c.jsonl", ["Dog story", "Space war"])
    assert run("build", catalog, "--out", str(tmp_path / "b")).exit_code == 0
    again = run("build", catalog, "--out", str(tmp_path / "b"))
    assert again.exit_code == 2 and "already exists" in again.output and "--force" in again.output
    assert run("build", catalog, "--out", str(tmp_path / "b"), "--force").exit_code == 0


def test_progress_off_a_terminal_is_whole_lines():
    out = io.StringIO()  # not a TTY, as a log file or a pipe
    with StageProgress(file=out) as progress:
        for done in range(0, 1001, 7):
            progress("checking", done, 1000)
        progress("checking", 1000, 1000)
        progress("encoding", 5, 5)
    lines = out.getvalue().splitlines(keepends=True)
    assert all(line.endswith("\n") for line in lines)
    checking = [line for line in lines if line.startswith("checking ")]
    assert 5 <= len(checking) <= 11 and checking[-1] == "checking 1,000/1,000 done\n"
    assert sum(line.endswith("done\n") for line in checking) == 1  # told twice that it is done: said once
    assert lines[-1] == "encoding 5/5 done\n" and "\r" not in out.getvalue()


@pytest.mark.parametrize(("line", "expected"), [
    ('{"id": "b", "title": "unfinished\n', "line 2 is not valid JSON: Unterminated string starting at column 22"),
    ('{"id": "b", "title": \n', "line 2 is not valid JSON: Expecting value at column 22"),
])
def test_a_broken_json_line_is_named_with_the_whole_reason(run, tmp_path, line, expected):
    catalog = tmp_path / "bad.jsonl"
    catalog.write_text('{"id": "a", "title": "x"}\n' + line)
    result = run("build", str(catalog), "--out", str(tmp_path / "b"))
    assert result.exit_code == 2 and expected in result.output


@pytest.mark.parametrize(("empty", "expected"), [(1, "1 item has no text"), (2, "2 items have no text")])
def test_items_without_text_are_counted_in_good_english(run, tmp_path, empty, expected):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"id": "a", "title": "Dog story"}) + "\n"
                       + "".join(json.dumps({"id": f"e{i}", "title": ""}) + "\n" for i in range(empty)))
    result = run("build", str(catalog), "--out", str(tmp_path / "b"), "--text-fields", "title")
    assert result.exit_code == 2 and expected in result.output


def test_info_sums_up_the_provenance_unless_verbose(run):
    short, verbose = run("info").output, run("info", "--verbose").output
    assert "teacher: tiny-bert" not in short and "--verbose" in short
    assert "teacher: tiny-bert" in verbose and len(verbose.splitlines()) > len(short.splitlines())


def test_table_columns_line_up():
    found = [Recommendation("a", 0.9, {"title": "Up", "year": 2009, "genres": ["Animation"]}),
             Recommendation("b", 0.8, {"title": "The Lord of the Rings", "year": 2001, "genres": ["Fantasy"]}),
             Recommendation("c", 0.7, {"title": "千と千尋の神隠し", "year": 2001, "genres": ["Animation"]}),
             Recommendation("d", 0.6, {"title": "No year"})]
    lines = _table([[f"{i:>3}", f"{r.score:6.3f}"] for i, r in enumerate(found, 1)], found)
    starts = [line.index(str(r.metadata["year"])) for line, r in zip(lines, found[:2])]
    assert starts[0] == starts[1] and lines[3].endswith("No year  [d]")
    # The CJK title takes two columns a character: its year lines up on screen, not by character count.
    assert lines[2].index("2001") == starts[0] - len("千と千尋の神隠し")


def test_a_reader_that_stops_early_is_no_error(tiny_bundle):
    """`edgerec query ... | head -1`: the pipe closes before edgerec has printed everything."""
    proc = subprocess.Popen([sys.executable, "-m", "edgerec", "query", "dog", "-k", "120", "--bundle",
                             str(tiny_bundle)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # gone before edgerec writes its first line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and stderr == ""


def test_build_reads_a_catalogue_from_stdin(run, tmp_path):
    lines = "".join(json.dumps({"id": f"m{i}", "title": t}) + "\n"
                    for i, t in enumerate(["A dog finds its way home", "A war among the stars"]))
    built = run("build", "-", "--out", str(tmp_path / "b"), input=lines)
    assert built.exit_code == 0 and "2 items" in built.output, built.output
    answer = CliRunner().invoke(main, ["items", "search", "dog finds", "-k", "1", "--json", "--bundle",
                                       str(tmp_path / "b")])
    assert json.loads(answer.output)["item_id"] == "m0"
