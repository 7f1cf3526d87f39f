"""Metrics end to end: ``python -m ripple_local up --metrics-port P`` as a real subprocess,
driven over HTTP, then ``/metrics`` scraped as Prometheus would.

This module runs its own stack (about two seconds to start) rather than the session's, so
it can choose the metrics port and count from zero.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.client import MEASUREMENTS, Api

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0  # a hang guard: the waits end at the first success


@dataclass
class MeteredStack:
    api: Api
    metrics_url: str
    log: Path

    def scrape(self) -> dict[str, float]:
        """Sample values summed over labels, by sample name."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals

    def wait_for(
        self, ready: Callable[[dict[str, float]], bool], within_s: float = DEADLINE_S
    ) -> dict[str, float]:
        """Scrape until ``ready`` holds: functions flush when their invocation ends, and the
        stack's sink thread delivers shortly after."""
        deadline = time.monotonic() + within_s
        while True:
            values = self.scrape()
            if ready(values) or time.monotonic() > deadline:
                return values
            time.sleep(0.1)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeteredStack]:
    state = tmp_path_factory.mktemp("metered")
    api_port, metrics_port = _free_port(), _free_port()
    cmd = [
        sys.executable, "-m", "ripple_local", "up",
        "--api-port", str(api_port),
        "--emulator-port", str(_free_port()),
        "--dynamodb-port", str(_free_port()),
        "--redis-port", str(_free_port()),
        "--metrics-port", str(metrics_port),
        "--state-dir", str(state),
        "--stack-name", "ripple-metrics",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers/ripple"), str(ROOT / "infra/local")]),
    }
    log_path = state / "stack.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        api = Api(f"http://127.0.0.1:{api_port}")
        deadline = time.monotonic() + 120
        while "Press Ctrl-C" not in log_path.read_text(errors="replace"):  # API and runners are up
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"local stack did not come up:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.1)
        try:
            yield MeteredStack(api, f"http://127.0.0.1:{metrics_port}/metrics", log_path)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_summary_names_the_metrics_endpoint(metered: MeteredStack) -> None:
    status_table = metered.log.read_text()
    assert any(line.split()[:2] == ["metrics", metered.metrics_url] for line in status_table.splitlines()), (
        status_table
    )


def test_a_scenario_over_http_is_counted(metered: MeteredStack) -> None:
    api = metered.api
    # Given an author with two followers, whose (empty) feeds are cached by a first read
    author, f1, f2 = api.signup("ea"), api.signup("ef"), api.signup("ef")
    for follower in (f1, f2):
        response = api.call("POST", f"/users/{author['user_id']}/follow", follower["token"])
        assert response.status_code == 200, response.text
        api.feed(follower["token"])

    # When the author posts twice and both followers' feeds converge
    started = time.monotonic()
    posted = []
    for i in range(2):
        response = api.call("POST", "/posts", author["token"], json={"text": f"metered {i}"})
        assert response.status_code == 201, response.text
        posted.append(response.json()["post_id"])
    for follower in (f1, f2):
        while not set(posted) <= {item["post_id"] for item in api.feed(follower["token"])["items"]}:
            assert time.monotonic() - started < DEADLINE_S, "posts did not reach the followers"
            time.sleep(0.05)

    # Then the scraped metrics say what happened: 2 posts x 2 followers fanned out, and
    # 6 new feed items (the followers' and the author's own) whose lag was measured
    expected = {
        "ripple_users_signed_up_total": 3,
        "ripple_follows_created_total": 2,
        "ripple_posts_created_total": 2,
        "ripple_fanout_items_written_total": 4,
        "ripple_fanout_items_per_post_count": 2,
        "ripple_feed_lag_seconds_count": 6,
    }
    values = metered.wait_for(lambda v: all(v.get(name) == n for name, n in expected.items()))
    assert {name: values.get(name) for name in expected} == expected
    assert (
        values["ripple_feed_cache_hits_total"] + values["ripple_feed_cache_misses_total"]
        == (values["ripple_feed_reads_total"])
    )
    assert values["ripple_stream_records_processed_total"] > 0
    assert values["ripple_stream_iterator_age_seconds_count"] > 0
    assert values.get("ripple_stream_records_failed_total", 0) == 0
    assert values.get("ripple_metrics_sink_dropped_documents_total", 0) == 0
    lag = values["ripple_feed_lag_seconds_sum"] / values["ripple_feed_lag_seconds_count"]
    MEASUREMENTS.append(f"feed lag from /metrics (6 feed items): mean {lag * 1000:.0f} ms")


def test_requests_are_counted_by_route_template(metered: MeteredStack) -> None:
    user = metered.api.signup("er")
    assert metered.api.call("GET", f"/users/{user['user_id']}", user["token"]).status_code == 200
    assert metered.api.call("GET", "/posts/01JDQ7Z8M3K2P4R6T8V0W2X4Y6", user["token"]).status_code == 404
    # The counts arrive after the responses (the stack's sink thread delivers them): wait for
    # these routes' own samples, not for a total earlier tests already pushed past any bound
    wanted = {"/auth/signup", "/users/{user_id}", "/posts/{post_id}"}
    deadline = time.monotonic() + DEADLINE_S
    while True:
        with urllib.request.urlopen(metered.metrics_url, timeout=5) as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
        samples = families["ripple_http_requests"].samples if "ripple_http_requests" in families else []
        routes = {s.labels.get("route") for s in samples}
        if wanted <= routes or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert wanted <= routes
    assert all("01J" not in str(s.labels) for s in samples)  # no ids as labels
