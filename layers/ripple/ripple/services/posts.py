"""Creating, reading and deleting posts.

Read-your-writes: besides the post itself, creation writes the author's own feed item
synchronously (fan-out writes the same deterministic item again later, harmlessly), so
the author's next feed read shows the post whichever path, cache or DynamoDB, serves it.
"""

from __future__ import annotations

import time

from ripple.cache.errors import CacheError
from ripple.cache.feed_cache import FeedCache, FeedRef
from ripple.cache.post_cache import PostCache
from ripple.domain import FeedEntry, Post
from ripple.errors import ForbiddenError, NotFoundError
from ripple.ids import new_ulid
from ripple.observability import count, logger
from ripple.repositories.feed import FeedRepository
from ripple.repositories.posts import PostRepository

ADMIN_ROLE = "admin"


class PostService:
    def __init__(
        self,
        posts: PostRepository,
        feed: FeedRepository,
        feed_cache: FeedCache,
        post_cache: PostCache,
    ) -> None:
        self._posts = posts
        self._feed = feed
        self._feed_cache = feed_cache
        self._post_cache = post_cache

    def create(self, author_id: str, text: str) -> Post:
        now_ms = int(time.time() * 1000)
        post = Post(post_id=new_ulid(now_ms), author_id=author_id, text=text, created_at=now_ms)
        self._posts.create(post)
        own = FeedEntry(user_id=author_id, post_id=post.post_id, author_id=author_id, created_at=now_ms)
        self._feed.put_many([own])
        try:
            self._post_cache.put_many([post])
            self._feed_cache.add(author_id, FeedRef.of(own))
        except CacheError as exc:  # the feed stream will repair the cache
            logger.warning("cache update after post failed", extra={"error": str(exc)})
            count("CacheErrors")
        count("PostsCreated")
        return post

    def get(self, post_id: str) -> Post:
        try:
            cached = self._post_cache.get_many([post_id]).get(post_id)
        except CacheError:
            count("CacheErrors")
            cached = None
        if cached is not None:
            return cached
        post = self._posts.get(post_id)
        if post is None:
            raise NotFoundError(f"post {post_id!r} not found")
        try:
            self._post_cache.put_many([post])
        except CacheError:
            count("CacheErrors")
        return post

    def delete(self, post_id: str, user_id: str, roles: tuple[str, ...] = ()) -> None:
        """Only the author, or an admin, may delete; fan-out then retracts it from feeds."""
        post = self._posts.get(post_id)
        if post is None:
            raise NotFoundError(f"post {post_id!r} not found")
        is_admin = ADMIN_ROLE in roles
        if post.author_id != user_id and not is_admin:
            raise ForbiddenError("you can only delete your own posts")
        self._posts.delete(post.author_id, post.post_id)
        logger.info(
            "audit: post deleted",
            extra={"audit": "post_deleted", "post_id": post_id, "by": user_id, "admin": is_admin},
        )
        try:
            self._post_cache.delete(post_id)
        except CacheError:  # hydration also drops posts that no longer exist
            count("CacheErrors")
        count("PostsDeleted")
