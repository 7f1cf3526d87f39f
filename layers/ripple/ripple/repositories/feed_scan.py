"""Whole-partition and whole-table reads for convergence checks and repairs.

The request paths never need "every user" or "every post of an author", so these reads live
apart from the request repositories: they are for operators' tools (``check-convergence``,
``rebuild-feed``), which may afford a Scan or an unbounded Query. Every read is strongly
consistent, so a check run right after a write sees that write.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ripple.domain import FeedEntry
from ripple.ids import is_ulid, ulid_timestamp_ms
from ripple.repositories.models import FeedItemModel, PostModel, UserModel


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


class FeedScanRepository:
    def user_ids(self) -> Iterator[str]:
        """Every user id (a Scan of the users table, keys only)."""
        for row in UserModel.scan(attributes_to_get=["user_id"], consistent_read=True):
            yield row.user_id

    def feed_entries(self, user_id: str) -> list[FeedEntry]:
        """A reader's whole feed partition, newest first."""
        query = FeedItemModel.query(user_id, scan_index_forward=False, consistent_read=True)
        return [
            FeedEntry(
                user_id=m.user_id, post_id=m.post_id, author_id=m.author_id, created_at=int(m.created_at)
            )
            for m in query
        ]

    def post_stamps(self, author_id: str) -> list[PostStamp]:
        """Every post of an author, newest first, without the bodies."""
        query = PostModel.query(
            author_id,
            scan_index_forward=False,
            consistent_read=True,
            attributes_to_get=["author_id", "post_id", "created_at"],
        )
        return [PostStamp(m.post_id, m.author_id, _created_at(m.post_id, m.created_at)) for m in query]
