"""The local stack's Prometheus exporter: CloudWatch EMF in, ``GET /metrics`` out.

On AWS, Powertools writes each invocation's metrics to stdout as CloudWatch EMF and
CloudWatch turns them into metrics. Locally, ``ripple_local.metrics_bridge`` POSTs a copy of the
same documents to ``POST /emf`` here, and this exporter plays CloudWatch's part for
Prometheus: it *adds* every document to long-lived ``prometheus_client`` metrics, so
concurrent invocations (threads of the local process, or other processes) add up.

Translation, one rule per CloudWatch unit:

* ``Count`` -> Counter ``<namespace>_<snake_name>_total`` (values summed)
* ``Milliseconds``, ``Seconds``, ``Microseconds`` -> Histogram ``<namespace>_<snake_name>_seconds``
  (values converted to seconds, Prometheus' base unit; every value observed)
* anything else -> Gauge ``<namespace>_<snake_name>`` (last value wins)

EMF dimensions become labels, but only those in :data:`ALLOWED_LABELS` (route, method,
status, service...): a user or post id must never be a label, as every distinct value is a
time series held forever. Values that look like Ripple ids (ULIDs) are masked as a second
guard. A few metrics get tailored buckets or a second view (:data:`SPECS`): for example
``FanoutItemsWritten`` is also a histogram of items per post, because Powertools keeps each
``add_metric`` value separately in the document (one per fan-out step).

The stream runners of the local stack report what only Lambda's poller knows (retries,
records sent to the failure queue, iterator age) straight into the same registry through
:meth:`MetricsExporter.stream_observer`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from ripple_local.metrics_bridge import DROPPED_HEADER, SINK_ENV

# The classic text format every Prometheus 2.x parses (Debian's is 2.42); Ripple's names and
# labels are plain ASCII, so the bytes are the same as the newer 1.0.0 format's.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

__all__ = [
    "ALLOWED_LABELS",
    "DEFAULT_METRICS_PORT",
    "DROPPED_HEADER",
    "SINK_ENV",
    "SPECS",
    "EmfTranslator",
    "MetricSpec",
    "MetricsExporter",
    "StreamRunnerMetrics",
    "snake_case",
]

logger = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9464  # the port OpenTelemetry's Prometheus exporters use by convention
EMF_PATH = "/emf"
METRICS_PATH = "/metrics"
MAX_BODY_BYTES = 4 * 1024 * 1024  # a flush holds at most 100 metrics x 100 values

# Dimensions that may become labels: bounded sets of values only (a route template, not a path).
ALLOWED_LABELS = frozenset(
    {"service", "route", "method", "status", "function_name", "function", "event_source", "cache", "outcome"}
)
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
_MAX_LABEL_VALUE = 120

# Request latencies: 5 ms .. 10 s.
LATENCY_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Pipeline lags (feed lag, iterator age): tens of milliseconds locally, up to minutes when a
# stream falls behind or a record is being retried.
LAG_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
# Feed items per fan-out step: none (no followers yet) up to a full page of followers.
FANOUT_BUCKETS: tuple[float, ...] = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000)

_TIME_UNITS = {"Seconds": 1.0, "Milliseconds": 1e-3, "Microseconds": 1e-6}
COUNTER, HISTOGRAM, GAUGE = "counter", "histogram", "gauge"


@dataclass(frozen=True)
class MetricSpec:
    """How one EMF metric is exposed, where the unit rule alone is not enough."""

    help: str
    buckets: tuple[float, ...] | None = None  # for time histograms
    # Also observe every value, unconverted, into this histogram (name without namespace).
    per_value_histogram: str | None = None
    per_value_help: str = ""
    per_value_buckets: tuple[float, ...] = FANOUT_BUCKETS


SPECS: dict[str, MetricSpec] = {
    "HttpRequests": MetricSpec("API requests by route template, method and status."),
    "HttpRequestDuration": MetricSpec(
        "API request latency (Chalice middleware to response).", buckets=LATENCY_BUCKETS_S
    ),
    "FeedLag": MetricSpec(
        "Post creation to the item's arrival in a follower's cached feed.", buckets=LAG_BUCKETS_S
    ),
    "FanoutItemsWritten": MetricSpec(
        "Feed items fan-out wrote to followers' feeds.",
        # One value per fan-out step: a post's whole audience, up to one page of followers
        # (FanoutPageSize); a larger audience contributes one value per page.
        per_value_histogram="fanout_items_per_post",
        per_value_help="Feed items written per post by one fan-out step (followers, up to a page).",
    ),
    "FeedReads": MetricSpec("Home feed pages served."),
    "FeedCacheHits": MetricSpec("Feed pages answered from Redis."),
    "FeedCacheMisses": MetricSpec("Feed pages read from DynamoDB (cold or partial cache)."),
    "PostCacheHits": MetricSpec("Post bodies found in Redis."),
    "PostCacheMisses": MetricSpec("Post bodies read from DynamoDB."),
    "CacheErrors": MetricSpec("Redis calls that failed or timed out (treated as misses)."),
    "StreamBatches": MetricSpec("Stream batches handled by a consumer function."),
    "StreamRecordsProcessed": MetricSpec("Stream records a consumer function processed."),
    "StreamRecordsFailed": MetricSpec("Stream records a consumer function failed (to be retried)."),
}


def snake_case(name: str) -> str:
    """``FeedCacheHits`` -> ``feed_cache_hits``, ``TTLExpired`` -> ``ttl_expired``."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = re.sub(r"[^a-zA-Z0-9]+", "_", s).strip("_").lower()
    return re.sub(r"_+", "_", s) or "unnamed"


def _label_value(value: Any) -> str:
    text = _ULID.sub("{id}", str(value))
    return text[:_MAX_LABEL_VALUE]


def _values(raw: Any) -> list[float]:
    items = raw if isinstance(raw, list) else [raw]
    values = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError(f"not a number: {item!r}")
        if math.isfinite(item):
            values.append(float(item))
    return values


@dataclass
class _Family:
    kind: str
    metric: Any  # Counter | Histogram | Gauge
    labelnames: tuple[str, ...]
    scale: float = 1.0

    def child(self, labels: Mapping[str, str]) -> Any:
        if not self.labelnames:
            return self.metric
        return self.metric.labels(*(labels.get(name, "") for name in self.labelnames))


class EmfTranslator:
    """Adds EMF documents to Prometheus metrics in ``registry``; thread-safe.

    A metric's label names are fixed when it is first seen (Prometheus requires it): later
    documents fill labels they lack with "" and lose dimensions the metric does not have.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No ``*_created`` series: in the text format Prometheus stores them as extra gauges,
        # doubling the series for nothing a dashboard uses. (A process-wide switch; this
        # process is the local stack's.)
        disable_created_metrics()
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self._warned: set[str] = set()
        self.documents = Counter(
            "ripple_exporter_emf_documents", "EMF documents added to these metrics.", registry=self.registry
        )
        self.rejected = Counter(
            "ripple_exporter_emf_rejected",
            "EMF documents or metrics that could not be translated (see the stack log).",
            registry=self.registry,
        )
        self.dropped = Counter(
            "ripple_metrics_sink_dropped_documents",
            "EMF documents functions failed to deliver to this exporter (reported on their next delivery).",
            registry=self.registry,
        )

    # ------------------------------------------------------------------ families

    def family(
        self,
        kind: str,
        name: str,
        help_text: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float] | None = None,
        scale: float = 1.0,
    ) -> _Family:
        """The metric called ``name`` (no ``_total``), created on first use; ValueError on a clash."""
        with self._lock:
            found = self._families.get(name)
            if found is not None:
                if found.kind != kind:
                    raise ValueError(f"{name} is already a {found.kind}, not a {kind}")
                return found
            labels = tuple(labelnames)
            metric: Any
            if kind == COUNTER:
                metric = Counter(name, help_text, labels, registry=self.registry)
            elif kind == HISTOGRAM:
                metric = Histogram(
                    name, help_text, labels, registry=self.registry, buckets=buckets or LATENCY_BUCKETS_S
                )
            else:
                metric = Gauge(name, help_text, labels, registry=self.registry)
            created = self._families[name] = _Family(kind, metric, labels, scale)
            return created

    # ------------------------------------------------------------------ EMF

    def ingest(self, document: Mapping[str, Any]) -> int:
        """Add one EMF document; returns how many values it carried. ValueError if it is not EMF."""
        aws = document.get("_aws")
        directives = aws.get("CloudWatchMetrics") if isinstance(aws, Mapping) else None
        if not isinstance(directives, list):
            raise ValueError("not an EMF document: no _aws.CloudWatchMetrics")
        added = 0
        for directive in directives:
            namespace = snake_case(str(directive.get("Namespace") or "emf"))
            keys = {str(k) for dims in directive.get("Dimensions") or [] for k in dims}
            labels = self._labels(document, keys)
            for definition in directive.get("Metrics") or []:
                name = str(definition.get("Name", ""))
                if name not in document:
                    continue
                try:
                    added += self._add(
                        namespace, name, str(definition.get("Unit") or "None"), document, labels
                    )
                except ValueError as error:
                    self.rejected.inc()
                    self._warn_once(f"metric:{name}", "EMF metric %s not exported: %s", name, error)
        self.documents.inc()
        return added

    def _labels(self, document: Mapping[str, Any], keys: Iterable[str]) -> dict[str, str]:
        labels: dict[str, str] = {}
        for key in sorted(keys):
            if key not in ALLOWED_LABELS:
                self._warn_once(f"label:{key}", "EMF dimension %r is not an allowed label; dropped", key)
                continue
            if key in document:
                labels[key] = _label_value(document[key])
        return labels

    def _add(
        self, namespace: str, name: str, unit: str, document: Mapping[str, Any], labels: Mapping[str, str]
    ) -> int:
        values = _values(document[name])
        spec = SPECS.get(name)
        help_text = spec.help if spec else f"EMF metric {name} ({unit})."
        base = f"{namespace}_{snake_case(name)}"
        if unit == "Count":
            family = self.family(COUNTER, base, help_text, list(labels))
            total = sum(values)
            if total < 0:
                raise ValueError("a negative Count cannot be added to a Prometheus counter")
            family.child(labels).inc(total)
        elif unit in _TIME_UNITS:
            stem = re.sub(r"_(seconds|milliseconds|ms|microseconds)$", "", base)
            family = self.family(
                HISTOGRAM,
                f"{stem}_seconds",
                help_text,
                list(labels),
                buckets=spec.buckets if spec and spec.buckets else LATENCY_BUCKETS_S,
            )
            child = family.child(labels)
            for value in values:
                child.observe(value * _TIME_UNITS[unit])
        else:
            family = self.family(GAUGE, base, help_text, list(labels))
            if values:
                family.child(labels).set(values[-1])
        if spec and spec.per_value_histogram:
            per_value = self.family(
                HISTOGRAM,
                f"{namespace}_{spec.per_value_histogram}",
                spec.per_value_help,
                list(labels),
                buckets=spec.per_value_buckets,
            )
            child = per_value.child(labels)
            for value in values:
                child.observe(value)
        return len(values)

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    # ------------------------------------------------------------------ exposition

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class StreamRunnerMetrics:
    """What one local event source mapping reports: the part of Lambda's poller that no
    function sees (retries, bisections, the failure queue, iterator age)."""

    def __init__(self, translator: EmfTranslator, function: str, event_source: str) -> None:
        labels = {"function": function, "event_source": event_source}
        names = ("event_source", "function")

        def counter(name: str, help_text: str) -> Any:
            return translator.family(COUNTER, name, help_text, names).child(labels)

        self._age = translator.family(
            HISTOGRAM,
            "ripple_stream_iterator_age_seconds",
            "Age of each stream record when delivered to the function (from its ApproximateCreationDateTime, "
            "bounded by when the runner read it), "
            "retries included: Lambda's IteratorAge.",
            names,
            buckets=LAG_BUCKETS_S,
        ).child(labels)
        self._invocations = counter("ripple_stream_invocations", "Function invocations by the stream runner.")
        self._delivered = counter(
            "ripple_stream_records_delivered", "Records delivered to the function (retries included)."
        )
        self._retries = counter("ripple_stream_retries", "Invocations that were retries of failed records.")
        self._records_retried = counter(
            "ripple_stream_records_retried", "Records delivered again after a failure."
        )
        self._bisections = counter("ripple_stream_bisections", "Failed batches split in two.")
        self._to_failure_queue = counter(
            "ripple_stream_records_sent_to_failure_queue",
            "Records that exhausted their retries and went to the OnFailure queue.",
        )
        self._dropped = counter(
            "ripple_stream_records_dropped", "Records that exhausted their retries with no OnFailure queue."
        )
        self._poll_errors = counter(
            "ripple_stream_poll_errors", "Failed polls of the stream (emulator down)."
        )

    def delivered(self, records: int, ages_ms: Sequence[float]) -> None:
        """An invocation with ``records`` records; ``ages_ms`` of those whose creation time is known."""
        self._invocations.inc()
        self._delivered.inc(records)
        for age in ages_ms:
            self._age.observe(max(0.0, age) / 1000.0)

    def retried(self, records: int) -> None:
        self._retries.inc()
        self._records_retried.inc(records)

    def bisected(self) -> None:
        self._bisections.inc()

    def gave_up(self, records: int, sent_to_failure_queue: bool) -> None:
        (self._to_failure_queue if sent_to_failure_queue else self._dropped).inc(records)

    def poll_failed(self) -> None:
        self._poll_errors.inc()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go in two sends: with Nagle's algorithm on, a keep-alive client waits
    # up to 40 ms (its delayed ACK) for every body (ripple_local.api_server, the same knob).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == METRICS_PATH:
            self._reply(HTTPStatus.OK, self.server.translator.exposition(), CONTENT_TYPE)
        elif path == "/":
            text = f"Ripple local metrics: GET {METRICS_PATH}, POST {EMF_PATH} (CloudWatch EMF)\n"
            self._reply(HTTPStatus.OK, text.encode(), "text/plain; charset=utf-8")
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != EMF_PATH:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.server.translator.rejected.inc()
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"too large\n", "text/plain; charset=utf-8")
            self.close_connection = True
            return
        body = self.rfile.read(length)
        translator = self.server.translator
        dropped = self.headers.get(DROPPED_HEADER)
        if dropped and dropped.isdigit():
            translator.dropped.inc(int(dropped))
        errors = 0
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                document = json.loads(line)
                if not isinstance(document, dict):
                    raise ValueError("an EMF document is a JSON object")
                translator.ingest(document)
            except ValueError as error:  # json.JSONDecodeError is a ValueError
                errors += 1
                translator.rejected.inc()
                logger.warning("rejected an EMF document: %s", error)
        if errors:
            self._reply(HTTPStatus.BAD_REQUEST, f"{errors} invalid documents\n".encode(), "text/plain")
        else:
            self._reply(HTTPStatus.NO_CONTENT, b"", "text/plain")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("metrics exporter: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 overflows when many invocations flush at once, and
    # a dropped SYN costs the client a one-second retransmit: more than its whole timeout.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], translator: EmfTranslator) -> None:
        super().__init__(address, _Handler)
        self.translator = translator


class MetricsExporter:
    """Serves :class:`EmfTranslator` over HTTP in a daemon thread; ``port=0`` picks a free port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_METRICS_PORT,
        translator: EmfTranslator | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.translator = translator if translator is not None else EmfTranslator()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def registry(self) -> CollectorRegistry:
        return self.translator.registry

    @property
    def url(self) -> str:
        """Where Prometheus scrapes."""
        return f"http://{self.host}:{self.port}{METRICS_PATH}"

    @property
    def sink_url(self) -> str:
        """What functions get as RIPPLE_METRICS_SINK."""
        return f"http://{self.host}:{self.port}{EMF_PATH}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> MetricsExporter:
        """Bind (OSError if the port is taken) and serve in the background."""
        if self.running:
            return self
        self._server = _Server((self.host, self.port), self.translator)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="metrics-exporter",
            daemon=True,
        )
        self._thread.start()
        logger.info("metrics on %s", self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def stream_observer(self, function: str, event_source: str) -> StreamRunnerMetrics:
        """The observer one stream runner reports to."""
        return StreamRunnerMetrics(self.translator, function, event_source)

    def __enter__(self) -> MetricsExporter:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
