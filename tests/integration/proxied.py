"""The API as Lambda runs it, behind a fault proxy: the harness of the hardening and DynamoDB
behaviour suites.

The Chalice ``app`` runs through ``chalice.test.Client`` with its composition root swapped for
a :class:`~ripple.container.Container` whose DynamoDB endpoint is a
:class:`~ripple_local.fault_proxy.FaultProxy` in front of the session's DynamoDB. PynamoDB binds
table names and endpoints on the model classes (process-wide), so while a module using the
harness runs, every DynamoDB call of the process goes through the proxy - the stream
consumers the stack's runners call included; the bindings are restored afterwards, and the
proxy forwards untouched whenever its plan is empty. What is written is checked directly on
DynamoDB, never through the proxy.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from chalice.test import Client

from ripple.container import Container
from ripple.repositories.models import ALL_MODELS
from ripple_local.aws import client
from ripple_local.fault_proxy import FaultPlan, FaultProxy
from ripple_local.functions import module_name
from ripple_local.stack import LocalStack

PASSWORD = "password123"
_DESERIALIZE = TypeDeserializer().deserialize


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    json: Any

    @property
    def code(self) -> str | None:
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return str(self.json["error"].get("code"))
        return None


@dataclass
class Harness:
    """The proxied API and direct (unproxied) access to the emulator for checking."""

    stack: LocalStack
    proxy: FaultProxy
    api: Container
    chalice: Client
    dynamodb: Any  # a boto3 client straight to the emulator
    tables: dict[str, str] = field(default_factory=dict)  # logical id -> physical name

    def call(
        self, method: str, path: str, token: str | None = None, body: Any = None, raw: bytes | None = None
    ) -> Reply:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        response = self.chalice.http.request(method, path, headers=headers, body=payload)
        parsed = json.loads(response.body) if response.body else None
        return Reply(response.status_code, dict(response.headers), parsed)

    def user(self, prefix: str = "h") -> dict[str, str]:
        """A new account (signed up with the proxy's plan in force)."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        reply = self.call("POST", "/auth/signup", body={"username": name, "password": PASSWORD})
        assert reply.status == 201, reply
        return {"id": reply.json["user"]["user_id"], "name": name, "token": reply.json["access_token"],
                "refresh": reply.json["refresh_token"]}  # fmt: skip

    # --- the truth, read on the emulator itself
    def _query(self, table: str, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs = {"TableName": self.tables[table], "ConsistentRead": "IndexName" not in kwargs, **kwargs}
        while True:
            page = self.dynamodb.query(**kwargs)
            items += [{k: _DESERIALIZE(v) for k, v in item.items()} for item in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _by_key(self, table: str, key: dict[str, str]) -> dict[str, Any] | None:
        item = self.dynamodb.get_item(
            TableName=self.tables[table], Key={k: {"S": v} for k, v in key.items()}, ConsistentRead=True
        ).get("Item")
        return {k: _DESERIALIZE(v) for k, v in item.items()} if item else None

    def user_row(self, user_id: str) -> dict[str, Any]:
        row = self._by_key("UsersTable", {"user_id": user_id})
        assert row is not None, user_id
        return row

    def posts_of(self, author_id: str) -> list[dict[str, Any]]:
        return self._query(
            "PostsTable",
            KeyConditionExpression="author_id = :a",
            ExpressionAttributeValues={":a": {"S": author_id}},
        )

    def following_of(self, follower_id: str) -> set[str]:
        rows = self._query(
            "FollowsTable",
            KeyConditionExpression="follower_id = :f",
            ExpressionAttributeValues={":f": {"S": follower_id}},
        )
        return {str(r["followee_id"]) for r in rows}

    def followers_of(self, followee_id: str) -> set[str]:
        rows = self._query(
            "FollowersTable",
            KeyConditionExpression="followee_id = :f",
            ExpressionAttributeValues={":f": {"S": followee_id}},
        )
        return {str(r["follower_id"]) for r in rows}

    def likers_of(self, post_id: str) -> set[str]:
        rows = self._query(
            "LikesTable",
            KeyConditionExpression="post_id = :p",
            ExpressionAttributeValues={":p": {"S": post_id}},
        )
        return {str(r["user_id"]) for r in rows}

    def post_row(self, author_id: str, post_id: str) -> dict[str, Any] | None:
        return self._by_key("PostsTable", {"author_id": author_id, "post_id": post_id})

    def username_taken(self, username: str) -> bool:
        return self._by_key("UsernamesTable", {"username": username}) is not None

    def assert_counters_match_rows(self, user_id: str) -> None:
        """follower_count, following_count and post_count equal the rows they count."""
        row = self.user_row(user_id)
        assert int(row.get("post_count", 0)) == len(self.posts_of(user_id)), ("post_count", row)
        assert int(row.get("following_count", 0)) == len(self.following_of(user_id)), ("following", row)
        assert int(row.get("follower_count", 0)) == len(self.followers_of(user_id)), ("followers", row)


@pytest.fixture(scope="module")
def harness(stack: LocalStack, container: Container) -> Iterator[Harness]:
    """The Chalice app with its container pointed at a fault proxy (plan: forward everything)."""
    app = stack.handler("ApiFunction")  # imports the module with the session's environment
    app_module = sys.modules[module_name("ApiFunction")]
    bindings = [(m, m.Meta.table_name, m.Meta.region, m.Meta.host) for m in ALL_MODELS]
    assert stack.resources is not None and stack.endpoints is not None
    proxy = FaultProxy(stack.endpoints.dynamodb).start()
    patch = pytest.MonkeyPatch()
    try:
        api = Container(replace(container.settings, dynamodb_endpoint_url=proxy.url))
        api.bind_models()  # rebinds every model, the session container's too
        api.__dict__["jwt_secret"] = container.jwt_secret  # the same key: tokens stay interchangeable
        patch.setattr(app_module, "container", api)
        with Client(app) as chalice:
            yield Harness(
                stack=stack,
                proxy=proxy,
                api=api,
                chalice=chalice,
                dynamodb=client("dynamodb", stack.endpoints),
                tables=stack.resources.table_names(),
            )
    finally:
        patch.undo()
        proxy.stop()
        for model, table_name, region, host in bindings:
            model.Meta.table_name, model.Meta.region, model.Meta.host = table_name, region, host
            model._connection = None


@pytest.fixture
def h(harness: Harness) -> Iterator[Harness]:
    """The harness, reset to forwarding everything before and after each test."""
    harness.proxy.plan = FaultPlan()
    harness.proxy.clear()
    yield harness
    harness.proxy.plan = FaultPlan()


def assert_2xx_or_503(reply: Reply, what: str) -> None:
    assert reply.status < 300 or reply.status == 503, f"{what}: {reply}"
    if reply.status == 503:
        assert reply.code == "service_unavailable", (what, reply)
        assert reply.headers.get("Retry-After"), (what, reply)


def calls_of(h: Harness, operation: str) -> list[Any]:
    """The proxied requests of one DynamoDB operation, in order."""
    return [c for c in h.proxy.calls(dynamodb_only=True) if c.operation == operation]


__all__ = ["PASSWORD", "Harness", "Reply", "assert_2xx_or_503", "calls_of", "h", "harness"]
