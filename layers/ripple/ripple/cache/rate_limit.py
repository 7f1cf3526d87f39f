"""Fixed-window rate limits in Redis (``rl:{name}:{subject}:{window}``).

One INCR per check, the key expiring with its window: cheap enough for every write.
If Redis is unavailable the limiter fails open — availability over strictness — and
API Gateway's own throttling still bounds the worst case.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from ripple.errors import RateLimitedError

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Limit:
    name: str  # e.g. "writes:user"
    per_minute: int  # 0 disables


class RateLimiter:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def check(self, limit: Limit, subject: str, now: float | None = None) -> bool:
        """Count one request; raise RateLimitedError over the limit. Returns False when the
        limit could not be checked (Redis down: fail open)."""
        if limit.per_minute <= 0:
            return True
        t = time.time() if now is None else now
        window = int(t // WINDOW_SECONDS)
        key = f"rl:{limit.name}:{subject}:{window}"
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS + 5)
            used, _ = pipe.execute()
        except redis.RedisError:
            return False
        if int(used) > limit.per_minute:
            retry_after = int((window + 1) * WINDOW_SECONDS - t) + 1
            raise RateLimitedError(
                f"rate limit exceeded ({limit.per_minute} per minute); retry in {retry_after} s",
                retry_after=retry_after,
            )
        return True
