"""``warm-feeds``: fill cold cached feeds from DynamoDB so their readers' next request is a
cache hit (after a deploy, a Redis failover or a ``rebuild-cache``).

Operator code, not deployed. Which feeds: the ones named, or the ``top`` users who follow the
most accounts - their cold reads are the costliest (more pulled authors to merge), and
choosing them needs no per-read bookkeeping on the request path.
"""

from __future__ import annotations

from collections.abc import Sequence

from ripple.cache.feed_cache import FeedCache
from ripple.services.feed import WARM_ITEMS, FeedReader
from ripple_local.feed_scan import FeedScanRepository

__all__ = ["warm_feeds"]


def warm_feeds(
    reader: FeedReader,
    cache: FeedCache,
    scan: FeedScanRepository,
    user_ids: Sequence[str] | None = None,
    top: int = 100,
) -> list[str]:
    """Warm these readers' feeds, or the ``top`` most-following users'; returns the ids of the
    feeds that were cold and are now cached (already cached ones are left alone).

    Raises ``ripple.cache.errors.CacheError`` when Redis is unreachable.
    """
    targets = list(user_ids) if user_ids else scan.most_following(top)
    warmed = []
    for user_id in targets:
        if not cache.is_cached(user_id):
            reader.home(user_id, WARM_ITEMS - 1)  # a miss reads DynamoDB and stores the page
            warmed.append(user_id)
    return warmed
