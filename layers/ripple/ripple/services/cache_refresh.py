"""Keeps Redis in step with DynamoDB, from three streams.

Feed stream: INSERT adds the item to the reader's cached feed (if that feed is cached: a
cold feed is rebuilt from DynamoDB on its next read); MODIFY (a repost placed the item
elsewhere, or its undo moved it back) replaces its member; REMOVE takes it out.
Posts stream: a new post joins its author's cached outbox (kept only for pulled,
high-follower authors); a changed post (e.g. its like count) replaces the cached body; a
removed post is evicted from both.
Likes stream: each like and unlike reaches the liker's liked-posts hash (if it exists),
repairing an API write-through that failed. Users stream (REMOVE only, by its filter): a
deleted account is forgotten - its known-account marker (so its access tokens fail at once
even if the API's own write-through failed), cached feed, outbox and liked posts. All of it
is idempotent, and a stream batch is applied in one pipelined round trip (``RefreshBatch``).
A Redis failure
raises, so the stream retries the record and the cache is repaired when Redis is back;
DynamoDB holds the truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ripple.cache.errors import translated
from ripple.cache.feed_cache import FeedCache, FeedRef
from ripple.cache.known_users import KnownUsers
from ripple.cache.liked_posts import LikedPosts
from ripple.cache.pipelines import ScriptPipeline
from ripple.cache.post_cache import PostCache
from ripple.domain import Post
from ripple.observability import MetricUnit, metrics
from ripple.streams import INSERT, MODIFY, REMOVE, StreamChange


@dataclass(frozen=True)
class RefresherTables:
    """The physical names of the tables whose streams the refresher reads."""

    feed: str
    posts: str
    likes: str
    users: str


@dataclass(frozen=True)
class RefreshTargets:
    """What the refresher writes to, and the tables whose streams it reads."""

    feed_cache: FeedCache
    post_cache: PostCache
    outboxes: FeedCache
    liked_posts: LikedPosts
    known_users: KnownUsers
    tables: RefresherTables


FEED_KEY = frozenset({"user_id", "post_id"})  # the feed table's key attributes


def _feed_ref(row: Mapping[str, Any]) -> FeedRef:
    """The cached member of a feed item's stream image (its placement included)."""
    reposted_by = str(row.get("reposted_by") or "")
    placed = str(row.get("placed") or "") if reposted_by else ""
    return FeedRef(str(row["post_id"]), str(row["author_id"]), placed=placed, reposted_by=reposted_by)


class CacheRefresher:
    """Applies stream changes to Redis: :meth:`open_batch` for a whole stream batch in one
    pipelined round trip (the function), :meth:`handle` for a single change."""

    def __init__(self, new_pipeline: Callable[[], ScriptPipeline], targets: RefreshTargets) -> None:
        self._new_pipeline = new_pipeline  # one Redis pipeline per batch (ripple.cache.pipelines)
        self._targets = targets

    def open_batch(self) -> RefreshBatch:
        return RefreshBatch(self._new_pipeline(), self._targets)

    def handle(self, change: StreamChange) -> None:
        """Apply one change now (raises CacheError when Redis fails)."""
        batch = self.open_batch()
        batch.add(change)
        batch.commit()


class RefreshBatch:
    """One stream batch's cache changes, queued in order on one pipeline."""

    def __init__(self, pipe: ScriptPipeline, targets: RefreshTargets) -> None:
        self._pipe = pipe
        self._feed_cache = targets.feed_cache
        self._post_cache = targets.post_cache
        self._outboxes = targets.outboxes
        self._liked_posts = targets.liked_posts
        self._known_users = targets.known_users
        self._tables = targets.tables
        self._queued = 0
        self._lags_ms: list[float] = []

    def add(self, change: StreamChange) -> None:
        tables = self._tables
        if change.table == tables.feed:
            self._feed_change(change)
        elif change.table == tables.posts:
            self._post_change(change)
        elif change.table == tables.likes:
            keys = change.keys
            liked = change.event != REMOVE
            self._liked_posts.queue_record(self._pipe, str(keys["user_id"]), str(keys["post_id"]), liked)
        elif change.table == tables.users:
            if change.event == REMOVE:  # a deleted account (the mapping's filter passes nothing else)
                self._account_removed(str(change.keys["user_id"]))
        else:
            raise ValueError(f"cache refresher received a record from an unexpected table: {change.table}")
        self._queued += 1

    @translated
    def commit(self) -> None:
        if self._queued:
            self._pipe.execute()
        for lag_ms in self._lags_ms:  # the post's creation to its arrival in a reader's cache
            metrics.add_metric(name="FeedLag", unit=MetricUnit.Milliseconds, value=lag_ms)

    def _account_removed(self, user_id: str) -> None:
        pipe = self._pipe
        self._known_users.queue_forget(pipe, user_id)
        self._feed_cache.queue_drop(pipe, user_id)
        self._outboxes.queue_drop(pipe, user_id)
        self._liked_posts.queue_drop(pipe, user_id)

    def _feed_change(self, change: StreamChange) -> None:
        row = change.image
        if set(row) <= FEED_KEY:
            # A bare key with nothing to cache: moto streams one when an UpdateItem creates
            # an item (FeedRepository.place), just before the item's whole image. DynamoDB
            # streams the whole image once. Any other image without an author still fails.
            return
        user_id = str(row["user_id"])
        ref = _feed_ref(row)
        if change.event in (INSERT, MODIFY):
            if change.event == MODIFY and change.old_image:
                # A repost moved the item (or its undo moved it back): its old member goes.
                old = _feed_ref(change.old_image)
                if old.member != ref.member:
                    self._feed_cache.queue_remove(self._pipe, user_id, old)
            self._feed_cache.queue_add(self._pipe, user_id, ref)
            if change.event == INSERT and "created_at" in row:
                self._lags_ms.append(max(0.0, time.time() * 1000 - float(row["created_at"])))
        elif change.event == REMOVE:
            self._feed_cache.queue_remove(self._pipe, user_id, ref)

    def _post_change(self, change: StreamChange) -> None:
        if change.event == INSERT:
            row = change.new_image
            self._outboxes.queue_add(
                self._pipe, str(row["author_id"]), FeedRef(str(row["post_id"]), str(row["author_id"]))
            )
        elif change.event == REMOVE:
            row = change.old_image
            self._post_cache.queue_delete(self._pipe, str(row["post_id"]))
            self._outboxes.queue_remove(
                self._pipe, str(row["author_id"]), FeedRef(str(row["post_id"]), str(row["author_id"]))
            )
        elif change.event == MODIFY:
            row = change.new_image
            post = Post(
                post_id=str(row["post_id"]),
                author_id=str(row["author_id"]),
                text=str(row["text"]),
                created_at=int(row["created_at"]),
                like_count=int(row.get("like_count", 0)),
                repost_count=int(row.get("repost_count", 0)),
            )
            self._post_cache.queue_put(self._pipe, post)
