"""The report renders without matplotlib (``make test`` installs the dev extra only; plots
need the bench extra): a fresh clone's ``make test`` failed on it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench.config import REPO_ROOT, BenchConfig
from bench.cost import KEYS, Pricing, away_and_ttl, front_doors
from bench.report import render


def test_the_committed_results_render_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    results = json.loads((REPO_ROOT / "bench" / "results.json").read_text())
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in results["config"].items()}
    report = render(results, BenchConfig(**{**config, "out_dir": tmp_path})).read_text()
    assert "## Headline numbers" in report and ".png" not in report
    assert "| HTTP API (ApiType=HTTP) | $1.00 |" in report
    assert not list(tmp_path.glob("*.png"))


def test_either_front_door_costs_the_estimate_with_api_gateway_repriced() -> None:
    # Given the committed run's cost estimate (recorded before the HTTP API price was)
    cost = json.loads((REPO_ROOT / "bench" / "results.json").read_text())["cost"]
    doors = front_doors(cost)
    # Then REST is the estimate itself, and the HTTP API saves the price difference per request
    assert (doors["REST"]["price"], doors["HTTP"]["price"]) == (3.50, 1.00)  # us-east-1 list prices
    for kind in ("post", "read"):
        rest, http = doors["REST"][f"{kind}s"], doors["HTTP"][f"{kind}s"]
        assert rest == pytest.approx(cost[f"per_million_{kind}s_total"])
        requests = cost[f"per_{kind}_quantities"]["apigw_requests"]
        assert rest - http == pytest.approx(2.50 * requests)


def test_skipping_readers_who_are_away_saves_their_share_of_every_per_follower_cost_but_reads() -> None:
    pricing = Pricing()
    fits = {k: (0.0, 0.0) for k in KEYS} | {"wru": (5.0, 1.0), "rru": (3.0, 0.5)}
    away = away_and_ttl(fits, pricing, 0.0, [10, 30, 10_000], threshold=1000)  # 10_000: pulled
    # half of a 20-follower pushed audience skipped: 10 write units a post, the reads unchanged
    assert away["saved_per_million_posts"] == pytest.approx(10 * pricing.dynamodb_per_million_wru)
    assert away["gb_without_ttl"] == pytest.approx(away["gb_with_ttl"] * 365 / away["ttl_days"])
