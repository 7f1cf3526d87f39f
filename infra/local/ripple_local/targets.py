"""Where an operator command runs: the local stack, or a deployed stack on AWS.

A :class:`Target` is a :class:`ripple.config.Settings` built for that stack (tables, region,
endpoints, Redis) plus what the commands must know to be honest about it: a label naming the
stack, and why the cache cannot be reached from here when it cannot (ElastiCache lives inside
the deployed stack's VPC). Its :meth:`Target.container` is the same composition root the
functions use, so every read and write goes through the layer's repositories and caches.

Imports ``ripple``: ``ripple_local.commands`` imports this module only inside a command.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ripple.config import Settings
from ripple.container import Container
from ripple.repositories.models import ALL_MODELS
from ripple_local.aws_target import AwsCredentials, describe_stack, open_session
from ripple_local.cfn import load_template
from ripple_local.convergence import ConvergenceChecker
from ripple_local.stack import TEMPLATE_FILE, LocalStack

__all__ = [
    "AWS",
    "LOCAL",
    "NO_TUNNEL",
    "OPERATOR_REDIS_TIMEOUT_S",
    "Target",
    "aws_target",
    "local_target",
    "parse_redis_url",
    "unreachable_redis",
]

LOCAL, AWS = "local", "aws"
# Through an SSH tunnel or a bastion, Redis answers slower than inside the VPC.
OPERATOR_REDIS_TIMEOUT_S = 2.0
NO_TUNNEL = (
    "not reachable from here: ElastiCache is inside the stack's VPC (pass --redis-url through a tunnel)"
)


@dataclass
class Target:
    """One stack the operator commands act on."""

    kind: str  # LOCAL | AWS
    label: str  # "local stack 'ripple-local'", "AWS stack 'ripple' (eu-west-1, profile ops)"
    settings: Settings
    redis_url: str | None = None  # where the cache is read, if anywhere
    cache_problem: str | None = None  # why Redis is not reachable from here (None: it may be)
    stack: LocalStack | None = None  # the attached local stack (replay-failures needs it)
    credentials: AwsCredentials | None = None
    _container: Container | None = field(default=None, repr=False)

    @property
    def is_aws(self) -> bool:
        return self.kind == AWS

    def container(self) -> Container:
        """The functions' composition root on this target's tables and Redis (built once)."""
        if self._container is None:
            container = Container(self.settings)
            container.bind_models()  # to this target's tables
            _bind_credentials(self.credentials)
            if self.cache_problem is not None:
                container.redis = unreachable_redis(self.cache_problem)
            self._container = container
        return self._container

    def checker(self) -> ConvergenceChecker:
        return ConvergenceChecker.from_container(self.container())


def local_target(stack: LocalStack) -> Target:
    """The attached local stack, configured exactly as its functions are."""
    return Target(
        kind=LOCAL,
        label=f"local stack {stack.stack_name!r}",
        settings=Settings.from_env(stack.environment),
        redis_url=stack.redis_url,
        stack=stack,
    )


def aws_target(
    root: Path, stack_name: str, profile: str | None, region: str | None, redis_url: str | None
) -> Target:
    """A deployed stack: its tables from CloudFormation, AWS's own endpoints, the profile's
    credentials; Redis only through ``redis_url`` (a tunnel), else reported unreachable."""
    session = open_session(profile, region)
    template = load_template(root / TEMPLATE_FILE)
    deployed = describe_stack(session.client("cloudformation"), template, stack_name, session.region)
    settings = replace(
        Settings.from_env({**deployed.environment, "AWS_REGION": session.region}),
        # Explicit, so no AWS_ENDPOINT_URL* left in the shell can send PynamoDB to an emulator.
        dynamodb_endpoint_url=session.endpoint("dynamodb"),
        secretsmanager_endpoint_url=None,
    )
    problem: str | None = NO_TUNNEL
    if redis_url is not None:
        host, port, tls = parse_redis_url(redis_url)
        settings = replace(
            settings,
            redis_host=host,
            redis_port=port,
            redis_tls=tls,
            redis_timeout_seconds=OPERATOR_REDIS_TIMEOUT_S,
        )
        problem = None
    return Target(
        kind=AWS,
        label=f"AWS stack {stack_name!r} ({session.describe()})",
        settings=settings,
        redis_url=redis_url,
        cache_problem=problem,
        credentials=session.credentials,
    )


def parse_redis_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of ``redis://host:port`` or ``rediss://host:port`` (TLS)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError(f"--redis-url must be redis://HOST:PORT or rediss://HOST:PORT (TLS), not {url!r}")
    return parsed.hostname, parsed.port or 6379, parsed.scheme == "rediss"


def _bind_credentials(credentials: AwsCredentials | None) -> None:
    """Give every model the profile's credentials (PynamoDB's own botocore session would
    otherwise use the default chain, not the operator's --aws-profile); None: that chain."""
    for model in ALL_MODELS:
        meta = model.Meta
        meta.aws_access_key_id = credentials.access_key if credentials else None
        meta.aws_secret_access_key = credentials.secret_key if credentials else None
        meta.aws_session_token = credentials.token if credentials else None
        model._connection = None


class _UnreachableConnection(redis.connection.Connection):
    """A connection that fails at once with the reason: no timeout waited, no retry."""

    def __init__(self, *, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        raise redis.ConnectionError(self.reason)


def unreachable_redis(reason: str) -> redis.Redis:
    """A Redis client for a cache that cannot be reached from here: every call raises
    ``redis.ConnectionError(reason)``, which the caches turn into ``CacheError`` - so the
    checker and the repairs report "cache unreachable" as they do when Redis is down."""
    pool = redis.ConnectionPool(
        connection_class=_UnreachableConnection,
        reason=reason,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    return redis.Redis(connection_pool=pool)
