"""Rate limits over any span of the window, in Redis: the moving window of the ``limits`` package.

A fixed window (one counter per calendar minute) lets twice the limit through: the whole
limit at the end of one minute and again at the start of the next. A moving window keeps
the time of each accepted request (``limits``' Redis moving-window strategy: a list of at
most ``amount`` timestamps per subject, checked and appended by one Lua script), so at most
``amount`` requests are accepted in *any* ``window_seconds`` span.

Redis cost: one round trip (EVALSHA of ``acquire_moving_window.lua``: LINDEX, LPUSH, LTRIM,
EXPIRE) per check, and :meth:`RateLimiter.check_all` pipelines several limits (a writer's
per-user and per-IP) into that one round trip; a refused check costs a second one
(``moving_window.lua``, a binary search of at most log2(amount) LINDEXes) to tell when the
oldest entry leaves the window (``Retry-After``). Memory: at most ``amount`` timestamps per
subject, expiring with the window.

If Redis is unavailable the limiter fails open - availability over strictness - and API
Gateway's own throttling still bounds the worst case.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from ripple.cache.pipelines import ScriptPipeline
from ripple.errors import RateLimitedError

# Keys are rl:{name}/{subject}/{amount}/{window_seconds}/second (``limits``' key format).
KEY_PREFIX = "rl"
Clock = Callable[[], float]


@dataclass(frozen=True)
class Limit:
    """At most ``amount`` requests per subject in any ``window_seconds``; ``amount`` 0 disables."""

    name: str  # e.g. "writes:user"
    amount: int
    window_seconds: int = 60

    def item(self) -> RateLimitItemPerSecond:
        return RateLimitItemPerSecond(self.amount, self.window_seconds, namespace=self.name)

    def describe(self) -> str:
        per = "minute" if self.window_seconds == 60 else f"{self.window_seconds} s"
        return f"{self.amount} per {per}"


class _RedisMovingWindowStorage(RedisStorage):
    """``limits``' Redis storage on Ripple's own connection pool (its short timeouts, TLS and
    no client retries), with the time taken from ``clock``.

    ``RedisStorage`` timestamps the moving window with ``time.time()`` itself; the two methods
    below are its own with the clock injected (so tests can cross a window boundary without
    sleeping). The algorithm - the library's Lua scripts - is unchanged.
    """

    def __init__(self, client: redis.Redis, clock: Clock) -> None:
        super().__init__("redis://", connection_pool=client.connection_pool, key_prefix=KEY_PREFIX)
        self._client = client
        self._clock = clock

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        acquired = self.lua_acquire_moving_window(
            [self.prefixed_key(key)], [self._clock(), limit, expiry, amount]
        )
        return bool(acquired)

    def acquire_entries(self, entries: Sequence[tuple[str, int, int]]) -> list[bool]:
        """:meth:`acquire_entry` (amount 1) for each (key, limit, expiry), in one round trip.
        Each is the library's own script, run independently, in order."""
        pipe = ScriptPipeline(self._client)
        now = self._clock()
        for key, limit, expiry in entries:
            pipe.script(self.lua_acquire_moving_window, [self.prefixed_key(key)], [now, limit, expiry, 1])
        return [bool(acquired) for acquired in pipe.execute()]

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = self._clock()
        window = self.lua_moving_window([self.prefixed_key(key)], [now - expiry, limit])
        if window:
            return float(window[0]), int(window[1])
        return now, 0


class RateLimiter:
    """Checks requests against :class:`Limit` s. ``clock`` gives the time in epoch seconds
    (default ``time.time``; a test's clock may be any monotonic sequence)."""

    def __init__(self, client: redis.Redis, clock: Clock = time.time) -> None:
        self._clock = clock
        self._storage = _RedisMovingWindowStorage(client, clock)
        self._moving_window = MovingWindowRateLimiter(self._storage)

    def check(self, limit: Limit, subject: str) -> bool:
        """Count one request of ``subject`` (a user id, a source IP) against ``limit``.

        Raises RateLimitedError (429) when ``limit.amount`` requests were already accepted
        in the last ``limit.window_seconds``; its ``retry_after`` is the whole seconds until
        the oldest of them leaves the window (a slot frees), at least 1. A refused request
        takes no slot. Returns False when the limit could not be checked (Redis down: fail
        open), True otherwise.
        """
        return self.check_all([(limit, subject)])

    def check_all(self, checks: Sequence[tuple[Limit, str]]) -> bool:
        """:meth:`check` for each (limit, subject), all in one Redis round trip. Each limit
        counts the request on its own (as separate checks in this order would, except that a
        refusal does not stop the later ones from counting it); RateLimitedError names the
        first limit that refused."""
        active = [(limit, subject) for limit, subject in checks if limit.amount > 0]
        if not active:
            return True
        items = [(limit, limit.item(), subject) for limit, subject in active]
        try:
            acquired = self._storage.acquire_entries(
                [(item.key_for(subject), item.amount, item.get_expiry()) for _, item, subject in items]
            )
            refused = next(
                ((lim, it, sub) for (lim, it, sub), ok in zip(items, acquired, strict=True) if not ok), None
            )
            if refused is None:
                return True
            limit, item, subject = refused
            stats = self._moving_window.get_window_stats(item, subject)
        except redis.RedisError:
            return False
        now = self._clock()
        # remaining > 0: the oldest entry left the window since the hit; a retry may pass now.
        # Never more than the window: the stored timestamps' rounding can push reset_time a
        # hair past now + window.
        wait = min(limit.window_seconds, math.ceil(stats.reset_time - now))
        retry_after = 1 if stats.remaining > 0 else max(1, wait)
        raise RateLimitedError(
            f"rate limit exceeded ({limit.describe()}); retry in {retry_after} s", retry_after=retry_after
        )

    def reset(self, limit: Limit, subject: str) -> None:
        """Forget ``subject``'s requests under ``limit`` (an operator unblocking a client).
        Raises redis.RedisError when Redis is unavailable."""
        self._moving_window.clear(limit.item(), subject)
