"""Writes that touch several caches, sent to Redis in one pipelined round trip."""

from __future__ import annotations

import redis

from ripple.cache.errors import translated
from ripple.cache.feed_cache import FeedCache, FeedRef
from ripple.cache.liked_posts import LikedPosts
from ripple.cache.pipelines import ScriptPipeline
from ripple.cache.post_cache import PostCache
from ripple.domain import Post


class CacheWrites:
    """Raises :class:`ripple.cache.errors.CacheError` when Redis fails."""

    def __init__(
        self, client: redis.Redis, feed_cache: FeedCache, post_cache: PostCache, liked_posts: LikedPosts
    ) -> None:
        self._redis = client
        self._feed_cache = feed_cache
        self._post_cache = post_cache
        self._liked_posts = liked_posts

    @translated
    def own_post(self, post: Post) -> None:
        """A new post's body, and its item in the author's own cached feed (if that feed is
        cached): one round trip. The streams write both again, so a failure here only delays."""
        pipe = ScriptPipeline(self._redis)
        self._post_cache.queue_put(pipe, post)
        self._feed_cache.queue_add(pipe, post.author_id, FeedRef(post.post_id, post.author_id))
        pipe.execute()

    def liked(self, user_id: str, post_id: str, liked: bool) -> None:
        """A committed like or unlike, in the reader's liked-posts hash (if it exists)."""
        self._liked_posts.record(user_id, post_id, liked)
