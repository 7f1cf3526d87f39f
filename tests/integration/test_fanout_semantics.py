"""Fan-out semantics through the drained stream runners: continuation jobs, the
high-follower (pull) path merged at read time, deletion racing fan-out, backfill
boundaries, out-of-order and duplicate delivery."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from ripple.cache.timeline import REGISTRY_KEY
from ripple.container import Container
from ripple.domain import Page, Post
from ripple_local.stack import LocalStack
from tests.integration.support import (
    SAMPLE_AUTHOR,
    SAMPLE_POST,
    TEST_HIGH_FOLLOWER_THRESHOLD,
    ensure_users,
    feed_reader,
    fresh_ids,
    load_event,
    store_sample_post,
)

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator


def signup(container: Container, name: str = "u") -> str:
    return container.accounts.signup(f"{name}_{uuid.uuid4().hex[:8]}", "password123").user.user_id


def table_feed(container: Container, user_id: str) -> list[str]:
    return [e.post_id for e in container.feed.page(user_id, 100)]


class fresh_reader:
    """A reader whose high-follower registry is reloaded on every read (no 10 s cache, in the
    container or in Redis)."""

    def __init__(self, container: Container) -> None:
        self._container = container
        self._reader = feed_reader(container, registry_ttl_seconds=0)

    def home(self, user_id: str, limit: int, cursor: str | None = None) -> Page[Post]:
        self._container.redis.delete(REGISTRY_KEY)
        return self._reader.home(user_id, limit, cursor)


def test_every_follower_of_a_multi_page_audience_gets_the_post(
    stack: LocalStack, container: Container
) -> None:
    author = signup(container, "author")
    fans = [signup(container, "fan") for _ in range(10)]  # 3 pages of 4
    for f in fans:
        container.follow_service.follow(f, author)
    stack.drain()
    post = container.post_service.create(author, "to everyone")
    stack.drain()
    assert all(table_feed(container, f) == [post.post_id] for f in fans)


def test_high_follower_posts_are_pulled_and_merged_in_order(stack: LocalStack, container: Container) -> None:
    star, friend, reader = signup(container, "star"), signup(container, "friend"), signup(container, "reader")
    audience = [signup(container, "fan") for _ in range(TEST_HIGH_FOLLOWER_THRESHOLD - 1)] + [reader]
    for f in audience:
        container.follow_service.follow(f, star)
    container.follow_service.follow(reader, friend)
    stack.drain()
    assert container.users.is_high_follower(star)

    posts = []
    for i in range(3):
        posts.append(container.post_service.create(star, f"star {i}").post_id)
        posts.append(container.post_service.create(friend, f"friend {i}").post_id)
    stack.drain()

    # Not pushed: no follower has the star's posts in the feed table ...
    assert not set(posts[0::2]) & set(table_feed(container, reader))
    # ... yet the reader's timeline has both authors interleaved newest first, and pages
    # of one walk the merged sources without gaps or duplicates.
    reader_feed = fresh_reader(container)
    assert [p.post_id for p in reader_feed.home(reader, 10).items] == list(reversed(posts))
    seen, cursor = [], None
    while True:
        page = reader_feed.home(reader, 1, cursor)
        seen += [p.post_id for p in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(posts))
    # A non-follower gets none of it.
    assert reader_feed.home(signup(container, "stranger"), 10).items == []


def test_deletion_racing_fan_out_leaves_no_item(stack: LocalStack, container: Container) -> None:
    author = signup(container, "author")
    fans = [signup(container, "fan") for _ in range(9)]
    for f in fans:
        container.follow_service.follow(f, author)
    stack.drain()
    post = container.post_service.create(author, "regret")
    container.post_service.delete(post.post_id, author)  # before any fan-out ran
    stack.drain()
    assert all(post.post_id not in table_feed(container, f) for f in [*fans, author])


def test_backfill_takes_posts_from_before_the_follow_and_fan_out_the_rest(
    stack: LocalStack, container: Container
) -> None:
    author, reader = signup(container, "author"), signup(container, "reader")
    backfill = container.settings.backfill_posts
    before = [container.post_service.create(author, f"old {i}").post_id for i in range(backfill + 2)]
    container.follow_service.follow(reader, author)
    after = [container.post_service.create(author, f"new {i}").post_id for i in range(2)]
    stack.drain()
    assert table_feed(container, reader) == list(reversed(before[-backfill:] + after))


def test_out_of_order_and_duplicate_delivery_converge(container: Container, fanout_handler: Any) -> None:
    a, b = fresh_ids(), fresh_ids()
    reader = signup(container, "reader")
    for ids in (a, b):
        ensure_users(container, ids[SAMPLE_AUTHOR])
        container.follows.follow(reader, ids[SAMPLE_AUTHOR])
    # b's post is newer than a's but is delivered first, then everything twice.
    b[SAMPLE_POST], a[SAMPLE_POST] = sorted([a[SAMPLE_POST], b[SAMPLE_POST]], reverse=True)
    for ids in (a, b):
        store_sample_post(container, ids)
    record_b = load_event("fanout/posts_insert.json", **b)["Records"][0]
    record_a = load_event("fanout/posts_insert.json", **a)["Records"][0]
    record_a["dynamodb"]["SequenceNumber"] = "2"
    event = {"Records": [record_b, record_a]}
    assert fanout_handler(event) == {"batchItemFailures": []}
    assert fanout_handler(copy.deepcopy(event)) == {"batchItemFailures": []}
    assert table_feed(container, reader) == [b[SAMPLE_POST], a[SAMPLE_POST]]


def test_a_deleted_posts_likes_are_deleted_also_when_likes_race_the_delete(
    stack: LocalStack, container: Container
) -> None:
    """Likes live in their own table: deleting the post must not leave them behind (nobody could
    remove them: unlike needs the post). Likes race the delete from threads; whatever committed
    before the delete is purged by fan-out, a page of likers at a time; nothing commits after."""
    from concurrent.futures import ThreadPoolExecutor

    from ripple.errors import NotFoundError

    # Given a post liked by six users (two pages of four), and three more about to like it
    author = signup(container, "liked")
    likers = [signup(container, "liker") for _ in range(9)]
    post = container.post_service.create(author, "likes go with me")
    for user in likers[:6]:
        container.post_service.like(user, post.post_id)

    def like(user: str) -> str:
        try:
            container.post_service.like(user, post.post_id)
            return "liked"
        except NotFoundError:
            return "gone"

    # When it is deleted while the others like it, and the streams are delivered
    with ThreadPoolExecutor(4) as pool:
        racing = [pool.submit(like, user) for user in likers[6:]]
        container.post_service.delete(post.post_id, author)
        outcomes = [future.result() for future in racing]
    stack.drain()

    # Then no like of the post is left, whatever each racing like answered
    assert set(outcomes) <= {"liked", "gone"}
    assert container.likes.likers(post.post_id, 100) == []
    assert container.likes.liked(likers[0], [post.post_id]) == set()


def test_posts_right_after_the_mark_reach_readers_who_do_not_know_of_it_yet(
    stack: LocalStack, container: Container
) -> None:
    """A reader's container reloads the registry of pulled authors only every few seconds: a post
    made just after its author was marked is pushed still (the pull grace), so it is in the
    feed at once, and once the reader's registry has the author, it shows once, not twice."""
    from dataclasses import replace

    from ripple.repositories.fanout_jobs import FanoutJobRepository
    from ripple.services.fanout import FanoutService

    star, reader = signup(container, "star"), signup(container, "reader")
    # A reader whose registry (in its container and in Redis) was loaded before the mark.
    reader_feed = feed_reader(container, registry_ttl_seconds=3600)
    reader_feed.home(reader, 10)
    settings = container.settings
    graced = FanoutService(  # the production default grace (this session's stack runs with none)
        container.posts,
        container.follows,
        container.users,
        container.feed,
        FanoutJobRepository(),
        container.likes,
        container.blocks,
        container.reposts,
        backfill_posts=settings.backfill_posts,
        page_size=settings.fanout_page_size,
        high_follower_threshold=settings.high_follower_threshold,
        pull_grace_ms=60_000,
    )
    container.follow_service.follow(reader, star)
    for fan in [signup(container, "fan") for _ in range(TEST_HIGH_FOLLOWER_THRESHOLD)]:
        container.follow_service.follow(fan, star)
    stack.drain()
    assert container.users.is_high_follower(star)

    post = container.post_service.create(star, "just after the mark")
    graced.post_created(replace(post))
    stack.drain()  # the feed stream brings the pushed item into the reader's cached feed

    assert post.post_id in table_feed(container, reader)  # pushed within the grace
    assert [p.post_id for p in reader_feed.home(reader, 10).items] == [post.post_id]
    assert [p.post_id for p in fresh_reader(container).home(reader, 10).items] == [post.post_id]  # once
