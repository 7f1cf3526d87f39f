"""Reader activity, and the feed rebuild of a reader who comes back.

Fan-out pushes nothing to readers not seen for ``inactive_reader_days`` (Twitter skips
accounts away 30 days, Mastodon 7): most of a large audience is away, and their feed items
would be written for nobody. A reader is seen at sign-up, login and token refresh (an access
token lives minutes, so anyone using the API refreshes); the time is recorded at most once
per ``ACTIVITY_RESOLUTION_MS``. When a reader comes back after longer than the setting, their
feed is rebuilt from the follow graph by fan-out, a page of followees at a time
(``FanoutService`` ``rebuild``), and until it is complete ``GET /feed`` answers 206 with what
it has (as Mastodon does).
"""

from __future__ import annotations

import time

from ripple.cache.errors import CacheError
from ripple.cache.feed_cache import FeedCache
from ripple.observability import count, logger
from ripple.repositories.fanout_jobs import REBUILD, FanoutJob, FanoutJobRepository
from ripple.repositories.users import UserRepository

# Activity is recorded at most hourly: a refresh every 15 minutes costs no write, and an hour
# is nothing against an inactivity threshold counted in days.
ACTIVITY_RESOLUTION_MS = 3600 * 1000


class ReaderActivity:
    def __init__(
        self, users: UserRepository, jobs: FanoutJobRepository, feed_cache: FeedCache, inactive_after_ms: int
    ) -> None:
        self._users = users
        self._jobs = jobs
        self._feed_cache = feed_cache
        self._inactive_after_ms = inactive_after_ms  # 0: nobody is skipped, nothing rebuilt

    def seen(self, user_id: str, now_ms: int | None = None) -> bool:
        """Record that the user is active now (epoch ms); if they were away longer than the
        setting, start their feed's rebuild and return True. One conditional UpdateItem when
        they were seen within the hour; a rebuild adds two writes and drops the cached feed
        (best effort: Redis down does not fail a login)."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        previous = self._users.touch(user_id, now, ACTIVITY_RESOLUTION_MS)
        if previous is None or not self._inactive_after_ms or now - previous <= self._inactive_after_ms:
            return False
        self._users.start_feed_rebuild(user_id, now)
        self._jobs.enqueue(FanoutJob(REBUILD, author_id=user_id, post_id="", created_at=now, after=""))
        try:
            self._feed_cache.drop(user_id)  # partial: the next read goes to DynamoDB, and says so
        except CacheError:
            count("CacheErrors")
        count("FeedRebuildsStarted")
        logger.info("feed rebuild started", extra={"user_id": user_id, "away_ms": now - previous})
        return True
