"""Home feed items in DynamoDB: the durable truth the Redis feed cache is derived from."""

from __future__ import annotations

import time
from collections.abc import Iterable

from ripple.domain import FeedEntry
from ripple.repositories.batch import batch_write
from ripple.repositories.models import FeedItemModel


def _to_entry(m: FeedItemModel) -> FeedEntry:
    return FeedEntry(
        user_id=m.user_id, post_id=m.post_id, author_id=m.author_id, created_at=int(m.created_at)
    )


def feed_item_row(entry: FeedEntry, ttl_seconds: int) -> FeedItemModel:
    """The feed table's item for ``entry``, expiring ``ttl_seconds`` from now (DynamoDB TTL,
    epoch seconds; 0: never). Every writer of feed items builds them here."""
    return FeedItemModel(
        user_id=entry.user_id,
        post_id=entry.post_id,
        author_id=entry.author_id,
        created_at=entry.created_at,
        expires_at=int(time.time()) + ttl_seconds if ttl_seconds else None,
    )


class FeedRepository:
    def __init__(self, item_ttl_seconds: int = 0) -> None:
        self._ttl = item_ttl_seconds

    def put_many(self, entries: Iterable[FeedEntry]) -> int:
        """Write feed items (25 per BatchWriteItem), each expiring ``item_ttl_seconds`` from
        now; re-writing an item changes nothing but its expiry."""
        return batch_write(FeedItemModel, puts=[feed_item_row(e, self._ttl) for e in entries])

    def delete_many(self, keys: Iterable[tuple[str, str]]) -> int:
        """Delete feed items by (user_id, post_id); deleting a missing item is a no-op."""
        delete_keys = [{"user_id": {"S": u}, "post_id": {"S": p}} for u, p in dict.fromkeys(keys)]
        return batch_write(FeedItemModel, delete_keys=delete_keys)

    def page(self, user_id: str, limit: int, after: str | None = None) -> list[FeedEntry]:
        """Up to ``limit`` entries newest first, strictly older than ``after`` if given."""
        condition = FeedItemModel.post_id < after if after else None
        query = FeedItemModel.query(
            user_id, range_key_condition=condition, scan_index_forward=False, limit=limit
        )
        return [_to_entry(m) for m in query]

    def entries_by_author(self, user_id: str, author_id: str) -> list[FeedEntry]:
        """A reader's entries from one author (for retraction on unfollow)."""
        query = FeedItemModel.query(user_id, filter_condition=FeedItemModel.author_id == author_id)
        return [_to_entry(m) for m in query]
