"""Reading a home feed: Redis first, DynamoDB when the cache cannot answer, then warm it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ripple.cache.errors import CacheError
from ripple.cache.feed_cache import FeedCache, FeedRef
from ripple.cache.post_cache import PostCache
from ripple.cursor import decode_cursor, encode_cursor
from ripple.domain import Page, Post
from ripple.observability import count, logger
from ripple.repositories.feed import FeedRepository
from ripple.repositories.follows import FollowRepository
from ripple.repositories.likes import LikeRepository
from ripple.repositories.posts import PostRepository
from ripple.repositories.users import UserRepository

# A cold feed is rebuilt with this many items at once, so the next pages are cache hits.
WARM_ITEMS = 100


class PostHydrator:
    """Turns feed refs into post bodies: post cache first, then one BatchGetItem."""

    def __init__(self, posts: PostRepository, likes: LikeRepository, post_cache: PostCache) -> None:
        self._posts = posts
        self._likes = likes
        self._cache = post_cache

    def hydrate(self, refs: Sequence[FeedRef], reader_id: str | None = None) -> list[Post]:
        ids = [r.post_id for r in refs]
        try:
            found = self._cache.get_many(ids)
            count("PostCacheHits", len(found))
        except CacheError:
            count("CacheErrors")
            found = {}
        missing = [r for r in refs if r.post_id not in found]
        if missing:
            count("PostCacheMisses", len(missing))
            loaded = self._posts.get_many((r.author_id, r.post_id) for r in missing)
            found.update(loaded)
            if loaded:
                try:
                    self._cache.put_many(loaded.values())
                except CacheError:
                    count("CacheErrors")
        # A post deleted after it was fanned out is skipped (its retraction is on its way).
        posts = [found[i] for i in ids if i in found]
        if reader_id is None or not posts:
            return posts
        liked = self._likes.liked(reader_id, [p.post_id for p in posts])
        return [p.for_reader(p.post_id in liked) for p in posts]


class PulledAuthors:
    """Which high-follower authors a reader follows: their posts are merged in at read time.

    The registry (a sparse index of marked accounts) is small and changes rarely, so each
    container keeps it for ``ttl_seconds``; which of them the reader follows is one
    BatchGetItem on the follows table. A newly marked author is missing from a container's
    registry for up to ``ttl_seconds`` plus the index's lag: fan-out keeps pushing that
    author's posts meanwhile (``FanoutService`` pull grace), so none goes unseen.
    """

    # How long a container keeps the registry: one small Query per container this often; fan-out
    # keeps pushing a newly marked author's posts for longer than this (its pull grace).
    REGISTRY_TTL_SECONDS = 10.0

    def __init__(
        self, users: UserRepository, follows: FollowRepository, ttl_seconds: float = REGISTRY_TTL_SECONDS
    ) -> None:
        self._users = users
        self._follows = follows
        self._ttl = ttl_seconds
        self._registry: list[str] = []
        self._loaded_at = -float("inf")

    def for_reader(self, reader_id: str) -> list[str]:
        now = time.monotonic()
        if now - self._loaded_at > self._ttl:
            self._registry = self._users.high_follower_ids()
            self._loaded_at = now
        if not self._registry:
            return []
        return sorted(self._follows.followed_among(reader_id, self._registry))


class FeedReader:
    """The home timeline: pushed items (cache, else DynamoDB) merged with the recent posts
    of the high-follower authors the reader follows. Every source is ordered by post id and
    paged strictly after the cursor, so the merge keeps the cursor contract exactly."""

    def __init__(
        self,
        feed: FeedRepository,
        feed_cache: FeedCache,
        hydrator: PostHydrator,
        posts: PostRepository,
        pulled: PulledAuthors,
    ) -> None:
        self._feed = feed
        self._cache = feed_cache
        self._hydrator = hydrator
        self._posts = posts
        self._pulled = pulled

    def home(self, user_id: str, limit: int, cursor: str | None = None) -> Page[Post]:
        after = decode_cursor(cursor)
        count("FeedReads")
        refs, has_more = self._read_refs(user_id, after, limit)
        refs, has_more = self._merge_pulled(user_id, after, limit, refs, has_more)
        next_cursor = encode_cursor(refs[-1].post_id) if has_more and refs else None
        return Page(items=self._hydrator.hydrate(refs, reader_id=user_id), next_cursor=next_cursor)

    def _merge_pulled(
        self, user_id: str, after: str | None, limit: int, refs: list[FeedRef], has_more: bool
    ) -> tuple[list[FeedRef], bool]:
        authors = self._pulled.for_reader(user_id)
        if not authors:
            return refs, has_more
        merged = {r.post_id: r for r in refs}
        for author in authors:
            for post in self._posts.recent_by_author(author, limit + 1, before=after):
                merged.setdefault(post.post_id, FeedRef(post_id=post.post_id, author_id=author))
        ordered = [merged[k] for k in sorted(merged, reverse=True)]
        count("FeedPullMerges")
        return ordered[:limit], has_more or len(ordered) > limit

    def _read_refs(self, user_id: str, after: str | None, limit: int) -> tuple[list[FeedRef], bool]:
        try:
            cached = self._cache.page(user_id, after, limit)
        except CacheError as exc:
            logger.warning("feed cache unavailable, reading DynamoDB", extra={"error": str(exc)})
            count("CacheErrors")
            return self._from_dynamodb(user_id, after, limit, warm=False)
        if cached is not None:
            count("FeedCacheHits")
            return cached.refs, cached.has_more
        count("FeedCacheMisses")
        return self._from_dynamodb(user_id, after, limit, warm=True)

    def _from_dynamodb(
        self, user_id: str, after: str | None, limit: int, *, warm: bool
    ) -> tuple[list[FeedRef], bool]:
        fetch = max(limit + 1, WARM_ITEMS) if warm else limit + 1
        if warm and after is None:
            self._best_effort(lambda: self._cache.begin_warm(user_id))
        entries = self._feed.page(user_id, fetch, after)
        refs = [FeedRef.of(e) for e in entries]
        if warm:
            complete = len(entries) < fetch
            self._best_effort(lambda: self._cache.warm(user_id, after, refs, complete))
        return refs[:limit], len(refs) > limit

    @staticmethod
    def _best_effort(action: Callable[[], object]) -> None:
        try:
            action()
        except CacheError:
            count("CacheErrors")
