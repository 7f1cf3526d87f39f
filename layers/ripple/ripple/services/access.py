"""Admitting an authenticated request: the caller's account exists and they are within
their rate limits, in one Redis round trip when the caller is known.

Ordering: the token is verified first (no I/O, ``ripple.auth.tokens``); then one pipeline
asks Redis whether the account is known (``ripple.cache.known_users``) and counts the
request against its limits (``ripple.cache.rate_limit``). Only an unknown caller costs a
DynamoDB read (then remembered). Redis down: limits fail open and DynamoDB answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from ripple.cache.errors import CacheError
from ripple.cache.known_users import KnownUsers
from ripple.cache.rate_limit import Limit, RateLimiter
from ripple.errors import AuthenticationError
from ripple.observability import count
from ripple.repositories.users import UserRepository


class AccessGuard:
    def __init__(self, users: UserRepository, known: KnownUsers, limiter: RateLimiter) -> None:
        self._users = users
        self._known = known
        self._limiter = limiter

    def admit(self, user_id: str, limits: Sequence[tuple[Limit, str]] = ()) -> None:
        """Raises AuthenticationError (401 ``invalid_token``) when the account no longer
        exists, RateLimitedError (429) when a limit refuses the request."""
        known, verdict = self._known.check(user_id, self._limiter, limits)
        if known is None:
            count("CacheErrors")
        self.confirm(user_id, known)  # a deleted account is a 401 before any limit's 429
        verdict()

    def confirm(self, user_id: str, known: bool | None) -> None:
        """The account check, given what Redis said (``known``; None: Redis could not say):
        an unknown account is read from DynamoDB and, if it exists, remembered. Raises
        AuthenticationError (401 ``invalid_token``) when it does not exist."""
        if known:
            return
        if not self._users.exists(user_id):
            raise AuthenticationError("your account no longer exists", code="invalid_token")
        if known is not None:
            try:
                self._known.remember(user_id)
            except CacheError:
                count("CacheErrors")
