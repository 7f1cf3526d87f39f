"""Creating, reading, listing, liking and deleting posts.

Read-your-writes: the post's transaction also writes the author's own feed item (fan-out
writes the same deterministic item again later, harmlessly), so the author's next feed
read shows the post whichever path, cache or DynamoDB, serves it.
"""

from __future__ import annotations

import time

from ripple.cache.errors import CacheError
from ripple.cache.post_cache import PostCache
from ripple.cache.writes import CacheWrites
from ripple.cursor import decode_cursor, encode_cursor
from ripple.domain import Page, Post
from ripple.errors import ForbiddenError, NotFoundError
from ripple.ids import new_ulid
from ripple.observability import count, logger
from ripple.repositories.likes import LikeRepository
from ripple.repositories.posts import PostRepository
from ripple.repositories.users import UserRepository
from ripple.services.blocks import RelationsReader

ADMIN_ROLE = "admin"


class PostService:
    def __init__(
        self,
        posts: PostRepository,
        likes: LikeRepository,
        users: UserRepository,
        post_cache: PostCache,
        cache_writes: CacheWrites,
        relations: RelationsReader,
    ) -> None:
        self._relations = relations
        self._posts = posts
        self._likes = likes
        self._users = users
        self._post_cache = post_cache
        self._cache_writes = cache_writes

    def create(self, author_id: str, text: str) -> Post:
        """Post ``text`` as ``author_id``: one DynamoDB transaction (post, counter and the
        author's own feed item), then one pipelined Redis round trip (post body, own feed)."""
        now_ms = int(time.time() * 1000)
        post = Post(post_id=new_ulid(now_ms), author_id=author_id, text=text, created_at=now_ms)
        self._posts.create(post)  # the one write that must succeed
        try:
            self._cache_writes.own_post(post)
        except CacheError as exc:  # the streams will repair the caches
            logger.warning("cache update after post failed", extra={"error": str(exc)})
            count("CacheErrors")
        count("PostsCreated")
        return post

    def get(self, post_id: str, reader_id: str | None = None) -> Post:
        """The post; NotFoundError if there is none, or if the reader and its author are
        blocked (either way: to each of them the other's posts do not exist)."""
        post = self._cached(post_id) or self._load(post_id)
        if reader_id not in (None, post.author_id) and self._blocked(reader_id, post.author_id):
            raise NotFoundError(f"post {post_id!r} not found")
        if reader_id is not None:
            post = post.for_reader(post_id in self._likes.liked(reader_id, [post_id]))
        return post

    def by_author(self, author_id: str, limit: int, cursor: str | None, reader_id: str | None) -> Page[Post]:
        """The author's posts, newest first (strongly consistent: your own show at once).
        NotFoundError for an unknown author; an empty last page if the reader and the author
        are blocked, either way (the profile stays visible; the posts do not)."""
        if not self._users.exists(author_id):
            raise NotFoundError(f"user {author_id!r} not found")
        before = decode_cursor(cursor)  # a bad cursor is a 400 whoever asks
        if reader_id not in (None, author_id) and self._blocked(reader_id, author_id):
            return Page(items=[], next_cursor=None)
        posts = self._posts.recent_by_author(author_id, limit + 1, before=before)
        page = posts[:limit]
        if reader_id is not None:
            liked = self._likes.liked(reader_id, [p.post_id for p in page])
            page = [p.for_reader(p.post_id in liked) for p in page]
        return Page(items=page, next_cursor=encode_cursor(page[-1].post_id) if len(posts) > limit else None)

    def like(self, user_id: str, post_id: str) -> Post:
        """Idempotent. NotFoundError if the post is gone; ForbiddenError (``blocked``) if the
        liker and the author are blocked, either way."""
        post = self._load(post_id)
        if self._likes.like(user_id, post.author_id, post_id):
            count("LikesCreated")
        self._record_like(user_id, post_id, liked=True)
        return self._after_like_change(post_id)

    def unlike(self, user_id: str, post_id: str) -> Post:
        """Idempotent. NotFoundError if the post is gone, or if the reader and its author are
        blocked either way: a like from before the block is still removed (it is the
        caller's), but the post is not shown to them, as ``get`` does not."""
        post = self._load(post_id)
        if self._likes.unlike(user_id, post.author_id, post_id):
            count("LikesRemoved")
        self._record_like(user_id, post_id, liked=False)
        if self._blocked(user_id, post.author_id):
            self._evict(post_id)
            raise NotFoundError(f"post {post_id!r} not found")
        return self._after_like_change(post_id)

    def _record_like(self, user_id: str, post_id: str, liked: bool) -> None:
        """Write-through to the reader's liked-posts hash (read-your-writes for liked_by_me);
        also on a repeat, which re-asserts the committed state. The likes stream writes it
        again, so a failure here is repaired within a second."""
        try:
            self._cache_writes.liked(user_id, post_id, liked)
        except CacheError:
            count("CacheErrors")

    def delete(self, post_id: str, user_id: str, roles: tuple[str, ...] = ()) -> None:
        """Only the author, or an admin, may delete; fan-out then retracts it from feeds."""
        post = self._load(post_id)
        is_admin = ADMIN_ROLE in roles
        if post.author_id != user_id and not is_admin:
            if self._blocked(user_id, post.author_id):  # 403 would say the post exists
                raise NotFoundError(f"post {post_id!r} not found")
            raise ForbiddenError("you can only delete your own posts")
        if not self._posts.delete(post.author_id, post.post_id):
            raise NotFoundError(f"post {post_id!r} not found")
        logger.info(
            "audit: post deleted",
            extra={"audit": "post_deleted", "post_id": post_id, "by": user_id, "admin_role_used": is_admin},
        )
        self._evict(post_id)
        count("PostsDeleted")

    def _after_like_change(self, post_id: str) -> Post:
        """The post with its new count; the cached copy is evicted (the posts stream
        refreshes it too), so no reader keeps seeing the old count."""
        self._evict(post_id)
        return self._load(post_id)

    def _blocked(self, reader_id: str | None, author_id: str) -> bool:
        """Whether either blocks the other (the reader's relations: Redis, else DynamoDB)."""
        return reader_id is not None and author_id in self._relations.of(reader_id).blocked_parties()

    def _cached(self, post_id: str) -> Post | None:
        try:
            return self._post_cache.get_many([post_id]).get(post_id)
        except CacheError:
            count("CacheErrors")
            return None

    def _load(self, post_id: str) -> Post:
        post = self._posts.get(post_id)
        if post is None:
            raise NotFoundError(f"post {post_id!r} not found")
        try:
            self._post_cache.put_many([post])
        except CacheError:
            count("CacheErrors")
        return post

    def _evict(self, post_id: str) -> None:
        try:
            self._post_cache.delete(post_id)
        except CacheError:  # hydration drops posts that no longer exist; TTL bounds staleness
            count("CacheErrors")
