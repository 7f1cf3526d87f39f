"""Network round trips a request makes before its answer (issue 11: "writes make fewer
round trips"), counted in process on the request's own thread against the real emulator
and redis-server: every HTTP request botocore sends, every packet redis-py sends (one per
command or pipeline). Stream runners work on other threads and are not counted."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import botocore.endpoint
import jwt
import pytest
import redis
from chalice.test import Client

from ripple.cache.known_users import known_user_key
from ripple.cache.liked_posts import SKEW_MARGIN_MS as LIKED_SKEW_MARGIN_MS
from ripple.cache.timeline import REGISTRY_KEY
from ripple.container import Container
from ripple.ids import new_ulid
from ripple_local.stack import LocalStack
from tests.integration.support import TEST_HIGH_FOLLOWER_THRESHOLD

pytestmark = pytest.mark.integration


class RoundTrips:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        self.aws_operations: list[str] = []
        thread = threading.get_ident()
        send_aws = botocore.endpoint.Endpoint._send
        send_redis = redis.connection.Connection.send_packed_command

        def aws(endpoint: Any, request: Any) -> Any:
            if threading.get_ident() == thread:
                self.counts["aws"] += 1
                target = request.headers.get("X-Amz-Target", b"")
                target = target.decode() if isinstance(target, bytes) else str(target)
                self.aws_operations.append(target.rpartition(".")[2])
            return send_aws(endpoint, request)

        def to_redis(connection: Any, command: Any, check_health: bool = True) -> None:
            if threading.get_ident() == thread:
                self.counts["redis"] += 1
            send_redis(connection, command, check_health)

        monkeypatch.setattr(botocore.endpoint.Endpoint, "_send", aws)
        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", to_redis)

    def reset(self) -> None:
        self.counts.clear()
        self.aws_operations.clear()


@pytest.fixture
def client(stack: LocalStack) -> Iterator[Client]:
    with Client(stack.handler("ApiFunction")) as c:
        yield c


def call(client: Client, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = client.http.request(
        method, path, headers=headers, body=json.dumps(body).encode() if body else b""
    )
    return response.status_code, json.loads(response.body) if response.body else None


def test_a_post_answers_after_three_sequential_round_trips(
    client: Client, monkeypatch: pytest.MonkeyPatch, stack: LocalStack
) -> None:
    """POST /posts: one Redis pipeline (the caller's account is known, both rate limits), the
    transaction with the author's own feed item, one Redis pipeline for the caches. (Today's
    main made seven: a user GetItem, a separate feed write, one Redis command per limit and
    per cache.)"""
    status, signed = call(
        client, "POST", "/auth/signup", body={"username": "rt_author", "password": "password123"}
    )
    assert status == 201
    token = signed["access_token"]
    assert call(client, "POST", "/posts", token, {"text": "warm-up"})[0] == 201  # clients, scripts
    assert call(client, "GET", "/feed", token)[0] == 200  # the author's feed is now cached
    trips = RoundTrips(monkeypatch)
    status, post = call(client, "POST", "/posts", token, {"text": "counted"})
    assert status == 201
    assert trips.aws_operations == ["TransactWriteItems"]
    assert trips.counts == {"aws": 1, "redis": 2}
    # Read-your-writes still holds, from the cache the post's pipeline updated.
    status, feed = call(client, "GET", "/feed", token)
    assert [item["post_id"] for item in feed["items"]][:1] == [post["post_id"]]


def test_an_account_is_read_from_dynamodb_only_when_redis_does_not_know_it(
    client: Client, monkeypatch: pytest.MonkeyPatch, container: Container
) -> None:
    status, signed = call(
        client, "POST", "/auth/signup", body={"username": "rt_known", "password": "password123"}
    )
    token, user_id = signed["access_token"], signed["user"]["user_id"]
    container.redis.delete(known_user_key(user_id))
    trips = RoundTrips(monkeypatch)
    assert call(client, "GET", "/me", token)[0] == 200
    assert trips.aws_operations == ["GetItem", "GetItem"]  # the account check, then /me itself
    trips.reset()
    assert call(client, "GET", "/me", token)[0] == 200
    assert trips.aws_operations == ["GetItem"]  # /me itself only: the account is known now
    # A token whose account does not exist is refused every time, and never remembered.
    ghost = new_ulid()
    now = int(time.time())
    claims = {"sub": ghost, "typ": "access", "roles": [], "iat": now, "exp": now + 600, "jti": "g"}
    forged = jwt.encode(claims, container.jwt_secret, algorithm="HS256")
    for _ in range(2):
        status, body = call(client, "GET", "/feed", forged)
        assert (status, body["error"]["code"]) == (401, "invalid_token")
    assert not container.redis.exists(known_user_key(ghost))


def _signup(client: Client, name: str) -> tuple[str, str]:
    status, body = call(client, "POST", "/auth/signup", body={"username": name, "password": "password123"})
    assert status == 201, body
    return body["access_token"], body["user"]["user_id"]


def test_a_cached_feed_read_is_two_redis_round_trips_and_no_dynamodb(
    client: Client, monkeypatch: pytest.MonkeyPatch, stack: LocalStack, container: Container
) -> None:
    """GET /feed on a warm cache (issue 11): the page with a pushed author and a pulled
    (high-follower) one, their bodies and the reader's likes - Redis alone, two round trips."""
    reader_token, _reader = _signup(client, f"rt_reader_{new_ulid()[-6:].lower()}")
    friend_token, friend = _signup(client, f"rt_friend_{new_ulid()[-6:].lower()}")
    star_token, star = _signup(client, f"rt_star_{new_ulid()[-6:].lower()}")
    for followee in (friend, star):
        assert call(client, "POST", f"/users/{followee}/follow", reader_token)[0] == 200
    for _ in range(TEST_HIGH_FOLLOWER_THRESHOLD):
        container.follow_service.follow(
            container.accounts.signup(f"fan_{new_ulid()[-8:].lower()}", "password123").user.user_id, star
        )
    stack.drain()
    assert container.users.is_high_follower(star)
    container.redis.delete(REGISTRY_KEY)  # another test's, from before the mark (10 s TTL)
    old = call(client, "POST", "/posts", friend_token, {"text": "before the reader's first read"})[1]
    assert call(client, "POST", f"/posts/{old['post_id']}/like", reader_token)[0] == 200
    stack.drain()
    assert call(client, "GET", "/feed", reader_token)[0] == 200  # warms feed, registry, outbox
    time.sleep(LIKED_SKEW_MARGIN_MS / 1000)  # posts from now on are newer than the liked hash
    pushed = call(client, "POST", "/posts", friend_token, {"text": "pushed"})[1]
    pulled = call(client, "POST", "/posts", star_token, {"text": "pulled"})[1]
    assert call(client, "POST", f"/posts/{pulled['post_id']}/like", reader_token)[0] == 200
    stack.drain()
    assert call(client, "GET", "/feed", reader_token)[0] == 200  # bodies of the new posts cached

    trips = RoundTrips(monkeypatch)
    status, feed = call(client, "GET", "/feed", reader_token)
    assert status == 200
    ids = [item["post_id"] for item in feed["items"]]
    assert ids[:3] == [pulled["post_id"], pushed["post_id"], old["post_id"]]
    liked = {item["post_id"]: item["liked_by_me"] for item in feed["items"]}
    # The like of an older post than the reader's liked-posts hash is read from DynamoDB...
    assert liked[old["post_id"]] is True and liked[pushed["post_id"]] is False
    assert liked[pulled["post_id"]] is True
    assert trips.aws_operations == ["BatchGetItem"]  # ... the only DynamoDB call left
    trips.reset()
    # A page of posts all newer than the hash: no DynamoDB at all.
    status, feed = call(client, "GET", "/feed?limit=2", reader_token)
    assert [item["post_id"] for item in feed["items"]] == [pulled["post_id"], pushed["post_id"]]
    assert [item["liked_by_me"] for item in feed["items"]] == [True, False]
    assert trips.counts == {"redis": 2}
    # Unliking is seen at once (write-through), still without DynamoDB on the read.
    assert call(client, "DELETE", f"/posts/{pulled['post_id']}/like", reader_token)[0] == 200
    trips.reset()
    status, feed = call(client, "GET", "/feed?limit=2", reader_token)
    assert [item["liked_by_me"] for item in feed["items"]] == [False, False]
    assert trips.counts == {"redis": 2}
    # A mute is seen at once too: the reader's blocks and mutes come in the page's round trip
    # (ripple.cache.relations, written through by the mute), before fan-out retracted anything.
    assert call(client, "POST", f"/users/{friend}/mute", reader_token)[0] == 200
    trips.reset()
    status, feed = call(client, "GET", "/feed?limit=2", reader_token)
    assert [item["post_id"] for item in feed["items"]] == [pulled["post_id"]]  # pushed is friend's
    assert trips.counts == {"redis": 2}


def test_a_reader_whose_first_page_was_empty_reads_later_posts_without_dynamodb(
    client: Client, monkeypatch: pytest.MonkeyPatch, stack: LocalStack
) -> None:
    """The liked-posts hash is made by the first read even when it shows nothing, so every
    post that reaches the feed afterwards is newer than it."""
    reader_token, _ = _signup(client, f"rt_new_{new_ulid()[-6:].lower()}")
    author_token, author = _signup(client, f"rt_auth_{new_ulid()[-6:].lower()}")
    assert call(client, "POST", f"/users/{author}/follow", reader_token)[0] == 200
    stack.drain()
    assert call(client, "GET", "/feed", reader_token)[1]["items"] == []
    time.sleep(LIKED_SKEW_MARGIN_MS / 1000)
    post = call(client, "POST", "/posts", author_token, {"text": "after the first read"})[1]
    stack.drain()
    assert call(client, "GET", "/feed", reader_token)[0] == 200  # the body reaches the post cache
    trips = RoundTrips(monkeypatch)
    _status, feed = call(client, "GET", "/feed", reader_token)
    assert [(i["post_id"], i["liked_by_me"]) for i in feed["items"]] == [(post["post_id"], False)]
    assert trips.counts == {"redis": 2}
