"""Home feed items in DynamoDB: the durable truth the Redis feed cache is derived from.

One item per (reader, post). Where it sits is the post's id, or the id of the repost that
brought it (``placed``, with ``reposted_by``; ``ripple.services.placement`` keeps the
newest). Only items a repost placed carry ``placed``, so only they are in the
``by_placement`` local index: an item at its post - nearly every item - costs no index
write. A page merges the table's items at their posts (newest post id first, those with
``placed`` filtered out) with the index's (newest repost first).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from pynamodb.exceptions import DeleteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from ripple.domain import FeedEntry
from ripple.repositories.batch import batch_get, batch_write, concurrently
from ripple.repositories.conditions import condition_failed
from ripple.repositories.models import FeedItemModel


def feed_entry(m: FeedItemModel) -> FeedEntry:
    """A stored item as a FeedEntry (no ``placed``: at its post)."""
    return FeedEntry(
        user_id=m.user_id,
        post_id=m.post_id,
        author_id=m.author_id,
        created_at=int(m.created_at),
        placed=m.placed or "",
        reposted_by=m.reposted_by or None,
    )


def _expiry(ttl_seconds: int) -> int | None:
    return int(time.time()) + ttl_seconds if ttl_seconds else None


def feed_item_row(entry: FeedEntry, ttl_seconds: int) -> FeedItemModel:
    """The feed table's item for ``entry``, expiring ``ttl_seconds`` from now (DynamoDB TTL,
    epoch seconds; 0: never). Every writer of whole feed items builds them here."""
    return FeedItemModel(
        user_id=entry.user_id,
        post_id=entry.post_id,
        author_id=entry.author_id,
        created_at=entry.created_at,
        placed=entry.placed if entry.reposted_by else None,
        reposted_by=entry.reposted_by,
        expires_at=_expiry(ttl_seconds),
    )


def _placement_actions(entry: FeedEntry, ttl_seconds: int) -> list[Action]:
    """Updates that place an item as ``entry`` says (at its post: no ``placed``)."""
    expires = _expiry(ttl_seconds)
    actions: list[Action]
    if entry.reposted_by:
        actions = [FeedItemModel.placed.set(entry.placed), FeedItemModel.reposted_by.set(entry.reposted_by)]
    else:
        actions = [FeedItemModel.placed.remove(), FeedItemModel.reposted_by.remove()]
    actions.append(FeedItemModel.expires_at.set(expires) if expires else FeedItemModel.expires_at.remove())
    return actions


def _placed_as(entry: FeedEntry) -> Condition:
    """The item exists and is placed as ``entry`` (a repost's placement, or at its post: an
    update of a missing item would create one holding only the placement)."""
    if entry.reposted_by:
        return (FeedItemModel.placed == entry.placed) & (FeedItemModel.reposted_by == entry.reposted_by)
    return (
        FeedItemModel.post_id.exists()
        & FeedItemModel.placed.does_not_exist()
        & FeedItemModel.reposted_by.does_not_exist()
    )


class FeedRepository:
    def __init__(self, item_ttl_seconds: int = 0) -> None:
        self._ttl = item_ttl_seconds

    def put_many(self, entries: Iterable[FeedEntry]) -> int:
        """Write feed items as given (25 per BatchWriteItem), each expiring
        ``item_ttl_seconds`` from now; re-writing an item changes nothing but its expiry. A
        plain put replaces a repost's placement: writers of original items ask
        ``ripple.services.placement`` to settle posts that have reposts afterwards."""
        return batch_write(FeedItemModel, puts=[feed_item_row(e, self._ttl) for e in entries])

    def delete_many(self, keys: Iterable[tuple[str, str]]) -> int:
        """Delete feed items by (user_id, post_id); deleting a missing item is a no-op."""
        delete_keys = [{"user_id": {"S": u}, "post_id": {"S": p}} for u, p in dict.fromkeys(keys)]
        return batch_write(FeedItemModel, delete_keys=delete_keys)

    def place(self, entry: FeedEntry) -> bool:
        """Place ``entry`` unless the reader's item of that post is already placed as new or
        newer (an item at its post is older than any repost of it): the newest placement
        wins whatever the order writers arrive in, so concurrent reposts converge. One
        conditional UpdateItem (it creates a missing item); True if it wrote."""
        item = FeedItemModel(user_id=entry.user_id, post_id=entry.post_id)
        actions: list[Action] = [
            FeedItemModel.author_id.set(entry.author_id),
            FeedItemModel.created_at.set(entry.created_at),
            *_placement_actions(entry, self._ttl),
        ]
        if entry.reposted_by:
            condition = FeedItemModel.placed.does_not_exist() | (FeedItemModel.placed < entry.placed)
        else:  # at its post: only where no repost placed it
            condition = FeedItemModel.placed.does_not_exist()
        try:
            item.update(actions=actions, condition=condition)
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def replace_placement(self, current: FeedEntry, replacement: FeedEntry | None) -> bool:
        """Move the reader's item of a post from ``current``'s placement to ``replacement``'s
        (None: delete the item), only if it is still placed as ``current`` (a newer repost may
        have moved it meanwhile, and then it stays). True if it changed."""
        item = FeedItemModel(user_id=current.user_id, post_id=current.post_id)
        try:
            if replacement is None:
                item.delete(condition=_placed_as(current))
            else:
                item.update(actions=_placement_actions(replacement, self._ttl), condition=_placed_as(current))
        except (UpdateError, DeleteError) as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], FeedEntry]:
        """The items at these (user_id, post_id) keys that exist (strongly consistent; one
        BatchGetItem per 100 keys)."""
        rows = batch_get(FeedItemModel, list(dict.fromkeys(keys)), consistent_read=True)
        return {(m.user_id, m.post_id): feed_entry(m) for m in rows}

    def page(
        self, user_id: str, limit: int, after: str | None = None, *, consistent: bool = False
    ) -> list[FeedEntry]:
        """Up to ``limit`` entries newest placement first, placed strictly below ``after``
        if given (the cursor names a placement: a post's id, or a repost's). Two Queries,
        sent at once: items at their posts (the table; those a repost placed filtered out,
        paged until ``limit`` pass) and items placed by reposts (the index)."""

        def at_posts() -> list[FeedEntry]:
            query = FeedItemModel.query(
                user_id,
                range_key_condition=FeedItemModel.post_id < after if after else None,
                filter_condition=FeedItemModel.placed.does_not_exist(),
                scan_index_forward=False,
                limit=limit,
                consistent_read=consistent,
            )
            return [feed_entry(m) for m in query]

        def by_reposts() -> list[FeedEntry]:
            query = FeedItemModel.by_placement.query(
                user_id,
                range_key_condition=FeedItemModel.placed < after if after else None,
                scan_index_forward=False,
                limit=limit,
                consistent_read=consistent,
            )
            return [feed_entry(m) for m in query]

        own, reposted = concurrently(lambda read: read(), [at_posts, by_reposts])
        # The two reads are not one snapshot: an item moved between them may be in both (then
        # its newest place counts) or in neither (then the next read has it).
        newest: dict[str, FeedEntry] = {}
        for entry in sorted([*own, *reposted], key=lambda e: e.placed, reverse=True):
            newest.setdefault(entry.post_id, entry)
        return list(newest.values())[:limit]

    def entries_involving(self, user_id: str, other_id: str) -> list[FeedEntry]:
        """A reader's items of one account's posts, however placed, and those placed by its
        reposts: one Query of the reader's partition (unfollow, mute, block)."""
        query = FeedItemModel.query(
            user_id,
            filter_condition=(FeedItemModel.author_id == other_id) | (FeedItemModel.reposted_by == other_id),
        )
        return [feed_entry(m) for m in query]
