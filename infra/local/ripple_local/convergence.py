"""Convergence: does every home feed hold exactly what DynamoDB's truth says it should?

Fan-out runs on at-least-once streams with retries, bisection and an on-failure queue, so
"the feeds converge" needs a definition a program can check. The expected home feed of
reader U is a function of the truth tables alone (posts, follows, users), mirroring the
rules ``ripple.services.fanout`` implements:

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

A deleted account (``DELETE /me``; its released username names it during the quarantine)
must leave nothing: no row in any table names it - its posts, their id rows and every feed
item of them, its likes, its follows both ways, its own feed, its refresh tokens - and
Redis holds no feed, and no known-account marker, for it (``ErasureCheck``).

The feed table must equal that set. The cached feed in Redis (derived from the table) must
be a contiguous newest-first prefix of it, the sentinel member meaning "nothing older
exists" (the invariant of ``ripple.cache.feed_cache``); an uncached feed is not checked.

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
from ripple.cache.feed_cache import SENTINEL, FeedCache, FeedRef
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
from ripple_local.feed_scan import FeedScanRepository, PostStamp

if TYPE_CHECKING:
    from ripple.container import Container

# Why an item is expected (reported with missing items, so a reader of the report can tell
# a lost fan-out from a lost backfill).
OWN, FOLLOWED, BACKFILL = "own", "followed", "backfill"
# Why a reader's feed is not judged at all.
AWAY, REBUILDING = "away", "rebuilding"
# How many ids one summary line lists before eliding the rest.
SHOWN_IDS = 5


@dataclass(frozen=True)
class ExpectedFeed:
    """What one reader's feed table should hold, and whose items are not judged."""

    user_id: str
    entries: Mapping[str, FeedEntry]  # post_id -> entry
    reasons: Mapping[str, str]  # post_id -> OWN | FOLLOWED | BACKFILL
    tolerated_authors: frozenset[str]  # followed high-follower accounts
    not_judged: str = ""  # why nothing of this feed is judged: AWAY | REBUILDING
    tolerated_below: str = ""  # unexpected items of posts with smaller ids are tolerated
    required_from: str = ""  # expected items of posts with smaller ids may have expired

    def judges(self, entry: FeedEntry) -> bool:
        """False for items not judged: of a reader not judged, of tolerated authors, or
        from before a rebuild, unless they are expected."""
        if self.not_judged:
            return False
        if entry.post_id in self.entries:
            return True
        return entry.author_id not in self.tolerated_authors and entry.post_id >= self.tolerated_below

    def requires(self, post_id: str) -> bool:
        """True if the expected item of ``post_id`` must be stored."""
        return not self.not_judged and post_id in self.entries and post_id >= self.required_from

    def holds(self, entry: FeedEntry) -> bool:
        """True if ``entry`` is expected exactly (same post, same author)."""
        wanted = self.entries.get(entry.post_id)
        return wanted is not None and wanted.author_id == entry.author_id


@dataclass(frozen=True)
class CacheCheck:
    """The Redis side of one reader's check (members are ``post_id:author_id``)."""

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

    @property
    def table_ok(self) -> bool:
        return not (self.missing or self.extra)

    @property
    def ok(self) -> bool:
        return self.exists and self.table_ok and self.cache.ok

    @property
    def differences(self) -> int:
        return len(self.missing) + len(self.extra) + self.cache.differences

    def describe(self) -> str:
        """One line for humans; empty details when all is well."""
        if not self.exists:
            return f"user {self.user_id}: no such user"
        parts = [f"user {self.user_id}: table {self.stored}/{self.expected} items"]
        if self.not_judged:
            parts.append(f"not judged ({self.not_judged})")
        if self.missing:
            parts.append(
                "missing " + _ids(f"{e.post_id}({self.reasons.get(e.post_id, '?')})" for e in self.missing)
            )
        if self.extra:
            parts.append("extra " + _ids(f"{e.post_id}(by {e.author_id})" for e in self.extra))
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
            "missing": [
                {"post_id": e.post_id, "author_id": e.author_id, "reason": self.reasons.get(e.post_id)}
                for e in self.missing
            ],
            "extra": [{"post_id": e.post_id, "author_id": e.author_id} for e in self.extra],
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
    """Per-run memo of truth reads: one Query per author and one lookup per followee for a
    whole check, however many of the checked readers follow them."""

    def __init__(self, users: UserRepository, scan: FeedScanRepository) -> None:
        self._users = users
        self._scan = scan
        self._posts: dict[str, list[PostStamp]] = {}
        self._high: dict[str, bool] = {}

    def posts(self, author_id: str) -> list[PostStamp]:
        if author_id not in self._posts:
            self._posts[author_id] = self._scan.post_stamps(author_id)
        return self._posts[author_id]

    def is_high_follower(self, user_id: str) -> bool:
        if user_id not in self._high:
            self._high[user_id] = self._users.is_high_follower(user_id)
        return self._high[user_id]


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
        for followee, followed_at in self._follows.all_following(user_id):
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
        return ExpectedFeed(
            user_id,
            entries,
            reasons,
            frozenset(tolerated),
            not_judged=not_judged,
            tolerated_below=ulid_floor(rebuilt_at) if rebuilt_at else "",
            required_from=ulid_floor(now - self._feed_item_ttl_ms) if self._feed_item_ttl_ms else "",
        )

    def _check_user(self, user_id: str, truth: _Truth, exists: bool = True) -> UserConvergence:
        # Downstream before upstream: a change landing between the reads then shows as lag
        # (missing), never as an item the truth has not caught up with.
        cached = self._cached_members(user_id)
        stored = self._scan.feed_entries(user_id)
        expected = self._expected(user_id, truth)
        missing, extra = _differences(stored, expected)
        # The cached prefix mirrors the table: what is expected (unless it may have expired
        # and is not stored) and the stored items that are not judged.
        stored_ids = {e.post_id for e in stored}
        reference = [
            FeedRef.of(e).member
            for e in expected.entries.values()
            if expected.requires(e.post_id) or e.post_id in stored_ids
        ]
        reference += [FeedRef.of(e).member for e in stored if not expected.judges(e)]
        if isinstance(cached, CacheError):
            cache = CacheCheck(cached=False, error=str(cached) or "unreachable")
        else:
            cache = check_cached_feed(cached, reference)
        return UserConvergence(
            user_id=user_id,
            expected=len(expected.entries),
            stored=len(stored),
            missing=tuple(missing),
            extra=tuple(extra),
            cache=cache,
            reasons={e.post_id: expected.reasons[e.post_id] for e in missing},
            exists=exists,
            not_judged=expected.not_judged,
        )

    def _cached_members(self, user_id: str) -> list[str] | CacheError:
        try:
            return self._feed_cache.members(user_id)
        except CacheError as exc:
            return exc

    # ------------------------------------------------------------------ repairing
    def rebuild_feed(self, user_id: str) -> FeedRepair:
        """Make the reader's feed table equal to the expected set (BatchWriteItem through
        the feed repository) and drop the cached copy so the next read rebuilds it.

        The stored items are read before the truth, so every delete and write is justified
        by a truth at least as new as what it replaces; an item written for a post deleted
        meanwhile is taken out again, as fan-out does.
        """
        stored = self._scan.feed_entries(user_id)
        expected = self.expected(user_id)
        missing, extra = _differences(stored, expected)
        deleted = self._feed.delete_many((user_id, e.post_id) for e in extra)
        written = self._feed.put_many(missing)
        if missing:
            alive = self._posts.get_many((e.author_id, e.post_id) for e in missing)
            self._feed.delete_many((user_id, e.post_id) for e in missing if e.post_id not in alive)
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
                post_ids = {FeedRef.from_member(m).post_id for m in self._feed_cache.members(user_id)}
                post_ids |= {e.post_id for e in self._scan.feed_entries(user_id)}
                for post_id in sorted(post_ids - dropped_posts - {SENTINEL}):
                    self._post_cache.delete(post_id)
                    dropped_posts.add(post_id)
            self._feed_cache.drop(user_id)
        return CacheRepair(feeds=len(ids), posts=len(dropped_posts))


def _differences(
    stored: Sequence[FeedEntry], expected: ExpectedFeed
) -> tuple[list[FeedEntry], list[FeedEntry]]:
    """(missing, extra) of a feed table partition, both newest first; an item stored under
    the wrong author is both (the key is the post, so a rebuild deletes then rewrites it)."""
    stored_ids = {e.post_id: e for e in stored}
    missing = [
        e
        for post_id, e in sorted(expected.entries.items(), reverse=True)
        if expected.requires(post_id) and not (post_id in stored_ids and expected.holds(stored_ids[post_id]))
    ]
    extra = [e for e in stored if expected.judges(e) and not expected.holds(e)]
    return missing, extra


def check_cached_feed(members: Sequence[str], reference: Iterable[str]) -> CacheCheck:
    """Judge a cached feed against the members it should mirror (``post_id:author_id``).

    ``members`` are as ``FeedCache.members`` lists them: by rank, which with every score 0
    is newest first by member. The set must be a contiguous newest-first prefix of
    ``reference``: everything from the newest down to its lowest member (down to the end,
    with the sentinel), nothing else, and in order (a member out of order has a wrong
    score, and paging by lex would misread it). No members means no cached feed: Redis
    deletes empty sets.
    """
    if not members:
        return CacheCheck(cached=False)
    misordered = tuple(after for before, after in pairwise(members) if after >= before)
    items = [m for m in members if m != SENTINEL]
    complete = len(items) < len(members)
    wanted = sorted(set(reference), reverse=True)
    if complete or not items:
        in_range = wanted
    else:
        lowest = min(items)
        in_range = [m for m in wanted if m >= lowest]
    present, allowed = set(items), set(wanted)
    return CacheCheck(
        cached=True,
        complete=complete,
        size=len(items),
        missing=tuple(m for m in in_range if m not in present),
        extra=tuple(m for m in items if m not in allowed),
        misordered=misordered,
    )


def _ids(values: Iterable[str]) -> str:
    shown = list(values)
    head = ", ".join(shown[:SHOWN_IDS])
    return f"[{head}{f', ... +{len(shown) - SHOWN_IDS}' if len(shown) > SHOWN_IDS else ''}]"
