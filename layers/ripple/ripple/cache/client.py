"""The Redis connection, created once per container with short timeouts."""

from __future__ import annotations

import redis

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
        decode_responses=True,
    )
