"""The environment variables a function sees, computed from template.yaml for the local stack.

Functions read their configuration from the environment only (table names, Redis endpoint,
secret ARN...). Computing it from the template, exactly as CloudFormation would, means a
variable added to template.yaml works locally without touching the local stack.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ripple_local.aws import DUMMY_CREDENTIAL, LOCAL_REGION, Endpoints
from ripple_local.cfn import CfnResolutionError, Resolver, pseudo_parameters
from ripple_local.resources import LocalResources, physical_name

__all__ = [
    "LOCAL_SERVICE_NAME",
    "build_resolver",
    "function_environment",
    "local_aws_environment",
    "redis_attributes",
    "stack_environment",
]

logger = logging.getLogger(__name__)

# All functions share one process locally, so per-function service names cannot all hold.
LOCAL_SERVICE_NAME = "ripple-local"

# Attribute names whose values are the Redis endpoint, per ElastiCache resource type.
_REDIS_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "AWS::ElastiCache::ReplicationGroup": ("PrimaryEndPoint", "ReaderEndPoint", "ConfigurationEndPoint"),
    "AWS::ElastiCache::CacheCluster": ("RedisEndpoint", "ConfigurationEndpoint"),
    "AWS::ElastiCache::ServerlessCache": ("Endpoint", "ReaderEndpoint"),
}


def redis_attributes(
    template: Mapping[str, Any], stack_name: str, host: str, port: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Refs and GetAtts of every ElastiCache resource, all pointing at the local Redis.

    moto's ElastiCache is a stub without an endpoint, so a real local redis-server stands in
    for primary, reader and configuration endpoints alike.
    """
    refs: dict[str, str] = {}
    attributes: dict[str, str] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        endpoints = _REDIS_ENDPOINTS.get(resource.get("Type", ""))
        if endpoints is None:
            continue
        refs[logical_id] = physical_name(stack_name, logical_id).lower()
        for endpoint in endpoints:
            attributes[f"{logical_id}.{endpoint}.Address"] = host
            attributes[f"{logical_id}.{endpoint}.Port"] = str(port)
    return refs, attributes


def build_resolver(
    template: Mapping[str, Any],
    resources: LocalResources,
    parameters: Mapping[str, str],
    redis_host: str,
    redis_port: int,
) -> Resolver:
    """A Resolver that knows the created resources, the local Redis and the pseudo parameters."""
    redis_refs, redis_attrs = redis_attributes(template, resources.stack_name, redis_host, redis_port)
    return Resolver(
        parameters=parameters,
        refs={**redis_refs, **resources.refs()},
        attributes={**redis_attrs, **resources.attributes()},
        pseudo=pseudo_parameters(resources.region, resources.account_id, resources.stack_name),
        conditions=template.get("Conditions") or {},
    )


def _variables(properties: Mapping[str, Any] | None) -> Mapping[str, Any]:
    environment = (properties or {}).get("Environment") or {}
    return environment.get("Variables") or {}


def function_environment(template: Mapping[str, Any], logical_id: str, resolver: Resolver) -> dict[str, str]:
    """Globals.Function.Environment.Variables merged with the function's own, resolved.

    The function's own variables win, as in SAM. An unresolvable value names the function and
    variable, so a new template reference that the local stack lacks is easy to find.
    """
    resource = (template.get("Resources") or {}).get(logical_id)
    if resource is None or resource.get("Type") != "AWS::Serverless::Function":
        raise KeyError(f"{logical_id} is not an AWS::Serverless::Function of the template")
    globals_function = (template.get("Globals") or {}).get("Function")
    merged = {**_variables(globals_function), **_variables(resource.get("Properties"))}
    environment: dict[str, str] = {}
    for name, value in merged.items():
        try:
            environment[name] = resolver.resolve_str(value)
        except CfnResolutionError as error:
            raise CfnResolutionError(f"{logical_id} environment variable {name}: {error}") from error
    return environment


def local_aws_environment(endpoints: str | Endpoints, region: str = LOCAL_REGION) -> dict[str, str]:
    """AWS SDK settings that send every client to its emulator with dummy credentials.

    Each service gets its own variable (``AWS_ENDPOINT_URL_DYNAMODB`` ...), so a variable left
    in the developer's shell cannot send one service elsewhere. AWS_SESSION_TOKEN is set too,
    so a real token left in the shell is never sent.
    """
    resolved = endpoints if isinstance(endpoints, Endpoints) else Endpoints(endpoints)
    return {
        **resolved.environment(),
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
        "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
        "AWS_SESSION_TOKEN": DUMMY_CREDENTIAL,
    }


def stack_environment(
    template: Mapping[str, Any],
    function_ids: Iterable[str],
    resolver: Resolver,
    endpoints: str | Endpoints,
    region: str = LOCAL_REGION,
) -> dict[str, str]:
    """The one environment shared by all functions of the local process.

    It is the union of the functions' environments plus the AWS settings, with
    POWERTOOLS_SERVICE_NAME set to ``ripple-local``. A variable that two functions set to
    different values cannot be honoured in one process: the first wins and a warning says so.
    """
    union: dict[str, str] = {}
    origin: dict[str, str] = {}
    for logical_id in function_ids:
        for name, value in function_environment(template, logical_id, resolver).items():
            if name == "POWERTOOLS_SERVICE_NAME":
                continue
            if name in union and union[name] != value:
                logger.warning(
                    "%s sets %s=%r but %s already set %r; the local process keeps the latter",
                    logical_id,
                    name,
                    value,
                    origin[name],
                    union[name],
                )
                continue
            union[name], origin[name] = value, logical_id
    union["POWERTOOLS_SERVICE_NAME"] = LOCAL_SERVICE_NAME
    union.update(local_aws_environment(endpoints, region))
    return union
