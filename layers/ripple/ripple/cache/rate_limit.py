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

``limits`` itself (``ripple.cache.moving_window``) is imported by the first check that counts
a request, not at cold start: a read, which no limit applies to, never needs it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import redis

from ripple.cache.pipelines import ScriptPipeline
from ripple.errors import RateLimitedError

if TYPE_CHECKING:
    from limits import RateLimitItemPerSecond
    from limits.strategies import MovingWindowRateLimiter

    from ripple.cache.moving_window import MovingWindowStorage

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
        from limits import RateLimitItemPerSecond

        return RateLimitItemPerSecond(self.amount, self.window_seconds, namespace=self.name)

    def describe(self) -> str:
        per = "minute" if self.window_seconds == 60 else f"{self.window_seconds} s"
        return f"{self.amount} per {per}"


@dataclass(frozen=True)
class PendingChecks:
    """Checks queued on a pipeline (:meth:`RateLimiter.queue`), awaiting its results."""

    limiter: RateLimiter
    checks: list[tuple[Limit, str]]

    def settle(self, acquired: Sequence[Any]) -> bool:
        """True when every check acquired a slot; else RateLimitedError for the first that did
        not. Raises redis.RedisError if reading the refused window fails."""
        for (limit, subject), ok in zip(self.checks, acquired, strict=True):
            if not ok:
                raise self.limiter._refuse(limit, subject)
        return True


class RateLimiter:
    """Checks requests against :class:`Limit` s. ``clock`` gives the time in epoch seconds
    (default ``time.time``; a test's clock may be any monotonic sequence)."""

    def __init__(self, client: redis.Redis, clock: Clock = time.time) -> None:
        self._client = client
        self._clock = clock

    @cached_property
    def _storage(self) -> MovingWindowStorage:
        from ripple.cache.moving_window import MovingWindowStorage

        return MovingWindowStorage(self._client, self._clock, KEY_PREFIX)

    @cached_property
    def _moving_window(self) -> MovingWindowRateLimiter:
        from limits.strategies import MovingWindowRateLimiter

        return MovingWindowRateLimiter(self._storage)

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
        pipe = ScriptPipeline(self._client)
        pending = self.queue(pipe, checks)
        if not pending.checks:
            return True
        try:
            return pending.settle(pipe.execute())
        except redis.RedisError:
            return False

    def queue(self, pipe: ScriptPipeline, checks: Sequence[tuple[Limit, str]]) -> PendingChecks:
        """Queue ``checks`` (those with ``amount`` > 0) on ``pipe``, to share a round trip with
        other commands; settle the returned :class:`PendingChecks` with their results."""
        active = [(limit, subject) for limit, subject in checks if limit.amount > 0]
        now = self._clock()
        for limit, subject in active:
            item = limit.item()
            self._storage.queue_acquire(pipe, item.key_for(subject), item.amount, item.get_expiry(), now)
        return PendingChecks(self, active)

    def _refuse(self, limit: Limit, subject: str) -> RateLimitedError:
        """The 429 for a refused check; reads the window (a round trip) for Retry-After.
        Raises redis.RedisError when Redis fails."""
        stats = self._moving_window.get_window_stats(limit.item(), subject)
        now = self._clock()
        # remaining > 0: the oldest entry left the window since the hit; a retry may pass now.
        # Never more than the window: the stored timestamps' rounding can push reset_time a
        # hair past now + window.
        wait = min(limit.window_seconds, math.ceil(stats.reset_time - now))
        retry_after = 1 if stats.remaining > 0 else max(1, wait)
        return RateLimitedError(
            f"rate limit exceeded ({limit.describe()}); retry in {retry_after} s", retry_after=retry_after
        )

    def reset(self, limit: Limit, subject: str) -> None:
        """Forget ``subject``'s requests under ``limit`` (an operator unblocking a client).
        Raises redis.RedisError when Redis is unavailable."""
        self._moving_window.clear(limit.item(), subject)
