"""EMF -> Prometheus in the local exporter: units, names, labels, and the HTTP surface."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ripple_local import metrics_bridge
from ripple_local.metrics_exporter import EmfTranslator, MetricsExporter, snake_case


def emf(
    metrics: Mapping[str, tuple[str, Any]],
    dimensions: Mapping[str, str] | None = None,
    namespace: str = "Ripple",
) -> dict[str, Any]:
    """An EMF document as Powertools writes it: {name: (unit, values)}."""
    dims = dict(dimensions or {})
    return {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dims)],
                    "Metrics": [{"Name": n, "Unit": unit} for n, (unit, _) in metrics.items()],
                }
            ],
        },
        **dims,
        **{n: values for n, (_, values) in metrics.items()},
    }


def samples(exposition: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text exposition, keyed by (name, sorted labels)."""
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(translator: EmfTranslator, name: str, **labels: str) -> float:
    return samples(translator.exposition())[(name, tuple(sorted(labels.items())))]


@pytest.mark.parametrize(
    ("emf_name", "snake"),
    [
        ("FeedCacheHits", "feed_cache_hits"),
        ("PostsCreated", "posts_created"),
        ("TTLExpired", "ttl_expired"),
        ("HttpRequestDuration", "http_request_duration"),
        ("Stream2Records", "stream2_records"),
        ("already_snake", "already_snake"),
    ],
)
def test_snake_case(emf_name: str, snake: str) -> None:
    assert snake_case(emf_name) == snake


def test_counts_add_up_across_documents() -> None:
    translator = EmfTranslator()
    translator.ingest(emf({"PostsCreated": ("Count", [1.0, 1.0])}, {"service": "api"}))
    translator.ingest(emf({"PostsCreated": ("Count", 3)}, {"service": "api"}))
    assert value(translator, "ripple_posts_created_total", service="api") == 5.0


def test_milliseconds_become_a_seconds_histogram_with_every_value_observed() -> None:
    translator = EmfTranslator()
    translator.ingest(emf({"FeedLag": ("Milliseconds", [40.0, 300.0, 1500.0])}))
    assert value(translator, "ripple_feed_lag_seconds_count") == 3
    assert value(translator, "ripple_feed_lag_seconds_sum") == pytest.approx(1.84)
    assert value(translator, "ripple_feed_lag_seconds_bucket", le="0.05") == 1
    assert value(translator, "ripple_feed_lag_seconds_bucket", le="0.5") == 2
    assert value(translator, "ripple_feed_lag_seconds_bucket", le="+Inf") == 3


def test_seconds_stay_seconds_and_other_units_become_gauges() -> None:
    translator = EmfTranslator()
    translator.ingest(emf({"ColdInit": ("Seconds", [0.2]), "QueueDepth": ("None", [4.0, 7.0])}))
    assert value(translator, "ripple_cold_init_seconds_sum") == pytest.approx(0.2)
    assert value(translator, "ripple_queue_depth") == 7.0  # last value wins


def test_fanout_items_are_also_a_histogram_of_items_per_post() -> None:
    # Powertools keeps each add_metric value, one per fanned-out post.
    translator = EmfTranslator()
    translator.ingest(emf({"FanoutItemsWritten": ("Count", [1.0, 4.0, 120.0])}))
    assert value(translator, "ripple_fanout_items_written_total") == 125
    assert value(translator, "ripple_fanout_items_per_post_count") == 3
    assert value(translator, "ripple_fanout_items_per_post_bucket", le="5.0") == 2


def test_only_allowed_dimensions_become_labels_and_ids_are_masked() -> None:
    translator = EmfTranslator()
    translator.ingest(
        emf(
            {"HttpRequests": ("Count", [1.0])},
            {
                "service": "api",
                "route": "/posts/01JDQ7Z8M3K2P4R6T8V0W2X4Y6",  # a raw path slipped through
                "method": "GET",
                "status": "200",
                "user_id": "01JDQ0000000000000000AAAAA",  # never a label
            },
        )
    )
    (labels,) = [dict(k[1]) for k in samples(translator.exposition()) if k[0] == "ripple_http_requests_total"]
    assert labels == {"service": "api", "route": "/posts/{id}", "method": "GET", "status": "200"}


def test_label_names_are_fixed_by_the_first_document() -> None:
    translator = EmfTranslator()
    translator.ingest(emf({"FeedReads": ("Count", [1.0])}, {"service": "api"}))
    translator.ingest(emf({"FeedReads": ("Count", [2.0])}))  # no service: filled with ""
    translator.ingest(emf({"FeedReads": ("Count", [4.0])}, {"service": "api", "route": "/feed"}))
    assert value(translator, "ripple_feed_reads_total", service="api") == 5.0
    assert value(translator, "ripple_feed_reads_total", service="") == 2.0


def test_malformed_input_is_rejected_and_counted() -> None:
    translator = EmfTranslator()
    with pytest.raises(ValueError):
        translator.ingest({"not": "emf"})
    translator.ingest(emf({"PostsCreated": ("Count", ["many"])}))  # one bad metric, rest kept
    translator.ingest(emf({"PostsCreated": ("Count", [-1.0])}))  # counters cannot go down
    translator.ingest(emf({"QueueDepth": ("None", [1.0])}))
    translator.ingest(emf({"QueueDepth": ("Count", [1.0])}))  # a gauge of that name exists
    assert value(translator, "ripple_exporter_emf_rejected_total") == 3


@pytest.fixture
def exporter() -> Iterator[MetricsExporter]:
    with MetricsExporter(port=0) as running:
        yield running


def post(url: str, body: bytes, headers: Mapping[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status), response.headers["Content-Type"], response.read().decode()


def ndjson(documents: Sequence[Mapping[str, Any]]) -> bytes:
    import json

    return "\n".join(json.dumps(d) for d in documents).encode()


def test_http_emf_in_prometheus_text_out(exporter: MetricsExporter) -> None:
    documents = [emf({"PostsCreated": ("Count", [1.0])}), emf({"PostsCreated": ("Count", [1.0, 1.0])})]
    assert post(exporter.sink_url, ndjson(documents), {metrics_bridge.DROPPED_HEADER: "2"}) == 204

    status, content_type, text = get(exporter.url)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    values = samples(text)  # parses: valid exposition
    assert values[("ripple_posts_created_total", ())] == 3.0
    assert values[("ripple_metrics_sink_dropped_documents_total", ())] == 2.0
    assert values[("ripple_exporter_emf_documents_total", ())] == 2.0


def test_http_rejects_junk_and_unknown_paths(exporter: MetricsExporter) -> None:
    assert post(exporter.sink_url, b"{not json\n") == 400
    assert post(exporter.sink_url.replace("/emf", "/push"), b"{}") == 404
    assert samples(get(exporter.url)[2])[("ripple_exporter_emf_rejected_total", ())] == 1.0


def test_stream_runner_observer_reports_into_the_same_registry(exporter: MetricsExporter) -> None:
    observer = exporter.stream_observer("FanoutFunction", "PostsStream")
    observer.delivered(3, [20.0, 40.0, 2500.0])
    observer.retried(2)
    observer.bisected()
    observer.gave_up(1, sent_to_failure_queue=True)
    observer.gave_up(4, sent_to_failure_queue=False)
    observer.poll_failed()
    labels = (("event_source", "PostsStream"), ("function", "FanoutFunction"))
    values = samples(get(exporter.url)[2])
    assert values[("ripple_stream_records_delivered_total", labels)] == 3
    assert values[("ripple_stream_iterator_age_seconds_count", labels)] == 3
    assert (
        values[
            (
                "ripple_stream_iterator_age_seconds_bucket",
                (("event_source", "PostsStream"), ("function", "FanoutFunction"), ("le", "0.05")),
            )
        ]
        == 2
    )
    assert values[("ripple_stream_records_retried_total", labels)] == 2
    assert values[("ripple_stream_retries_total", labels)] == 1
    assert values[("ripple_stream_bisections_total", labels)] == 1
    assert values[("ripple_stream_records_sent_to_failure_queue_total", labels)] == 1
    assert values[("ripple_stream_records_dropped_total", labels)] == 4
    assert values[("ripple_stream_poll_errors_total", labels)] == 1


def test_a_busy_port_is_an_error_the_caller_can_handle(exporter: MetricsExporter) -> None:
    with pytest.raises(OSError):
        MetricsExporter(port=exporter.port).start()
