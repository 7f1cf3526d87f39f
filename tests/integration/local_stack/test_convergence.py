"""The convergence checker against the real pipeline: after a scripted scenario every feed
equals what the truth tables imply, and deliberate damage to the feed table or to Redis is
reported precisely and repaired by rebuild_feed / rebuild_cache."""

from __future__ import annotations

import time

import pytest

from ripple.cache.feed_cache import SENTINEL, FeedRef, feed_key
from ripple.cache.post_cache import post_key
from ripple.container import Container
from ripple.domain import BLOCK, MUTE, FeedEntry
from ripple.ids import new_ulid
from ripple.repositories.blocks import edge_key
from ripple.repositories.models import (
    BlockedByModel,
    BlockModel,
    FeedItemModel,
    FollowerModel,
    FollowModel,
    PostIdModel,
    PostModel,
    RepostByUserModel,
    RepostModel,
    UserModel,
    UsernameModel,
)
from ripple_local.convergence import (
    BACKFILL,
    FOLLOWED,
    OWN,
    REPOSTED,
    CacheCheck,
    ConvergenceChecker,
    Misplaced,
    member,
)
from ripple_local.feed_scan import PostStamp
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


# ---------------------------------------------------------------------- reposts
# Truth rows and feed items written directly (no pipeline runs): each test states a rule of
# the checker and shows a feed that breaks it being reported.

MINUTE = 60_000


def ms(minutes_ago: float) -> int:
    return int(time.time() * 1000) - int(minutes_ago * MINUTE)


def follow_at(follower: str, followee: str, at: int) -> None:
    FollowModel(follower_id=follower, followee_id=followee, created_at=at).save()
    FollowerModel(followee_id=followee, follower_id=follower, created_at=at).save()


def post_at(author: str, at: int) -> PostStamp:
    post = PostStamp(new_ulid(at), author, at)
    PostModel(author_id=author, post_id=post.post_id, text="t", created_at=at).save()
    PostIdModel(post_id=post.post_id, author_id=author).save()
    return post


def repost_at(post: PostStamp, reposter: str, at: int) -> str:
    repost_id = new_ulid(at)
    RepostModel(
        post_id=post.post_id, user_id=reposter, repost_id=repost_id, author_id=post.author_id, created_at=at
    ).save()
    RepostByUserModel(
        user_id=reposter, post_id=post.post_id, repost_id=repost_id, author_id=post.author_id
    ).save()
    return repost_id


def hide(kind: str, user_id: str, target_id: str) -> None:
    """``user_id`` blocks or mutes ``target_id`` (both rows, as the repository writes them)."""
    now = ms(0)
    BlockModel(
        user_id=user_id, edge=edge_key(kind, target_id), target_id=target_id, kind=kind, created_at=now
    ).save()
    BlockedByModel(
        target_id=target_id, edge=edge_key(kind, user_id), user_id=user_id, kind=kind, created_at=now
    ).save()


def item(reader: str, post: PostStamp, placed: str = "", reposted_by: str | None = None) -> FeedEntry:
    return FeedEntry(reader, post.post_id, post.author_id, post.created_at, placed, reposted_by)


def store(*entries: FeedEntry, unplaced: bool = False) -> None:
    """Feed items as their writers store them: ``placed`` only on items a repost placed
    (``unplaced``: malformed, ``placed`` on an item at its post, which a page would show
    twice, from the table and from the placement index)."""
    for e in entries:
        FeedItemModel(
            user_id=e.user_id,
            post_id=e.post_id,
            author_id=e.author_id,
            created_at=e.created_at,
            placed=e.placed if e.reposted_by or unplaced else None,
            reposted_by=e.reposted_by,
        ).save()


def test_a_followees_repost_places_the_item_at_the_repost(
    container: Container, checker: ConvergenceChecker
) -> None:
    r, k, a = users(container, 3)
    follow_at(r, k, ms(10))
    post = post_at(a, ms(9))
    rid = repost_at(post, k, ms(8))

    # The reader who follows the reposter (not the author), and the reposter themself
    assert checker.expected(r).entries == {post.post_id: item(r, post, rid, k)}
    assert checker.expected(r).reasons == {post.post_id: REPOSTED}
    assert checker.expected(k).entries[post.post_id] == item(k, post, rid, k)

    result = checker.check([r]).for_user(r)
    assert [(e.placed, e.reposted_by) for e in result.missing] == [(rid, k)]
    assert f"{post.post_id}(reposted, reposted by {k})" in result.describe()
    store(item(r, post))  # the post, at its own place
    result = checker.check([r]).for_user(r)
    assert result.missing == () and result.extra == ()
    assert result.misplaced == (Misplaced(item(r, post), item(r, post, rid, k)),)
    assert "misplaced" in result.describe() and not result.ok
    store(item(r, post, rid, k))
    assert checker.check([r]).ok


def test_the_newest_of_two_reposts_wins(container: Container, checker: ConvergenceChecker) -> None:
    r, k1, k2, a = users(container, 4)
    follow_at(r, k1, ms(10))
    follow_at(r, k2, ms(10))
    post = post_at(a, ms(9))
    older = repost_at(post, k1, ms(8))
    newer = repost_at(post, k2, ms(7))

    store(item(r, post, older, k1))
    result = checker.check([r]).for_user(r)
    assert [(m.stored.placed, m.expected.placed, m.expected.reposted_by) for m in result.misplaced] == [
        (older, newer, k2)
    ]
    assert not result.ok
    store(item(r, post, newer, k2))
    assert checker.check([r]).ok


def test_the_authors_own_feed_keeps_the_original(container: Container, checker: ConvergenceChecker) -> None:
    a, k = users(container, 2)
    follow_at(a, k, ms(10))  # the author follows the reposter
    post = post_at(a, ms(9))
    repost_at(post, k, ms(8))

    assert checker.expected(a).entries == {post.post_id: item(a, post)}
    assert checker.expected(a).reasons == {post.post_id: OWN}
    store(item(a, post))
    assert checker.check([a]).ok


def test_a_follow_after_the_repost_brings_no_placement(
    container: Container, checker: ConvergenceChecker
) -> None:
    fan, late, k, a = users(container, 4)
    follow_at(fan, a, ms(10))  # fan follows the author, so the original is expected
    post = post_at(a, ms(9))
    rid = repost_at(post, k, ms(8))
    follow_at(fan, k, ms(7))  # both follow the reposter only after the repost
    follow_at(late, k, ms(7))

    assert checker.expected(fan).entries == {post.post_id: item(fan, post)}
    assert post.post_id not in checker.expected(late).entries
    store(item(fan, post), item(late, post, rid, k))
    report = checker.check([fan, late])
    assert report.for_user(fan).ok
    assert report.for_user(late).extra == (item(late, post, rid, k),)


def test_hiding_the_reposter_or_the_author_hides_the_repost(
    container: Container, checker: ConvergenceChecker
) -> None:
    muter, blocker, author_muter, k, a = users(container, 5)
    for reader in (muter, blocker, author_muter):
        follow_at(reader, k, ms(10))
    follow_at(muter, a, ms(10))
    post = post_at(a, ms(9))
    rid = repost_at(post, k, ms(8))
    hide(MUTE, muter, k)  # the original, through the author, still applies
    hide(BLOCK, blocker, a)
    hide(MUTE, author_muter, a)

    assert checker.expected(muter).entries == {post.post_id: item(muter, post)}
    assert post.post_id not in checker.expected(blocker).entries
    assert post.post_id not in checker.expected(author_muter).entries
    store(item(muter, post), *(item(reader, post, rid, k) for reader in (blocker, author_muter)))
    report = checker.check([muter, blocker, author_muter])
    assert report.for_user(muter).ok
    assert report.for_user(blocker).extra == (item(blocker, post, rid, k),)
    assert report.for_user(author_muter).extra == (item(author_muter, post, rid, k),)


def test_a_repost_of_a_deleted_post_places_nothing(container: Container, checker: ConvergenceChecker) -> None:
    r, k, a = users(container, 3)
    follow_at(r, k, ms(10))
    post = post_at(a, ms(9))
    rid = repost_at(post, k, ms(8))
    store(item(r, post, rid, k))
    assert checker.check([r]).ok

    # The post is deleted; its repost (purged by the pipeline) and the item are still there
    PostModel(author_id=a, post_id=post.post_id).delete()
    assert checker.expected(r).entries == {}
    assert checker.check([r]).for_user(r).extra == (item(r, post, rid, k),)


def test_an_item_with_a_malformed_placement_is_reported_and_rebuilt(
    container: Container, checker: ConvergenceChecker
) -> None:
    r, a = users(container, 2)
    follow_at(r, a, ms(10))
    post = post_at(a, ms(9))
    store(item(r, post), unplaced=True)  # ``placed`` without a reposter: in two places of a page

    result = checker.check([r]).for_user(r)
    assert result.unplaced == (item(r, post),) and not result.ok
    assert result.missing == () and result.extra == ()
    assert f"unplaced [{post.post_id}(by {a})]" in result.describe()
    assert checker.rebuild_feed(r).written == 1
    assert checker.check([r]).ok
    assert FeedItemModel.get(r, post.post_id, consistent_read=True).placed is None  # at its post


def test_the_cached_prefix_is_judged_in_placement_order(
    container: Container, checker: ConvergenceChecker
) -> None:
    r, k, a = users(container, 3)
    follow_at(r, a, ms(10))
    follow_at(r, k, ms(10))
    old, new = post_at(a, ms(9)), post_at(a, ms(8))
    rid = repost_at(old, k, ms(7))  # the old post is placed above the new one
    store(item(r, old, rid, k), item(r, new))
    reposted, original = f"{rid}:{a}:{old.post_id}:{k}", f"{new.post_id}:{a}"
    assert member(item(r, old, rid, k)) == reposted and member(item(r, new)) == original
    key = feed_key(r)

    def cache(members: dict[str, float]) -> CacheCheck:
        container.redis.delete(key)
        container.redis.zadd(key, members)
        return checker.check([r]).for_user(r).cache

    # The repost's member above an older post's, complete or as a prefix: fine
    assert cache({reposted: 0, original: 0, SENTINEL: 0}).ok
    assert cache({reposted: 0}).ok
    # A prefix that skips the newest placement (the old post's), or misordered: reported
    assert cache({original: 0}).missing == (reposted,)
    assert cache({reposted: 0, original: 7, SENTINEL: 0}).misordered == (reposted,)
    container.redis.delete(key)


def test_rebuild_feed_writes_placements_the_check_accepts(
    container: Container, checker: ConvergenceChecker
) -> None:
    r, k1, k2, a = users(container, 4)
    for followee in (a, k1, k2):
        follow_at(r, followee, ms(10))
    p1, p2, p3 = post_at(a, ms(9)), post_at(a, ms(9)), post_at(a, ms(9))
    repost_at(p1, k1, ms(8))
    rid = repost_at(p1, k2, ms(7))
    rid3 = repost_at(p3, k1, ms(6))
    store(item(r, p1))  # misplaced
    store(item(r, p2), unplaced=True)  # unplaced; p3's is missing
    assert not checker.check([r]).ok

    repair = checker.rebuild_feed(r)
    assert (repair.written, repair.deleted) == (3, 0)
    assert checker.check([r]).ok
    rows = {m.post_id: (m.placed, m.reposted_by) for m in FeedItemModel.query(r, consistent_read=True)}
    assert rows == {p1.post_id: (rid, k2), p2.post_id: (None, None), p3.post_id: (rid3, k1)}


def test_an_item_placed_by_a_recent_repost_of_an_old_post_may_not_expire(
    container: Container, checker: ConvergenceChecker
) -> None:
    r, k, old_k, a = users(container, 4)
    ttl_minutes = container.settings.feed_item_ttl_days * 24 * 60
    follow_at(r, k, ms(ttl_minutes + 30))
    follow_at(r, old_k, ms(ttl_minutes + 30))
    old, older = post_at(a, ms(ttl_minutes + 20)), post_at(a, ms(ttl_minutes + 20))
    repost_at(old, k, ms(1))  # placed now: required
    repost_at(older, old_k, ms(ttl_minutes + 10))  # placed before the TTL: may have expired

    missing = checker.check([r]).for_user(r).missing
    assert [e.post_id for e in missing] == [old.post_id]


def test_reposts_from_before_a_feed_rebuild_are_optional(
    container: Container, checker: ConvergenceChecker
) -> None:
    r, k, a, b = users(container, 4)
    follow_at(r, k, ms(30))
    follow_at(r, b, ms(30))
    by_a, by_b = post_at(a, ms(25)), post_at(b, ms(25))
    rid_a, rid_b = repost_at(by_a, k, ms(20)), repost_at(by_b, k, ms(20))  # while r was away
    UserModel(user_id=r).update(actions=[UserModel.feed_rebuilt_at.set(ms(10))])

    # Without an item, or at the repost: by_a (r does not follow a) is fine both ways
    store(item(r, by_b))  # b's post: the original (the rebuild's copy) ...
    assert checker.check([r]).ok
    store(item(r, by_a, rid_a, k), item(r, by_b, rid_b, k))  # ... or placed by the repost
    assert checker.check([r]).ok
    FeedItemModel(user_id=r, post_id=by_b.post_id).delete()  # but b's post must be there
    assert [e.post_id for e in checker.check([r]).for_user(r).missing] == [by_b.post_id]


def test_a_deleted_reposters_reposts_are_residue(container: Container, checker: ConvergenceChecker) -> None:
    r, a = users(container, 2)
    gone = new_ulid()  # a deleted account: only its released username claim names it
    claim = UsernameModel(username=f"gone{gone.lower()}", user_id=gone, released_at=ms(0))
    claim.save()
    theirs = post_at(a, ms(9))
    rid = repost_at(theirs, gone, ms(8))
    store(item(r, theirs, rid, gone))
    try:
        [erased] = checker.check([gone]).erased
        assert dict(erased.leftovers) == {"reposts": 1, "reposts_by_user": 1, "feed_items_they_reposted": 1}
        # ... and the reposts of a deleted author's posts
        RepostModel(post_id=theirs.post_id, user_id=gone).delete()
        RepostByUserModel(user_id=gone, post_id=theirs.post_id).delete()
        FeedItemModel(user_id=r, post_id=theirs.post_id).delete()
        PostModel(author_id=a, post_id=theirs.post_id).delete()
        mine = PostStamp(new_ulid(), gone, ms(5))
        repost_at(mine, r, ms(4))
        [erased] = checker.check([gone]).erased
        assert dict(erased.leftovers) == {"reposts_of_their_posts": 1, "reposts_by_user_of_their_posts": 1}
        RepostModel(post_id=mine.post_id, user_id=r).delete()
        RepostByUserModel(user_id=r, post_id=mine.post_id).delete()
        assert checker.check([gone]).ok
    finally:
        claim.delete()
