"""Metrics from a scripted scenario, read back the way Prometheus would.

Ripple's own code runs on the session's real emulator and Redis: services called inside
Powertools' ``log_metrics`` (as every function's handler is), the real stream handlers
delivered by the local runners. The exporter is the local stack's own, started on the
session stack for this module; its ``/metrics`` is scraped over HTTP and parsed with
Prometheus' parser, and the numbers must match what happened.
"""

from __future__ import annotations

import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ripple.container import Container
from ripple.http.instrumentation import record_request
from ripple.observability import NAMESPACE, MetricUnit, metrics
from ripple_local.metrics_bridge import ForwardingEMFProvider, sink_for
from ripple_local.metrics_exporter import MetricsExporter
from ripple_local.stack import LocalStack

pytestmark = pytest.mark.integration

T = TypeVar("T")


class Scrape:
    """One scrape of ``/metrics`` (once everything this process queued for it was delivered):
    sums of samples by name and (some) labels."""

    def __init__(self, exporter: MetricsExporter) -> None:
        assert sink_for(exporter.sink_url).flush(10)
        with urllib.request.urlopen(exporter.url, timeout=5) as response:
            text = response.read().decode()
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def total(self, name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


@pytest.fixture
def exporter(stack: LocalStack) -> Iterator[MetricsExporter]:
    """The stack's exporter, fresh, with nothing left over from earlier tests counted."""
    stack.drain()  # records other tests left on the streams are not this test's
    metrics.clear_metrics()  # nor are metrics their direct service calls left unflushed
    exporter = stack.start_metrics(port=0)
    yield exporter
    stack.stop_metrics()


def invoke(work: Callable[[], T]) -> T:
    """Run ``work`` as one Lambda invocation: Powertools flushes its metrics at the end."""
    results: list[T] = []

    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        results.append(work())

    handler({}, None)
    return results[0]


def in_threads(jobs: list[Callable[[], Any]]) -> None:
    """Run the jobs at the same time, one thread each (concurrent invocations)."""
    start = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job: Callable[[], Any]) -> None:
        start.wait()
        try:
            job()
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


def signup(container: Container, name: str) -> str:
    session = invoke(lambda: container.accounts.signup(f"{name}_{uuid.uuid4().hex[:8]}", "password123"))
    return session.user.user_id


def test_scraped_metrics_match_the_scenario(
    stack: LocalStack, container: Container, exporter: MetricsExporter
) -> None:
    # Given two authors, A with three followers and B with one
    a, b = signup(container, "ma"), signup(container, "mb")
    followers = [signup(container, f"mf{i}") for i in range(3)]
    follows = [(f, a) for f in followers] + [(followers[0], b)]
    for follower, followee in follows:
        invoke(
            lambda follower=follower, followee=followee: container.follow_service.follow(follower, followee)
        )
    stack.drain()
    # and every follower has read (and so cached) their still-empty feed
    for f in followers:
        invoke(lambda f=f: container.feed_reader.home(f, 20))

    # When A posts twice and B once, each post its own concurrent invocation
    posts = [a, a, b]
    in_threads(
        [
            lambda author=author: invoke(lambda: container.post_service.create(author, "hi"))
            for author in posts
        ]
    )
    # and the streams are delivered (fan-out, then the cache refresher)
    stack.drain()
    # and every follower reads again, all at once
    in_threads([lambda f=f: invoke(lambda: container.feed_reader.home(f, 20)) for f in followers])
    scrape = Scrape(exporter)

    # Then the business counters say what happened
    assert scrape.total("ripple_users_signed_up_total") == 5
    assert scrape.total("ripple_follows_created_total") == len(follows)
    assert scrape.total("ripple_posts_created_total") == len(posts)
    # fan-out wrote (and counted) one item per follower per post; the author's own item,
    # written by the post itself, is rewritten by fan-out but not counted as fan-out work
    follower_counts = {a: 3, b: 1}
    fanned_out = sum(follower_counts[author] for author in posts)
    assert scrape.total("ripple_fanout_items_written_total") == fanned_out
    assert scrape.total("ripple_fanout_items_per_post_count") == len(posts)
    assert scrape.total("ripple_fanout_items_per_post_sum") == fanned_out
    # every feed read was a cache hit or a miss
    reads = 2 * len(followers)
    assert scrape.total("ripple_feed_reads_total") == reads
    assert (
        scrape.total("ripple_feed_cache_hits_total") + scrape.total("ripple_feed_cache_misses_total") == reads
    )
    assert scrape.total("ripple_feed_cache_hits_total") == len(followers)  # the second reads
    # feed lag was observed once per new feed item (followers' and authors'), in seconds
    new_items = fanned_out + len(posts)
    assert scrape.total("ripple_feed_lag_seconds_count") == new_items
    assert 0 < scrape.total("ripple_feed_lag_seconds_sum") < 30 * new_items
    # the runners delivered what the handlers processed, with an iterator age for each record
    delivered = scrape.total("ripple_stream_records_delivered_total")
    assert delivered > 0
    assert scrape.total("ripple_stream_records_processed_total") == delivered
    assert scrape.total("ripple_stream_records_failed_total") == 0
    assert scrape.total("ripple_stream_iterator_age_seconds_count") == delivered
    assert scrape.total("ripple_stream_records_delivered_total", function="FanoutFunction") > 0
    assert "PostsStream" in scrape.label_values("ripple_stream_records_delivered_total", "event_source")
    # and nothing was lost on the way to the exporter
    assert scrape.total("ripple_metrics_sink_dropped_documents_total") == 0
    assert scrape.total("ripple_exporter_emf_rejected_total") == 0


def test_concurrent_requests_and_containers_add_up(exporter: MetricsExporter) -> None:
    # Given four threads recording 25 requests each (as concurrent API invocations would) ...
    def requests() -> None:
        for i in range(25):
            record_request("/posts/{post_id}", "GET", 200 if i % 5 else 404, 3.0)

    # ... and two separate providers, as two Lambda containers each flushing their own counts
    def container() -> None:
        provider = ForwardingEMFProvider(namespace=NAMESPACE)
        for _ in range(20):
            provider.add_metric(name="LikesCreated", unit=MetricUnit.Count, value=1)
            provider.flush_metrics()

    # When they all run at once
    in_threads([requests] * 4 + [container] * 2)

    # Then every count is there: summed, never overwritten
    scrape = Scrape(exporter)
    route = {"route": "/posts/{post_id}", "method": "GET"}
    assert scrape.total("ripple_http_requests_total", **route) == 100
    assert scrape.total("ripple_http_requests_total", status="404", **route) == 20
    assert scrape.total("ripple_http_request_duration_seconds_count", **route) == 100
    assert scrape.total("ripple_likes_created_total") == 40
