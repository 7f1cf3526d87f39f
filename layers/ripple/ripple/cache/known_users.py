"""Accounts known to exist, in Redis: ``user:known:{user_id}``, a marker with a TTL.

Every authenticated request must belong to an account that still exists (a token can outlive
its account). Asking DynamoDB on every request costs a read and a round trip each time; this
marker answers from Redis, in the round trip the request makes anyway (its rate limits, its
feed page), and DynamoDB is asked only when the marker is missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import redis

from ripple.cache.errors import translated
from ripple.cache.pipelines import ScriptPipeline
from ripple.cache.rate_limit import Limit, RateLimiter

# An account's removal deletes its marker (forget); should Redis miss that, the marker still
# expires within an access token's lifetime (ACCESS_TOKEN_TTL_SECONDS' default), the bound
# within which a removed account's tokens would stop working anyway.
KNOWN_USER_TTL_SECONDS = 900


def known_user_key(user_id: str) -> str:
    return f"user:known:{user_id}"


class KnownUsers:
    """:meth:`remember` and :meth:`forget` raise :class:`ripple.cache.errors.CacheError`."""

    def __init__(self, client: redis.Redis, ttl_seconds: int = KNOWN_USER_TTL_SECONDS) -> None:
        self._redis = client
        self._ttl = ttl_seconds

    def queue_is_known(self, pipe: ScriptPipeline, user_id: str) -> None:
        """Queue the check on ``pipe``; its result is 1 (known) or 0."""
        pipe.command("exists", known_user_key(user_id))

    def check(
        self, user_id: str, limiter: RateLimiter, limits: Sequence[tuple[Limit, str]]
    ) -> tuple[bool | None, Callable[[], None]]:
        """One round trip: whether ``user_id`` is known (None when Redis could not say), and
        ``limits`` counted. Returns that and the limits' verdict to call once the account is
        confirmed: it raises RateLimitedError (429) for a refused limit, so a token of a
        deleted account is a 401, not a 429 (the limits fail open if Redis failed)."""
        pipe = ScriptPipeline(self._redis)
        self.queue_is_known(pipe, user_id)
        pending = limiter.queue(pipe, limits)
        try:
            known, *acquired = pipe.execute()
        except redis.RedisError:
            return None, lambda: None

        def verdict() -> None:
            with contextlib.suppress(redis.RedisError):  # reading a refused window failed: fail open
                pending.settle(acquired)

        return bool(known), verdict

    @translated
    def remember(self, user_id: str) -> None:
        self._redis.set(known_user_key(user_id), "1", ex=self._ttl)

    @translated
    def is_known(self, user_id: str) -> bool:
        """Whether the marker is present (for checks; requests use :meth:`check`)."""
        return bool(self._redis.exists(known_user_key(user_id)))

    @translated
    def forget(self, user_id: str) -> None:
        self._redis.delete(known_user_key(user_id))

    def queue_forget(self, pipe: ScriptPipeline, user_id: str) -> None:
        """:meth:`forget` queued on ``pipe``."""
        pipe.command("delete", known_user_key(user_id))
