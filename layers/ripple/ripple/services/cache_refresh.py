"""Keeps the Redis home feeds in step with the feed table's stream.

INSERT adds the item to the reader's cached feed (if that feed is cached: a cold feed is
rebuilt from DynamoDB on its next read); REMOVE takes it out. Both are idempotent. A Redis
failure raises, so the stream retries the record and the cache is repaired when Redis is
back; the item itself is safe in DynamoDB throughout.
"""

from __future__ import annotations

import time

from ripple.cache.feed_cache import FeedCache, FeedRef
from ripple.observability import MetricUnit, metrics
from ripple.streams import INSERT, MODIFY, REMOVE, StreamChange


class CacheRefresher:
    def __init__(self, feed_cache: FeedCache) -> None:
        self._cache = feed_cache

    def handle(self, change: StreamChange) -> None:
        row = change.image
        user_id = str(row["user_id"])
        ref = FeedRef(post_id=str(row["post_id"]), author_id=str(row["author_id"]))
        if change.event in (INSERT, MODIFY):
            self._cache.add(user_id, ref)
            if change.event == INSERT and "created_at" in row:
                # Feed lag: the post's creation to its arrival in this reader's cache.
                lag_ms = max(0.0, time.time() * 1000 - float(row["created_at"]))
                metrics.add_metric(name="FeedLag", unit=MetricUnit.Milliseconds, value=lag_ms)
        elif change.event == REMOVE:
            self._cache.remove_many([(user_id, ref)])
