"""What a reader sees of a page of posts - bodies and their own likes - in one round trip."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from ripple.cache.errors import translated
from ripple.cache.liked_posts import LikedPosts, LikedView
from ripple.cache.pipelines import ScriptPipeline
from ripple.cache.post_cache import PostCache
from ripple.domain import Post


class PostViews:
    """Raises :class:`ripple.cache.errors.CacheError` when Redis fails."""

    def __init__(self, client: redis.Redis, post_cache: PostCache, liked: LikedPosts) -> None:
        self._redis = client
        self._post_cache = post_cache
        self._liked = liked

    @translated
    def read(
        self, post_ids: Sequence[str], reader_id: str | None
    ) -> tuple[dict[str, Post], LikedView | None]:
        """The cached bodies among ``post_ids``, and (with a reader) what their liked-posts
        hash knows of them (``LikedView``; None without a reader)."""
        if not post_ids and reader_id is None:
            return {}, None
        # With a reader, even an empty page runs the liked-posts script: it creates the
        # reader's hash, whose watermark then predates every post they will be shown.
        pipe = ScriptPipeline(self._redis)
        if post_ids:
            self._post_cache.queue_get(pipe, post_ids)
        if reader_id is not None:
            self._liked.queue_view(pipe, reader_id, post_ids)
        results = pipe.execute()
        found = self._post_cache.parse_many(post_ids, results[0]) if post_ids else {}
        view = LikedPosts.view_of(post_ids, results[-1]) if reader_id is not None else None
        return found, view
