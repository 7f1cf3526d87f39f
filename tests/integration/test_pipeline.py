"""The pipeline through the local event source mappings: services write DynamoDB, the
runners deliver the streams to the real handlers, Redis ends up in step."""

from __future__ import annotations

import uuid

import pytest
import redis

from ripple.container import Container
from ripple_local.feed_scan import FeedScanRepository
from ripple_local.stack import LocalStack
from ripple_local.warming import warm_feeds
from tests.integration.support import TEST_FEED_CACHE_MAX_ITEMS, feed_reader

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator


def signup(container: Container, name: str) -> str:
    return container.accounts.signup(f"{name}_{uuid.uuid4().hex[:8]}", "password123").user.user_id


def feed_ids(container: Container, user_id: str, limit: int = 50) -> list[str]:
    return [p.post_id for p in container.feed_reader.home(user_id, limit).items]


def test_post_reaches_followers_not_strangers(stack: LocalStack, container: Container) -> None:
    # Given B follows A and C follows nobody
    a, b, c = (signup(container, n) for n in "abc")
    container.follow_service.follow(b, a)
    stack.drain()
    assert feed_ids(container, b) == [] and feed_ids(container, c) == []  # both feeds now cached

    # When A posts
    post = container.post_service.create(a, "hello")

    # Then A sees it before any stream record is delivered (read-your-writes) ...
    assert feed_ids(container, a) == [post.post_id]
    # ... B after the posts stream (fan-out) and the feed stream (cache refresher) ...
    assert feed_ids(container, b) == []
    stack.drain()
    assert feed_ids(container, b) == [post.post_id]
    assert post.post_id in container.feed_cache.members(b)[0]
    # ... and C never.
    assert feed_ids(container, c) == []


def test_delete_and_unfollow_converge_in_cache_and_table(stack: LocalStack, container: Container) -> None:
    a, b = signup(container, "a"), signup(container, "b")
    container.follow_service.follow(b, a)
    kept = container.post_service.create(a, "kept")
    deleted = container.post_service.create(a, "deleted")
    stack.drain()
    assert feed_ids(container, b) == [deleted.post_id, kept.post_id]

    container.post_service.delete(deleted.post_id, a)
    stack.drain()
    assert feed_ids(container, b) == [kept.post_id]
    assert [e.post_id for e in container.feed.page(b, 10)] == [kept.post_id]

    container.follow_service.unfollow(b, a)
    stack.drain()
    assert feed_ids(container, b) == []
    assert container.feed.page(b, 10) == []
    assert feed_ids(container, a) == [kept.post_id]


def test_pages_cover_the_feed_beyond_the_cache_limit(stack: LocalStack, container: Container) -> None:
    """25 posts, a cache that keeps 10: pages come from Redis, then from DynamoDB."""
    a, b = signup(container, "a"), signup(container, "b")
    container.follow_service.follow(b, a)
    stack.drain()
    feed_ids(container, b)  # warm B's (empty) feed so the refresher keeps it current
    posted = [container.post_service.create(a, f"p{i}").post_id for i in range(25)]
    stack.drain()
    assert len(container.feed_cache.members(b)) == TEST_FEED_CACHE_MAX_ITEMS

    seen, cursor = [], None
    while True:
        page = container.feed_reader.home(b, 4, cursor)
        seen += [p.post_id for p in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(posted))


def test_cold_cache_is_rebuilt_from_dynamodb(stack: LocalStack, container: Container) -> None:
    a, b = signup(container, "a"), signup(container, "b")
    container.follow_service.follow(b, a)
    posted = [container.post_service.create(a, f"p{i}").post_id for i in range(3)]
    stack.drain()
    container.feed_cache.drop(b)  # e.g. expired, or Redis restarted empty

    assert feed_ids(container, b) == list(reversed(posted))
    page = container.feed_cache.page(b, None, 10)
    assert page is not None and [r.post_id for r in page.refs] == list(reversed(posted))


def test_reads_survive_redis_being_unreachable(stack: LocalStack, container: Container) -> None:
    a, b = signup(container, "a"), signup(container, "b")
    container.follow_service.follow(b, a)
    post = container.post_service.create(a, "still readable")
    stack.drain()

    dead = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.1, socket_connect_timeout=0.1)
    reader = feed_reader(container, dead)
    page = reader.home(b, 10)
    assert [p.post_id for p in page.items] == [post.post_id]
    assert page.items[0].text == "still readable"


def test_cold_feeds_of_the_most_following_users_are_warmed(stack: LocalStack, container: Container) -> None:
    """warm-feeds (operator code): named readers, or the users who follow the most accounts."""
    a, b = signup(container, "a"), signup(container, "b")
    busy, quiet = signup(container, "busy"), signup(container, "quiet")
    for author in (a, b):
        container.follow_service.follow(busy, author)
    container.follow_service.follow(quiet, a)
    container.post_service.create(a, "warm me")
    stack.drain()
    scan = FeedScanRepository()
    ranked = scan.most_following(100_000)  # the table is shared with other tests
    assert ranked.index(busy) < ranked.index(quiet)
    for reader in (busy, quiet):
        container.feed_cache.drop(reader)  # e.g. a failover to an empty node

    assert warm_feeds(container.feed_reader, container.feed_cache, scan, [busy]) == [busy]
    assert container.feed_cache.is_cached(busy) and not container.feed_cache.is_cached(quiet)
    # Already cached feeds are left alone; by default the ranking picks the feeds.
    assert warm_feeds(container.feed_reader, container.feed_cache, scan, [busy, quiet]) == [quiet]
    container.feed_cache.drop(busy)
    assert busy in warm_feeds(container.feed_reader, container.feed_cache, scan, top=ranked.index(busy) + 1)
