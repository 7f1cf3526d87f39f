"""Reposts (``ripple.services.reposts``, ``ripple.services.placement``) against the real
emulator and Redis: the routes, where a repost places a post in feeds (once per feed, at the
newest repost), undo and deletion retracting it, the races issue 13 names (a repost of a
post being deleted, an account deleted while its posts are reposted, a block while a repost
is fanned out), unfollow, mute and block settling placements, pulled authors, the cache and
``check-convergence``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from chalice.test import Client

from ripple.cache.timeline import REGISTRY_KEY
from ripple.container import Container
from ripple.domain import FeedEntry
from ripple.errors import ForbiddenError, NotFoundError
from ripple.ids import new_ulid
from ripple.repositories.fanout_jobs import FanoutJobRepository
from ripple.repositories.feed import FeedRepository
from ripple.repositories.reposts import Repost
from ripple.services.placement import RepostPlacement
from ripple_local.convergence import ConvergenceChecker
from ripple_local.stack import LocalStack
from tests.integration.support import TEST_HIGH_FOLLOWER_THRESHOLD, Http, error_code, feed_reader

pytestmark = [pytest.mark.integration]
UNKNOWN_POST = "01JDQ0000000000000000ZZZZZ"


# ------------------------------------------------------------------ helpers
def signup(container: Container, name: str) -> str:
    return container.accounts.signup(f"{name}_{uuid.uuid4().hex[:8]}", "password123").user.user_id


def follow(container: Container, follower: str, *followees: str) -> None:
    for followee in followees:
        container.follow_service.follow(follower, followee)


def item(container: Container, reader: str, post_id: str) -> FeedEntry | None:
    """The reader's feed item of the post in the table, as stored."""
    return container.feed.get_many([(reader, post_id)]).get((reader, post_id))


def shown(container: Container, reader: str, limit: int = 50) -> list[tuple[str, str | None]]:
    """(post_id, reposted_by) of the reader's timeline, newest first, as GET /feed shows it."""
    return [(p.post_id, p.reposted_by) for p in container.feed_reader.home(reader, limit).items]


def all_pages(
    container: Container, reader: str, limit: int, cold: bool = False
) -> list[tuple[str, str | None]]:
    """Every page, the registry of pulled authors read afresh for each (no 10 s cache in the
    container or in Redis); ``cold``: each read from DynamoDB (the cached feed dropped first)."""
    fresh = feed_reader(container, registry_ttl_seconds=0)
    if not cold:  # the feed cached by a first read, the pulled authors' outboxes by a second
        for _ in range(2):
            container.redis.delete(REGISTRY_KEY)
            fresh.home(reader, limit)
    seen: list[tuple[str, str | None]] = []
    cursor = None
    while True:
        container.redis.delete(REGISTRY_KEY)
        if cold:
            container.feed_cache.drop(reader)
        page = fresh.home(reader, limit, cursor)
        seen += [(p.post_id, p.reposted_by) for p in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def converged(container: Container, *readers: str) -> None:
    report = ConvergenceChecker.from_container(container).check(list(readers))
    assert report.ok, report.summary()


@pytest.fixture(scope="module")
def http(stack: LocalStack) -> Iterator[Http]:
    with Client(stack.handler("ApiFunction")) as client:
        yield Http(client)


# ------------------------------------------------------------------ routes
def test_repost_and_undo_are_idempotent_and_count_and_refuse_what_they_must(
    http: Http, stack: LocalStack, container: Container
) -> None:
    author, reposter, blocked = http.user(), http.user(), http.user()
    post_id = http("POST", "/posts", author["token"], {"text": "worth sharing"}).json["post_id"]
    path = f"/posts/{post_id}/repost"

    first, again = http("POST", path, reposter["token"]), http("POST", path, reposter["token"])
    assert first.status_code == again.status_code == 200
    assert first.json["repost_count"] == again.json["repost_count"] == 1
    assert http("GET", f"/posts/{post_id}", author["token"]).json["repost_count"] == 1

    # refused: your own post (400), no token (401), a block either way (403), no post (404)
    own = http("POST", path, author["token"])
    assert (own.status_code, error_code(own)) == (400, "cannot_repost_own_post")
    assert http("POST", path).status_code == 401
    assert http("POST", f"/users/{blocked['id']}/block", author["token"]).status_code == 200
    refused = http("POST", path, blocked["token"])
    assert (refused.status_code, error_code(refused)) == (403, "blocked")
    missing = http("POST", f"/posts/{UNKNOWN_POST}/repost", reposter["token"])
    assert (missing.status_code, error_code(missing)) == (404, "not_found")
    bad = http("POST", "/posts/not-a-ulid/repost", reposter["token"])  # as every malformed id
    assert (bad.status_code, error_code(bad)) == (404, "not_found")

    undone, undone_again = http("DELETE", path, reposter["token"]), http("DELETE", path, reposter["token"])
    assert undone.status_code == undone_again.status_code == 200
    assert undone.json["repost_count"] == undone_again.json["repost_count"] == 0
    assert container.reposts.of_post(post_id) == []
    # The answer carries liked_by_me for the caller, as a like's does
    assert http("POST", f"/posts/{post_id}/like", reposter["token"]).status_code == 200
    assert http("POST", path, reposter["token"]).json["liked_by_me"] is True
    assert http("DELETE", path, reposter["token"]).json["liked_by_me"] is True
    # A blocked party's undo removes its repost but does not show the post (404, as GET does)
    assert http("POST", path, reposter["token"]).json["repost_count"] == 1
    assert http("POST", f"/users/{reposter['id']}/block", author["token"]).status_code == 200
    hidden = http("DELETE", path, reposter["token"])
    assert (hidden.status_code, error_code(hidden)) == (
        404,
        "not_found",
    ) and "text" not in hidden.body.decode()
    assert container.reposts.get(post_id, reposter["id"]) is None
    stranger = http.user()  # blocked without ever reposting: the same 404, nothing shown
    assert http("POST", f"/users/{author['id']}/block", stranger["token"]).status_code == 200
    assert error_code(http("DELETE", path, stranger["token"])) == "not_found"
    stack.drain()
    converged(container, author["id"], reposter["id"], blocked["id"], stranger["id"])


# ------------------------------------------------------------------ placement
def test_a_repost_places_the_post_at_repost_time_in_the_reposters_followers_feeds(
    stack: LocalStack, container: Container
) -> None:
    author, reposter, reader, other = (signup(container, n) for n in ("a", "k", "r", "o"))
    follow(container, reader, reposter, other)
    old = container.post_service.create(author, "from before").post_id
    newer = container.post_service.create(other, "newer than the post").post_id
    stack.drain()
    assert shown(container, reader) == [(newer, None)]

    container.repost_service.repost(reposter, old)

    # The reposter's own feed has it at once (read-your-writes), at the top
    assert shown(container, reposter)[0] == (old, reposter)
    stack.drain()
    # The reader (who does not follow the author) has it above the newer post, with who and when
    assert shown(container, reader) == [(old, reposter), (newer, None)]
    page = container.feed_reader.home(reader, 10)
    assert page.items[0].reposted_at is not None and page.items[0].reposted_at >= page.items[1].created_at
    # The author's own feed keeps its post where it was made, not "reposted by"
    assert shown(container, author) == [(old, None)]
    # A cached read and a read from DynamoDB agree
    container.feed_cache.drop(reader)
    assert shown(container, reader) == [(old, reposter), (newer, None)]
    converged(container, author, reposter, reader, other)


def test_one_feed_shows_a_post_once_at_its_newest_repost_and_undos_step_back(
    stack: LocalStack, container: Container
) -> None:
    author, k1, k2, reader = (signup(container, n) for n in ("a", "k1", "k2", "r"))
    follow(container, reader, author, k1, k2)
    post = container.post_service.create(author, "popular").post_id
    stack.drain()
    shown(container, reader)  # cached from here on

    container.repost_service.repost(k1, post)
    stack.drain()
    assert shown(container, reader) == [(post, k1)]
    container.repost_service.repost(k2, post)
    stack.drain()
    # Once, placed at the newest repost; the cache holds one member for it
    assert shown(container, reader) == [(post, k2)]
    entry = item(container, reader, post)
    assert entry is not None and entry.reposted_by == k2
    assert len([m for m in container.feed_cache.members(reader) if post in m]) == 1
    converged(container, reader, k1, k2, author)

    # Undoing the newest steps back to the older repost, then to the post itself
    container.repost_service.unrepost(k2, post)
    stack.drain()
    assert shown(container, reader) == [(post, k1)]
    container.repost_service.unrepost(k1, post)
    stack.drain()
    assert shown(container, reader) == [(post, None)]
    entry = item(container, reader, post)
    assert entry is not None and (entry.placed, entry.reposted_by) == (post, None)
    assert [m for m in container.feed_cache.members(reader) if post in m] == [f"{post}:{author}"]
    converged(container, reader, k1, k2, author)


def test_concurrent_reposts_converge_on_the_newest_whatever_the_order_of_their_fan_outs(
    stack: LocalStack, container: Container
) -> None:
    author, reader = signup(container, "a"), signup(container, "r")
    reposters = [signup(container, f"k{i}") for i in range(6)]
    follow(container, reader, *reposters)
    post = container.post_service.create(author, "hot").post_id
    stack.drain()
    made = [container.reposts.repost(k, author, post) for k in reposters]
    reposts = [r for r in made if r is not None]
    newest = max(reposts, key=lambda r: r.repost_id)

    # When their fan-outs run at once, newest first and oldest last
    ordered = sorted(reposts, key=lambda r: r.repost_id, reverse=True)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(
            pool.map(lambda r: container.fanout.placement.run(container.fanout.placement.push_of(r)), ordered)
        )

    entry = item(container, reader, post)
    assert entry is not None and (entry.placed, entry.reposted_by) == (newest.repost_id, newest.user_id)
    assert container.posts.get(post).repost_count == 6  # type: ignore[union-attr]
    stack.drain()
    assert shown(container, reader) == [(post, newest.user_id)]
    converged(container, reader, *reposters)


# ------------------------------------------------------------------ retraction and races
def test_deleting_the_original_retracts_every_repost(stack: LocalStack, container: Container) -> None:
    author, k1, k2, r1, r2 = (signup(container, n) for n in ("a", "k1", "k2", "r1", "r2"))
    follow(container, r1, k1)
    follow(container, r2, k2, author)
    post = container.post_service.create(author, "soon gone").post_id
    for k in (k1, k2):
        container.repost_service.repost(k, post)
    stack.drain()
    assert shown(container, r1) == [(post, k1)] and shown(container, r2) == [(post, k2)]

    container.post_service.delete(post, author)
    stack.drain()

    for reader in (author, k1, k2, r1, r2):
        assert item(container, reader, post) is None
        assert shown(container, reader) == []
    assert container.reposts.of_post(post) == []
    assert container.reposts.by_user(k1, 10) == [] == container.reposts.by_user(k2, 10)
    converged(container, author, k1, k2, r1, r2)


class _ActingOnFirstPlace(FeedRepository):
    """A feed repository that runs ``action`` once, just before the first placement: the post
    is deleted (and its reposts purged) while the repost is being fanned out."""

    def __init__(self, inner: FeedRepository, action: Callable[[], None]) -> None:
        super().__init__()
        self._inner = inner
        self._action: Callable[[], None] | None = action

    def place(self, entry: FeedEntry) -> bool:
        if self._action is not None:
            action, self._action = self._action, None
            action()
        return self._inner.place(entry)


class _ActingOnFirstReplace(FeedRepository):
    """A feed repository that runs ``action`` once, just before the first placement change."""

    def __init__(self, inner: FeedRepository, action: Callable[[], None]) -> None:
        super().__init__()
        self._inner = inner
        self._action: Callable[[], None] | None = action

    def replace_placement(self, current: FeedEntry, replacement: FeedEntry | None) -> bool:
        if self._action is not None:
            action, self._action = self._action, None
            action()
        return self._inner.replace_placement(current, replacement)


def racing_placement(container: Container, feed: FeedRepository) -> RepostPlacement:
    """The fan-out's repost placement on ``feed`` (which runs something in between)."""
    settings = container.settings
    return RepostPlacement(
        feed,
        container.reposts,
        container.follows,
        container.posts,
        container.users,
        container.blocks,
        FanoutJobRepository(),
        page_size=settings.fanout_page_size,
        backfill_posts=settings.backfill_posts,
        away=lambda readers: set(),
    )


def test_a_repost_of_a_post_being_deleted_leaves_nothing(stack: LocalStack, container: Container) -> None:
    author, reposter, reader = (signup(container, n) for n in ("a", "k", "r"))
    follow(container, reader, reposter)
    post = container.post_service.create(author, "racing").post_id
    stack.drain()

    # A delete committed first: the repost is refused and nothing changes
    gone = container.post_service.create(author, "already gone").post_id
    container.post_service.delete(gone, author)
    with pytest.raises(NotFoundError):
        container.repost_service.repost(reposter, gone)

    # A repost committed first, its fan-out running while the post is deleted and purged
    repost = container.reposts.repost(reposter, author, post)
    assert repost is not None

    def delete_now() -> None:
        container.post_service.delete(post, author)
        container.fanout.post_deleted(author, post)  # the purge: the repost row goes
        container.fanout.placement.run(container.fanout.placement.retraction_of(repost))

    racing = racing_placement(container, _ActingOnFirstPlace(container.feed, delete_now))
    racing.run(racing.push_of(repost))

    # Then the placement written after the retraction passed was undone at once
    assert item(container, reader, post) is None and item(container, reposter, post) is None
    stack.drain()
    assert shown(container, reader) == [] and shown(container, reposter) == []
    assert container.reposts.of_post(post) == []
    converged(container, author, reposter, reader)


def test_deleting_an_account_while_its_posts_are_reposted_leaves_nothing_of_it(
    stack: LocalStack, container: Container
) -> None:
    author = container.accounts.signup(f"gone_{uuid.uuid4().hex[:8]}", "password123").user.user_id
    k1, k2, reader = (signup(container, n) for n in ("k1", "k2", "r"))
    follow(container, reader, k1, k2)
    posts = [container.post_service.create(author, f"p{i}").post_id for i in range(3)]
    container.repost_service.repost(k1, posts[0])
    stack.drain()

    # When the account is deleted while k2's reposts are being made (one before, one after:
    # refused, the author's row is gone though the erasure has not reached the post yet)
    container.repost_service.repost(k2, posts[1])
    container.accounts.delete(author, "password123")
    with pytest.raises(NotFoundError):
        container.repost_service.repost(k2, posts[2])
    stack.drain()

    # Then nothing of theirs is in any feed, and no repost of their posts remains
    for reader_id in (k1, k2, reader):
        assert shown(container, reader_id) == []
        assert all(item(container, reader_id, p) is None for p in posts)
    assert all(container.reposts.of_post(p) == [] for p in posts)
    converged(container, k1, k2, reader)


def test_an_erased_reposter_leaves_counts_and_feeds_as_if_they_never_reposted(
    stack: LocalStack, container: Container
) -> None:
    author, reader = signup(container, "a"), signup(container, "r")
    reposter = container.accounts.signup(f"k_{uuid.uuid4().hex[:8]}", "password123").user.user_id
    follow(container, reader, author, reposter)
    post = container.post_service.create(author, "shared").post_id
    container.repost_service.repost(reposter, post)
    stack.drain()
    assert shown(container, reader) == [(post, reposter)]

    container.accounts.delete(reposter, "password123")
    stack.drain()

    assert container.posts.get(post).repost_count == 0  # type: ignore[union-attr]
    assert container.reposts.of_post(post) == []
    assert shown(container, reader) == [(post, None)]  # back where the author's post was made
    converged(container, author, reader)


# ------------------------------------------------------------------ follows, mutes, blocks
def test_unfollowing_the_reposter_or_the_author_settles_the_placement(
    stack: LocalStack, container: Container
) -> None:
    author, reposter, reader = (signup(container, n) for n in ("a", "k", "r"))
    follow(container, reader, author, reposter)
    post = container.post_service.create(author, "p").post_id
    container.repost_service.repost(reposter, post)
    stack.drain()

    # Unfollowing the author keeps the post: the repost still brings it
    container.follow_service.unfollow(reader, author)
    stack.drain()
    assert shown(container, reader) == [(post, reposter)]
    converged(container, reader)
    # Following the author again (its backfill copies the post) and unfollowing the reposter:
    # the post stays, where the author made it
    follow(container, reader, author)
    container.follow_service.unfollow(reader, reposter)
    stack.drain()
    assert shown(container, reader) == [(post, None)]
    converged(container, reader)
    # ... and unfollowing the author too leaves nothing
    container.follow_service.unfollow(reader, author)
    stack.drain()
    assert item(container, reader, post) is None
    converged(container, reader)


def test_muting_or_blocking_hides_reposts_at_once_and_unmuting_brings_them_back(
    stack: LocalStack, container: Container
) -> None:
    author, reposter, reader = (signup(container, n) for n in ("a", "k", "r"))
    follow(container, reader, reposter)
    post = container.post_service.create(author, "p").post_id
    container.repost_service.repost(reposter, post)
    stack.drain()
    assert shown(container, reader) == [(post, reposter)]

    # Muting the reposter hides the repost at once (at read), then fan-out removes it
    container.block_service.mute(reader, reposter)
    assert shown(container, reader) == []
    stack.drain()
    assert item(container, reader, post) is None
    converged(container, reader)
    container.block_service.unmute(reader, reposter)
    stack.drain()
    assert shown(container, reader) == [(post, reposter)]
    converged(container, reader)

    # Blocking the author (whom the reader does not follow) removes the reposted post too
    container.block_service.block(reader, author)
    assert shown(container, reader) == []
    stack.drain()
    assert item(container, reader, post) is None
    converged(container, reader)
    container.block_service.unblock(reader, author)
    stack.drain()
    assert shown(container, reader) == [(post, reposter)]
    converged(container, reader, author, reposter)


def test_a_block_while_a_repost_is_fanned_out_leaves_no_item(stack: LocalStack, container: Container) -> None:
    author, reposter, reader, other = (signup(container, n) for n in ("a", "k", "r", "o"))
    follow(container, reader, reposter)
    follow(container, other, reposter)
    post = container.post_service.create(author, "p").post_id
    stack.drain()
    repost = container.reposts.repost(reposter, author, post)
    assert repost is not None

    def block_now() -> None:  # the reader blocks the author after fan-out read the audience
        container.block_service.block(reader, author)
        container.fanout.muted(reader, author)  # the block's hide job, run before our write

    racing = racing_placement(container, _ActingOnFirstPlace(container.feed, block_now))
    racing.run(racing.push_of(repost))

    assert item(container, reader, post) is None
    assert item(container, other, post) is not None
    stack.drain()
    assert item(container, reader, post) is None
    converged(container, reader, other)


# ------------------------------------------------------------------ pulled authors
def test_a_pulled_authors_post_shows_once_with_its_repost_on_every_page(
    stack: LocalStack, container: Container
) -> None:
    star, reposter, reader = (signup(container, n) for n in ("star", "k", "r"))
    for fan in [signup(container, "fan") for _ in range(TEST_HIGH_FOLLOWER_THRESHOLD)]:
        follow(container, fan, star)
    follow(container, reader, star, reposter)
    stack.drain()
    assert container.users.is_high_follower(star)
    posts = [container.post_service.create(star, f"s{i}").post_id for i in range(4)]
    fillers = [container.post_service.create(reposter, f"f{i}").post_id for i in range(3)]
    container.repost_service.repost(reposter, posts[0])  # the oldest of the star's posts
    stack.drain()

    for cold in (False, True):
        every = all_pages(container, reader, limit=2, cold=cold)
        ids = [p for p, _ in every]
        assert len(ids) == len(set(ids)) == len(posts) + len(fillers), (cold, every)
        assert every[0] == (posts[0], reposter), (cold, every)
    converged(container, reader)


def test_pulled_copies_left_out_do_not_skip_posts_on_later_pages(
    stack: LocalStack, container: Container
) -> None:
    """Two pulled posts shown higher up by their reposts take the slots of a page without
    showing there; the page must not reach below posts of the pulled author not yet read."""
    star, reposter, reader = (signup(container, n) for n in ("star", "k", "r"))
    for fan in [signup(container, "fan") for _ in range(TEST_HIGH_FOLLOWER_THRESHOLD)]:
        follow(container, fan, star)
    follow(container, reader, star, reposter)
    stack.drain()
    assert container.users.is_high_follower(star)
    fillers = [container.post_service.create(reposter, f"f{i}").post_id for i in range(2)]  # oldest
    posts = [container.post_service.create(star, f"s{i}").post_id for i in range(4)]
    for post_id in posts[2:]:  # the two newest of the star's posts: at the top, by the repost
        container.repost_service.repost(reposter, post_id)
    stack.drain()

    for cold in (False, True):
        every = all_pages(container, reader, limit=2, cold=cold)
        ids = [p for p, _ in every]
        assert len(ids) == len(set(ids)) and set(ids) == {*posts, *fillers}, (cold, every)
        assert [by for _, by in every[:2]] == [reposter, reposter], (cold, every)


def test_settling_reads_the_truth_again_after_it_writes(stack: LocalStack, container: Container) -> None:
    """An undo's retraction computes the next placement (k2's repost), then the reader
    unfollows k2 before it writes it: the write is checked against the truth again."""
    author, k1, k2, reader = (signup(container, n) for n in ("a", "k1", "k2", "r"))
    follow(container, reader, k1, k2)
    post = container.post_service.create(author, "p").post_id
    older = container.reposts.repost(k2, author, post)
    newer = container.reposts.repost(k1, author, post)
    assert older is not None and newer is not None
    stack.drain()
    assert shown(container, reader) == [(post, k1)]
    container.reposts.unrepost(k1, author, post)

    def unfollow_now() -> None:  # committed and handled while the item still shows k1's repost
        container.follow_service.unfollow(reader, k2)
        container.fanout.follow_removed(reader, k2)

    racing = racing_placement(container, _ActingOnFirstReplace(container.feed, unfollow_now))
    racing.run(racing.retraction_of(newer))

    assert item(container, reader, post) is None  # neither repost brings it any more
    stack.drain()
    assert shown(container, reader) == []
    converged(container, reader)


def test_an_unfollow_does_not_remove_what_a_repost_placed_meanwhile(
    stack: LocalStack, container: Container
) -> None:
    author, reposter, reader = (signup(container, n) for n in ("a", "k", "r"))
    follow(container, reader, author, reposter)
    post = container.post_service.create(author, "p").post_id
    stack.drain()
    container.follow_service.unfollow(reader, author)
    original = container.feed.entries_involving

    def read_then_repost(user_id: str, other_id: str) -> list[FeedEntry]:
        found = original(user_id, other_id)  # the item at its post, read ...
        repost = container.reposts.repost(reposter, author, post)  # ... then a repost places it
        assert repost is not None
        container.fanout.placement.run(container.fanout.placement.push_of(repost))
        return found

    container.feed.entries_involving = read_then_repost  # type: ignore[method-assign]
    try:
        container.fanout.follow_removed(reader, author)
    finally:
        del container.feed.entries_involving
    assert shown(container, reader) == [(post, reposter)]
    stack.drain()
    assert shown(container, reader) == [(post, reposter)]
    converged(container, reader)


def test_a_placement_is_never_written_onto_a_missing_item(container: Container) -> None:
    reader, author, reposter = (signup(container, n) for n in ("r", "a", "k"))
    post = container.post_service.create(author, "p")
    at_post = FeedEntry(reader, post.post_id, author, post.created_at)
    by_repost = FeedEntry(reader, post.post_id, author, post.created_at, new_ulid(), reposter)
    assert container.feed.replace_placement(at_post, by_repost) is False
    assert item(container, reader, post.post_id) is None


def test_unmuting_brings_back_the_readers_own_repost_of_the_muted_accounts_post(
    stack: LocalStack, container: Container
) -> None:
    author, reposter = signup(container, "a"), signup(container, "k")
    post = container.post_service.create(author, "p").post_id
    container.repost_service.repost(reposter, post)  # the reposter does not follow the author
    stack.drain()
    assert shown(container, reposter) == [(post, reposter)]
    container.block_service.mute(reposter, author)
    stack.drain()
    assert item(container, reposter, post) is None
    container.block_service.unmute(reposter, author)
    stack.drain()
    assert shown(container, reposter) == [(post, reposter)]
    converged(container, reposter)


def test_the_repost_path_refuses_a_blocked_pair_in_its_transaction(container: Container) -> None:
    author, reposter = signup(container, "a"), signup(container, "k")
    post = container.post_service.create(author, "p").post_id
    container.block_service.block(author, reposter)
    with pytest.raises(ForbiddenError):
        container.reposts.repost(reposter, author, post)
    assert container.posts.get(post).repost_count == 0  # type: ignore[union-attr]
    assert container.reposts.get(post, reposter) is None


def test_a_stream_record_delivered_twice_places_once(stack: LocalStack, container: Container) -> None:
    author, reposter, reader = (signup(container, n) for n in ("a", "k", "r"))
    follow(container, reader, reposter)
    post = container.post_service.create(author, "p").post_id
    stack.drain()
    repost = container.repost_service.repost(reposter, post)
    stack.drain()
    made: Repost | None = container.reposts.get(post, reposter)
    assert made is not None and repost.repost_count == 1
    before = item(container, reader, post)
    placement = container.fanout.placement
    for _ in range(2):
        placement.run(placement.push_of(made))
    assert item(container, reader, post) == before
    converged(container, reader)
