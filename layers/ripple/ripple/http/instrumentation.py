"""HTTP request metrics: a count and a latency per route template, method and status.

Each request's metrics are a document of their own (an ephemeral provider), so the
``route``/``method``/``status`` dimensions never stick to the invocation's other metrics
(``PostsCreated`` stays one time series, not one per route). On AWS that is one EMF line
per request in the API's log; locally the same document reaches the Prometheus exporter
as ``ripple_http_requests_total`` and ``ripple_http_request_duration_seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ripple.http.routing import CATCH_ALL_ROUTES
from ripple.observability import MetricUnit, logger, new_provider

__all__ = ["REQUEST_COUNT", "REQUEST_DURATION", "UNMATCHED_ROUTE", "record_request", "route_template"]

REQUEST_COUNT = "HttpRequests"
REQUEST_DURATION = "HttpRequestDuration"
# Requests no route matched (Chalice's own 404/405/403) share one label value, so a scan of
# random URLs cannot create unbounded time series.
UNMATCHED_ROUTE = "unmatched"


def route_template(request_context: Mapping[str, Any] | None) -> str:
    """The matched route as API Gateway names it (``/posts/{post_id}``), never the raw path.

    A raw path carries post and user ids: as a label it would make one time series per id
    (unbounded cardinality, and user ids in the metrics store).
    """
    resource = (request_context or {}).get("resourcePath")
    if not isinstance(resource, str) or not resource.startswith("/") or resource in CATCH_ALL_ROUTES:
        return UNMATCHED_ROUTE  # an HTTP API's catch-all routes match no route of the app
    return resource


def record_request(route: str, method: str, status: int, duration_ms: float) -> None:
    """Count one request and record its latency. Never raises: a metric must not fail a request.

    ``route`` must be a route template (see :func:`route_template`).
    """
    try:
        provider = new_provider()
        provider.add_dimension(name="route", value=route or UNMATCHED_ROUTE)
        provider.add_dimension(name="method", value=method.upper() or "UNKNOWN")
        provider.add_dimension(name="status", value=str(int(status)))
        provider.add_metric(name=REQUEST_COUNT, unit=MetricUnit.Count, value=1)
        provider.add_metric(name=REQUEST_DURATION, unit=MetricUnit.Milliseconds, value=max(0.0, duration_ms))
        provider.flush_metrics()
    except Exception:
        logger.exception("recording request metrics failed", extra={"route": route, "status": status})
