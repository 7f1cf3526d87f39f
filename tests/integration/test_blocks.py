"""Blocks and mutes (``ripple.services.blocks``) against the real emulator and Redis: the
routes, the follows a block ends and their counters, what each party stops seeing, the
filter at read before fan-out catches up (cached feed, DynamoDB, Redis down), fan-out racing
a block or a mute, a mute's retraction and an unmute's restore, ``check-convergence``, and
the repository's erasure of a user's rows (for account deletion)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import redis
from chalice.test import Client

from ripple.cache.relations import RelationsCache, relations_key
from ripple.container import Container
from ripple.domain import BLOCK, MUTE, FeedEntry
from ripple.repositories.fanout_jobs import FanoutJobRepository
from ripple.repositories.feed import FeedRepository
from ripple.services.blocks import BlockService
from ripple.services.fanout import FanoutService
from ripple_local.convergence import ConvergenceChecker
from ripple_local.stack import LocalStack
from tests.integration.support import Http, error_code, feed_reader

pytestmark = [pytest.mark.integration]
UNKNOWN_ID = "01JDQ0000000000000000ZZZZZ"


# ------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def http(stack: LocalStack) -> Iterator[Http]:
    with Client(stack.handler("ApiFunction")) as client:
        yield Http(client)


def signup(container: Container, name: str) -> str:
    return container.accounts.signup(f"{name}_{uuid.uuid4().hex[:8]}", "password123").user.user_id


def feed_ids(container: Container, user_id: str, reader: Any = None) -> list[str]:
    return [p.post_id for p in (reader or container.feed_reader).home(user_id, 50).items]


def table_ids(container: Container, user_id: str) -> set[str]:
    return {e.post_id for e in container.feed.page(user_id, 100)}


def counters(container: Container, user_id: str) -> tuple[int, int]:
    user = container.users.get_consistent(user_id)
    assert user is not None
    return user.follower_count, user.following_count


def ids(page: Any) -> list[str]:
    return [item["user_id"] for item in page.json["items"]]


# ------------------------------------------------------------------ routes
def test_a_block_ends_both_follows_with_their_counters_and_refuses_new_ones(
    http: Http, container: Container
) -> None:
    a, b, c = http.user(), http.user(), http.user()
    for follower, followee in ((a, b), (b, a), (c, a)):
        assert http("POST", f"/users/{followee['id']}/follow", follower["token"]).status_code == 200

    first = http("POST", f"/users/{b['id']}/block", a["token"])
    again = http("POST", f"/users/{b['id']}/block", a["token"])

    assert first.status_code == again.status_code == 200
    assert first.json == {"blocking": True, "user_id": b["id"], "changed": True}
    assert again.json["changed"] is False
    # Both follows between them ended; c's follow of a stays; every counter equals its rows
    assert counters(container, a["id"]) == (1, 0) and counters(container, b["id"]) == (0, 0)
    assert container.follows.all_following(a["id"]) == [] == container.follows.all_following(b["id"])
    assert ids(http("GET", f"/users/{a['id']}/followers", c["token"])) == [c["id"]]
    # Neither may follow the other while the block stands
    for follower, followee in ((a, b), (b, a)):
        refused = http("POST", f"/users/{followee['id']}/follow", follower["token"])
        assert (refused.status_code, error_code(refused)) == (403, "blocked")
    assert counters(container, a["id"]) == (1, 0) and counters(container, b["id"]) == (0, 0)
    assert ids(http("GET", "/me/blocks", a["token"])) == [b["id"]]
    assert ids(http("GET", "/me/blocks", b["token"])) == []

    # Unblocking is idempotent; the follows stay ended, and may be made again
    assert http("DELETE", f"/users/{b['id']}/block", a["token"]).json == {
        "blocking": False,
        "user_id": b["id"],
        "changed": True,
    }
    assert http("DELETE", f"/users/{b['id']}/block", a["token"]).json["changed"] is False
    assert container.follows.all_following(b["id"]) == []
    assert http("POST", f"/users/{a['id']}/follow", b["token"]).json["changed"] is True
    assert counters(container, a["id"]) == (2, 0)


def test_block_and_mute_validation(http: Http) -> None:
    a = http.user()
    for verb in ("block", "mute"):
        for method in ("POST", "DELETE"):
            self_ = http(method, f"/users/{a['id']}/{verb}", a["token"])
            assert (self_.status_code, error_code(self_)) == (400, f"cannot_{verb}_self")
            unknown = http(method, f"/users/{UNKNOWN_ID}/{verb}", a["token"])
            assert (unknown.status_code, error_code(unknown)) == (404, "not_found")
            # A malformed id cannot exist: 404, as for every route taking an id
            malformed = http(method, f"/users/not-an-id/{verb}", a["token"])
            assert (malformed.status_code, error_code(malformed)) == (404, "not_found")
            anonymous = http(method, f"/users/{UNKNOWN_ID}/{verb}")
            assert anonymous.status_code == 401
    for path in ("/me/blocks", "/me/mutes"):
        bad = http("GET", f"{path}?limit=0", a["token"])
        assert (bad.status_code, error_code(bad)) == (400, "validation_error")
        assert http("GET", path).status_code == 401


def test_mute_and_unmute_are_idempotent_keep_the_follow_and_list_in_pages(
    http: Http, container: Container
) -> None:
    a = http.user()
    others = [http.user() for _ in range(3)]
    http("POST", f"/users/{others[0]['id']}/follow", a["token"])
    for other in others:
        first = http("POST", f"/users/{other['id']}/mute", a["token"])
        assert first.json == {"muting": True, "user_id": other["id"], "changed": True}
    assert http("POST", f"/users/{others[0]['id']}/mute", a["token"]).json["changed"] is False
    assert counters(container, others[0]["id"]) == (1, 0)  # still followed

    seen, cursor = [], None
    while True:
        page = http("GET", "/me/mutes?limit=2" + (f"&cursor={cursor}" if cursor else ""), a["token"])
        seen += ids(page)
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(o["id"] for o in others)
    assert ids(http("GET", "/me/blocks", a["token"])) == []

    assert http("DELETE", f"/users/{others[1]['id']}/mute", a["token"]).json["changed"] is True
    assert http("DELETE", f"/users/{others[1]['id']}/mute", a["token"]).json["changed"] is False
    assert ids(http("GET", "/me/mutes", a["token"])) == sorted([others[0]["id"], others[2]["id"]])


def test_blocked_parties_see_none_of_each_others_posts_and_cannot_like_them(
    http: Http, container: Container
) -> None:
    a, b, c = http.user(), http.user(), http.user()
    http("POST", f"/users/{c['id']}/follow", a["token"])
    http("POST", f"/users/{c['id']}/follow", b["token"])
    posts = {}
    for user in (a, b):
        posts[user["id"]] = container.post_service.create(user["id"], "mine").post_id
        http("POST", f"/posts/{posts[user['id']]}/like", c["token"])

    http("POST", f"/users/{b['id']}/block", a["token"])

    for viewer, other in ((a, b), (b, a)):  # both ways
        listed = http("GET", f"/users/{other['id']}/posts", viewer["token"])
        assert listed.status_code == 200 and listed.json == {"items": [], "next_cursor": None}
        one = http("GET", f"/posts/{posts[other['id']]}", viewer["token"])
        assert (one.status_code, error_code(one)) == (404, "not_found")
        like = http("POST", f"/posts/{posts[other['id']]}/like", viewer["token"])
        assert (like.status_code, error_code(like)) == (403, "blocked")
        # c's followers and following lists hide the other party from each of them
        assert ids(http("GET", f"/users/{c['id']}/followers", viewer["token"])) == [viewer["id"]]
        assert http("GET", f"/users/{other['id']}", viewer["token"]).status_code == 200  # profiles stay
    # A third party sees everything
    assert len(http("GET", f"/users/{a['id']}/posts", c["token"]).json["items"]) == 1
    assert sorted(ids(http("GET", f"/users/{c['id']}/followers", c["token"]))) == sorted([a["id"], b["id"]])
    assert http("GET", f"/posts/{posts[a['id']]}", c["token"]).json["like_count"] == 1

    http("DELETE", f"/users/{b['id']}/block", a["token"])
    assert http("GET", f"/posts/{posts[a['id']]}", b["token"]).status_code == 200
    assert http("POST", f"/posts/{posts[a['id']]}/like", b["token"]).status_code == 200


def test_no_other_route_shows_a_blocked_party_the_post(http: Http, container: Container) -> None:
    # The fresh-clone review read a blocked party's post through the unlike route's answer,
    # and told it exists from a delete's 403.
    author, liker = http.user(), http.user()
    post_id = container.post_service.create(author["id"], "seen before the block").post_id
    assert http("POST", f"/posts/{post_id}/like", liker["token"]).status_code == 200
    http("POST", f"/users/{liker['id']}/block", author["token"])
    later = container.post_service.create(author["id"], "made after the block").post_id

    for pid in (post_id, later):
        unliked = http("DELETE", f"/posts/{pid}/like", liker["token"])
        assert (unliked.status_code, error_code(unliked)) == (404, "not_found"), unliked.json
        assert "block" not in unliked.body.decode()  # no text of the post
        deleted = http("DELETE", f"/posts/{pid}", liker["token"])
        assert (deleted.status_code, error_code(deleted)) == (404, "not_found")
    # The caller's own like is removed all the same, and the post stays
    assert http("GET", f"/posts/{post_id}", author["token"]).json["like_count"] == 0


# ------------------------------------------------------------------ feeds
def test_the_feed_hides_blocked_and_muted_authors_at_once_even_cached_and_before_fan_out(
    stack: LocalStack, container: Container
) -> None:
    reader, muted, blocked, blocker, kept = (signup(container, n) for n in ("r", "m", "b", "x", "k"))
    for author in (muted, blocked, blocker, kept):
        container.follow_service.follow(reader, author)
    posts = {a: container.post_service.create(a, "hi").post_id for a in (muted, blocked, blocker, kept)}
    stack.drain()
    assert set(feed_ids(container, reader)) == set(posts.values())
    assert feed_ids(container, reader)  # read again: a cached read, its relations cached too

    # When the reader mutes one author and blocks another, and a third blocks the reader,
    # with no stream record delivered yet
    container.block_service.mute(reader, muted)
    container.block_service.block(reader, blocked)
    container.block_service.block(blocker, reader)

    # Then the cached feed already hides all three; the table still holds their items
    assert feed_ids(container, reader) == [posts[kept]]
    assert table_ids(container, reader) == set(posts.values())
    # ... and so does a read from DynamoDB, with the reader's relations not in Redis
    container.feed_cache.drop(reader)
    container.redis.delete(relations_key(reader))
    assert feed_ids(container, reader) == [posts[kept]]

    # Once fan-out has run, the table lost them too (the mute kept the follow)
    stack.drain()
    assert table_ids(container, reader) == {posts[kept]}
    assert muted in {f for f, _ in container.follows.all_following(reader)}
    # and a new post by the muted author is not pushed to the reader
    later = container.post_service.create(muted, "later").post_id
    stack.drain()
    assert later not in table_ids(container, reader)
    assert ConvergenceChecker.from_container(container).check([reader]).ok

    # Unmuting restores what the feed's definition holds of that author
    container.block_service.unmute(reader, muted)
    assert set(feed_ids(container, reader)) == {posts[kept]}  # the items come back with fan-out
    stack.drain()
    assert table_ids(container, reader) == {posts[kept], posts[muted], later}
    assert set(feed_ids(container, reader)) == {posts[kept], posts[muted], later}
    assert ConvergenceChecker.from_container(container).check([reader]).ok


def test_blocks_apply_with_redis_down(stack: LocalStack, container: Container) -> None:
    reader, author = signup(container, "r"), signup(container, "a")
    container.follow_service.follow(reader, author)
    post = container.post_service.create(author, "hi")
    stack.drain()
    dead = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.1, socket_connect_timeout=0.1)
    down_reader = feed_reader(container, dead)
    assert feed_ids(container, reader, down_reader) == [post.post_id]

    # A block made while Redis is down (its write-through fails, quietly) ...
    offline = BlockService(container.blocks, container.users, RelationsCache(dead), container.timeline)
    assert offline.mute(reader, author) is True
    # ... applies at once to reads that cannot reach Redis either (DynamoDB's relations)
    assert feed_ids(container, reader, down_reader) == []
    stack.drain()
    assert table_ids(container, reader) == set()


class _Interleaved(FeedRepository):
    """A feed repository that runs ``before_write`` once, just before fan-out's first write:
    a block or mute committing (and its own retraction running) between fan-out's read of
    the audience and its writes."""

    def __init__(self, inner: FeedRepository, before_write: Any) -> None:
        super().__init__()
        self._inner = inner
        self._before_write = before_write

    def put_many(self, entries: Iterable[FeedEntry]) -> int:
        if self._before_write is not None:
            action, self._before_write = self._before_write, None
            action()
        return self._inner.put_many(entries)

    def delete_many(self, keys: Iterable[tuple[str, str]]) -> int:
        return self._inner.delete_many(keys)


class _Deleting(FeedRepository):
    def __init__(self, inner: FeedRepository, delete: Any) -> None:
        super().__init__()
        self._inner = inner
        self._delete = delete

    def put_many(self, entries: Iterable[FeedEntry]) -> int:
        return self._inner.put_many(entries)

    def delete_many(self, keys: Iterable[tuple[str, str]]) -> int:
        return int(self._delete(keys))


def _fanout(container: Container, feed: FeedRepository) -> FanoutService:
    settings = container.settings
    return FanoutService(
        container.posts,
        container.follows,
        container.users,
        feed,
        FanoutJobRepository(),
        container.likes,
        container.blocks,
        container.reposts,
        backfill_posts=settings.backfill_posts,
        page_size=settings.fanout_page_size,
        high_follower_threshold=settings.high_follower_threshold,
        pull_grace_ms=0,
    )


# (A mute hides the muted account's posts from the muter only: there is no "author mutes".)
@pytest.mark.parametrize(("kind", "who_blocks"), [(BLOCK, "reader"), (BLOCK, "author"), (MUTE, "reader")])
def test_a_block_or_mute_while_a_post_is_being_fanned_out_leaves_no_item(
    stack: LocalStack, container: Container, kind: str, who_blocks: str
) -> None:
    reader, author, other = signup(container, "r"), signup(container, "a"), signup(container, "o")
    container.follow_service.follow(reader, author)
    container.follow_service.follow(other, author)
    stack.drain()
    post = container.post_service.create(author, "racing")

    def hide() -> None:
        # The block (or mute) commits after fan-out read the audience, and its retraction
        # (the follows stream's unfollow, the mute's job) runs before fan-out writes.
        if kind == BLOCK:
            blocker, blocked = (reader, author) if who_blocks == "reader" else (author, reader)
            container.block_service.block(blocker, blocked)
            container.fanout.follow_removed(reader, author)
        else:
            container.block_service.mute(reader, author)
            container.fanout.muted(reader, author)

    # When fan-out pushes the post with the block landing in the middle
    _fanout(container, _Interleaved(container.feed, hide)).post_created(post)

    # Then the reader has no item of it, the other follower has
    assert post.post_id not in table_ids(container, reader)
    assert post.post_id in table_ids(container, other)
    # ... and once the streams have run, table, cache and the check agree
    stack.drain()
    assert post.post_id not in table_ids(container, reader)
    assert post.post_id not in feed_ids(container, reader)
    assert ConvergenceChecker.from_container(container).check([reader, other]).ok


def test_an_unmute_racing_the_mutes_retraction_converges(stack: LocalStack, container: Container) -> None:
    reader, author = signup(container, "r"), signup(container, "a")
    container.follow_service.follow(reader, author)
    posts = {container.post_service.create(author, f"p{i}").post_id for i in range(3)}
    stack.drain()

    # The mute's job checks the mute, then the unmute commits and its job runs, then the
    # mute's job deletes: it sees the mute gone afterwards and puts the items back
    container.block_service.mute(reader, author)
    original_delete = container.feed.delete_many

    def delete_after_unmute(keys: Iterable[tuple[str, str]]) -> int:
        container.block_service.unmute(reader, author)
        container.fanout.unmuted(reader, author)
        return original_delete(keys)

    _fanout(container, _Deleting(container.feed, delete_after_unmute)).muted(reader, author)

    # Then the items are back at once (not only when the unmute's queued job runs again)
    assert table_ids(container, reader) == posts
    stack.drain()
    assert table_ids(container, reader) == posts
    assert ConvergenceChecker.from_container(container).check([reader]).ok


# ------------------------------------------------------------------ convergence and erasure
def test_check_convergence_reports_a_blocked_or_muted_authors_item_as_a_difference(
    stack: LocalStack, container: Container
) -> None:
    reader, muted = signup(container, "r"), signup(container, "m")
    container.follow_service.follow(reader, muted)
    post = container.post_service.create(muted, "hi")
    stack.drain()
    container.block_service.mute(reader, muted)
    stack.drain()
    checker = ConvergenceChecker.from_container(container)
    assert checker.check([reader]).ok

    # When an item of the muted author's post is in the reader's feed anyway
    container.feed.put_many([FeedEntry(reader, post.post_id, muted, post.created_at)])

    # Then it is reported as extra, and the repair removes it
    report = checker.check([reader]).for_user(reader)
    assert not report.ok and report.extra and post.post_id in str(report.extra)
    checker.rebuild_feed(reader)
    assert checker.check([reader]).ok


def test_erase_user_removes_every_block_and_mute_row_both_ways(container: Container) -> None:
    gone, a, b, c = (signup(container, n) for n in ("g", "a", "b", "c"))
    container.block_service.block(gone, a)
    container.block_service.mute(gone, b)
    container.block_service.block(c, gone)
    container.block_service.mute(a, gone)
    container.block_service.block(a, b)  # not theirs: stays

    assert container.blocks.erase_user(gone) == 8  # four relations, two rows each

    assert container.blocks.relations(gone).hidden_authors() == frozenset()
    assert container.blocks.relations(gone).hidden_readers() == frozenset()
    for other in (a, b, c):
        relations = container.blocks.relations(other)
        assert gone not in relations.hidden_authors() | relations.hidden_readers()
    assert container.blocks.relations(a).blocks == frozenset({b})
    assert container.blocks.erase_user(gone) == 0  # idempotent


@pytest.mark.parametrize("moves", [4, 5])
def test_a_block_rebuilds_itself_while_the_follows_keep_moving_then_gives_a_503(
    container: Container, monkeypatch: pytest.MonkeyPatch, moves: int
) -> None:
    # The fresh-clone review got a 503 from a block while the other side toggled a follow:
    # the block's transaction is now built again after a jittered backoff, up to 5 times.
    from ripple.repositories.blocks import BLOCK_ATTEMPTS, BlockRepository
    from ripple.repositories.transactions import ConditionFailed, TransactionConflictError

    a = container.accounts.signup(f"blk_{uuid.uuid4().hex[:8]}", "password123").user.user_id
    b = container.accounts.signup(f"blk_{uuid.uuid4().hex[:8]}", "password123").user.user_id
    real, calls = BlockRepository._block_once, []

    def moving(self: BlockRepository, user_id: str, target_id: str, jobs: Any) -> bool:
        calls.append(user_id)
        if len(calls) <= moves:
            raise ConditionFailed("follow_edge")  # a follow committed in between
        return real(self, user_id, target_id, jobs)

    monkeypatch.setattr(BlockRepository, "_block_once", moving)
    if moves < BLOCK_ATTEMPTS:
        assert container.blocks.block(a, b) is True
    else:
        with pytest.raises(TransactionConflictError):
            container.blocks.block(a, b)
    assert len(calls) == min(moves + 1, BLOCK_ATTEMPTS)
