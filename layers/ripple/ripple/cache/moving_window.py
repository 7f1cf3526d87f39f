"""``limits``' Redis moving-window storage, for :class:`ripple.cache.rate_limit.RateLimiter`.

A module of its own so that ``limits`` is imported by the first check that counts a request,
not at every cold start (the rate limiter imports this module then).
"""

from __future__ import annotations

from collections.abc import Callable

import redis
from limits.storage import RedisStorage

from ripple.cache.pipelines import ScriptPipeline


class MovingWindowStorage(RedisStorage):
    """``limits``' Redis storage on Ripple's own connection pool (its short timeouts, TLS and
    no client retries), with the time taken from ``clock``.

    ``RedisStorage`` timestamps the moving window with ``time.time()`` itself; the two methods
    below are its own with the clock injected (so tests can cross a window boundary without
    sleeping). The algorithm - the library's Lua scripts - is unchanged.
    """

    def __init__(self, client: redis.Redis, clock: Callable[[], float], key_prefix: str) -> None:
        super().__init__("redis://", connection_pool=client.connection_pool, key_prefix=key_prefix)
        self.client = client
        self._clock = clock

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        acquired = self.lua_acquire_moving_window(
            [self.prefixed_key(key)], [self._clock(), limit, expiry, amount]
        )
        return bool(acquired)

    def queue_acquire(self, pipe: ScriptPipeline, key: str, limit: int, expiry: int, now: float) -> None:
        """:meth:`acquire_entry` (amount 1) queued on ``pipe``: the library's own script."""
        pipe.script(self.lua_acquire_moving_window, [self.prefixed_key(key)], [now, limit, expiry, 1])

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = self._clock()
        window = self.lua_moving_window([self.prefixed_key(key)], [now - expiry, limit])
        if window:
            return float(window[0]), int(window[1])
        return now, 0
