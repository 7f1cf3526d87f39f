"""Powertools Logger, Tracer and Metrics: one of each per container, shared by all code.

Service name and namespace come from the standard Powertools environment variables
(POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE) set in template.yaml.

Metrics are Powertools' CloudWatch EMF on stdout, which CloudWatch Logs turns into metrics.
The provider class is the one seam for other destinations: the local stack (which has no
CloudWatch) swaps in ``ripple_local.metrics_bridge.ForwardingEMFProvider`` with
:func:`use_provider`, which also forwards each document to its Prometheus exporter.
Production never calls it; callers only ever see plain Powertools.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

NAMESPACE = "Ripple"  # also POWERTOOLS_METRICS_NAMESPACE in template.yaml; explicit so imports order-free

ProviderFactory = Callable[..., AmazonCloudWatchEMFProvider]

logger = Logger()
tracer = Tracer()
_provider_factory: ProviderFactory = AmazonCloudWatchEMFProvider
metrics = Metrics(namespace=NAMESPACE, provider=_provider_factory(namespace=NAMESPACE))

__all__ = ["NAMESPACE", "MetricUnit", "count", "logger", "metrics", "new_provider", "tracer", "use_provider"]


def count(name: str, value: float = 1) -> None:
    """Add to a business or pipeline counter."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def new_provider() -> AmazonCloudWatchEMFProvider:
    """A fresh provider for a metric document of its own (one per HTTP request, for example)."""
    return _provider_factory(namespace=NAMESPACE)


def use_provider(factory: ProviderFactory) -> None:
    """Emit every metric, from now on, through providers made by ``factory`` (a subclass of
    Powertools' ``AmazonCloudWatchEMFProvider`` taking ``namespace=``). For hosts without
    CloudWatch (the local stack); metrics not yet flushed are dropped."""
    global _provider_factory
    _provider_factory = factory
    metrics.provider = factory(namespace=NAMESPACE)
