"""What the operator commands grant-role, revoke-role, show-user and show-feed compute.

Everything is read and written through the layer's repositories and caches (a
:class:`ripple.container.Container` of the target), with strongly consistent reads where a
command compares one thing with another. Each result is a plain dataclass with ``lines()``
for people and ``to_dict()`` for ``--json``.

Imports ``ripple``: ``ripple_local.commands`` imports this module only inside a command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ripple.cache.errors import CacheError
from ripple.cache.feed_cache import SENTINEL, FeedRef
from ripple.container import Container
from ripple.domain import User
from ripple.repositories.users import UserRepository
from ripple.services.feed import PulledAuthors
from ripple.services.posts import ADMIN_ROLE
from ripple_local.feed_scan import FeedScanRepository
from ripple_local.operator_errors import OperatorError

__all__ = [
    "KNOWN_ROLES",
    "CounterCheck",
    "FeedRow",
    "FeedView",
    "OperatorError",
    "RoleChange",
    "UserView",
    "change_role",
    "find_user",
    "inspect_feed",
    "inspect_user",
]

# Every role the code checks for; a role outside this set would grant nothing.
KNOWN_ROLES: tuple[str, ...] = (ADMIN_ROLE,)
# Counting rows while writes go on: the count is trusted when the counter did not move
# meanwhile; otherwise it is taken again, this many times in all.
COUNT_ATTEMPTS = 3


def find_user(users: UserRepository, reference: str) -> User:
    """The user named by id or by username (case-folded, as sign-up stores it)."""
    candidate = reference.strip()
    user = users.get_consistent(candidate) if candidate else None
    if user is None and candidate:
        user_id = users.id_by_username(candidate.lower())
        user = users.get_consistent(user_id) if user_id else None
    if user is None:
        raise OperatorError(f"no user {reference!r} (neither a user id nor a username)")
    return user


def who(user: User) -> str:
    return f"{user.username} ({user.user_id})"


def roles_text(roles: Sequence[str]) -> str:
    return ", ".join(roles) if roles else "(none)"


# --------------------------------------------------------------------- roles


@dataclass(frozen=True)
class RoleChange:
    """The outcome of granting or revoking one role."""

    user: User  # as read back after the change
    role: str
    granted: bool  # True: grant-role, False: revoke-role
    changed: bool  # False: it was already so

    def lines(self, target: str) -> list[str]:
        if self.changed:
            verb = f"granted {self.role} to" if self.granted else f"revoked {self.role} from"
            return [f"{verb} {who(self.user)} on {target}; roles now: {roles_text(self.user.roles)}"]
        state = "already has" if self.granted else "does not have"
        return [f"{who(self.user)} {state} {self.role} on {target}; roles: {roles_text(self.user.roles)}"]


def change_role(users: UserRepository, user: User, role: str, *, grant: bool) -> RoleChange:
    """Grant or revoke ``role``. Only known roles are granted, and never next to a role the
    code does not know (revoke that first); any role the user holds can be revoked."""
    held = set(user.roles)
    if role not in KNOWN_ROLES and not (not grant and role in held):
        raise OperatorError(f"unknown role {role!r} (known roles: {', '.join(KNOWN_ROLES)})")
    if grant:
        strays = sorted(held - set(KNOWN_ROLES))
        if strays:
            raise OperatorError(
                f"{who(user)} holds roles Ripple does not know ({', '.join(strays)}): "
                f"revoke them first (revoke-role {user.username} {strays[0]})"
            )
        wanted = held | {role}
    else:
        wanted = held - {role}
    if wanted != held:
        users.set_roles(user.user_id, sorted(wanted))
    after = users.get_consistent(user.user_id) or user
    return RoleChange(user=after, role=role, granted=grant, changed=wanted != held)


# --------------------------------------------------------------------- show-user


@dataclass(frozen=True)
class CounterCheck:
    """One counter on the user item next to the rows it counts."""

    counter: str  # follower_count | following_count | post_count
    table: str  # the table whose rows it counts
    stored: int
    rows: int
    settled: bool = True  # False: the counter kept moving while the rows were counted

    @property
    def ok(self) -> bool:
        return self.settled and self.stored == self.rows

    @property
    def verdict(self) -> str:
        if not self.settled:
            return "CHANGING (writes in flight; run again)"
        return "ok" if self.ok else f"MISMATCH ({self.stored - self.rows:+d})"


@dataclass(frozen=True)
class UserView:
    """show-user: the profile, roles, and each counter next to the rows it counts."""

    user: User
    high_follower: bool
    counters: tuple[CounterCheck, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.counters)

    def lines(self, target: str) -> list[str]:
        user = self.user
        lines = [
            f"user          {who(user)} on {target}",
            f"display name  {user.display_name or '-'}",
            f"bio           {user.bio or '-'}",
            f"created       {_time(user.created_at)}",
            f"roles         {roles_text(user.roles)}",
            "high-follower "
            + ("yes (posts pulled at read time, not pushed)" if self.high_follower else "no"),
            f"{'counter':<17} {'stored':>7} {'rows':>7}  {'rows in':<10} verdict",
        ]
        lines += [
            f"{c.counter:<17} {c.stored:>7} {c.rows:>7}  {c.table:<10} {c.verdict}" for c in self.counters
        ]
        bad = [c for c in self.counters if not c.ok]
        lines.append(
            "every counter equals the rows it counts"
            if not bad
            else f"{len(bad)} of {len(self.counters)} counters differ from the rows they count"
        )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "user": {**self.user.to_public(), "roles": list(self.user.roles)},
            "high_follower": self.high_follower,
            "counters": [
                {
                    "counter": c.counter,
                    "table": c.table,
                    "stored": c.stored,
                    "rows": c.rows,
                    "settled": c.settled,
                    "ok": c.ok,
                }
                for c in self.counters
            ],
        }


def inspect_user(users: UserRepository, scan: FeedScanRepository, user: User) -> UserView:
    """Count the rows behind each counter (consistent COUNT queries), reading the counters
    before and after: a counter that moved meanwhile is counted again, then reported as
    changing rather than as a mismatch (each write moves a row and its counter together)."""
    counted: dict[str, tuple[str, Callable[[str], int]]] = {
        "follower_count": ("Followers", scan.count_followers),
        "following_count": ("Follows", scan.count_following),
        "post_count": ("Posts", scan.count_posts),
    }
    current = user
    checks: list[CounterCheck] = []
    for attempt in range(COUNT_ATTEMPTS):
        before = users.get_consistent(user.user_id) or current
        rows = {name: count(user.user_id) for name, (_, count) in counted.items()}
        current = users.get_consistent(user.user_id) or before
        checks = [
            CounterCheck(
                counter=name,
                table=table,
                stored=getattr(current, name),
                rows=rows[name],
                settled=getattr(before, name) == getattr(current, name),
            )
            for name, (table, _) in counted.items()
        ]
        if all(check.settled for check in checks) or attempt == COUNT_ATTEMPTS - 1:
            break
    return UserView(user=current, high_follower=users.is_high_follower(user.user_id), counters=tuple(checks))


# --------------------------------------------------------------------- show-feed


@dataclass(frozen=True)
class FeedRow:
    """One post in the shown window: where it is, and what is wrong with that, if anything."""

    post_id: str
    author_id: str
    in_table: bool
    in_cache: bool
    note: str = ""  # "", "only in the table", "only in the cache", "below the cached prefix", ...
    cached_author_id: str | None = None  # when the cache names another author
    reposted_by: str | None = None  # placed by this account's repost

    @property
    def differs(self) -> bool:
        return self.note.startswith(("only in", "author differs"))


@dataclass(frozen=True)
class FeedView:
    """show-feed: the feed table's newest items next to the cached feed, and the posts of
    high-follower authors merged in at read time."""

    user: User
    limit: int
    rows: tuple[FeedRow, ...]
    cache_state: str  # "complete" | "partial" | "not cached" | "unreachable"
    cache_size: int  # cached items, without the sentinel
    cache_error: str | None
    pulled_authors: tuple[str, ...]
    pulled: tuple[FeedRef, ...]  # the newest posts of those authors, newest first
    names: dict[str, str]  # user id -> username, for display

    @property
    def differences(self) -> int:
        return sum(row.differs for row in self.rows)

    def cache_line(self) -> str:
        if self.cache_state == "unreachable":
            return f"cache: {self.cache_error}; showing the table side only"
        if self.cache_state == "not cached":
            return "cache: not cached (the next read of this feed warms it from the table)"
        if self.cache_state == "complete":
            return f"cache: {self.cache_size} items + sentinel (complete: nothing older exists)"
        return (
            f"cache: {self.cache_size} items, no sentinel "
            "(a newest-first prefix; older pages come from the table)"
        )

    def lines(self, target: str) -> list[str]:
        lines = [f"feed of {who(self.user)} on {target}: newest {self.limit}", self.cache_line()]
        if not self.rows:
            lines.append(
                "no items in the feed table" + ("" if self.cache_state == "unreachable" else " or the cache")
            )
        else:
            lines.append(f"  {'post_id':<26}  {'author':<20} table cache")
            for row in self.rows:
                cache = "-" if self.cache_state == "unreachable" else ("yes" if row.in_cache else "no")
                note = f"  {row.note}" if row.note else ""
                if row.reposted_by:
                    note = f"  reposted by {self._name(row.reposted_by)}{note}"
                lines.append(
                    f"  {row.post_id:<26}  {self._name(row.author_id):<20} "
                    f"{'yes' if row.in_table else 'no':<5} {cache:<5}{note}".rstrip()
                )
        if self.cache_state != "unreachable" and self.cache_state != "not cached":
            lines.append(
                "table and cache agree in the rows shown"
                if not self.differences
                else f"{self.differences} of {len(self.rows)} rows differ between the table and the cache"
            )
        if self.pulled_authors:
            authors = ", ".join(self._name(a) for a in self.pulled_authors)
            lines.append(f"merged at read time from high-follower authors followed: {authors}")
            lines += [f"  {ref.post_id:<26}  {self._name(ref.author_id):<20} pulled" for ref in self.pulled]
        return lines

    def _name(self, user_id: str) -> str:
        return self.names.get(user_id, user_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user.user_id,
            "username": self.user.username,
            "limit": self.limit,
            "cache": {"state": self.cache_state, "size": self.cache_size, "error": self.cache_error},
            "differences": self.differences,
            "rows": [
                {
                    "post_id": r.post_id,
                    "author_id": r.author_id,
                    "in_table": r.in_table,
                    "in_cache": None if self.cache_state == "unreachable" else r.in_cache,
                    "note": r.note or None,
                    **({"cached_author_id": r.cached_author_id} if r.cached_author_id else {}),
                    **({"reposted_by": r.reposted_by} if r.reposted_by else {}),
                }
                for r in self.rows
            ],
            "pulled_authors": list(self.pulled_authors),
            "pulled": [{"post_id": r.post_id, "author_id": r.author_id} for r in self.pulled],
        }


def inspect_feed(
    container: Container, scan: FeedScanRepository, user: User, limit: int, cache_problem: str | None
) -> FeedView:
    """The ``limit`` newest items of the feed table and of the cached feed, side by side.

    The window is the ``limit`` newest placements of either (a post's id, or the id of the
    repost that placed it); within it, membership on both
    sides is exact (each side was read at least that deep). An item only in the table is a
    difference unless the cache holds a prefix that ends above it (no sentinel): the cache
    never claims items below its lowest member. ``cache_problem`` set: Redis is not read.
    """
    # Keyed by placement (a post's id, or the repost's that placed it): the order of both.
    table = {e.placed: e for e in scan.newest_feed_entries(user.user_id, limit)}
    cache_error = cache_problem
    members: list[str] = []
    if cache_problem is None:
        try:
            members = container.feed_cache.members(user.user_id)
        except CacheError as error:
            cache_error = f"Redis unreachable ({str(error) or 'no answer'})"
    refs = [FeedRef.from_member(m) for m in members if m != SENTINEL]
    complete = SENTINEL in members
    cached = {r.position: r for r in refs[:limit]}
    lowest_cached = refs[-1].position if refs else None
    if cache_error is not None:
        state = "unreachable"
    elif not members:
        state = "not cached"
    else:
        state = "complete" if complete else "partial"

    rows: list[FeedRow] = []
    for position in sorted(set(table) | set(cached), reverse=True)[:limit]:
        stored, held = table.get(position), cached.get(position)
        if stored is not None and held is not None:
            same = held.author_id == stored.author_id and held.post_id == stored.post_id
            rows.append(
                FeedRow(
                    stored.post_id,
                    stored.author_id,
                    True,
                    True,
                    "" if same else "author differs",
                    None if same else held.author_id,
                    stored.reposted_by,
                )
            )
        elif held is not None:
            reposter = held.reposted_by or None
            rows.append(
                FeedRow(held.post_id, held.author_id, False, True, "only in the cache", None, reposter)
            )
        else:
            assert stored is not None
            note = ""
            if state in ("complete", "partial"):
                below = state == "partial" and lowest_cached is not None and position < lowest_cached
                note = "below the cached prefix" if below else "only in the table"
            rows.append(
                FeedRow(stored.post_id, stored.author_id, True, False, note, None, stored.reposted_by)
            )

    pulled_authors = PulledAuthors(container.users, container.follows).for_reader(user.user_id)
    pulled = sorted(
        (
            FeedRef(post.post_id, author)
            for author in pulled_authors
            for post in container.posts.recent_by_author(author, limit)
        ),
        key=lambda ref: ref.post_id,
        reverse=True,
    )[:limit]
    authors = (
        {row.author_id for row in rows} | {r.reposted_by for r in rows if r.reposted_by} | set(pulled_authors)
    )
    names = {uid: u.username for uid, u in container.users.get_many(sorted(authors)).items()}
    names[user.user_id] = user.username
    return FeedView(
        user=user,
        limit=limit,
        rows=tuple(rows),
        cache_state=state,
        cache_size=len(refs),
        cache_error=cache_error,
        pulled_authors=tuple(pulled_authors),
        pulled=tuple(pulled),
        names=names,
    )


def _time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
