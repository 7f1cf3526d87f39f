"""Powertools Logger, Tracer and Metrics: one of each per container, shared by all code.

Service name and namespace come from the standard Powertools environment variables
(POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE) set in template.yaml.

Metrics are Powertools' CloudWatch EMF on stdout, which CloudWatch Logs turns into metrics.
The provider class is the one seam for other destinations: the local stack (which has no
CloudWatch) swaps in ``ripple_local.metrics_bridge.ForwardingEMFProvider`` with
:func:`use_provider`, which also forwards each document to its Prometheus exporter.
Production never calls it; callers only ever see plain Powertools.

X-Ray (Tracing: Active) records every AWS call as a subsegment once :func:`trace_aws_calls`
has patched the SDK - botocore, which PynamoDB calls through - as Powertools' ``patch_modules``
would. ``ripple.container`` calls it before it builds anything that calls AWS, rather than the
Tracer patching at import: the cache refresher calls no AWS API and so never imports botocore's
clients, and nothing else Ripple uses can be patched (``patch_all`` would also import sqlite3).
"""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

NAMESPACE = "Ripple"  # also POWERTOOLS_METRICS_NAMESPACE in template.yaml; explicit so imports order-free

ProviderFactory = Callable[..., AmazonCloudWatchEMFProvider]

logger = Logger()
tracer = Tracer(auto_patch=False)  # trace_aws_calls() patches the SDK where it is used
_provider_factory: ProviderFactory = AmazonCloudWatchEMFProvider
metrics = Metrics(namespace=NAMESPACE, provider=_provider_factory(namespace=NAMESPACE))

# What X-Ray patches: the AWS SDK - botocore, and the requests PynamoDB sends through it (which
# patch_all patched too: the traces stay as they were, without sqlite3's).
AWS_SDK_MODULES = ("botocore", "pynamodb")

__all__ = [
    "NAMESPACE",
    "MetricUnit",
    "count",
    "logger",
    "metrics",
    "new_provider",
    "trace_aws_calls",
    "tracer",
    "use_provider",
]


def trace_aws_calls() -> None:
    """Have X-Ray record every AWS call from now on (clients built before it included). Call it
    before the first AWS call; again is a no-op, and so is any call while tracing is disabled
    (POWERTOOLS_TRACE_DISABLED, or not on Lambda)."""
    tracer.patch(AWS_SDK_MODULES)


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
