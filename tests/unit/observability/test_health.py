"""HealthService's decisions, with in-process twins of DynamoDB, Redis and the feed stores.

The real stores (and stopping them) are exercised in tests/integration/observability.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ripple.cache.errors import CacheError
from ripple.domain import FeedEntry
from ripple.services.health import PROBE_READER_PREFIX, HealthService


class FakeDynamoDB:
    def __init__(self, up: bool = True, status: str = "ACTIVE") -> None:
        self.up, self.status = up, status

    def describe_table(self, TableName: str) -> dict[str, Any]:
        if not self.up:
            raise ConnectionError("Could not connect to the endpoint URL")
        return {"Table": {"TableName": TableName, "TableStatus": self.status}}


class FakeRedis:
    def __init__(self, up: bool = True) -> None:
        self.up = up

    def ping(self) -> bool:
        if not self.up:
            raise TimeoutError("Timeout connecting to server")
        return True


@dataclass
class FakeFeed:
    """The feed table; ``deliver`` plays stream + cache refresher (or not, when None)."""

    cache: FakeFeedCache
    deliver: bool = True
    fail_writes: bool = False
    items: dict[tuple[str, str], FeedEntry] = field(default_factory=dict)

    def put_many(self, entries: list[FeedEntry]) -> int:
        if self.fail_writes:
            raise RuntimeError("ProvisionedThroughputExceededException")
        for e in entries:
            self.items[(e.user_id, e.post_id)] = e
            if self.deliver and e.user_id in self.cache.feeds:
                self.cache.feeds[e.user_id].append(f"{e.post_id}:{e.author_id}")
        return len(entries)

    def delete_many(self, keys: list[tuple[str, str]]) -> int:
        for key in keys:
            self.items.pop(key, None)
        return len(keys)


@dataclass
class FakeFeedCache:
    feeds: dict[str, list[str]] = field(default_factory=dict)
    up: bool = True

    def warm(self, user_id: str, after: str | None, refs: list[Any], complete: bool) -> bool:
        if not self.up:
            raise CacheError("down")
        self.feeds[user_id] = ["0"]
        return True

    def members(self, user_id: str) -> list[str]:
        return list(self.feeds.get(user_id, []))

    def drop(self, user_id: str) -> None:
        self.feeds.pop(user_id, None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def service(
    dynamodb: FakeDynamoDB | None = None,
    redis_client: FakeRedis | None = None,
    feed: FakeFeed | None = None,
    cache: FakeFeedCache | None = None,
) -> tuple[HealthService, FakeFeed, FakeFeedCache]:
    cache = cache or FakeFeedCache()
    feed = feed or FakeFeed(cache)
    clock = Clock()
    health = HealthService(
        dynamodb=dynamodb or FakeDynamoDB(),
        feed_table="feed",
        redis_client=redis_client or FakeRedis(),  # type: ignore[arg-type]
        feed=feed,  # type: ignore[arg-type]
        feed_cache=cache,  # type: ignore[arg-type]
        deep_timeout_s=2.0,
        clock=clock,
        sleep=clock.sleep,
    )
    return health, feed, cache


def test_live_checks_nothing() -> None:
    health, _, _ = service(dynamodb=FakeDynamoDB(up=False), redis_client=FakeRedis(up=False))
    assert health.live() == {"status": "ok"}


@pytest.mark.parametrize(
    ("dynamodb_up", "redis_up", "http_status", "status"),
    [
        (True, True, 200, "ok"),
        (True, False, 200, "degraded"),  # reads fall back to DynamoDB
        (False, True, 503, "unavailable"),  # the source of truth is gone
        (False, False, 503, "unavailable"),
    ],
)
def test_ready_maps_dependencies_to_a_status(
    dynamodb_up: bool, redis_up: bool, http_status: int, status: str
) -> None:
    health, _, _ = service(dynamodb=FakeDynamoDB(up=dynamodb_up), redis_client=FakeRedis(up=redis_up))
    code, body = health.ready()
    assert (code, body["status"]) == (http_status, status)
    assert set(body["checks"]) == {"dynamodb", "redis"}
    for name, up in (("dynamodb", dynamodb_up), ("redis", redis_up)):
        check = body["checks"][name]
        assert check["status"] == ("ok" if up else "down")
        assert isinstance(check["latency_ms"], float)
        # the error names its type only: no endpoint or message leaks to unauthenticated callers
        assert check.get("error") in (None, "ConnectionError", "TimeoutError")


def test_a_table_that_is_not_active_is_down() -> None:
    health, _, _ = service(dynamodb=FakeDynamoDB(status="DELETING"))
    assert health.ready()[0] == 503


def test_deep_reports_lag_and_cleans_up() -> None:
    health, feed, cache = service()
    written: list[str] = []
    put_many = feed.put_many
    feed.put_many = lambda entries: written.extend(e.user_id for e in entries) or put_many(entries)  # type: ignore[method-assign]
    code, body = health.deep()
    assert code == 200 and body["status"] == "ok" and body["lag_ms"] >= 0
    # the probe's reader is reserved: lower-case, so never a user id (an upper-case ULID)
    assert written[0].startswith(PROBE_READER_PREFIX) and written[0] != written[0].upper()
    assert feed.items == {} and cache.feeds == {}  # probe item and cached feed removed


def test_deep_times_out_with_503_when_nothing_arrives() -> None:
    cache = FakeFeedCache()
    health, feed, _ = service(feed=FakeFeed(cache, deliver=False), cache=cache)
    code, body = health.deep()
    assert code == 503 and body["stage"] == "deliver"
    assert feed.items == {} and cache.feeds == {}


def test_deep_fails_fast_when_a_store_is_down() -> None:
    health, feed, _ = service(redis_client=FakeRedis(up=False))
    code, body = health.deep()
    assert code == 503 and body["stage"] == "ready" and feed.items == {}


def test_deep_reports_a_failed_write() -> None:
    cache = FakeFeedCache()
    health, _, _ = service(feed=FakeFeed(cache, fail_writes=True), cache=cache)
    code, body = health.deep()
    assert code == 503 and body["stage"] == "write" and cache.feeds == {}
