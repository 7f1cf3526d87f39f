"""Helpers for integration tests: sample events from events/ with fresh ids."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from chalice.test import Client

from ripple.container import Container
from ripple.domain import Post, User
from ripple.ids import new_ulid
from ripple.services.feed import FeedReader

EVENTS = Path(__file__).resolve().parents[2] / "events"
# Small limits in tests so trimming, cache-tail paging, continuation jobs and the
# high-follower path are all exercised (the conftest puts them in the environment).
TEST_FEED_CACHE_MAX_ITEMS = 10
TEST_FANOUT_PAGE_SIZE = 4
TEST_HIGH_FOLLOWER_THRESHOLD = 12


def load_event(name: str, **replace: str) -> dict[str, Any]:
    """A sample event from events/, with ids swapped for fresh ones so tests never collide."""
    text = (EVENTS / name).read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    event: dict[str, Any] = json.loads(text)
    return event


SAMPLE_AUTHOR = "01JDQ0000000000000000AAAAA"
SAMPLE_FOLLOWER = "01JDQ0000000000000000BBBBB"
SAMPLE_POST = "01JDQ7Z8M3K2P4R6T8V0W2X4Y6"


SAMPLE_CREATED_AT = "1732579200000"


def fresh_ids() -> dict[str, str]:
    """Fresh ids for the sample events' author, follower and post, and a creation time of
    now (posts are fanned out to those who followed before they were made)."""
    return {
        SAMPLE_AUTHOR: new_ulid(),
        SAMPLE_FOLLOWER: new_ulid(),
        SAMPLE_POST: new_ulid(),
        # a minute ahead: every follow a test makes first is older than the post
        SAMPLE_CREATED_AT: str(int(time.time() * 1000) + 60_000),
    }


def ensure_users(container: Container, *user_ids: str) -> None:
    """Create bare users with these ids (follows and posts need their users to exist)."""
    for user_id in user_ids:
        container.users.create(
            User(user_id=user_id, username=f"u{user_id.lower()}", created_at=int(time.time() * 1000)), "x"
        )


def store_sample_post(container: Container, ids: dict[str, str]) -> Post:
    """The row behind events/fanout/posts_*.json (fan-out re-checks that its post exists)."""
    created_at = int(ids.get(SAMPLE_CREATED_AT, SAMPLE_CREATED_AT))
    post = Post(post_id=ids[SAMPLE_POST], author_id=ids[SAMPLE_AUTHOR], text="sample", created_at=created_at)
    container.posts.create(post)
    return post


def feed_reader(
    container: Container, client: redis.Redis | None = None, registry_ttl_seconds: float = 10.0
) -> FeedReader:
    """The container's feed reader, optionally on another Redis client (a dead one) or with
    its own container-side registry lifetime."""
    from ripple.cache.feed_cache import OUTBOX_MAX_ITEMS, FeedCache, outbox_key
    from ripple.cache.known_users import KnownUsers
    from ripple.cache.liked_posts import LikedPosts
    from ripple.cache.post_cache import PostCache
    from ripple.cache.relations import RelationsCache
    from ripple.cache.timeline import TimelineCache
    from ripple.cache.views import PostViews
    from ripple.services.blocks import RelationsReader
    from ripple.services.feed import PostHydrator, PulledAuthors

    r = client or container.redis
    settings = container.settings
    post_cache = PostCache(r, settings.post_cache_ttl_seconds)
    return FeedReader(
        container.feed,
        FeedCache(r, settings.feed_cache_max_items, settings.feed_cache_ttl_seconds),
        PostHydrator(container.posts, container.likes, post_cache, PostViews(r, post_cache, LikedPosts(r))),
        container.posts,
        PulledAuthors(container.users, container.follows, ttl_seconds=registry_ttl_seconds),
        TimelineCache(r, KnownUsers(r), settings.feed_cache_ttl_seconds),
        FeedCache(r, OUTBOX_MAX_ITEMS, settings.feed_cache_ttl_seconds, key_of=outbox_key),
        container.users,
        RelationsReader(container.blocks, RelationsCache(r)),
    )


class Http:
    """The API function's routes called in process (Chalice's test client): JSON in, the
    response with ``.json`` parsed (None for an empty body)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __call__(
        self, method: str, path: str, token: str | None = None, body: Any = None, raw: bytes | None = None
    ) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        response = self._client.http.request(method, path, headers=headers, body=payload)
        response.json = json.loads(response.body) if response.body else None
        return response

    def user(self, prefix: str = "u") -> dict[str, Any]:
        """A new user: id, name, access ``token`` and ``refresh`` token."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        r = self("POST", "/auth/signup", body={"username": name, "password": "password123"})
        assert r.status_code == 201, r.body
        return {"id": r.json["user"]["user_id"], "name": name, "token": r.json["access_token"],
                "refresh": r.json["refresh_token"]}  # fmt: skip


def error_code(response: Any) -> str:
    """The ``code`` of an error response, which has the one error shape."""
    assert set(response.json) == {"error"}, response.json
    assert set(response.json["error"]) == {"code", "message"}
    return str(response.json["error"]["code"])
