"""Keeps Redis in step with DynamoDB, from two streams.

Feed stream: INSERT adds the item to the reader's cached feed (if that feed is cached: a
cold feed is rebuilt from DynamoDB on its next read); REMOVE takes it out.
Posts stream: a changed post (e.g. its like count) replaces the cached body; a removed
post is evicted. All of it is idempotent. A Redis failure raises, so the stream retries
the record and the cache is repaired when Redis is back; DynamoDB holds the truth.
"""

from __future__ import annotations

import time

from ripple.cache.feed_cache import FeedCache, FeedRef
from ripple.cache.post_cache import PostCache
from ripple.domain import Post
from ripple.observability import MetricUnit, metrics
from ripple.streams import INSERT, MODIFY, REMOVE, StreamChange


class CacheRefresher:
    def __init__(
        self, feed_cache: FeedCache, post_cache: PostCache, feed_table: str, posts_table: str
    ) -> None:
        self._feed_cache = feed_cache
        self._post_cache = post_cache
        self._feed_table = feed_table
        self._posts_table = posts_table

    def handle(self, change: StreamChange) -> None:
        if change.table == self._feed_table:
            self._feed_change(change)
        elif change.table == self._posts_table:
            self._post_change(change)
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
        if change.event == REMOVE:
            self._post_cache.delete(str(change.old_image["post_id"]))
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
