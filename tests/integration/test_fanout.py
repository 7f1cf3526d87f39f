"""The fan-out function, invoked with the sample events of events/fanout/, against the real
emulator: writes, duplicates, retractions, backfill and partial batch failure."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ripple.container import Container
from ripple.domain import FeedEntry, Post
from ripple.ids import new_ulid
from ripple_local.stack import LocalStack
from tests.integration.support import (
    SAMPLE_AUTHOR,
    SAMPLE_FOLLOWER,
    SAMPLE_POST,
    TEST_FANOUT_PAGE_SIZE,
    ensure_users,
    fresh_ids,
    load_event,
    store_sample_post,
)

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator


def feed_of(container: Container, user_id: str) -> list[FeedEntry]:
    return container.feed.page(user_id, 100)


def test_post_insert_writes_author_and_follower_feeds_idempotently(
    container: Container, fanout_handler: Any
) -> None:
    ids = fresh_ids()
    author, follower, post_id = ids[SAMPLE_AUTHOR], ids[SAMPLE_FOLLOWER], ids[SAMPLE_POST]
    ensure_users(container, author, follower)
    container.follows.follow(follower, author)
    store_sample_post(container, ids)
    event = load_event("fanout/posts_insert.json", **ids)

    assert fanout_handler(event) == {"batchItemFailures": []}
    first = feed_of(container, follower)
    assert [(e.post_id, e.author_id) for e in first] == [(post_id, author)]
    assert [e.post_id for e in feed_of(container, author)] == [post_id]

    # The same record delivered again changes nothing.
    assert fanout_handler(event) == {"batchItemFailures": []}
    assert feed_of(container, follower) == first


def test_post_remove_retracts_from_every_feed(container: Container, fanout_handler: Any) -> None:
    ids = fresh_ids()
    author, follower = ids[SAMPLE_AUTHOR], ids[SAMPLE_FOLLOWER]
    ensure_users(container, author, follower)
    container.follows.follow(follower, author)
    store_sample_post(container, ids)
    fanout_handler(load_event("fanout/posts_insert.json", **ids))
    assert feed_of(container, follower)

    removal = load_event("fanout/posts_remove.json", **ids)
    assert fanout_handler(removal) == {"batchItemFailures": []}
    assert feed_of(container, follower) == [] and feed_of(container, author) == []
    assert fanout_handler(removal) == {"batchItemFailures": []}  # twice: still fine


def test_follow_insert_backfills_recent_posts_and_remove_retracts(
    container: Container, fanout_handler: Any
) -> None:
    ids = fresh_ids()
    author, follower = ids[SAMPLE_AUTHOR], ids[SAMPLE_FOLLOWER]
    backfill = container.settings.backfill_posts
    ensure_users(container, author, follower)
    posts = [
        Post(post_id=new_ulid(1_700_000_000_000 + i), author_id=author, text=f"p{i}", created_at=1)
        for i in range(backfill + 3)
    ]
    for p in posts:
        container.posts.create(p)

    assert fanout_handler(load_event("fanout/follows_insert.json", **ids)) == {"batchItemFailures": []}
    got = [e.post_id for e in feed_of(container, follower)]
    assert got == [p.post_id for p in reversed(posts)][:backfill]

    assert fanout_handler(load_event("fanout/follows_remove.json", **ids)) == {"batchItemFailures": []}
    assert feed_of(container, follower) == []


def test_large_audience_is_written_in_pages_of_continuation_jobs(
    container: Container, fanout_handler: Any, stack: LocalStack
) -> None:
    ids = fresh_ids()
    author = ids[SAMPLE_AUTHOR]
    followers = [new_ulid() for _ in range(60)]  # three BatchWriteItem calls of 25
    ensure_users(container, author, *followers)
    store_sample_post(container, ids)
    for f in followers:
        container.follows.follow(f, author)
    fanout_handler(load_event("fanout/posts_insert.json", **ids))
    # The first page is written inline; the rest follow as fan-out job records.
    assert sum(bool(feed_of(container, f)) for f in followers) == TEST_FANOUT_PAGE_SIZE
    stack.drain()
    assert all(feed_of(container, f)[0].post_id == ids[SAMPLE_POST] for f in followers)


def test_a_failing_record_is_reported_and_later_ones_wait(container: Container, fanout_handler: Any) -> None:
    ids_ok, ids_late = fresh_ids(), fresh_ids()
    good = load_event("fanout/posts_insert.json", **ids_ok)["Records"][0]
    poison = copy.deepcopy(good)
    del poison["dynamodb"]["NewImage"]["created_at"]  # a row the fan-out cannot use
    poison["dynamodb"]["SequenceNumber"] = "900000000000000000002"
    late = load_event("fanout/posts_insert.json", **ids_late)["Records"][0]
    late["dynamodb"]["SequenceNumber"] = "900000000000000000003"

    response = fanout_handler({"Records": [good, poison, late]})

    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": "900000000000000000002"},
            {"itemIdentifier": "900000000000000000003"},
        ]
    }
    assert feed_of(container, ids_ok[SAMPLE_AUTHOR])  # before the failure: done
    assert feed_of(container, ids_late[SAMPLE_AUTHOR]) == []  # after it: not run, will be redelivered
