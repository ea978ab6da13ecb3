"""`edgerec bench`: structure and sanity of a quick run on the tiny bundle (timings are not asserted)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgerec.tools.bench import BenchConfig
from edgerec.tools.timing import BenchError, Timing, child_env, exact_top_k, first_answer, recall_at_k
from edgerec.cli import main


@pytest.fixture(scope="module")
def quick_report(tiny_bundle) -> dict:
    result = CliRunner().invoke(main, ["bench", "--quick", "--json", "--bundle", str(tiny_bundle)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _ordered(timing: dict) -> bool:
    return 0 < timing["p50_ms"] <= timing["p95_ms"] <= timing["p99_ms"]


def test_quick_json_has_every_section_and_says_how_many_repetitions(quick_report):
    report = quick_report
    assert report["bundle"]["name"] == "tiny" and report["bundle"]["items"] == 120
    assert report["config"] == {**BenchConfig.quick().__dict__}
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    cold = report["cold_start"]
    assert cold["runs"] == 2 and 0 < cold["min_s"] <= cold["median_s"] <= cold["max_s"]
    assert 10 < report["peak_memory"]["median_mb"] <= report["peak_memory"]["max_mb"]


def test_quick_latency_rows_cover_every_workload_at_each_thread_setting(quick_report):
    rows = quick_report["latency"]
    settings = sorted({1, os.cpu_count() or 1})
    workloads = ["query-short", "query-medium", "query-long", "recommend"]
    assert [(r["workload"], r["threads"]) for r in rows] == [(w, t) for w in workloads for t in settings]
    for row in rows:
        assert row["timing"]["samples"] == BenchConfig.quick().rounds
        assert _ordered(row["timing"]), row
    tokens = [int(r["detail"].split()[0]) for r in rows if r["workload"].startswith("query") and r["threads"] == 1]
    assert tokens == sorted(tokens) and tokens[0] < tokens[-1]  # short < medium < long


def test_quick_throughput_and_search_are_sane(quick_report):
    for row in quick_report["throughput"]:
        assert row["items"] == 64 and row["passes"] == 1
        assert row["items_per_second"] > 0
    search = quick_report["search"]
    assert 0.0 <= search["recall_at_k"] <= 1.0 and search["k"] == 10 and search["queries"] == 50
    assert _ordered(search["index"]) and _ordered(search["exact"])
    # 120 items are searched exactly (edgerec.index.searches_exactly): the same answers as numpy's.
    assert search["method"] == "exact" and search["recall_at_k"] == 1.0


def test_table_output_names_the_method(tiny_bundle):
    result = CliRunner().invoke(main, ["bench", "--quick", "--rounds", "5", "--bundle", str(tiny_bundle)])
    assert result.exit_code == 0, result.output
    assert "5 timed rounds after 3 warm-up" in result.stdout
    assert "cold start" in result.stdout and "recall@10" in result.stdout


def test_bench_of_a_missing_bundle_is_a_bundle_error(tmp_path):
    result = CliRunner().invoke(main, ["bench", "--quick", "--bundle", str(tmp_path / "nothing")])
    assert result.exit_code == 3


def test_exact_top_k_and_recall():
    vectors = np.eye(4, dtype=np.float32)
    query = np.array([0.1, 0.9, 0.5, 0.0], dtype=np.float32)
    assert exact_top_k(vectors, query, 3).tolist() == [1, 2, 0]
    assert recall_at_k([1, 2, 3], [1, 2, 0]) == pytest.approx(2 / 3)


def test_timing_percentiles():
    timing = Timing.of([0.001] * 98 + [0.010, 0.020])
    assert timing.samples == 100 and timing.p50_ms == 1.0 and timing.p95_ms == 1.0
    assert 1.0 < timing.p99_ms <= 20.0


def test_first_answer_reports_a_failing_child():
    with pytest.raises(BenchError, match="boom"):
        first_answer([sys.executable, "-c", "import sys; sys.exit('boom')"])
    run = first_answer([sys.executable, "-c", "print('answered', flush=True); print(4)"])
    assert run.seconds > 0 and run.peak_rss_bytes == 4 * (1 if sys.platform == "darwin" else 1024)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_a_child_reports_its_own_peak_not_its_parents():
    """A child's ru_maxrss starts at the parent's RSS; the figure must be the child's own."""
    ballast = np.ones(300 * 2**20 // 8)  # 300 MiB resident in this process
    script = "from edgerec.tools.timing import peak_rss_kib; print('answered', flush=True); print(peak_rss_kib())"
    run = first_answer([sys.executable, "-c", script], env=child_env())
    assert 5e6 < run.peak_rss_bytes < 150e6
    assert ballast[-1] == 1.0


def test_bench_runs_with_torch_unimportable(tiny_bundle):
    """The benchmark is part of the runtime: it must work where torch and transformers cannot be imported."""
    import subprocess
    import textwrap

    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        sys.modules["transformers"] = None
        from edgerec.cli import main
        sys.argv = ["edgerec", "bench", "--quick", "--rounds", "3", "--json", "--bundle", {str(tiny_bundle)!r}]
        main()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=child_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["latency"][0]["timing"]["samples"] == 3
