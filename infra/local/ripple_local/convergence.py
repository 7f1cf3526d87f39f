"""Convergence: does every home feed hold exactly what DynamoDB's truth says it should?

Fan-out runs on at-least-once streams with retries, bisection and an on-failure queue, so
"the feeds converge" needs a definition a program can check. The expected home feed of
reader U is a function of the truth tables alone (posts, follows, users, blocks, reposts),
mirroring the rules ``ripple.services.fanout`` implements:

* every post of U (the author's own item: written at once, and again by fan-out);
* for each followee F that is *not* a high-follower account: every post of F made at or
  after the follow (``post_id >= ulid_floor(followed_at)``; fan-out pushes a post to those
  who followed before it was made), plus F's ``backfill_posts`` newest posts from before
  the follow (what the follow's backfill copies);
* a high-follower followee's posts are pulled at read time, so its items are neither
  required nor extra (posts pushed before the account was marked may remain);
* a reader away longer than ``inactive_reader_days`` (fan-out skips them), or whose feed is
  being rebuilt, is not judged; after a rebuild that started at R, a follow counts as made
  at R if it is older (the rebuild copied what such a follow's backfill copies), and items
  of posts from before R that are not expected are neither required nor extra (what was
  pushed before the absence stays);
* an item of a post older than ``feed_item_ttl_days`` may have expired: not required;
* posts by an account the reader blocks, mutes or is blocked by are not expected (neither
  fan-out nor a backfill writes them, a mute's job retracts them, a block ends the follows):
  an item of one in the feed is a difference (extra). After an unmute the feed's definition
  applies again (the unmute's job restores it).

Reposts move items (``reposts`` table; fan-out always pushes them, whoever is high-follower).
A repost of post P (author A) by K, made at T with id RID, is *eligible* for U if U is K or
followed K at or before T (reposts are not backfilled: a later follow brings none), U is not
A (the author keeps the original item), and U hides neither A nor K (blocks, mutes or is
blocked by). U's item of P is then:

* placed at the newest eligible repost (``placed`` = its RID, ``reposted_by`` = K);
* else the original item (``placed`` = P) if the rules above expect one; else none;
* none for a repost of a post that no longer exists;
* after a rebuild that started at R, a repost made before R is optional (fan-out skipped the
  away reader, the rebuild copies posts only): the item may sit at it or as if it did not
  exist;
* the TTL rule reads the placement's time: an item placed by a recent repost is required
  even if its post is old.

An item is compared by post, author, ``placed`` and ``reposted_by`` (an item at its post
stores neither: the placement index is sparse): the right post at the wrong place is
*misplaced*; an item with one of ``placed`` and ``reposted_by`` but not the other is
malformed (*unplaced*: a page would show it twice, or as the post's own): both are
differences.

A deleted account (``DELETE /me``; its released username names it during the quarantine)
must leave nothing: no row in any table names it - its posts, their id rows and every feed
item of them, its likes, its follows both ways, its own feed, its refresh tokens, its
reposts, the reposts of its posts and the feed items its reposts placed - and Redis holds no
feed, and no known-account marker, for it (``ErasureCheck``).

The feed table must equal that set. The cached feed in Redis (derived from the table) must
be a contiguous newest-first prefix of it in placement order, the sentinel member meaning
"nothing older exists" (the invariant of ``ripple.cache.feed_cache``); an uncached feed is
not checked. Members are ``{post_id}:{author_id}`` for an item at its post and
``{placed}:{author_id}:{post_id}:{reposted_by}`` for one placed by a repost, so their
lexicographic order is placement order (:func:`member`).

Repairs follow from "the table derives from the truth, Redis from the table":
:meth:`ConvergenceChecker.rebuild_feed` makes the table equal to the expected set and drops
the cached copy; :meth:`ConvergenceChecker.rebuild_cache` only drops (the next read warms).

A check is a point-in-time comparison: while the pipeline is busy it reports lag as
differences, so callers that want "settled" poll until ``ok``.

Operator code: the ``ripple`` commands run it against the local stack or a deployed one;
it is not part of the layer the functions deploy.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from ripple.cache.errors import CacheError
from ripple.cache.feed_cache import SENTINEL, FeedCache
from ripple.cache.known_users import KnownUsers
from ripple.cache.post_cache import PostCache
from ripple.config import DAY
from ripple.domain import FeedEntry
from ripple.ids import ulid_floor
from ripple.repositories.blocks import BlockRepository
from ripple.repositories.feed import FeedRepository
from ripple.repositories.follows import FollowRepository
from ripple.repositories.posts import PostRepository
from ripple.repositories.users import UserRepository
from ripple_local.feed_scan import FeedScanRepository, PostStamp, RepostStamp, StoredFeed

if TYPE_CHECKING:
    from ripple.container import Container

# Why an item is expected (reported with missing items, so a reader of the report can tell
# a lost fan-out from a lost backfill or a lost repost).
OWN, FOLLOWED, BACKFILL, REPOSTED = "own", "followed", "backfill", "reposted"
# Why a reader's feed is not judged at all.
AWAY, REBUILDING = "away", "rebuilding"
# How many ids one summary line lists before eliding the rest.
SHOWN_IDS = 5


def member(entry: FeedEntry) -> str:
    """The cached feed's member for an item: ``{post_id}:{author_id}`` at its post,
    ``{placed}:{author_id}:{post_id}:{reposted_by}`` when a repost placed it (the format of
    ``ripple.cache.feed_cache.FeedRef.member``; members sort in placement order)."""
    if entry.reposted_by is None and entry.placed == entry.post_id:
        return f"{entry.post_id}:{entry.author_id}"
    return f"{entry.placed}:{entry.author_id}:{entry.post_id}:{entry.reposted_by or ''}"


def member_post_id(value: str) -> str:
    """The post id of a cached member (either format; the sentinel is itself)."""
    parts = value.split(":")
    return parts[2] if len(parts) >= 4 else parts[0]


def _placement(value: str) -> str:
    """Where a cached member sits: its first field (the post id, or the repost's id)."""
    return value.partition(":")[0]


def _same(a: FeedEntry, b: FeedEntry) -> bool:
    """Same item: post, author, placement and reposter."""
    return _identity(a) == _identity(b)


def _identity(entry: FeedEntry) -> tuple[str, str, str, str | None]:
    return (entry.post_id, entry.author_id, entry.placed, entry.reposted_by)


@dataclass(frozen=True)
class ExpectedFeed:
    """What one reader's feed table should hold, and whose items are not judged."""

    user_id: str
    entries: Mapping[str, FeedEntry]  # post_id -> the item, placed as fan-out places it
    reasons: Mapping[str, str]  # post_id -> OWN | FOLLOWED | BACKFILL | REPOSTED
    tolerated_authors: frozenset[str]  # followed high-follower accounts
    not_judged: str = ""  # why nothing of this feed is judged: AWAY | REBUILDING
    tolerated_below: str = ""  # unexpected items of posts with smaller ids are tolerated
    required_from: str = ""  # expected items placed below this may have expired
    # post_id -> other outcomes as right as ``entries``' (None: no item): after a rebuild,
    # reposts made before it may or may not have placed the item.
    alternatives: Mapping[str, tuple[FeedEntry | None, ...]] = field(default_factory=dict)

    def outcomes(self, post_id: str) -> tuple[FeedEntry | None, ...]:
        """Every right state of the post's item (None: absent); () if none is expected."""
        if post_id not in self.entries:
            return ()
        return (self.entries[post_id], *self.alternatives.get(post_id, ()))

    def judges(self, entry: FeedEntry) -> bool:
        """False for items not judged: of a reader not judged, of tolerated authors, or
        from before a rebuild, unless they are expected (and may not be absent)."""
        if self.not_judged:
            return False
        if entry.post_id in self.entries and None not in self.alternatives.get(entry.post_id, ()):
            return True
        return entry.author_id not in self.tolerated_authors and entry.post_id >= self.tolerated_below

    def requires(self, post_id: str) -> bool:
        """True if an item of ``post_id`` must be stored: it is expected, may not be absent,
        and no right placement of it is old enough to have expired."""
        outcomes = self.outcomes(post_id)
        if self.not_judged or not outcomes or None in outcomes:
            return False
        return min(e.placed for e in outcomes if e is not None) >= self.required_from

    def holds(self, entry: FeedEntry) -> bool:
        """True if ``entry`` is expected exactly (same post, author, placement, reposter)."""
        return any(wanted is not None and _same(wanted, entry) for wanted in self.outcomes(entry.post_id))


@dataclass(frozen=True)
class Misplaced:
    """A stored item of an expected post, by the right author, at the wrong place."""

    stored: FeedEntry
    expected: FeedEntry


@dataclass(frozen=True)
class CacheCheck:
    """The Redis side of one reader's check (members as :func:`member` writes them)."""

    cached: bool
    complete: bool = False  # the sentinel is present
    size: int = 0  # members, without the sentinel
    missing: tuple[str, ...] = ()  # expected inside the cached range, absent
    extra: tuple[str, ...] = ()  # cached but not expected
    misordered: tuple[str, ...] = ()  # members not strictly below their predecessor
    error: str | None = None  # Redis could not be read: nothing is known

    @property
    def ok(self) -> bool:
        return self.error is None and not (self.missing or self.extra or self.misordered)

    @property
    def differences(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.misordered)


@dataclass(frozen=True)
class UserConvergence:
    """One reader: the feed table against the truth, and Redis against both."""

    user_id: str
    expected: int
    stored: int
    missing: tuple[FeedEntry, ...]
    extra: tuple[FeedEntry, ...]
    cache: CacheCheck
    reasons: Mapping[str, str] = field(default_factory=dict)  # post_id -> reason, for missing
    exists: bool = True  # False for an id that names no user (a typo must not pass as "ok")
    not_judged: str = ""  # AWAY | REBUILDING: the feed table is not compared
    misplaced: tuple[Misplaced, ...] = ()  # the right post at the wrong place
    unplaced: tuple[FeedEntry, ...] = ()  # malformed placements: ``placed`` xor ``reposted_by``

    @property
    def table_ok(self) -> bool:
        return not self.table_differences

    @property
    def ok(self) -> bool:
        return self.exists and self.table_ok and self.cache.ok

    @property
    def table_differences(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.misplaced) + len(self.unplaced)

    @property
    def differences(self) -> int:
        return self.table_differences + self.cache.differences

    def describe(self) -> str:
        """One line for humans; empty details when all is well."""
        if not self.exists:
            return f"user {self.user_id}: no such user"
        parts = [f"user {self.user_id}: table {self.stored}/{self.expected} items"]
        if self.not_judged:
            parts.append(f"not judged ({self.not_judged})")
        if self.missing:
            parts.append(
                "missing "
                + _ids(f"{e.post_id}({self.reasons.get(e.post_id, '?')}{_by(e)})" for e in self.missing)
            )
        if self.misplaced:
            parts.append(
                "misplaced "
                + _ids(
                    f"{m.stored.post_id}(at {_at(m.stored)}, expected {_at(m.expected)})"
                    for m in self.misplaced
                )
            )
        if self.extra:
            parts.append("extra " + _ids(f"{e.post_id}(by {e.author_id}{_by(e)})" for e in self.extra))
        if self.unplaced:
            parts.append("unplaced " + _ids(f"{e.post_id}(by {e.author_id})" for e in self.unplaced))
        cache = self.cache
        if cache.error is not None:
            parts.append(f"cache unreadable: {cache.error}")
        elif not cache.cached:
            parts.append("not cached")
        else:
            parts.append(f"cache {cache.size} items{' + sentinel' if cache.complete else ''}")
            for label, members in (
                ("cache_missing", cache.missing),
                ("cache_extra", cache.extra),
                ("misordered", cache.misordered),
            ):
                if members:
                    parts.append(f"{label} {_ids(members)}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "ok": self.ok,
            "exists": self.exists,
            "not_judged": self.not_judged or None,
            "expected": self.expected,
            "stored": self.stored,
            "missing": [{**_item(e), "reason": self.reasons.get(e.post_id)} for e in self.missing],
            "misplaced": [
                {
                    **_item(m.stored),
                    "expected_placed": m.expected.placed,
                    "expected_reposted_by": m.expected.reposted_by,
                    "reason": self.reasons.get(m.stored.post_id),
                }
                for m in self.misplaced
            ],
            "extra": [_item(e) for e in self.extra],
            "unplaced": [{"post_id": e.post_id, "author_id": e.author_id} for e in self.unplaced],
            "cache": {
                "cached": self.cache.cached,
                "complete": self.cache.complete,
                "size": self.cache.size,
                "missing": list(self.cache.missing),
                "extra": list(self.cache.extra),
                "misordered": list(self.cache.misordered),
                "error": self.cache.error,
            },
        }


@dataclass(frozen=True)
class ErasureCheck:
    """One deleted account: what still names it, by place (table or Redis structure)."""

    user_id: str
    leftovers: Mapping[str, int]

    @property
    def ok(self) -> bool:
        return not self.leftovers

    @property
    def differences(self) -> int:
        return sum(self.leftovers.values())

    def describe(self) -> str:
        left = ", ".join(f"{place} {n}" for place, n in sorted(self.leftovers.items()))
        return f"deleted account {self.user_id}: " + (left + " left" if left else "erased")


@dataclass(frozen=True)
class ConvergenceReport:
    """The result of one check over some readers (and deleted accounts)."""

    users: tuple[UserConvergence, ...]
    erased: tuple[ErasureCheck, ...] = ()

    @property
    def ok(self) -> bool:
        return all(u.ok for u in self.users) and all(e.ok for e in self.erased)

    @property
    def diverged(self) -> list[UserConvergence]:
        return [u for u in self.users if not u.ok]

    @property
    def differences(self) -> int:
        return sum(u.differences for u in self.users) + sum(e.differences for e in self.erased)

    def for_user(self, user_id: str) -> UserConvergence:
        for user in self.users:
            if user.user_id == user_id:
                return user
        raise KeyError(user_id)

    def summary(self) -> str:
        cached = sum(u.cache.cached for u in self.users)
        erased = f", {len(self.erased)} deleted accounts" if self.erased else ""
        reasons = sorted({u.not_judged for u in self.users if u.not_judged})
        skipped = sum(1 for u in self.users if u.not_judged)
        unjudged = f"; {skipped} feeds not judged ({', '.join(reasons)})" if skipped else ""
        if self.ok:
            return (
                f"converged: {len(self.users)} users checked{erased}, 0 differences "
                f"({cached} cached feeds checked too{unjudged})"
            )
        lines = [
            f"NOT converged: {len(self.diverged)} of {len(self.users)} users differ{erased} "
            f"({self.differences} differences; {cached} feeds cached)"
        ]
        lines += [f"  {u.describe()}" for u in self.diverged]
        lines += [f"  {e.describe()}" for e in self.erased if not e.ok]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "users_checked": len(self.users),
            "differences": self.differences,
            "users": [u.to_dict() for u in self.users],
            "deleted_accounts": [
                {"user_id": e.user_id, "ok": e.ok, "leftovers": dict(e.leftovers)} for e in self.erased
            ],
        }


@dataclass(frozen=True)
class FeedRepair:
    """What :meth:`ConvergenceChecker.rebuild_feed` changed."""

    user_id: str
    written: int
    deleted: int
    cache_dropped: bool  # False if Redis was unreachable (the cached copy may be stale)


@dataclass(frozen=True)
class CacheRepair:
    """What :meth:`ConvergenceChecker.rebuild_cache` dropped."""

    feeds: int  # feed keys dropped (whether or not they were cached)
    posts: int  # post bodies dropped


class _Truth:
    """Per-run memo of truth reads: one Query per author, one lookup per followee and one
    Scan of the reposts for a whole check, however many of the checked readers need them."""

    def __init__(self, users: UserRepository, scan: FeedScanRepository) -> None:
        self._users = users
        self._scan = scan
        self._posts: dict[str, list[PostStamp]] = {}
        self._post_index: dict[str, dict[str, PostStamp]] = {}
        self._high: dict[str, bool] = {}
        self._reposts: dict[str, list[RepostStamp]] | None = None

    def posts(self, author_id: str) -> list[PostStamp]:
        if author_id not in self._posts:
            self._posts[author_id] = self._scan.post_stamps(author_id)
        return self._posts[author_id]

    def post(self, author_id: str, post_id: str) -> PostStamp | None:
        """The post, if it exists (a repost of a deleted post places nothing)."""
        if author_id not in self._post_index:
            self._post_index[author_id] = {p.post_id: p for p in self.posts(author_id)}
        return self._post_index[author_id].get(post_id)

    def reposts_by(self, user_id: str) -> list[RepostStamp]:
        """Every repost ``user_id`` made (the reposts table is scanned once per check)."""
        if self._reposts is None:
            self._reposts = {}
            for stamps in self._scan.reposts().values():
                for stamp in stamps:
                    self._reposts.setdefault(stamp.user_id, []).append(stamp)
        return self._reposts.get(user_id, [])

    def is_high_follower(self, user_id: str) -> bool:
        if user_id not in self._high:
            self._high[user_id] = self._users.is_high_follower(user_id)
        return self._high[user_id]


@dataclass
class _Differences:
    """A feed table against its expected set (each list newest placement first)."""

    missing: list[FeedEntry]
    extra: list[FeedEntry]
    misplaced: list[Misplaced]
    unplaced: list[FeedEntry]


class ConvergenceChecker:
    """Compares home feeds (table and Redis) with what the truth tables imply; repairs them."""

    def __init__(
        self,
        users: UserRepository,
        follows: FollowRepository,
        posts: PostRepository,
        feed: FeedRepository,
        scan: FeedScanRepository,
        feed_cache: FeedCache,
        post_cache: PostCache,
        *,
        backfill_posts: int,
        inactive_after_ms: int = 0,
        feed_item_ttl_ms: int = 0,
        known_users: KnownUsers | None = None,
        blocks: BlockRepository | None = None,
    ) -> None:
        self._known_users = known_users
        self._blocks = blocks  # None: no block or mute is known (every followee counts)
        self._users = users
        self._follows = follows
        self._posts = posts
        self._feed = feed
        self._scan = scan
        self._feed_cache = feed_cache
        self._post_cache = post_cache
        self._backfill_posts = backfill_posts
        self._inactive_after_ms = inactive_after_ms
        self._feed_item_ttl_ms = feed_item_ttl_ms

    @classmethod
    def from_container(cls, container: Container) -> ConvergenceChecker:
        """Built from the same repositories, caches and settings the functions use."""
        return cls(
            container.users,
            container.follows,
            container.posts,
            container.feed,
            FeedScanRepository(),
            container.feed_cache,
            container.post_cache,
            backfill_posts=container.settings.backfill_posts,
            inactive_after_ms=container.settings.inactive_reader_days * DAY * 1000,
            feed_item_ttl_ms=container.settings.feed_item_ttl_days * DAY * 1000,
            known_users=container.known_users,
            blocks=container.blocks,
        )

    # ------------------------------------------------------------------ checking
    def user_ids(self) -> list[str]:
        """Every user, in id order (what "all users" means for checks and repairs)."""
        return sorted(self._scan.user_ids())

    def check(self, user_ids: Iterable[str] | None = None) -> ConvergenceReport:
        """Check the given readers (None: every user and every deleted account; named ones
        must exist, or be deleted accounts, which are checked for leftovers)."""
        truth = _Truth(self._users, self._scan)
        deleted = self._scan.deleted_accounts()
        if user_ids is None:
            ids, known = self.user_ids(), None
        else:
            ids = list(dict.fromkeys(user_ids))
            known = set(self._users.get_many(ids))
            deleted = [u for u in ids if u in set(deleted) and u not in known]
            ids = [u for u in ids if u not in set(deleted)]
        return ConvergenceReport(
            tuple(self._check_user(user_id, truth, known is None or user_id in known) for user_id in ids),
            self._check_erased(deleted),
        )

    def _check_erased(self, user_ids: Sequence[str]) -> tuple[ErasureCheck, ...]:
        if not user_ids:
            return ()
        residue = self._scan.residue(user_ids)
        checks = []
        for user_id in user_ids:
            leftovers = dict(residue[user_id])
            try:
                if self._feed_cache.is_cached(user_id):
                    leftovers["cached_feed"] = 1
                if self._known_users is not None and self._known_users.is_known(user_id):
                    leftovers["known_marker"] = 1
            except CacheError:
                pass  # Redis unreachable: holds nothing a reader could get
            checks.append(ErasureCheck(user_id, leftovers))
        return tuple(checks)

    def expected(self, user_id: str) -> ExpectedFeed:
        """The feed the truth tables imply for ``user_id`` (see the module docstring)."""
        return self._expected(user_id, _Truth(self._users, self._scan))

    def _expected(self, user_id: str, truth: _Truth) -> ExpectedFeed:
        entries: dict[str, FeedEntry] = {}
        reasons: dict[str, str] = {}

        def expect(post: PostStamp, reason: str) -> None:
            entries[post.post_id] = FeedEntry(user_id, post.post_id, post.author_id, post.created_at)
            reasons[post.post_id] = reason

        state = self._scan.reader_state(user_id)
        now = int(time.time() * 1000)
        not_judged = ""
        if state.feed_rebuild_started is not None:
            not_judged = REBUILDING
        elif (
            self._inactive_after_ms
            and state.last_active_at is not None
            and state.last_active_at < now - self._inactive_after_ms
        ):
            not_judged = AWAY
        rebuilt_at = state.feed_rebuilt_at or 0
        for post in truth.posts(user_id):
            expect(post, OWN)
        tolerated: set[str] = set()
        hidden = self._blocks.relations(user_id).hidden_authors() if self._blocks else frozenset()
        following = self._follows.all_following(user_id)
        for followee, followed_at in following:
            if followee == user_id or followee in hidden:
                continue
            if truth.is_high_follower(followee):
                tolerated.add(followee)
                continue
            floor, backfilled = ulid_floor(max(followed_at, rebuilt_at)), 0
            for post in truth.posts(followee):  # newest first
                if post.post_id >= floor:
                    expect(post, FOLLOWED)
                elif backfilled < self._backfill_posts:
                    expect(post, BACKFILL)
                    backfilled += 1
                else:
                    break
        alternatives = self._place_reposts(
            user_id, entries, reasons, truth, dict(following), hidden, rebuilt_at
        )
        return ExpectedFeed(
            user_id,
            entries,
            reasons,
            frozenset(tolerated),
            not_judged=not_judged,
            tolerated_below=ulid_floor(rebuilt_at) if rebuilt_at else "",
            required_from=ulid_floor(now - self._feed_item_ttl_ms) if self._feed_item_ttl_ms else "",
            alternatives=alternatives,
        )

    @staticmethod
    def _place_reposts(
        user_id: str,
        entries: dict[str, FeedEntry],
        reasons: dict[str, str],
        truth: _Truth,
        followed_at: Mapping[str, int],
        hidden: frozenset[str],
        rebuilt_at: int,
    ) -> dict[str, tuple[FeedEntry | None, ...]]:
        """Move the expected items (``entries``, updated in place) to their newest eligible
        repost; return the other right outcomes of items whose reposts predate a rebuild."""
        eligible: dict[str, list[RepostStamp]] = {}
        for reposter in dict.fromkeys([user_id, *followed_at]):
            if reposter in hidden:
                continue
            for repost in truth.reposts_by(reposter):
                if repost.author_id == user_id or repost.author_id in hidden:
                    continue
                if reposter != user_id and followed_at[reposter] > repost.created_at:
                    continue  # followed after the repost: reposts are not backfilled
                eligible.setdefault(repost.post_id, []).append(repost)
        alternatives: dict[str, tuple[FeedEntry | None, ...]] = {}
        for post_id, reposts in eligible.items():
            post = truth.post(reposts[0].author_id, post_id)
            if post is None:
                continue  # a repost of a deleted post places nothing

            def placed(repost: RepostStamp, post: PostStamp = post) -> FeedEntry:
                return FeedEntry(
                    user_id, post.post_id, post.author_id, post.created_at, repost.repost_id, repost.user_id
                )

            required = [r for r in reposts if r.created_at >= rebuilt_at]
            newest = max(required, key=lambda r: r.repost_id, default=None)
            # What the item must be without the reposts a rebuild may have skipped ...
            base = placed(newest) if newest is not None else entries.get(post_id)
            # ... and where those reposts may have moved it (each one newer than that).
            optional = sorted(
                (
                    placed(r)
                    for r in reposts
                    if r.created_at < rebuilt_at and (newest is None or r.repost_id > newest.repost_id)
                ),
                key=lambda e: e.placed,
                reverse=True,
            )
            preferred = optional[0] if optional else base
            if preferred is None:
                continue
            entries[post_id] = preferred
            if preferred.reposted_by is not None:
                reasons[post_id] = REPOSTED
            if optional:
                alternatives[post_id] = (*optional[1:], base)
        return alternatives

    def _check_user(self, user_id: str, truth: _Truth, exists: bool = True) -> UserConvergence:
        # Downstream before upstream: a change landing between the reads then shows as lag
        # (missing), never as an item the truth has not caught up with.
        cached = self._cached_members(user_id)
        stored = self._scan.stored_feed(user_id)
        expected = self._expected(user_id, truth)
        diff = _differences(stored, expected)
        # The cached prefix mirrors the table: the stored items that are right or not judged,
        # and the expected ones in place of the others (unless they may be absent and are
        # not stored). Malformed (unplaced) items are judged in the table only.
        visible = {e.post_id: e for e in stored.entries if e.post_id not in stored.unplaced}
        kept = [e for e in visible.values() if expected.holds(e) or not expected.judges(e)]
        kept_ids = {e.post_id for e in kept}
        reference = [member(e) for e in kept]
        reference += [
            member(wanted)
            for post_id, wanted in expected.entries.items()
            if (expected.requires(post_id) or post_id in visible) and post_id not in kept_ids
        ]
        if isinstance(cached, CacheError):
            cache = CacheCheck(cached=False, error=str(cached) or "unreachable")
        else:
            cache = check_cached_feed(cached, reference)
        return UserConvergence(
            user_id=user_id,
            expected=len(expected.entries),
            stored=len(stored.entries),
            missing=tuple(diff.missing),
            extra=tuple(diff.extra),
            cache=cache,
            reasons={
                post_id: expected.reasons[post_id]
                for post_id in [e.post_id for e in diff.missing] + [m.stored.post_id for m in diff.misplaced]
            },
            exists=exists,
            not_judged=expected.not_judged,
            misplaced=tuple(diff.misplaced),
            unplaced=tuple(diff.unplaced),
        )

    def _cached_members(self, user_id: str) -> list[str] | CacheError:
        try:
            return self._feed_cache.members(user_id)
        except CacheError as exc:
            return exc

    # ------------------------------------------------------------------ repairing
    def rebuild_feed(self, user_id: str) -> FeedRepair:
        """Make the reader's feed table equal to the expected set (BatchWriteItem puts of
        whole items, placement included) and drop the cached copy so the next read
        rebuilds it: missing items are written, misplaced and unplaced ones rewritten at
        their place (an unplaced one that is not expected is deleted, as extras are).

        The stored items are read before the truth, so every delete and write is justified
        by a truth at least as new as what it replaces; an item written for a post deleted
        meanwhile is taken out again, as fan-out does. (A repost undone meanwhile leaves its
        placement: the next check reports it.)
        """
        stored = self._scan.stored_feed(user_id)
        expected = self.expected(user_id)
        diff = _differences(stored, expected)
        writes = [*diff.missing, *(m.expected for m in diff.misplaced)]
        writes += [expected.entries[e.post_id] for e in diff.unplaced if e.post_id in expected.entries]
        removals = [*diff.extra, *(e for e in diff.unplaced if e.post_id not in expected.entries)]
        deleted = self._feed.delete_many((user_id, e.post_id) for e in removals)
        written = self._feed.put_many(writes)  # each placed as expected (a repost's, or at its post)
        if writes:
            alive = self._posts.get_many((e.author_id, e.post_id) for e in writes)
            self._feed.delete_many((user_id, e.post_id) for e in writes if e.post_id not in alive)
        return FeedRepair(user_id, written=written, deleted=deleted, cache_dropped=self._drop_feed(user_id))

    def _drop_feed(self, user_id: str) -> bool:
        try:
            self._feed_cache.drop(user_id)
        except CacheError:
            return False
        return True

    def rebuild_cache(self, user_ids: Iterable[str] | None = None, *, posts: bool = False) -> CacheRepair:
        """Drop cached feeds (None: every user's) and, with ``posts``, the cached bodies of
        every post in them. Redis is derived data, so dropping is a correct rebuild: the
        next read warms it from DynamoDB. Raises CacheError if Redis is unreachable."""
        ids = self.user_ids() if user_ids is None else list(dict.fromkeys(user_ids))
        dropped_posts: set[str] = set()
        for user_id in ids:
            if posts:
                post_ids = {member_post_id(m) for m in self._feed_cache.members(user_id)}
                post_ids |= {e.post_id for e in self._scan.feed_entries(user_id)}
                for post_id in sorted(post_ids - dropped_posts - {SENTINEL}):
                    self._post_cache.delete(post_id)
                    dropped_posts.add(post_id)
            self._feed_cache.drop(user_id)
        return CacheRepair(feeds=len(ids), posts=len(dropped_posts))


def _differences(stored: StoredFeed, expected: ExpectedFeed) -> _Differences:
    """The judged differences of a feed table partition. An item stored under the wrong
    author is both missing and extra (the key is the post, so a rebuild deletes then
    rewrites it); the right post by the right author at the wrong place is misplaced; an
    item with a malformed placement is unplaced (and nothing else: a rebuild rewrites or
    deletes it)."""
    by_post = {e.post_id: e for e in stored.entries}
    unplaced = [e for e in stored.entries if e.post_id in stored.unplaced and expected.judges(e)]
    placed = [e for e in stored.entries if e.post_id not in stored.unplaced]
    misplaced, extra = [], []
    for e in placed:
        if not expected.judges(e) or expected.holds(e):
            continue
        wanted = expected.entries.get(e.post_id)
        if wanted is not None and wanted.author_id == e.author_id:
            misplaced.append(Misplaced(e, wanted))
        else:
            extra.append(e)
    missing = []
    for post_id, wanted in expected.entries.items():
        if not expected.requires(post_id) or post_id in stored.unplaced:
            continue
        have = by_post.get(post_id)
        if have is None or have.author_id != wanted.author_id:  # (the same author: held or misplaced)
            missing.append(wanted)
    missing.sort(key=lambda e: (e.placed, e.post_id), reverse=True)
    return _Differences(missing, extra, misplaced, unplaced)


def check_cached_feed(members: Sequence[str], reference: Iterable[str]) -> CacheCheck:
    """Judge a cached feed against the members it should mirror (:func:`member`).

    ``members`` are as ``FeedCache.members`` lists them: by rank, which with every score 0
    is lexicographic by member, newest placement first (a member starts with its
    placement). The set must be a contiguous prefix of ``reference`` in placement order:
    everything from the newest placement down to its lowest member's (down to the end,
    with the sentinel), nothing else, and in order (a member out of order has a wrong
    score, and paging by lex would misread it). No members means no cached feed: Redis
    deletes empty sets.
    """
    if not members:
        return CacheCheck(cached=False)
    misordered = tuple(after for before, after in pairwise(members) if after >= before)
    items = [m for m in members if m != SENTINEL]
    complete = len(items) < len(members)
    wanted = sorted(set(reference), key=lambda m: (_placement(m), m), reverse=True)
    if complete or not items:
        in_range = wanted
    else:
        lowest = min((_placement(m), m) for m in items)
        in_range = [m for m in wanted if (_placement(m), m) >= lowest]
    present, allowed = set(items), set(wanted)
    return CacheCheck(
        cached=True,
        complete=complete,
        size=len(items),
        missing=tuple(m for m in in_range if m not in present),
        extra=tuple(m for m in items if m not in allowed),
        misordered=misordered,
    )


def _item(entry: FeedEntry) -> dict[str, Any]:
    return {
        "post_id": entry.post_id,
        "author_id": entry.author_id,
        "placed": entry.placed,
        "reposted_by": entry.reposted_by,
    }


def _by(entry: FeedEntry) -> str:
    return f", reposted by {entry.reposted_by}" if entry.reposted_by else ""


def _at(entry: FeedEntry) -> str:
    """Where an item sits, for humans: its post, or a repost (id and reposter)."""
    if entry.reposted_by is None and entry.placed == entry.post_id:
        return "its post"
    return f"repost {entry.placed} by {entry.reposted_by}"


def _ids(values: Iterable[str]) -> str:
    shown = list(values)
    head = ", ".join(shown[:SHOWN_IDS])
    return f"[{head}{f', ... +{len(shown) - SHOWN_IDS}' if len(shown) > SHOWN_IDS else ''}]"
