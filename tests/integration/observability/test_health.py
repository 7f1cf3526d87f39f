"""Health checks against real stores: the session's emulator and Redis for the happy paths,
and this module's own emulator and redis-server to stop (the session's stay up)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ripple.cache.feed_cache import FeedCache
from ripple.container import Container
from ripple.repositories.health_probe import health_dynamodb_client
from ripple.services.health import HealthService
from ripple_local.aws import LOCAL_REGION, client
from ripple_local.processes import DynamoDBLocalProcess, RedisProcess
from ripple_local.stack import LocalStack

pytestmark = pytest.mark.integration


# The stores' timeouts here: generous, as these tests judge outcomes on a loaded 2-core machine
# (the probes' own short ones are the container's, tested in tests/unit/observability); a
# stopped store refuses the connection at once, whatever the timeout.
STORE_TIMEOUT_S = 10.0


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=STORE_TIMEOUT_S, socket_connect_timeout=STORE_TIMEOUT_S, decode_responses=True
    )


class FakeClock:
    """The health service's clock and sleep: sleeping advances it, nothing else does."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds


def health_for(
    stack: LocalStack,
    container: Container,
    *,
    endpoint: str,
    table: str,
    redis_url: str,
    timeout_s: float = 30,
    clock: FakeClock | None = None,
    sent: list[str] | None = None,
) -> HealthService:
    """Ripple's stores, with DynamoDB probed at ``endpoint`` and Redis at ``redis_url``; the
    deep probe's waiting on ``clock`` when given (else real time); each DynamoDB request the
    probe sends (retries included) appended to ``sent`` when given."""
    cache_client = redis_client(redis_url)
    timing = {"clock": clock.now, "sleep": clock.sleep} if clock is not None else {}
    dynamodb = health_dynamodb_client(LOCAL_REGION, endpoint, timeout_s=STORE_TIMEOUT_S)
    if sent is not None:
        dynamodb.meta.events.register("before-send.dynamodb.*", lambda **kw: sent.append(kw["event_name"]))
    return HealthService(
        dynamodb=dynamodb,
        feed_table=table,
        redis_client=cache_client,
        feed=container.feed,
        feed_cache=FeedCache(cache_client, max_items=10, ttl_seconds=60),
        deep_timeout_s=timeout_s,
        **timing,
    )


@pytest.fixture
def session_health(stack: LocalStack, container: Container, redis_server: str) -> HealthService:
    assert stack.endpoints is not None
    return health_for(
        stack,
        container,
        endpoint=stack.endpoints.dynamodb,
        table=container.settings.feed_table,
        redis_url=redis_server,
    )


@pytest.fixture
def refresher_running(stack: LocalStack) -> Iterator[None]:
    """The feed stream delivered continuously (as on AWS), not drained by the test."""
    runner = stack.runner("CacheRefresherFunction", "FeedStream")
    runner.start()
    yield
    runner.stop()


def test_ready_when_everything_is_up(session_health: HealthService) -> None:
    status, body = session_health.ready()
    assert status == 200 and body["status"] == "ok"
    assert body["checks"]["dynamodb"]["status"] == body["checks"]["redis"]["status"] == "ok"


def test_deep_probe_goes_through_the_stream_and_cleans_up(
    session_health: HealthService, container: Container, refresher_running: None
) -> None:
    status, body = session_health.deep()
    assert status == 200, body
    assert 0 < body["lag_ms"] < 5000
    # no probe is left in Redis
    assert not list(container.redis.scan_iter("feed:home:health-probe-*"))


def test_deep_probe_that_never_arrives_is_a_503_within_its_timeout(
    stack: LocalStack, container: Container, redis_server: str
) -> None:
    # No runner delivers the feed stream here: the item cannot reach the cache.
    assert stack.endpoints is not None
    health = health_for(
        stack,
        container,
        endpoint=stack.endpoints.dynamodb,
        table=container.settings.feed_table,
        redis_url=redis_server,
        timeout_s=0.5,
        clock=(clock := FakeClock()),
    )
    status, body = health.deep()
    assert status == 503 and body["stage"] == "deliver"
    # it gave up once its own clock passed the timeout: polls of 0.5 s and no more
    assert 0.5 <= clock.now_s < 0.5 + max(clock.sleeps)
    stack.drain()  # deliver the probe's insert and removal now, so later tests do not see them


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess.start_on_free_port(state_dir=tmp_path)
    yield process
    process.stop()


@pytest.fixture
def own_emulator(tmp_path: Path) -> Iterator[tuple[DynamoDBLocalProcess, str]]:
    """A second DynamoDB Local with one table, to stop during the test."""
    process = DynamoDBLocalProcess.start_on_free_port(state_dir=tmp_path)
    table = f"health-{uuid.uuid4().hex[:8]}"
    client("dynamodb", process.url).create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield process, table
    process.stop()


def test_redis_down_is_degraded_not_unavailable(
    stack: LocalStack, container: Container, own_redis: RedisProcess
) -> None:
    assert stack.endpoints is not None
    health = health_for(
        stack,
        container,
        endpoint=stack.endpoints.dynamodb,
        table=container.settings.feed_table,
        redis_url=own_redis.url,
        clock=(clock := FakeClock()),
    )
    assert health.ready()[1]["status"] == "ok"

    own_redis.stop()
    status, body = health.ready()
    assert (status, body["status"]) == (200, "degraded")
    assert body["checks"]["redis"]["status"] == "down" and body["checks"]["dynamodb"]["status"] == "ok"
    # and the deep probe says so at once instead of waiting for its timeout
    deep_status, deep = health.deep()
    assert (deep_status, deep["stage"]) == (503, "ready")
    assert clock.sleeps == []


def test_dynamodb_down_is_unavailable_at_the_first_refusal(
    stack: LocalStack, container: Container, redis_server: str, own_emulator: tuple[DynamoDBLocalProcess, str]
) -> None:
    process, table = own_emulator
    sent: list[str] = []
    health = health_for(
        stack, container, endpoint=process.url, table=table, redis_url=redis_server, sent=sent
    )
    assert health.ready()[0] == 200

    process.stop()
    sent.clear()
    status, body = health.ready()
    assert (status, body["status"]) == (503, "unavailable")
    assert body["checks"]["dynamodb"]["status"] == "down" and body["checks"]["redis"]["status"] == "ok"
    assert len(sent) == 1  # one attempt, not botocore's retries with backoff
