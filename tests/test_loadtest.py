"""`edgerec loadtest` on the tiny bundle, with tiny numbers: its report, and that it fails when it should."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

import edgerec.cli
from edgerec import Recommender
from edgerec.cli import main
from edgerec.tools.loadtest import build_workload, rss_mb, run_loadtest


def test_loadtest_reports_every_thread_count(tiny_bundle):
    result = CliRunner().invoke(main, ["loadtest", "--threads", "1,3", "--queries", "30", "--warmup", "10",
                                       "--json", "--bundle", str(tiny_bundle)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["items"] == 120
    assert sum(report["workload"].values()) == 200
    assert [run["threads"] for run in report["runs"]] == [1, 3]
    for run in report["runs"]:
        assert run["calls"] == 30 * run["threads"]
        assert run["unexpected_errors"] == 0 and run["mismatches"] == 0
        assert run["expected_errors"] > 0  # the seeded mix holds refused inputs, and they were refused
        assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"] <= run["max_ms"]
        assert run["qps"] > 0 and run["rss_start_mb"] > 0 and run["rss_end_mb"] > 0


def test_loadtest_table_for_people(tiny_bundle):
    result = CliRunner().invoke(main, ["loadtest", "--threads", "2", "--queries", "10", "--warmup", "0",
                                       "--bundle", str(tiny_bundle)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bundle tiny: 120 items") and "p99 ms" in lines[2]
    assert lines[3].split()[:2] == ["2", "20"]


def test_workload_mix_is_seeded_and_about_a_tenth_bad(tiny_recommender):
    kinds = [call.kind for call in build_workload(tiny_recommender, 400, seed=3)]
    assert kinds == [call.kind for call in build_workload(tiny_recommender, 400, seed=3)]
    bad = sum(kind.startswith(("bad:", "edge:")) for kind in kinds)
    items = sum(kind in ("similar", "recommend") for kind in kinds)
    assert 20 <= bad <= 60 and 20 <= items <= 60
    assert {"bad:empty", "bad:unknown-id", "edge:huge-text", "edge:surrogates"} <= set(kinds)


class _AnswersDifferentlyOffTheMainThread(Recommender):
    """A deliberately broken Recommender: `similar` reverses its answer when called from a worker thread."""

    def similar(self, item_id: str, k: int = 10) -> list:
        results = super().similar(item_id, k)
        return results if threading.current_thread() is threading.main_thread() else results[::-1]


class _FailsOffTheMainThread(Recommender):
    def query(self, text: str, k: int = 10) -> list:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("simulated crash in a worker")
        return super().query(text, k)


def _as(cls: type[Recommender], rec: Recommender) -> Recommender:
    return cls(rec.bundle, rec.encoder, rec.index, rec.items)


def test_mismatches_against_one_thread_fail_the_cli(tiny_recommender, monkeypatch):
    broken = _as(_AnswersDifferentlyOffTheMainThread, tiny_recommender)
    monkeypatch.setattr(edgerec.cli.Recommender, "load", classmethod(lambda cls, *a, **kw: broken))
    result = CliRunner().invoke(main, ["loadtest", "--threads", "2", "--queries", "60", "--warmup", "0"])
    assert result.exit_code == 1
    assert result.stderr.startswith("edgerec: error: loadtest failed: 0 unexpected errors, ")
    assert "answer differs from the single-thread one" in result.stdout


def test_unexpected_errors_are_counted_with_examples(tiny_recommender):
    report = run_loadtest(_as(_FailsOffTheMainThread, tiny_recommender), threads=[2], queries=20, warmup=0)
    run = report.runs[0]
    assert not report.ok and run.unexpected_errors > 0 and run.mismatches == 0
    assert any("RuntimeError: simulated crash in a worker" in problem for problem in run.problems)


@pytest.mark.parametrize("value", ["0", "abc", "", "1,,x", "300"])
def test_bad_thread_counts_exit_2(tiny_bundle, value):
    result = CliRunner().invoke(main, ["loadtest", "--threads", value, "--bundle", str(tiny_bundle)])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and "--threads" in result.stderr


def test_rss_is_read_on_linux():
    value, source = rss_mb()
    assert source == "VmRSS" and value is not None and 10 < value < 100_000
