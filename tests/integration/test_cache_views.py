"""The Redis structures behind a cache-only read (issue 11), on a real redis-server: the
reader's liked-posts hash and its ``_since`` rule, and the timeline script's answers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from ripple.cache.feed_cache import FeedCache, FeedRef, outbox_key
from ripple.cache.known_users import KnownUsers, known_user_key
from ripple.cache.liked_posts import MAX_LIKES, SKEW_MARGIN_MS, LikedPosts, liked_key
from ripple.cache.pipelines import ScriptPipeline
from ripple.cache.timeline import REGISTRY_KEY, TimelineCache, pulled_key
from ripple.ids import new_ulid, ulid_floor

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(redis_server: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server, decode_responses=True, socket_timeout=1)
    yield c
    c.close()


def view(liked: LikedPosts, client: redis.Redis, user: str, post_ids: list[str]) -> dict[str, bool | None]:
    pipe = ScriptPipeline(client)
    liked.queue_view(pipe, user, post_ids)
    (result,) = pipe.execute()
    return LikedPosts.view_of(post_ids, result).liked


def test_the_hash_knows_posts_newer_than_its_creation_and_defers_older_ones(client: redis.Redis) -> None:
    liked, user = LikedPosts(client), uuid.uuid4().hex
    older = new_ulid()
    before_ms = int(time.time() * 1000)
    assert view(liked, client, user, [older]) == {older: None}  # created now: older is unknown
    after_ms = int(time.time() * 1000)
    since = client.hget(liked_key(user), "_since")
    assert since is not None and len(since) == 26
    # The ceiling of one millisecond, margin included: a ULID of that ms or earlier sorts below.
    assert ulid_floor(before_ms + SKEW_MARGIN_MS - 5) <= since < ulid_floor(after_ms + SKEW_MARGIN_MS + 5)
    newer, liked_one = new_ulid(after_ms + SKEW_MARGIN_MS + 10), new_ulid(after_ms + SKEW_MARGIN_MS + 11)
    liked.record(user, liked_one, liked=True)
    assert view(liked, client, user, [liked_one, newer, older]) == {
        liked_one: True,
        newer: False,
        older: None,
    }
    liked.record(user, liked_one, liked=False)
    assert view(liked, client, user, [liked_one])[liked_one] is False


def test_records_reach_only_an_existing_hash_and_a_full_one_starts_over(client: redis.Redis) -> None:
    liked, user = LikedPosts(client), uuid.uuid4().hex
    liked.record(user, new_ulid(), liked=True)
    assert not client.exists(liked_key(user))  # no hash: nothing to keep exact, none made
    view(liked, client, user, [])
    for _ in range(MAX_LIKES):
        liked.record(user, new_ulid(), liked=True)
    assert client.exists(liked_key(user))
    liked.record(user, new_ulid(), liked=True)  # one more than MAX_LIKES (plus _since)
    assert not client.exists(liked_key(user))


def test_the_timeline_names_what_it_lacks_and_merges_what_it_has(client: redis.Redis) -> None:
    timeline = TimelineCache(client, KnownUsers(client), feed_ttl_seconds=60)
    feeds = FeedCache(client, 100, 60)
    outboxes = FeedCache(client, 100, 60, key_of=outbox_key)
    reader, friend, star = (uuid.uuid4().hex for _ in range(3))
    client.delete(REGISTRY_KEY)

    assert timeline.page(reader, None, 10).missing == "feed"
    pushed = [FeedRef(new_ulid(), friend) for _ in range(3)]
    feeds.warm(reader, None, pushed, complete=True)
    assert timeline.page(reader, None, 10).missing == "registry"
    registry = timeline.store_registry([star])
    page = timeline.page(reader, None, 10)
    assert (page.missing, page.detail) == ("pulled", registry)
    timeline.store_pulled(reader, registry, [star])
    page = timeline.page(reader, None, 10)
    assert (page.missing, page.detail) == ("outbox", star)
    pulled = [FeedRef(new_ulid(), star) for _ in range(2)]
    outboxes.warm(star, None, pulled, complete=True)

    page = timeline.page(reader, None, 10)
    everything = sorted(pushed + pulled, key=lambda r: r.post_id, reverse=True)
    assert (page.missing, page.refs, page.has_more, page.known) == (None, everything, False, False)
    first = timeline.page(reader, None, 2)
    rest = timeline.page(reader, first.refs[-1].post_id, 10)
    assert (first.refs, first.has_more, rest.refs, rest.has_more) == (
        everything[:2],
        True,
        everything[2:],
        False,
    )
    KnownUsers(client).remember(reader)
    assert timeline.page(reader, None, 1).known is True
    # A changed registry (another author marked) makes the reader's pulled authors stale.
    registry = timeline.store_registry([star, uuid.uuid4().hex])
    assert timeline.page(reader, None, 10).missing == "pulled"
    timeline.store_pulled(reader, registry, [star])
    assert timeline.page(reader, None, 10).missing is None
    timeline.forget_pulled(reader)  # a follow or unfollow
    assert timeline.page(reader, None, 10).missing == "pulled"
    client.delete(REGISTRY_KEY, pulled_key(reader), known_user_key(reader))
