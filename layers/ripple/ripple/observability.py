"""Powertools Logger, Tracer and Metrics: one of each per container, shared by all code.

Service name and namespace come from the standard Powertools environment variables
(POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE) set in template.yaml.

Metrics go through :class:`ripple.metrics_bridge.ForwardingEMFProvider`: CloudWatch EMF on
stdout as Powertools always writes it, plus, when ``RIPPLE_METRICS_SINK`` is set (the local
stack sets it), a copy to the local Prometheus exporter. Callers see plain Powertools.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from ripple.metrics_bridge import ForwardingEMFProvider

NAMESPACE = "Ripple"  # also POWERTOOLS_METRICS_NAMESPACE in template.yaml; explicit so imports order-free

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=NAMESPACE, provider=ForwardingEMFProvider(namespace=NAMESPACE))

__all__ = ["NAMESPACE", "MetricUnit", "count", "logger", "metrics", "tracer"]


def count(name: str, value: float = 1) -> None:
    """Add to a business or pipeline counter."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
