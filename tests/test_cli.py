"""The `edgerec` CLI: output formats, stdin, build, info, and errors as one line + exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgerec.cli import main


@pytest.fixture()
def run(tiny_bundle):
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None, bundle: bool = True):
        argv = [*args, "--bundle", str(tiny_bundle)] if bundle else list(args)
        return runner.invoke(main, argv, input=input, catch_exceptions=False)

    return invoke


def test_query_prints_a_ranked_table(run):
    result = run("query", "space alien robot", "-k", "4")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 4 and [line.split()[0] for line in lines] == ["1", "2", "3", "4"]
    assert "item-" in lines[0]


def test_query_json_lines(run):
    result = run("query", "love story", "--json", "-k", "3")
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 3 and {"item_id", "score", "title", "year", "genres"} <= set(rows[0])
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]


def test_query_text_from_stdin_matches_argument(run):
    from_stdin = run("query", "-", "--json", input="haunted house\n").output
    assert from_stdin == run("query", "haunted house", "--json").output


def test_similar_and_recommend(run):
    similar = [json.loads(x)["item_id"] for x in run("similar", "item-005", "--json").output.splitlines()]
    assert len(similar) == 10 and "item-005" not in similar
    result = run("recommend", "item-001", "item-002", "--json", "-k", "5")
    recommended = [json.loads(x)["item_id"] for x in result.output.splitlines()]
    assert len(recommended) == 5 and not {"item-001", "item-002"} & set(recommended)


def test_info_lists_files_provenance_and_providers(run, tiny_bundle):
    result = run("info", "--verbose")
    assert result.exit_code == 0
    for fragment in ("tiny", "encoder.onnx", "index.hnsw", "teacher: tiny-bert", "CPUExecutionProvider"):
        assert fragment in result.output
    body = json.loads(run("info", "--json").output)
    assert body["manifest"]["items"]["count"] == 120 and "CPUExecutionProvider" in body["providers"]


def test_bundle_from_environment_variable(tiny_bundle):
    result = CliRunner().invoke(main, ["query", "dog", "-k", "1"], env={"EDGEREC_BUNDLE": str(tiny_bundle)})
    assert result.exit_code == 0 and result.output.startswith("  1")


def test_build_writes_a_bundle_that_answers(run, tmp_path):
    catalog = tmp_path / "mine.jsonl"
    catalog.write_text("\n".join(json.dumps({"id": f"m{i}", "title": t, "genres": ["Drama"]})
                                 for i, t in enumerate(["Dog story", "Space war", "Night city", "Sea ship"])))
    result = run("build", str(catalog), "--out", str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert "4 items" in result.output
    answered = CliRunner().invoke(main, ["similar", "m0", "--bundle", str(tmp_path / "b"), "--json"])
    assert len(answered.output.splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["query", ""], 2, "empty"),
        (["query", "   "], 2, "empty"),
        (["query", "dog", "-k", "0"], 2, "-k"),
        (["query", "dog", "-k", "abc"], 2, "-k"),
        (["similar", "no-such-item"], 2, "unknown item id 'no-such-item'"),
        (["recommend", "item-001", "nope"], 2, "unknown item id 'nope'"),
        (["query", "dog", "--device", "tpu"], 2, "--device"),
        (["query", "dog", "--bogus"], 2, "--bogus"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(run, args, code, fragment):
    result = run(*args)
    assert result.exit_code == code
    assert fragment in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda p: p, "no such bundle directory"),
        (lambda p: (p.mkdir(), p)[1], "not an edgerec bundle"),
        (lambda p: (p.write_text("x"), p)[1], "not a directory"),
    ],
)
def test_bad_bundle_exits_3(tmp_path, setup, fragment):
    path = setup(tmp_path / "b")
    result = CliRunner().invoke(main, ["query", "dog", "--bundle", str(path)])
    assert result.exit_code == 3 and fragment in result.output and "Traceback" not in result.output


def test_damaged_bundle_names_the_file(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    data = bytearray((copy / "encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "encoder.onnx").write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["query", "dog", "--bundle", str(copy)])
    assert result.exit_code == 3 and "encoder.onnx" in result.output and "sha256" in result.output


def test_build_refuses_broken_catalogue_naming_the_line(run, tmp_path):
    catalog = tmp_path / "bad.jsonl"
    catalog.write_text('{"id": "a", "title": "x"}\n{"id": "b", "title": \n')
    result = run("build", str(catalog), "--out", str(tmp_path / "b"))
    assert result.exit_code == 2 and "line 2" in result.output and not (tmp_path / "b").exists()


def test_control_characters_are_never_printed_raw(run, tmp_path):
    catalog = tmp_path / "evil.jsonl"
    catalog.write_text(json.dumps({"id": "e1", "title": "dog \x1b[31mred\x1b[0m \x07"}) + "\n"
                       + json.dumps({"id": "e2", "title": "cat"}) + "\n")
    assert run("build", str(catalog), "--out", str(tmp_path / "b")).exit_code == 0
    result = CliRunner().invoke(main, ["query", "dog", "--bundle", str(tmp_path / "b")])
    assert "\x1b" not in result.output and "\x07" not in result.output and "\\x1b" in result.output
    error = CliRunner().invoke(main, ["similar", "\x1b[2J", "--bundle", str(tmp_path / "b")])
    assert error.exit_code == 2 and "\x1b" not in error.output


def test_invalid_utf8_argument_in_a_real_process(tiny_bundle):
    """argv bytes that are not UTF-8 arrive as lone surrogates; they must not crash the tokenizer."""
    done = subprocess.run(
        [sys.executable, "-m", "edgerec", "query", b"caf\xff dog", "--bundle", str(tiny_bundle), "-k", "2"],
        capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert len(done.stdout.decode().splitlines()) == 2


def test_help_and_version():
    runner = CliRunner()
    assert "edgerec query" in runner.invoke(main, ["--help"]).output
    assert runner.invoke(main, ["--version"]).output.startswith("edgerec, version")
