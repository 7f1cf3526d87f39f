"""The Redis feed cache against a real redis-server: ordering, paging, the contiguous-prefix
invariant, trimming and the warming window."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from ripple.cache.feed_cache import SENTINEL, FeedCache, FeedRef
from ripple.ids import new_ulid

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server, decode_responses=True)
    yield c
    c.close()


def refs(n: int, start_ms: int = 1_700_000_000_000) -> list[FeedRef]:
    """n refs, oldest first."""
    return [FeedRef(post_id=new_ulid(start_ms + i), author_id=f"A{i % 3}") for i in range(n)]


def user() -> str:
    return new_ulid()


def test_cold_feed_is_a_miss_and_add_does_not_create_it(client: redis.Redis) -> None:
    cache = FeedCache(client, max_items=10, ttl_seconds=60)
    u = user()
    assert cache.page(u, None, 5) is None
    assert cache.add(u, refs(1)[0]) is False  # cold and not warming: DynamoDB serves it
    assert cache.page(u, None, 5) is None


def test_complete_feed_pages_newest_first(client: redis.Redis) -> None:
    cache = FeedCache(client, max_items=50, ttl_seconds=60)
    u, items = user(), refs(7)
    assert cache.warm(u, None, list(reversed(items)), complete=True)
    first = cache.page(u, None, 3)
    assert first is not None and first.has_more
    assert first.refs == list(reversed(items))[:3]
    last = cache.page(u, first.refs[-1].post_id, 10)
    assert last is not None and not last.has_more
    assert last.refs == list(reversed(items))[3:]


def test_partial_prefix_answers_only_inside_itself(client: redis.Redis) -> None:
    cache = FeedCache(client, max_items=50, ttl_seconds=60)
    u, items = user(), list(reversed(refs(10)))  # newest first
    cache.warm(u, None, items[:4], complete=False)
    page = cache.page(u, None, 3)
    assert page is not None and page.refs == items[:3] and page.has_more
    assert cache.page(u, items[2].post_id, 3) is None  # runs past the cached tail


def test_add_refuses_items_below_a_partial_tail(client: redis.Redis) -> None:
    """An old item added under a partial prefix would create a gap: it is left to DynamoDB."""
    cache = FeedCache(client, max_items=50, ttl_seconds=60)
    u, items = user(), refs(5)  # oldest first
    cache.warm(u, None, [items[4], items[3]], complete=False)
    assert cache.add(u, items[0]) is False
    newer = FeedRef(post_id=new_ulid(1_800_000_000_000), author_id="A9")
    assert cache.add(u, newer) is True
    assert cache.members(u)[0] == newer.member


def test_add_during_warming_is_kept(client: redis.Redis) -> None:
    cache = FeedCache(client, max_items=50, ttl_seconds=60)
    u, items = user(), refs(3)
    cache.begin_warm(u)
    assert cache.add(u, items[2]) is True  # arrived between the rebuild's query and its write
    cache.warm(u, None, [items[1], items[0]], complete=True)
    page = cache.page(u, None, 10)
    assert page is not None and page.refs == [items[2], items[1], items[0]]


def test_trimming_keeps_the_newest_and_drops_the_sentinel(client: redis.Redis) -> None:
    cache = FeedCache(client, max_items=5, ttl_seconds=60)
    u, items = user(), refs(3)
    cache.warm(u, None, list(reversed(items)), complete=True)
    assert SENTINEL in cache.members(u)
    for ref in refs(4, start_ms=1_800_000_000_000):
        cache.add(u, ref)
    members = cache.members(u)
    assert len(members) == 5 and SENTINEL not in members
    assert members == sorted(members, reverse=True)


def test_extension_only_when_contiguous(client: redis.Redis) -> None:
    cache = FeedCache(client, max_items=50, ttl_seconds=60)
    u, items = user(), list(reversed(refs(6)))  # newest first
    cache.warm(u, None, items[:2], complete=False)
    # Continuing from the cached tail extends the prefix ...
    assert cache.warm(u, items[1].post_id, items[2:4], complete=False)
    # ... continuing from further down (a gap would open) does not.
    assert not cache.warm(u, items[4].post_id, items[5:], complete=True)
    assert [FeedRef.from_member(m) for m in cache.members(u)] == items[:4]


def test_remove_and_ttl(client: redis.Redis) -> None:
    cache = FeedCache(client, max_items=50, ttl_seconds=30)
    u, items = user(), refs(2)
    cache.warm(u, None, list(reversed(items)), complete=True)
    cache.remove_many([(u, items[1])])
    page = cache.page(u, None, 10)
    assert page is not None and page.refs == [items[0]]
    assert 0 < client.ttl(f"feed:home:{u}") <= 30


def test_an_old_item_added_during_a_partial_warm_leaves_no_gap(client: redis.Redis) -> None:
    # The fresh-clone review: a returning reader's rebuild streamed old items into the cache
    # while the first read warmed its top page, and later pages skipped posts.
    cache = FeedCache(client, max_items=50, ttl_seconds=60)
    u, items = user(), refs(10)
    cache.begin_warm(u)
    assert cache.add(u, items[1]) is True  # old: below the page being warmed
    assert cache.add(u, items[9]) is True  # new: above it, kept
    cache.warm(u, None, [items[8], items[7], items[6]], complete=False)
    # the cached prefix is contiguous: the old item is not in it (DynamoDB answers below it)
    assert cache.members(u) == [r.member for r in (items[9], items[8], items[7], items[6])]
