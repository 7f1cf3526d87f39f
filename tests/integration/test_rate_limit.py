"""The rate limiter (``ripple.cache.rate_limit``) on a real redis-server, with a test clock: a
limit holds over *any* span of its window, not per calendar minute (issue 12, item 2)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from ripple.cache.client import create_redis
from ripple.cache.rate_limit import Limit, RateLimiter
from ripple.config import Settings
from ripple.errors import RateLimitedError

pytestmark = pytest.mark.integration


class Clock:
    """A clock the test moves by hand (epoch seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def client(redis_server: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server, decode_responses=True, socket_timeout=1)
    yield c
    c.close()


def subject() -> str:
    return uuid.uuid4().hex


def most_in_any_span(times: list[float], span: float) -> int:
    """The largest number of ``times`` inside any half-open interval of length ``span``."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= span:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_120_writes_across_a_minute_boundary_accept_at_most_60(client: redis.Redis) -> None:
    """The issue's input: 120 writes by one user within 4.9 s, 60 each side of a minute
    boundary, against 60 per minute. A fixed window accepted all 120."""
    boundary = (int(time.time()) // 60 + 5) * 60.0  # a calendar-minute boundary
    clock = Clock(boundary - 2.45)
    limiter, limit, user = RateLimiter(client, clock), Limit("writes:user", 60), subject()
    accepted, refused = [], []
    for i in range(120):
        clock.now = boundary - 2.45 + i * 0.041  # 0 ... 4.88 s
        try:
            limiter.check(limit, user)
            accepted.append(clock.now)
        except RateLimitedError as exc:
            refused.append((clock.now, exc.retry_after))
    assert len(accepted) == 60, f"{len(accepted)} of 120 accepted"
    assert accepted == sorted(accepted)[:60] and accepted[-1] < boundary  # the first 60, then none
    # Retry-After is the time until the oldest accepted write leaves the window (a slot frees).
    for now, retry_after in refused:
        assert retry_after == max(1, int(-(-(accepted[0] + 60 - now) // 1))), (now, retry_after)

    # Just before the first slot frees: still refused; just after: one more, and only one.
    clock.now = accepted[0] + 60 - 0.01
    with pytest.raises(RateLimitedError) as raised:
        limiter.check(limit, user)
    assert raised.value.retry_after == 1
    clock.now = accepted[0] + 60 + 0.001
    limiter.check(limit, user)
    with pytest.raises(RateLimitedError):
        limiter.check(limit, user)


def test_a_steady_stream_never_gets_more_than_the_limit_in_any_window(client: redis.Redis) -> None:
    """Three minutes of 3 requests a second, starting anywhere in a minute: at most 60 are
    accepted in any 60-second span, and the limiter lets about 60 a minute through."""
    start = (int(time.time()) // 60 + 10) * 60.0 + 37.3
    clock = Clock(start)
    limiter, limit, user = RateLimiter(client, clock), Limit("writes:user", 60), subject()
    accepted = []
    for i in range(3 * 180):
        clock.now = start + i / 3
        try:
            limiter.check(limit, user)
            accepted.append(clock.now)
        except RateLimitedError as exc:
            assert 1 <= exc.retry_after <= 60
    assert most_in_any_span(accepted, 60) == 60
    assert 170 <= len(accepted) <= 180


def test_limits_are_per_subject_and_per_name_and_zero_disables(client: redis.Redis) -> None:
    clock = Clock(time.time())
    limiter = RateLimiter(client, clock)
    a, b = subject(), subject()
    for _ in range(3):
        limiter.check(Limit("writes:user", 3), a)
    with pytest.raises(RateLimitedError, match=r"3 per minute"):
        limiter.check(Limit("writes:user", 3), a)
    limiter.check(Limit("writes:user", 3), b)  # another user
    limiter.check(Limit("writes:ip", 3), a)  # another limit
    for _ in range(100):
        assert limiter.check(Limit("writes:user", 0), a) is True  # 0 disables


def test_a_short_window_in_real_time(client: redis.Redis) -> None:
    """The default clock: 5 per 2 s, 10 requests at once, then a slot frees within 2 s."""
    limiter, limit, user = RateLimiter(client), Limit("auth:ip", 5, window_seconds=2), subject()
    outcomes = []
    for _ in range(10):
        try:
            limiter.check(limit, user)
            outcomes.append(None)
        except RateLimitedError as exc:
            outcomes.append(exc.retry_after)
    assert outcomes[:5] == [None] * 5 and all(r in (1, 2) for r in outcomes[5:]), outcomes
    time.sleep(2.05)
    assert limiter.check(limit, user) is True


def test_redis_down_fails_open_after_one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """The container's client (no retries, 250 ms timeouts) on a port nothing listens on: each
    check fails open after one connection attempt, not redis-py's retries with backoff."""
    limiter = RateLimiter(create_redis(Settings(redis_port=1)))
    attempts: list[int] = []
    connect = redis.connection.Connection.connect

    def counting_connect(self: redis.connection.Connection) -> None:
        attempts.append(1)
        connect(self)

    monkeypatch.setattr(redis.connection.Connection, "connect", counting_connect)
    assert limiter.check(Limit("writes:user", 1), subject()) is False
    assert limiter.check(Limit("writes:user", 1), subject()) is False
    assert len(attempts) == 2


def test_several_limits_are_checked_in_one_round_trip(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer's per-user and per-IP limits: one round trip when both admit (issue 11: fewer
    round trips before a write's answer); a refusal names the limit that refused."""
    clock = Clock(time.time())
    limiter = RateLimiter(client, clock)
    user, ip = Limit("writes:user", 2), Limit("writes:ip", 3)
    me, addr = subject(), subject()
    sent: list[int] = []
    original = redis.connection.Connection.send_packed_command

    def counting(self: redis.connection.Connection, command: object, check_health: bool = True) -> None:
        sent.append(1)
        original(self, command, check_health)

    limiter.check_all([(user, me), (ip, addr)])  # scripts loaded, connection open
    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    assert limiter.check_all([(user, me), (ip, addr)]) is True
    assert len(sent) == 1
    with pytest.raises(RateLimitedError, match=r"2 per minute") as refused:
        limiter.check_all([(user, me), (ip, addr)])  # the user's third: refused
    assert 1 <= refused.value.retry_after <= 60
    # The IP limit counted that request too (3 of 3), so another user from it is refused.
    with pytest.raises(RateLimitedError, match=r"3 per minute"):
        limiter.check_all([(user, subject()), (ip, addr)])
    assert limiter.check_all([(Limit("writes:user", 0), me)]) is True  # 0 disables, no round trip
