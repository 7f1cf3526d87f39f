"""The convergence checker against the real pipeline: after a scripted scenario every feed
equals what the truth tables imply, and deliberate damage to the feed table or to Redis is
reported precisely and repaired by rebuild_feed / rebuild_cache."""

from __future__ import annotations

import pytest

from ripple.cache.feed_cache import SENTINEL, FeedRef, feed_key
from ripple.cache.post_cache import post_key
from ripple.container import Container
from ripple.domain import FeedEntry
from ripple.ids import new_ulid
from ripple_local.convergence import BACKFILL, FOLLOWED, OWN, ConvergenceChecker
from ripple_local.stack import LocalStack
from tests.integration.support import TEST_HIGH_FOLLOWER_THRESHOLD, ensure_users

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator


@pytest.fixture
def checker(container: Container) -> ConvergenceChecker:
    return ConvergenceChecker.from_container(container)


def users(container: Container, n: int) -> list[str]:
    ids = [new_ulid() for _ in range(n)]
    ensure_users(container, *ids)
    return ids


def read_feeds(container: Container, *user_ids: str) -> None:
    """Read each home feed once: a cold feed is warmed into Redis, so the check covers it."""
    for user_id in user_ids:
        container.feed_reader.home(user_id, 20)


def test_a_scripted_scenario_converges_in_table_and_cache(
    stack: LocalStack, container: Container, checker: ConvergenceChecker
) -> None:
    a, b, c, d = users(container, 4)
    posts, follows = container.post_service, container.follow_service

    # Given a's posts from before b follows (backfill) and after (fan-out) ...
    p1 = posts.create(a, "p1").post_id
    p2 = posts.create(a, "p2").post_id
    stack.drain()
    follows.follow(b, a)
    follows.follow(c, a)
    follows.follow(d, b)
    stack.drain()
    read_feeds(container, a, b, c, d)  # cached from here on: the refresher keeps them current
    p3 = posts.create(a, "p3").post_id
    own = posts.create(b, "b's own").post_id
    posts.like(b, p3)
    posts.like(c, p3)
    posts.unlike(c, p3)
    stack.drain()
    # ... a delete, an unfollow, then a refollow and a post in one burst (no drain between;
    # see the xfail test below for the burst that still loses an item) ...
    posts.delete(p2, a)
    follows.unfollow(c, a)
    follows.unfollow(d, b)
    stack.drain()
    follows.follow(c, a)
    p4 = posts.create(a, "p4").post_id
    stack.drain()

    # ... and an author who passes the high-follower threshold: pushed before, pulled after.
    hf, *fans = users(container, TEST_HIGH_FOLLOWER_THRESHOLD + 1)
    follows.follow(b, hf)
    early = posts.create(hf, "pushed, before the threshold").post_id
    stack.drain()
    for fan in fans:
        follows.follow(fan, hf)
    stack.drain()
    assert container.users.is_high_follower(hf)
    late = posts.create(hf, "pulled at read time").post_id
    stack.drain()
    read_feeds(container, b, hf, *fans[:3])

    # When every feed of the scenario is checked
    report = checker.check([a, b, c, d, hf, *fans])

    # Then there is nothing to report, Redis included
    assert report.ok, report.summary()
    assert report.differences == 0
    assert report.summary().startswith("converged: ")
    assert all(report.for_user(u).cache.cached for u in (a, b, c, d, hf))
    # and the expectations were the interesting ones, not vacuous
    expected_b = checker.expected(b)
    assert dict(expected_b.reasons) == {p1: BACKFILL, p3: FOLLOWED, p4: FOLLOWED, own: OWN}
    assert expected_b.tolerated_authors == {hf}
    assert early in {e.post_id for e in container.feed.page(b, 50)}  # tolerated, not extra
    assert set(checker.expected(c).reasons) == {p1, p3, p4}  # all backfill after the refollow
    assert set(checker.expected(hf).reasons) == {early, late}
    assert checker.expected(d).entries == {}
    # a named reader that does not exist is not "converged" (a typo must not pass)
    unknown = checker.check([new_ulid()])
    assert not unknown.ok and "no such user" in unknown.summary()


def test_damage_to_the_table_and_the_cache_is_reported_and_repaired(
    stack: LocalStack, container: Container, checker: ConvergenceChecker
) -> None:
    a, b, stranger = users(container, 3)
    container.follow_service.follow(b, a)
    stack.drain()
    kept, removed, third = (container.post_service.create(a, f"p{i}").post_id for i in range(3))
    strangers_post = container.post_service.create(stranger, "not for b")
    stack.drain()
    read_feeds(container, b)
    assert checker.check([b]).ok

    # A feed item lost from the table (the refresher drops it from Redis too)
    container.feed.delete_many([(b, removed)])
    stack.drain()
    result = checker.check([b]).for_user(b)
    assert [e.post_id for e in result.missing] == [removed]
    assert result.reasons == {removed: FOLLOWED}
    assert result.extra == () and result.cache.cached
    assert result.cache.missing == (f"{removed}:{a}",)
    assert removed in checker.check([b]).summary()

    repair = checker.rebuild_feed(b)
    assert (repair.written, repair.deleted, repair.cache_dropped) == (1, 0, True)
    after = checker.check([b]).for_user(b)
    assert after.ok and not after.cache.cached  # the table is whole; Redis waits for a read
    # (read before the refresher's next delivery: see the xfail test on dropped feeds below)
    read_feeds(container, b)
    stack.drain()
    assert checker.check([b]).for_user(b).cache.cached and checker.check([b]).ok

    # An item that does not belong (someone b does not follow)
    container.feed.put_many([FeedEntry(b, strangers_post.post_id, stranger, strangers_post.created_at)])
    stack.drain()
    result = checker.check([b]).for_user(b)
    assert [e.post_id for e in result.extra] == [strangers_post.post_id] and result.missing == ()
    assert result.cache.extra == (f"{strangers_post.post_id}:{stranger}",)
    assert checker.rebuild_feed(b).deleted == 1
    read_feeds(container, b)
    stack.drain()
    assert checker.check([b]).ok

    # A corrupted cache: a member lost, a bogus one, and one with a wrong score
    redis = container.redis
    key = feed_key(b)
    assert SENTINEL in redis.zrange(key, 0, -1)
    redis.zrem(key, f"{kept}:{a}")
    bogus = f"{new_ulid()}:{stranger}"
    redis.zadd(key, {bogus: 0, f"{removed}:{a}": 7})
    result = checker.check([b]).for_user(b)
    assert result.table_ok and not result.ok
    assert result.cache.missing == (f"{kept}:{a}",)
    assert result.cache.extra == (bogus,)
    assert result.cache.misordered  # the scored member sorts first, out of newest-first order

    repair_cache = checker.rebuild_cache([b], posts=True)
    assert (repair_cache.feeds, repair_cache.posts) == (1, 4)  # b's three from a, and b's bogus id
    assert not redis.exists(key) and not redis.exists(post_key(kept))
    assert checker.check([b]).ok  # not cached: nothing in Redis to contradict the table
    read_feeds(container, b)
    warmed = checker.check([b]).for_user(b)
    assert warmed.ok and warmed.cache.cached and warmed.cache.complete
    members = container.feed_cache.members(b)
    assert [FeedRef.from_member(m).post_id for m in members] == [third, removed, kept, SENTINEL]


# ---------------------------------------------------------------------- found by the checker
# Two divergences the checker found in an earlier pipeline; these tests keep them fixed.


def test_a_post_made_after_a_refollow_survives_the_old_unfollow(
    stack: LocalStack, container: Container, checker: ConvergenceChecker
) -> None:
    a, c = users(container, 2)
    container.follow_service.follow(c, a)
    stack.drain()
    # Given an unfollow, a refollow and a post, delivered in one burst ...
    container.follow_service.unfollow(c, a)
    container.follow_service.follow(c, a)
    post = container.post_service.create(a, "made after the refollow").post_id
    # ... where the posts stream happens to be delivered before the follows stream
    stack.runner("FanoutFunction", "PostsStream").drain()
    assert post in {e.post_id for e in container.feed.page(c, 10)}  # pushed for the refollow
    stack.drain()

    result = checker.check([c]).for_user(c)
    assert result.ok, result.describe()


def test_a_dropped_feed_is_not_recreated_with_a_gap(
    stack: LocalStack, container: Container, checker: ConvergenceChecker
) -> None:
    a, b, older, old = users(container, 4)
    container.post_service.create(older, "oldest")
    container.post_service.create(old, "old")
    container.follow_service.follow(b, a)
    stack.drain()
    newest = [container.post_service.create(a, f"new {i}").post_id for i in range(2)][-1]
    stack.drain()
    read_feeds(container, b)  # warmed; the warming marker stays for 10 s
    # Given the cached feed is dropped (expiry, eviction, an operator's rebuild-cache) ...
    container.feed_cache.drop(b)
    # ... when older items arrive through the feed stream (backfills of two more authors)
    container.follow_service.follow(b, older)
    stack.drain()
    container.follow_service.follow(b, old)
    stack.drain()
    # Then they do not recreate it (it would have a gap above them) ...
    assert container.feed_cache.members(b) == []
    # ... and the first page is the newest post, rebuilt from DynamoDB.
    assert container.feed_reader.home(b, 1).items[0].post_id == newest
    assert checker.check([b]).ok
