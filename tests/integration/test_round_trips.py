"""Network round trips a request makes before its answer (issue 11: "writes make fewer
round trips"), counted in process on the request's own thread against the real emulator
and redis-server: every HTTP request botocore sends, every packet redis-py sends (one per
command or pipeline). Stream runners work on other threads and are not counted."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import botocore.endpoint
import pytest
import redis
from chalice.test import Client

from ripple_local.stack import LocalStack

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


def test_a_post_answers_after_four_sequential_round_trips(
    client: Client, monkeypatch: pytest.MonkeyPatch, stack: LocalStack
) -> None:
    """POST /posts: the caller's row (GetItem), both rate limits (one Redis pipeline), the
    transaction with the author's own feed item, one Redis pipeline for the caches. (Today's
    main made seven: a separate feed write, rate limits and caches one command each.)"""
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
    assert trips.aws_operations == ["GetItem", "TransactWriteItems"]
    assert trips.counts == {"aws": 2, "redis": 2}
    # Read-your-writes still holds, from the cache the post's pipeline updated.
    status, feed = call(client, "GET", "/feed", token)
    assert [item["post_id"] for item in feed["items"]][:1] == [post["post_id"]]
