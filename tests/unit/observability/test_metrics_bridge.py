"""The forwarding EMF provider: Powertools' stdout output unchanged, plus a copy to the sink.

The sink here is a tiny stdlib HTTP server in the test process that records what it is sent
(the exporter itself is tested on its own, and together with the provider in integration).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from ripple import observability
from ripple.http.instrumentation import UNMATCHED_ROUTE, record_request, route_template
from ripple.observability import NAMESPACE, MetricUnit
from ripple_local.metrics_bridge import DROPPED_HEADER, SINK_ENV, EmfSink, ForwardingEMFProvider, sink_for


@dataclass
class Capture:
    """Every POST body (split into EMF documents) and its headers."""

    url: str
    documents: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def values(self, name: str) -> list[float]:
        return [v for d in self.delivered() if name in d for v in d[name]]

    def delivered(self) -> list[dict[str, Any]]:
        """The documents received, once the process's sink for this URL has sent all it queued."""
        assert sink_for(self.url).flush(5)
        return self.documents


@pytest.fixture
def capture() -> Iterator[Capture]:
    store: Capture

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with store.lock:
                store.headers.append(dict(self.headers))
                store.documents += [json.loads(line) for line in body.splitlines()]
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # many threads flush at once in one test

    server = Server(("127.0.0.1", 0), Handler)
    store = Capture(f"http://127.0.0.1:{server.server_address[1]}/emf")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield store
    server.shutdown()
    server.server_close()


def emf_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_flush_prints_emf_and_forwards_the_same_document(
    capture: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a provider with a sink, and metrics of two units
    provider = ForwardingEMFProvider(namespace=NAMESPACE, service="svc", sink_url=capture.url)
    provider.add_metric(name="PostsCreated", unit=MetricUnit.Count, value=1)
    provider.add_metric(name="PostsCreated", unit=MetricUnit.Count, value=1)
    provider.add_metric(name="FeedLag", unit=MetricUnit.Milliseconds, value=12.5)

    # When the invocation ends
    provider.flush_metrics()

    # Then stdout has Powertools' EMF line, and the sink got that very document
    printed = emf_lines(capsys.readouterr().out)
    assert len(printed) == 1 and capture.delivered() == printed
    document = printed[0]
    assert document["PostsCreated"] == [1.0, 1.0] and document["FeedLag"] == [12.5]
    assert document["service"] == "svc"
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Ripple"
    # and the set is cleared for the next invocation
    assert provider.metric_set == {}


def test_the_100_value_overflow_document_is_forwarded_too(
    capture: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Powertools prints and clears by itself when one metric reaches 100 values (a batch of
    # 100 stream records): those values must not be lost to the exporter.
    provider = ForwardingEMFProvider(namespace=NAMESPACE, sink_url=capture.url)
    for i in range(150):
        provider.add_metric(name="StreamRecordsProcessed", unit=MetricUnit.Count, value=1)
        provider.add_metric(name="FeedLag", unit=MetricUnit.Milliseconds, value=i)
    provider.flush_metrics()

    printed = emf_lines(capsys.readouterr().out)
    assert len(printed) == len(capture.delivered()) == 2  # at the 100th value, and at the flush
    assert sum(capture.values("StreamRecordsProcessed")) == 150
    assert sorted(capture.values("FeedLag")) == [float(i) for i in range(150)]


def test_without_a_sink_only_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(SINK_ENV, raising=False)
    provider = ForwardingEMFProvider(namespace=NAMESPACE)
    assert provider.sink() is None
    provider.add_metric(name="FeedReads", unit=MetricUnit.Count, value=1)
    provider.flush_metrics()
    assert emf_lines(capsys.readouterr().out)[0]["FeedReads"] == [1.0]


def test_the_sink_comes_from_the_environment_at_emission_time(
    capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Built before the variable exists (as a module imported early would be) ...
    provider = ForwardingEMFProvider(namespace=NAMESPACE)
    monkeypatch.setenv(SINK_ENV, capture.url)
    provider.add_metric(name="FeedReads", unit=MetricUnit.Count, value=3)
    provider.flush_metrics()
    # ... it still forwards once the variable is set.
    assert capture.values("FeedReads") == [3.0]


def test_serializing_outside_a_flush_forwards_nothing(capture: Capture) -> None:
    provider = ForwardingEMFProvider(namespace=NAMESPACE, sink_url=capture.url)
    provider.add_metric(name="FeedReads", unit=MetricUnit.Count, value=1)
    provider.serialize_metric_set()  # e.g. a test inspecting the set
    assert capture.delivered() == []


def test_concurrent_adds_and_flushes_lose_nothing(capture: Capture) -> None:
    # Locally, API requests and stream runners are threads sharing one provider.
    provider = ForwardingEMFProvider(namespace=NAMESPACE, sink_url=capture.url)
    threads, per_thread = 8, 60

    def invocation_loop() -> None:
        for _ in range(per_thread):
            provider.add_metric(name="PostsCreated", unit=MetricUnit.Count, value=1)
            provider.flush_metrics()

    # (A flush may find the set already emptied by another thread's: Powertools only warns.)
    workers = [threading.Thread(target=invocation_loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(capture.values("PostsCreated")) == threads * per_thread


def test_a_dead_sink_never_raises_counts_failures_and_reports_them_later(capture: Capture) -> None:
    # Given a sink that nothing listens on
    sink = EmfSink("http://127.0.0.1:9/emf", timeout_s=0.2, attempts=2, retry_delay_s=0.01)
    document = {"_aws": {}, "X": [1.0]}

    # When documents are sent while it is down: queued without waiting, then lost and counted
    assert sink.send([document]) is True
    assert sink.flush(5)
    assert sink.send([document, document]) is True
    assert sink.flush(5)
    assert sink.failures == 3 and sink.sent == 0

    # When the exporter answers again, the next POST reports the loss
    sink.url = capture.url
    sink.send([document])
    assert sink.flush(5)
    assert sink.sent == 1 and capture.headers[-1][DROPPED_HEADER] == "3"
    sink.send([document])
    assert sink.flush(5)
    assert DROPPED_HEADER not in capture.headers[-1]
    assert len(capture.documents) == 2


def test_a_full_queue_drops_and_counts_instead_of_growing(capture: Capture) -> None:
    sink = EmfSink(capture.url, max_queue=0)
    assert sink.send([{"_aws": {}}]) is False
    assert sink.failures == 1


def test_a_provider_with_a_dead_sink_still_prints(capsys: pytest.CaptureFixture[str]) -> None:
    provider = ForwardingEMFProvider(namespace=NAMESPACE, sink_url="http://127.0.0.1:9/emf")
    provider.add_metric(name="FeedReads", unit=MetricUnit.Count, value=1)
    provider.flush_metrics()  # no exception
    assert emf_lines(capsys.readouterr().out)[0]["FeedReads"] == [1.0]


def test_cold_start_goes_through_the_provider(capture: Capture) -> None:
    provider = ForwardingEMFProvider(namespace=NAMESPACE, service="svc", sink_url=capture.url)
    context = type("Context", (), {"function_name": "ripple-api"})()
    provider.add_cold_start_metric(context)
    (document,) = capture.delivered()
    assert document["ColdStart"] == [1.0] and document["function_name"] == "ripple-api"


@pytest.fixture
def forwarding() -> Iterator[None]:
    """The layer's metrics through the forwarding provider, as the local stack installs it."""
    observability.use_provider(ForwardingEMFProvider)
    yield
    observability.use_provider(AmazonCloudWatchEMFProvider)


def test_record_request_is_its_own_document_with_route_method_status(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, forwarding: None
) -> None:
    monkeypatch.setenv(SINK_ENV, capture.url)
    record_request("/posts/{post_id}", "get", 404, 12.345)
    (document,) = capture.delivered()
    assert document["route"] == "/posts/{post_id}"
    assert document["method"] == "GET" and document["status"] == "404"
    assert document["HttpRequests"] == [1.0] and document["HttpRequestDuration"] == [12.345]
    units = {m["Name"]: m["Unit"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units == {"HttpRequests": "Count", "HttpRequestDuration": "Milliseconds"}


def test_record_request_never_raises(capsys: pytest.CaptureFixture[str]) -> None:
    record_request("/feed", "GET", "not a status", 1.0)  # type: ignore[arg-type]


def test_route_template_never_uses_the_raw_path() -> None:
    assert route_template({"resourcePath": "/users/{user_id}/follow", "path": "/users/01J/follow"}) == (
        "/users/{user_id}/follow"
    )
    assert route_template({}) == UNMATCHED_ROUTE
    assert route_template(None) == UNMATCHED_ROUTE


def test_the_layer_emits_plain_powertools_emf_until_a_host_swaps_the_provider(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On AWS nothing calls use_provider: EMF goes to stdout only, even with a sink set."""
    monkeypatch.setenv(SINK_ENV, capture.url)
    assert type(observability.metrics.provider) is AmazonCloudWatchEMFProvider
    record_request("/feed", "GET", 200, 1.0)
    assert capture.delivered() == []
    assert '"HttpRequests"' in capsys.readouterr().out
