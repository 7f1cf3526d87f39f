"""The benchmark's smoke mode end to end: ``python -m bench run --smoke`` starts its own local
stack, drives it over HTTP and must write a report with every figure and no lost post."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import FIGURES

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
# About 50 s alone, over 150 s beside other test runs on 2 cores; the cap only stops a hung
# run, far past any slow one (and stays under this test's own pytest-timeout, so the run's
# own output is reported).
SMOKE_TIMEOUT_S = 1100


@pytest.mark.timeout(SMOKE_TIMEOUT_S + 100)
def test_smoke_run_writes_every_figure_and_loses_no_post(tmp_path: Path) -> None:
    # Given a tiny benchmark run into a scratch directory
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
    )

    # Then it succeeds and prints where the report is
    assert done.returncode == 0, done.stderr[-4000:]
    report = Path(done.stdout.strip().splitlines()[-1])
    assert report == tmp_path / "report.md"
    text = report.read_text()

    # ... with every figure, and zero posts never seen
    for figure in FIGURES:
        assert f"## {figure}" in text, f"missing {figure!r}"
    assert "**Posts never seen: 0**" in text
    results = json.loads((tmp_path / "results.json").read_text())
    steps = results["convergence"]
    assert steps and all(step["never_seen"] == 0 for step in steps)
    assert sum(step["pairs"] for step in steps) > 0, "no (post, follower) pair was sampled"
    assert all(step["created"] == step["offered_posts"] for step in steps)
    check = results["convergence_check"]  # every feed, table and cache, matches the truth after the run
    assert check["ok"] and check["differences"] == 0 and check["users_checked"] > 0, check
    assert "`ripple check-convergence` after the run" in text

    # ... and the other figures hold numbers, not placeholders
    assert results["write_path"][0]["posts_per_s"] > 0
    assert results["fanout"]["items_written"] >= results["fanout"]["expected_items"]
    assert results["probe"]["handler_reads"]["reads_per_s"] > 0
    assert results["probe"]["bare_redis_reads"]["reads_per_s"] > 0
    # the replay is of reads the cache answered alone: two round trips each, as the handler's
    assert results["probe"]["bare_redis_reads"]["round_trips"] == 2
    assert results["probe"]["bare_redis_reads"]["misses"] == 0  # every replay was the recorded read
    assert len(results["probe"]["handler_to_bare"]) == results["config"]["probe_windows"]
    imports = results["imports"]["functions"].values()
    assert all(v["import_p50_s"] > 0 for entry in imports for v in _variants(entry))
    assert results["packages"]["layer"]["unzipped"] > 0
    assert results["cost"]["per_million_posts_total"] > 0 and results["cost"]["per_million_reads_total"] > 0
    scaling = results["emulator_references"]["this"]["scaling"]  # figure 7: two table sizes, 10x apart
    assert len(scaling) == 2 and all(
        s[c]["p50"] > 0 for s in scaling.values() for c in ("query", "transaction")
    )
    assert "DynamoDB Local" in text  # the report names the emulator it ran on
    if importlib.util.find_spec("matplotlib") is not None:  # the bench extra draws the plots
        for png in ("convergence_cdf.png", "throughput_vs_offered.png", "fanout_timeline.png"):
            assert (tmp_path / png).stat().st_size > 0


def _variants(entry: dict[str, object]) -> list[dict[str, float]]:
    return [v for v in entry.values() if isinstance(v, dict) and "import_p50_s" in v]
