"""Powertools metrics that also reach a local Prometheus exporter, unchanged on AWS.

Why a provider, and why forward EMF rather than push Prometheus samples:

* Code keeps calling ``metrics.add_metric(...)`` (Powertools Metrics, namespace ``Ripple``).
  :class:`ForwardingEMFProvider` *is* Powertools' own ``AmazonCloudWatchEMFProvider``: on AWS it
  prints the same CloudWatch EMF line to stdout that it always did, and nothing else happens.
* Only when ``RIPPLE_METRICS_SINK`` is set (the local stack sets it) does every EMF document
  that Powertools emits also go, as an HTTP POST, to an aggregating exporter
  (``ripple_local.metrics_exporter``). The exporter *adds* each document to its Prometheus
  counters and histograms, so any number of concurrent invocations, threads or processes
  add up. A Pushgateway push per invocation would instead replace the previous value.
* EMF is the unit of exchange because it is already what Powertools serializes: the
  exporter's translation is then the only place that knows Prometheus, and the layer needs
  nothing beyond the standard library.

Forwarding is best-effort by design and never slows an invocation: the handler only
appends the document to a bounded in-memory queue, and one background thread per process
POSTs what is queued (batched, short timeouts, a few retries). No exception reaches the
handler; documents that could not be delivered are counted (``EmfSink.failures``) and
reported to the exporter with the next POST that gets through. A synchronous POST would
make every invocation wait on the exporter, and under CPU contention (the local stack runs
everything in one process) a short timeout would drop documents that were merely late.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.metric_properties import MetricUnit

__all__ = [
    "DROPPED_HEADER",
    "SINK_ENV",
    "EmfSink",
    "ForwardingEMFProvider",
    "sink_for",
]

logger = logging.getLogger(__name__)

SINK_ENV = "RIPPLE_METRICS_SINK"  # e.g. http://127.0.0.1:9464/emf; unset on AWS
# Documents this process failed to deliver since its last successful POST; the exporter
# counts them, so lost metrics are visible on the dashboard rather than silently missing.
DROPPED_HEADER = "X-Ripple-Dropped-Documents"
# A local POST takes milliseconds (about 25 ms at the 99th percentile with 16 threads
# flushing at once); seconds mean the exporter is starved of CPU, not gone.
DEFAULT_TIMEOUT_S = 2.0
DEFAULT_ATTEMPTS = 3  # per batch, DEFAULT_RETRY_DELAY_S apart (doubling)
DEFAULT_RETRY_DELAY_S = 0.2
# A flush is one document; minutes of a busy local stack fit. Beyond that, drop and count.
DEFAULT_MAX_QUEUE = 10_000
MAX_BATCH = 500  # documents per POST (a few hundred KB at most)
# Log the first failure, then every this-many, so a dead sink cannot flood the logs.
_LOG_EVERY = 100


class EmfSink:
    """Delivers EMF documents to one URL from a background thread; ``send`` never blocks.

    Documents are POSTed as newline-delimited JSON, many per request. ``flush`` waits until
    everything queued so far has been delivered or given up on (tests, shutdown).
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_delay_s: float = DEFAULT_RETRY_DELAY_S,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.retry_delay_s = retry_delay_s
        self.max_queue = max_queue
        self.sent = 0  # documents delivered
        self.failures = 0  # documents lost (POST failed after its retries, or the queue was full)
        self._unreported = 0  # failures not yet told to the exporter
        self._queue: deque[Mapping[str, Any]] = deque()
        self._in_flight = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def send(self, documents: Sequence[Mapping[str, Any]]) -> bool:
        """Queue the documents for delivery; False if some were dropped (queue full)."""
        if not documents:
            return True
        with self._changed:
            room = max(0, self.max_queue - len(self._queue))
            self._queue.extend(documents[:room])
            if len(documents) > room:
                self._lost(len(documents) - room, "queue full")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ripple-metrics-sink", daemon=True)
                self._thread.start()
            self._changed.notify_all()
            return len(documents) <= room

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until nothing is queued or in flight; False if that took over ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._queue:
                    self._changed.wait()
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                self._in_flight = len(batch)
                reported = self._unreported
            error = self._post(batch, reported)
            with self._changed:
                if error is None:
                    self.sent += len(batch)
                    self._unreported -= reported
                else:
                    self._lost(len(batch), error)
                self._in_flight = 0
                self._changed.notify_all()

    def _post(self, batch: Sequence[Mapping[str, Any]], reported: int) -> BaseException | None:
        """POST one batch, retrying; the last error, or None once it was delivered."""
        body = "\n".join(json.dumps(d, separators=(",", ":")) for d in batch).encode()
        headers = {"Content-Type": "application/x-ndjson"}
        if reported:
            headers[DROPPED_HEADER] = str(reported)
        error: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.retry_delay_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                return None
            except Exception as exc:  # a dead or slow exporter must never stop this thread
                error = exc
        return error

    def _lost(self, documents: int, error: BaseException | str) -> None:
        before = self.failures
        self.failures += documents
        self._unreported += documents
        if before == 0 or before // _LOG_EVERY != self.failures // _LOG_EVERY:
            logger.warning(
                "metrics sink %s: %d EMF documents lost so far (%s)", self.url, self.failures, error
            )


_sinks: dict[str, EmfSink] = {}
_sinks_lock = threading.Lock()


def sink_for(url: str) -> EmfSink:
    """One sink per URL and process, so failure counts and back-off are shared."""
    with _sinks_lock:
        sink = _sinks.get(url)
        if sink is None:
            sink = _sinks[url] = EmfSink(url)
        return sink


class ForwardingEMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF provider plus a copy of every emitted document to the metrics sink.

    Powertools emits a document in two places: ``flush_metrics`` (end of an invocation) and
    ``add_metric`` when one metric reaches 100 values (a batch of 100 stream records). Both
    call ``serialize_metric_set`` and print the result, so a document serialized *while one
    of them runs* is exactly one that was printed; it is forwarded once that call returns.

    A lock makes adding and flushing atomic: locally, API requests and stream runners are
    threads of one process sharing this provider, and without it a value added between a
    flush's serialize and its clear would be lost. Forwarding happens outside the lock.

    ``sink_url`` overrides the environment; by default ``RIPPLE_METRICS_SINK`` is read at each
    emission (one dict lookup), so a process may import this module before the local stack
    has put the variable in place. Sending only queues (see :class:`EmfSink`).
    """

    def __init__(self, *args: Any, sink_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink_url = sink_url
        self._lock = threading.RLock()
        self._outbox: list[dict[str, Any]] | None = None
        self._outbox_owner: int | None = None  # the thread emitting (the one holding the lock)

    def sink(self) -> EmfSink | None:
        """The sink in effect now, if any."""
        url = self._sink_url or os.environ.get(SINK_ENV)
        return sink_for(url) if url else None

    @contextmanager
    def _emitting(self) -> Iterator[None]:
        with self._lock:
            outer = self._outbox is not None
            if not outer:
                self._outbox, self._outbox_owner = [], threading.get_ident()
            try:
                yield
            finally:
                documents = [] if outer else (self._outbox or [])
                if not outer:
                    self._outbox, self._outbox_owner = None, None
        if documents:
            sink = self.sink()
            if sink is not None:
                sink.send(documents)

    def serialize_metric_set(
        self,
        metrics: dict | None = None,
        dimensions: dict | None = None,
        metadata: dict | None = None,
    ) -> Any:
        document = super().serialize_metric_set(metrics=metrics, dimensions=dimensions, metadata=metadata)
        if self._outbox is not None and self._outbox_owner == threading.get_ident():
            # Powertools prints the document it serializes now; keep a copy (the sets are
            # cleared right after) to forward once the emitting call returns.
            self._outbox.append(json.loads(json.dumps(document)))
        return document

    def add_metric(
        self,
        name: str,
        unit: MetricUnit | str,
        value: float,
        resolution: Any = 60,
    ) -> None:
        with self._emitting():
            super().add_metric(name=name, unit=unit, value=value, resolution=resolution)

    def add_dimension(self, name: str, value: str) -> None:
        with self._lock:
            super().add_dimension(name=name, value=value)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        with self._emitting():
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)

    def clear_metrics(self) -> None:
        with self._lock:
            super().clear_metrics()

    def add_cold_start_metric(self, context: Any) -> None:
        """As Powertools does (its own document, with a function_name dimension), but
        through this provider so the local exporter sees cold starts too."""
        function_name = self.function_name or getattr(context, "function_name", None) or "unknown"
        cold = ForwardingEMFProvider(namespace=self.namespace, service=self.service, sink_url=self._sink_url)
        cold.add_dimension(name="function_name", value=str(function_name))
        cold.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
        cold.flush_metrics()
