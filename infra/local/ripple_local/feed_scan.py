"""Whole-partition and whole-table reads for convergence checks and repairs.

The request paths never need "every user" or "every post of an author", so these reads live
outside the deployed layer, beside the operator's tools that use them (``check-convergence``,
``rebuild-feed``, ``show-user``, ``show-feed``), which may afford a Scan, an unbounded Query
or a COUNT over a whole partition. Every read is strongly
consistent, so a check run right after a write sees that write.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ripple.domain import FeedEntry
from ripple.ids import is_ulid, ulid_timestamp_ms
from ripple.repositories.feed import FeedRepository, feed_entry
from ripple.repositories.models import (
    BlockedByModel,
    BlockModel,
    FeedItemModel,
    FollowerModel,
    FollowModel,
    LikeByUserModel,
    LikeModel,
    NotificationModel,
    PostIdModel,
    PostModel,
    RefreshTokenModel,
    RepostByUserModel,
    RepostModel,
    UserModel,
    UsernameModel,
)

# Where a deleted account's data can remain, and which attribute names the account there
# (each table is scanned once for all the accounts checked).
RESIDUE_COLUMNS: tuple[tuple[str, type[Any], str], ...] = (
    ("user", UserModel, "user_id"),
    ("posts", PostModel, "author_id"),
    ("post_ids", PostIdModel, "author_id"),
    ("likes", LikeModel, "user_id"),
    ("likes_by_user", LikeByUserModel, "user_id"),
    ("following", FollowModel, "follower_id"),
    ("followed_by", FollowModel, "followee_id"),
    ("followers", FollowerModel, "followee_id"),
    ("follower_of", FollowerModel, "follower_id"),
    ("feed", FeedItemModel, "user_id"),
    ("feed_items_of_their_posts", FeedItemModel, "author_id"),
    ("feed_items_they_reposted", FeedItemModel, "reposted_by"),
    ("reposts", RepostModel, "user_id"),
    ("reposts_of_their_posts", RepostModel, "author_id"),
    ("reposts_by_user", RepostByUserModel, "user_id"),
    ("reposts_by_user_of_their_posts", RepostByUserModel, "author_id"),
    ("refresh_tokens", RefreshTokenModel, "user_id"),
    ("blocks_and_mutes", BlockModel, "user_id"),
    ("blocked_or_muted_by", BlockModel, "target_id"),
    ("blocked_by_rows", BlockedByModel, "target_id"),
    ("blocker_rows", BlockedByModel, "user_id"),
    ("notifications", NotificationModel, "user_id"),
    ("in_others_notifications", NotificationModel, "actor_id"),
)


@dataclass(frozen=True)
class PostStamp:
    """What a feed item needs to know about a post: its key and creation time."""

    post_id: str
    author_id: str
    created_at: int


def _created_at(post_id: str, stored: float | None) -> int:
    """The stored creation time; for a damaged row without one, the time inside its ULID
    (so a check can still describe the row instead of failing on it)."""
    if stored is not None:
        return int(stored)
    return ulid_timestamp_ms(post_id) if is_ulid(post_id) else 0


@dataclass(frozen=True)
class RepostStamp:
    """One repost: ``user_id`` reposted ``post_id`` (by ``author_id``) at ``created_at``
    (epoch ms); ``repost_id`` is where the post is placed in feeds."""

    post_id: str
    user_id: str
    repost_id: str
    author_id: str
    created_at: int


@dataclass(frozen=True)
class StoredFeed:
    """A reader's whole feed partition: its items, newest placement first, and the ids of
    the posts whose item has a malformed placement (``unplaced``): ``placed`` without
    ``reposted_by`` (a page would show it twice: from the table and from the index) or
    ``reposted_by`` without ``placed`` (shown where the post was made, as the post's own)."""

    entries: tuple[FeedEntry, ...]
    unplaced: frozenset[str]


@dataclass(frozen=True)
class ReaderState:
    """What decides whether fan-out pushed to a reader (``ripple.services.activity``), epoch ms."""

    last_active_at: int | None = None
    feed_rebuild_started: int | None = None
    feed_rebuilt_at: int | None = None


class FeedScanRepository:
    def user_ids(self) -> Iterator[str]:
        """Every user id (a Scan of the users table, keys only)."""
        for row in UserModel.scan(attributes_to_get=["user_id"], consistent_read=True):
            yield row.user_id

    def deleted_accounts(self) -> list[str]:
        """Accounts deleted and still within their username quarantine: a released username
        claim keeps the id of the account that held it (a Scan of the usernames table)."""
        rows = UsernameModel.scan(UsernameModel.released_at.exists(), consistent_read=True)
        return sorted({row.user_id for row in rows})

    def residue(self, user_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """For each account, the rows that still name it, by place (``RESIDUE_COLUMNS``);
        a place with none is absent. One Scan per table, whatever the number of accounts."""
        wanted = set(user_ids)
        found: dict[str, dict[str, int]] = {u: {} for u in wanted}
        for model in dict.fromkeys(model for _, model, _ in RESIDUE_COLUMNS):
            columns = [(place, attribute) for place, m, attribute in RESIDUE_COLUMNS if m is model]
            for row in model.scan(consistent_read=True):
                for place, attribute in columns:
                    owner = getattr(row, attribute)
                    if owner in wanted:
                        found[owner][place] = found[owner].get(place, 0) + 1
        return found

    def most_following(self, count: int) -> list[str]:
        """The ``count`` users who follow the most accounts, most first (a Scan of the users
        table's ids and ``following_count``)."""
        rows = UserModel.scan(attributes_to_get=["user_id", "following_count"], consistent_read=True)
        ranked = heapq.nlargest(count, rows, key=lambda row: (int(row.following_count or 0), row.user_id))
        return [row.user_id for row in ranked]

    def reader_state(self, user_id: str) -> ReaderState:
        """The reader's activity and feed-rebuild times (all None for no such user)."""
        names = ["last_active_at", "feed_rebuild_started", "feed_rebuilt_at"]
        try:
            row = UserModel.get(user_id, attributes_to_get=names, consistent_read=True)
        except UserModel.DoesNotExist:
            return ReaderState()
        values = [getattr(row, name) for name in names]
        return ReaderState(*(int(v) if v is not None else None for v in values))

    def stored_feed(self, user_id: str) -> StoredFeed:
        """A reader's whole feed partition (a Query of the table: the placement index holds
        only the items reposts placed)."""
        rows = list(FeedItemModel.query(user_id, consistent_read=True))
        entries = sorted((feed_entry(m) for m in rows), key=lambda e: (e.placed, e.post_id), reverse=True)
        return StoredFeed(
            tuple(entries), frozenset(m.post_id for m in rows if bool(m.placed) != bool(m.reposted_by))
        )

    def feed_entries(self, user_id: str) -> list[FeedEntry]:
        """A reader's whole feed partition, newest placement first."""
        return list(self.stored_feed(user_id).entries)

    def newest_feed_entries(self, user_id: str, limit: int) -> list[FeedEntry]:
        """A reader's ``limit`` items newest placement first (the order feeds are read in)."""
        return FeedRepository().page(user_id, limit, consistent=True)

    def count_followers(self, user_id: str) -> int:
        """Rows in the user's Followers partition (what ``follower_count`` counts)."""
        return FollowerModel.count(user_id, consistent_read=True)

    def count_following(self, user_id: str) -> int:
        """Rows in the user's Follows partition (what ``following_count`` counts)."""
        return FollowModel.count(user_id, consistent_read=True)

    def count_posts(self, author_id: str) -> int:
        """Rows in the author's Posts partition (what ``post_count`` counts)."""
        return PostModel.count(author_id, consistent_read=True)

    def post_stamps(self, author_id: str) -> list[PostStamp]:
        """Every post of an author, newest first, without the bodies."""
        query = PostModel.query(
            author_id,
            scan_index_forward=False,
            consistent_read=True,
            attributes_to_get=["author_id", "post_id", "created_at"],
        )
        return [PostStamp(m.post_id, m.author_id, _created_at(m.post_id, m.created_at)) for m in query]

    def reposts(self) -> dict[str, list[RepostStamp]]:
        """Every repost, by post id, newest first (a Scan of the reposts table)."""
        by_post: dict[str, list[RepostStamp]] = {}
        for m in RepostModel.scan(consistent_read=True):
            stamp = RepostStamp(
                m.post_id, m.user_id, m.repost_id, m.author_id, _created_at(m.repost_id, m.created_at)
            )
            by_post.setdefault(m.post_id, []).append(stamp)
        for stamps in by_post.values():
            stamps.sort(key=lambda r: r.repost_id, reverse=True)
        return by_post
