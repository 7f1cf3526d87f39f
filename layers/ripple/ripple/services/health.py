"""Health: is the process up, can it reach its dependencies, does the pipeline deliver?

* :meth:`HealthService.live` - the function runs (no I/O; for load balancers and smoke tests).
* :meth:`HealthService.ready` - DynamoDB (DescribeTable of the feed table) and Redis (PING),
  each with its latency. DynamoDB is the source of truth, so without it Ripple is
  ``unavailable`` (503); without Redis reads fall back to DynamoDB, so it is ``degraded``
  but serving (200).
* :meth:`HealthService.deep` - a probe through the asynchronous path: it warms the cached
  feed of a reserved probe reader, writes one feed item for it to DynamoDB, and waits
  (bounded) until the feed stream and the cache refresher have put it into Redis. The
  measured ``lag_ms`` is the pipeline's real end-to-end delay; 503 if it never arrives.
  The probe item and cache are removed afterwards. Like any feed insert, the probe is
  also observed by the refresher's ``FeedLag`` metric.

Every call is bounded: the DynamoDB client given here should have short timeouts and no
retries (``ripple.repositories.health_probe.health_dynamodb_client``), Redis has the
container's 250 ms timeouts, and the deep probe polls until ``deep_timeout_s`` at most.
No Chalice here: the API maps the ``(http_status, body)`` results to responses.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ripple.cache.errors import CacheError
from ripple.cache.feed_cache import FeedCache, FeedRef
from ripple.domain import FeedEntry
from ripple.ids import new_ulid
from ripple.observability import logger
from ripple.repositories.feed import FeedRepository

if TYPE_CHECKING:  # the service only receives clients; building them is data access's job
    import redis

__all__ = [
    "DEGRADED",
    "OK",
    "PROBE_AUTHOR_ID",
    "PROBE_READER_PREFIX",
    "UNAVAILABLE",
    "HealthService",
]

OK, DEGRADED, UNAVAILABLE = "ok", "degraded", "unavailable"
UP, DOWN = "ok", "down"
# Probe ids are lower-case with a dash, so they can never be a user id (an upper-case ULID).
# Each probe gets its own reader, so concurrent probes cannot remove each other's items.
PROBE_READER_PREFIX = "health-probe-"
PROBE_AUTHOR_ID = "health-probe"
# Local delivery takes well under a second; on AWS a stream adds up to about a second. Ten
# seconds without arrival means the pipeline is stuck, not slow.
DEEP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class HealthService:
    def __init__(
        self,
        *,
        dynamodb: Any,
        feed_table: str,
        redis_client: redis.Redis,
        feed: FeedRepository,
        feed_cache: FeedCache,
        deep_timeout_s: float = DEEP_TIMEOUT_S,
        poll_interval_s: float = POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._dynamodb = dynamodb
        self._feed_table = feed_table
        self._redis = redis_client
        self._feed = feed
        self._feed_cache = feed_cache
        self._deep_timeout_s = deep_timeout_s
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._sleep = sleep

    # ------------------------------------------------------------------ live / ready

    def live(self) -> dict[str, Any]:
        """The process answers; checks nothing else."""
        return {"status": OK}

    def ready(self) -> tuple[int, dict[str, Any]]:
        """Per-dependency status and latency; 503 only when DynamoDB is down."""
        checks = {"dynamodb": self._check(self._ping_dynamodb), "redis": self._check(self._ping_redis)}
        if checks["dynamodb"]["status"] != UP:
            status, http_status = UNAVAILABLE, 503
        elif checks["redis"]["status"] != UP:
            status, http_status = DEGRADED, 200
        else:
            status, http_status = OK, 200
        return http_status, {"status": status, "checks": checks}

    def _ping_dynamodb(self) -> None:
        table = self._dynamodb.describe_table(TableName=self._feed_table)["Table"]
        if table.get("TableStatus") not in ("ACTIVE", "UPDATING"):
            raise RuntimeError(f"table status {table.get('TableStatus')}")

    def _ping_redis(self) -> None:
        if not self._redis.ping():
            raise RuntimeError("no PONG")

    def _check(self, probe: Callable[[], None]) -> dict[str, Any]:
        started = self._clock()
        try:
            probe()
        except Exception as error:
            # The class name only: health answers unauthenticated callers, and a message
            # may carry endpoints or table names.
            logger.warning("health check failed", extra={"check": probe.__name__, "error": repr(error)})
            return {"status": DOWN, "latency_ms": _ms(self._clock() - started), "error": type(error).__name__}
        return {"status": UP, "latency_ms": _ms(self._clock() - started)}

    # ------------------------------------------------------------------ deep

    def deep(self) -> tuple[int, dict[str, Any]]:
        """Write a probe feed item and wait for it in Redis; 200 with ``lag_ms``, or 503."""
        _, readiness = self.ready()
        if readiness["status"] != OK:
            # Without both stores the probe cannot arrive: say why at once rather than time out.
            return 503, {"status": UNAVAILABLE, "stage": "ready", "checks": readiness["checks"]}

        now_ms = int(time.time() * 1000)
        entry = FeedEntry(
            user_id=f"{PROBE_READER_PREFIX}{new_ulid(now_ms)}",
            post_id=new_ulid(now_ms),
            author_id=PROBE_AUTHOR_ID,
            created_at=now_ms,
        )
        ref = FeedRef.of(entry)
        body: dict[str, Any] = {"timeout_s": self._deep_timeout_s}
        try:
            # A cached (empty, complete) feed: the refresher only adds to feeds that are cached.
            self._feed_cache.warm(entry.user_id, None, [], complete=True)
        except CacheError as error:
            return 503, {**body, "status": UNAVAILABLE, "stage": "warm", "error": type(error).__name__}
        written = False
        try:
            started = self._clock()
            try:
                self._feed.put_many([entry])
                written = True
            except Exception as error:
                logger.warning("deep health probe could not write", extra={"error": repr(error)})
                return 503, {**body, "status": UNAVAILABLE, "stage": "write", "error": type(error).__name__}
            body["write_ms"] = _ms(self._clock() - started)
            lag_s = self._wait_for(entry.user_id, ref.member, started)
        finally:
            self._clean_up(entry, written)
        if lag_s is None:
            logger.warning("deep health probe did not arrive", extra={"timeout_s": self._deep_timeout_s})
            return 503, {**body, "status": UNAVAILABLE, "stage": "deliver"}
        return 200, {**body, "status": OK, "lag_ms": _ms(lag_s)}

    def _wait_for(self, reader: str, member: str, started: float) -> float | None:
        """Seconds from ``started`` until ``member`` is in the reader's cached feed, or None."""
        deadline = started + self._deep_timeout_s
        while True:
            try:
                if member in self._feed_cache.members(reader):
                    return self._clock() - started
            except CacheError:
                pass  # Redis blinked: keep polling until the deadline
            if self._clock() >= deadline:
                return None
            self._sleep(self._poll_interval_s)

    def _clean_up(self, entry: FeedEntry, written: bool) -> None:
        """Best effort: a left-over probe item is harmless (its reader id is reserved)."""
        if written:
            try:
                self._feed.delete_many([(entry.user_id, entry.post_id)])
            except Exception as error:
                logger.warning("deep health probe item not removed", extra={"error": repr(error)})
        with contextlib.suppress(CacheError):
            self._feed_cache.drop(entry.user_id)
