"""The fan-out function, invoked with the sample events of events/fanout/, against the real
emulator: writes, duplicates, retractions, backfill and partial batch failure."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ripple.container import Container
from ripple.domain import FeedEntry, Post
from ripple.ids import new_ulid
from ripple.repositories.models import UserModel
from ripple_local.stack import LocalStack, runner_key
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


def test_a_push_delivered_again_delivers_each_continuation_job_once(
    container: Container, fanout_handler: Any, stack: LocalStack
) -> None:
    # Given an author with three pages of followers, their follows' own records handled
    ids = fresh_ids()
    author = ids[SAMPLE_AUTHOR]
    followers = [new_ulid() for _ in range(2 * TEST_FANOUT_PAGE_SIZE + 1)]
    ensure_users(container, author, *followers)
    for f in followers:
        container.follows.follow(f, author)
    stack.drain()
    jobs = stack.runners[runner_key("FanoutFunction", "JobsStream")]
    before = jobs.stats.snapshot()

    # When a post's record is delivered three times (twice here, as a retried batch is, then
    # by the posts stream's runner): each delivery writes the page-2 job (enqueue_many is an
    # unconditional BatchWriteItem), the retry a second later, so that the job's expiry moves
    # and its write is a change (DynamoDB writes no stream record for an unchanged item)
    store_sample_post(container, ids)
    event = load_event("fanout/posts_insert.json", **ids)
    fanout_handler(event)
    time.sleep(1.1)
    fanout_handler(event)
    stack.drain()

    # Then each job reached the function once: page 2's (created once; written again it is no
    # INSERT, and only INSERTs pass the jobs stream's FilterCriteria; the function would also
    # ignore the rest, at the cost of an invocation), then page 3's, created by page 2's run
    after = jobs.stats.snapshot()
    assert after["records_ok"] - before["records_ok"] == 2
    assert all(feed_of(container, f)[0].post_id == ids[SAMPLE_POST] for f in followers)


def test_a_failing_record_is_reported_and_later_ones_wait(container: Container, fanout_handler: Any) -> None:
    # Follow records (their backfill shows whether they ran: no real follow edge exists, so
    # the session's own runners never write these followers' feeds) around a poison post.
    ids_ok, ids_late = fresh_ids(), fresh_ids()
    for ids in (ids_ok, ids_late):
        ensure_users(container, ids[SAMPLE_AUTHOR], ids[SAMPLE_FOLLOWER])
        store_sample_post(container, ids)
    good = load_event("fanout/follows_insert.json", **ids_ok)["Records"][0]
    poison = load_event("fanout/posts_insert.json", **ids_ok)["Records"][0]
    del poison["dynamodb"]["NewImage"]["created_at"]  # a row the fan-out cannot use
    poison["dynamodb"]["SequenceNumber"] = "900000000000000000002"
    late = load_event("fanout/follows_insert.json", **ids_late)["Records"][0]
    late["dynamodb"]["SequenceNumber"] = "900000000000000000003"

    response = fanout_handler({"Records": [good, poison, late]})

    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": "900000000000000000002"},
            {"itemIdentifier": "900000000000000000003"},
        ]
    }
    assert [e.post_id for e in feed_of(container, ids_ok[SAMPLE_FOLLOWER])] == [ids_ok[SAMPLE_POST]]  # done
    assert feed_of(container, ids_late[SAMPLE_FOLLOWER]) == []  # after it: not run, will be redelivered


def test_a_batch_of_posts_by_several_authors_is_fanned_out_together_in_stream_order(
    container: Container, fanout_handler: Any
) -> None:
    # Given two authors with a follower each, and three posts each in one stream batch,
    # the second author's last post deleted later in the same batch
    records: list[dict[str, Any]] = []
    authors: list[tuple[str, str, list[str]]] = []  # (author, follower, post ids)
    for _ in range(2):
        ids = fresh_ids()
        author, follower = ids[SAMPLE_AUTHOR], ids[SAMPLE_FOLLOWER]
        ensure_users(container, author, follower)
        container.follows.follow(follower, author)
        posts = []
        for _ in range(3):
            post_ids = {**ids, SAMPLE_POST: new_ulid()}
            store_sample_post(container, post_ids)
            records += load_event("fanout/posts_insert.json", **post_ids)["Records"]
            posts.append(post_ids[SAMPLE_POST])
        authors.append((author, follower, posts))
    deleted_author, _, deleted_posts = authors[1]
    container.posts.delete(deleted_author, deleted_posts[-1])
    records += load_event(
        "fanout/posts_remove.json",
        **{SAMPLE_AUTHOR: deleted_author, SAMPLE_POST: deleted_posts[-1]},
    )["Records"]
    for n, record in enumerate(records):
        record["dynamodb"]["SequenceNumber"] = f"{700000000000000000000 + n}"

    # When the batch is delivered
    assert fanout_handler({"Records": records}) == {"batchItemFailures": []}

    # Then every follower and author holds their posts, and the deletion ran after its push
    for author, follower, posts in authors:
        expected = sorted(p for p in posts if p != deleted_posts[-1])
        assert sorted(e.post_id for e in feed_of(container, follower)) == expected
        assert sorted(e.post_id for e in feed_of(container, author)) == expected


def test_a_failure_inside_a_batch_redelivers_from_the_failing_group(
    container: Container, fanout_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch: a follow, a post, and a follow whose backfill fails
    ids, later = fresh_ids(), fresh_ids()
    ensure_users(container, ids[SAMPLE_AUTHOR], ids[SAMPLE_FOLLOWER], later[SAMPLE_FOLLOWER])
    store_sample_post(container, ids)
    follow = load_event("fanout/follows_insert.json", **ids)["Records"]
    post = load_event("fanout/posts_insert.json", **ids)["Records"]
    other_follower = {**ids, SAMPLE_FOLLOWER: later[SAMPLE_FOLLOWER]}
    failing = load_event("fanout/follows_insert.json", **other_follower)["Records"]
    records = follow + post + failing
    for n, record in enumerate(records):
        record["dynamodb"]["SequenceNumber"] = f"{800000000000000000000 + n}"
    backfill = type(container.fanout).follow_added

    def follow_added(self: Any, follower_id: str, followee_id: str, followed_at: int) -> int:
        if follower_id == later[SAMPLE_FOLLOWER]:
            raise RuntimeError("injected: DynamoDB unreachable")
        return backfill(self, follower_id, followee_id, followed_at)

    monkeypatch.setattr(type(container.fanout), "follow_added", follow_added)

    # When it is delivered, then Lambda is told to resume at the failing record (the ones
    # before it were applied, and are not delivered again)
    assert fanout_handler({"Records": records}) == {
        "batchItemFailures": [{"itemIdentifier": "800000000000000000002"}]
    }
    assert [e.post_id for e in feed_of(container, ids[SAMPLE_FOLLOWER])] == [ids[SAMPLE_POST]]  # backfill
    assert feed_of(container, later[SAMPLE_FOLLOWER]) == []


def test_an_account_is_marked_once_a_block_or_mute_may_hide_its_posts(container: Container) -> None:
    # Given four new accounts: nothing hides any of them, so fan-out reads no relations for them
    muter, muted, blocker, blocked = (new_ulid() for _ in range(4))
    ensure_users(container, muter, muted, blocker, blocked)
    ids = (muter, muted, blocker, blocked)
    assert {u: s.may_hide for u, s in container.users.fanout_states(ids).items()} == dict.fromkeys(ids, False)

    # When one mutes another and one blocks another (each in its own transaction)
    container.block_service.mute(muter, muted)
    container.block_service.block(blocker, blocked)

    # Then the muted account's posts, and both sides of the block, may be hidden from someone;
    # the muter's may not (a mute hides the muted from the muter, not the other way)
    states = container.users.fanout_states(ids)
    assert {u: s.may_hide for u, s in states.items()} == {
        muter: False,
        muted: True,
        blocker: True,
        blocked: True,
    }
    # and it stays (sticky: an unblock or unmute leaves it; fan-out then reads, finding none)
    container.block_service.unmute(muter, muted)
    assert container.users.fanout_states([muted])[muted].may_hide

    # An account made before may_hide existed has none: it may be hidden (its relations are read)
    UserModel(user_id=muter).update(actions=[UserModel.may_hide.remove()])
    assert container.users.fanout_states([muter])[muter].may_hide
