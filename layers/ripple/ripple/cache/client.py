"""The Redis connection, created once per container with short timeouts."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ripple.config import Settings


def create_redis(settings: Settings) -> redis.Redis:
    """A client that fails fast: callers treat a Redis error as a cache miss."""
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        ssl=settings.redis_tls,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=30,
        # No client-side retries: redis-py's default (10 with backoff) turns a dead Redis
        # into seconds per call; the caller falls back to DynamoDB (reads) or the stream
        # retries the record (writes).
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
