"""Keeps Redis in step with DynamoDB, from three streams.

Feed stream: INSERT adds the item to the reader's cached feed (if that feed is cached: a
cold feed is rebuilt from DynamoDB on its next read); REMOVE takes it out.
Posts stream: a new post joins its author's cached outbox (kept only for pulled,
high-follower authors); a changed post (e.g. its like count) replaces the cached body; a
removed post is evicted from both.
Likes stream: each like and unlike reaches the liker's liked-posts hash (if it exists),
repairing an API write-through that failed. All of it is idempotent. A Redis failure
raises, so the stream retries the record and the cache is repaired when Redis is back;
DynamoDB holds the truth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ripple.cache.feed_cache import FeedCache, FeedRef
from ripple.cache.liked_posts import LikedPosts
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


class CacheRefresher:
    def __init__(
        self,
        feed_cache: FeedCache,
        post_cache: PostCache,
        outboxes: FeedCache,
        liked_posts: LikedPosts,
        tables: RefresherTables,
    ) -> None:
        self._feed_cache = feed_cache
        self._post_cache = post_cache
        self._outboxes = outboxes
        self._liked_posts = liked_posts
        self._tables = tables

    def handle(self, change: StreamChange) -> None:
        if change.table == self._tables.feed:
            self._feed_change(change)
        elif change.table == self._tables.posts:
            self._post_change(change)
        elif change.table == self._tables.likes:
            keys = change.keys
            self._liked_posts.record(str(keys["user_id"]), str(keys["post_id"]), liked=change.event != REMOVE)
        else:
            raise ValueError(f"cache refresher received a record from an unexpected table: {change.table}")

    def _feed_change(self, change: StreamChange) -> None:
        row = change.image
        user_id = str(row["user_id"])
        ref = FeedRef(post_id=str(row["post_id"]), author_id=str(row["author_id"]))
        if change.event in (INSERT, MODIFY):
            self._feed_cache.add(user_id, ref)
            if change.event == INSERT and "created_at" in row:
                # Feed lag: the post's creation to its arrival in this reader's cache.
                lag_ms = max(0.0, time.time() * 1000 - float(row["created_at"]))
                metrics.add_metric(name="FeedLag", unit=MetricUnit.Milliseconds, value=lag_ms)
        elif change.event == REMOVE:
            self._feed_cache.remove_many([(user_id, ref)])

    def _post_change(self, change: StreamChange) -> None:
        if change.event == INSERT:
            row = change.new_image
            self._outboxes.add(str(row["author_id"]), FeedRef(str(row["post_id"]), str(row["author_id"])))
        elif change.event == REMOVE:
            row = change.old_image
            self._post_cache.delete(str(row["post_id"]))
            self._outboxes.remove_many(
                [(str(row["author_id"]), FeedRef(str(row["post_id"]), str(row["author_id"])))]
            )
        elif change.event == MODIFY:
            row = change.new_image
            self._post_cache.put_many(
                [
                    Post(
                        post_id=str(row["post_id"]),
                        author_id=str(row["author_id"]),
                        text=str(row["text"]),
                        created_at=int(row["created_at"]),
                        like_count=int(row.get("like_count", 0)),
                    )
                ]
            )
