"""Reposting (README, "Reposts"): ``POST /posts/{id}/repost`` and its undo.

The repost's transaction (``ripple.repositories.reposts``) is the one write that must
succeed; the reposter's own feed item is then placed at once (read-your-writes, in DynamoDB
and, best effort, in the cached feed; an undo that committed meanwhile is retracted again),
and the reposts stream brings the post to the reposter's followers
(``ripple.services.placement``). An undo is retracted by the same stream, the reposter's own
feed included, within about a second.
"""

from __future__ import annotations

from ripple.cache.errors import CacheError
from ripple.cache.feed_cache import FeedCache, FeedRef
from ripple.cache.post_cache import PostCache
from ripple.domain import FeedEntry, Post
from ripple.errors import NotFoundError, ValidationError
from ripple.observability import count
from ripple.repositories.fanout_jobs import FanoutJobRepository
from ripple.repositories.feed import FeedRepository
from ripple.repositories.likes import LikeRepository
from ripple.repositories.posts import PostRepository
from ripple.repositories.reposts import RepostRepository
from ripple.services.blocks import RelationsReader
from ripple.services.placement import RepostPlacement


class RepostService:
    def __init__(
        self,
        posts: PostRepository,
        reposts: RepostRepository,
        feed: FeedRepository,
        post_cache: PostCache,
        feed_cache: FeedCache,
        jobs: FanoutJobRepository,
        likes: LikeRepository,
        relations: RelationsReader,
    ) -> None:
        self._likes = likes
        self._relations = relations
        self._jobs = jobs
        self._posts = posts
        self._reposts = reposts
        self._feed = feed
        self._post_cache = post_cache
        self._feed_cache = feed_cache

    def repost(self, user_id: str, post_id: str) -> Post:
        """Repost, idempotently; the post with its new ``repost_count``. NotFoundError if the
        post is gone; ValidationError (``cannot_repost_own_post``) for your own post;
        ForbiddenError (``blocked``) if you and its author are blocked, either way."""
        post = self._load(post_id)
        if post.author_id == user_id:
            raise ValidationError("you cannot repost your own post", code="cannot_repost_own_post")
        made = self._reposts.repost(user_id, post.author_id, post_id)
        if made is not None:
            count("RepostsCreated")
            own = FeedEntry(
                user_id=user_id,
                post_id=post_id,
                author_id=post.author_id,
                created_at=post.created_at,
                placed=made.repost_id,
                reposted_by=user_id,
            )
            if self._feed.place(own):
                try:
                    self._feed_cache.add(user_id, FeedRef.of(own))
                except CacheError:  # the feed stream adds it within a second
                    count("CacheErrors")
            again = self._reposts.get(post_id, user_id)
            if again is None or again.repost_id != made.repost_id:
                # Undone while this wrote: the undo's retraction may have passed the item
                # already, so it runs again (the reposter's own item is on its first page).
                self._jobs.enqueue(RepostPlacement.retraction_of(made))
        return self._after_change(user_id, post_id)

    def unrepost(self, user_id: str, post_id: str) -> Post:
        """Undo a repost, idempotently; the post with its new ``repost_count``. NotFoundError
        if the post is gone (its reposts went with it), or if you and its author are blocked,
        either way: a repost from before the block is still removed (it is yours), but the post
        is not shown to you, as ``GET /posts/{id}`` does not (``PostService.unlike`` alike)."""
        post = self._load(post_id)
        if self._reposts.unrepost(user_id, post.author_id, post_id):
            count("RepostsRemoved")
        if post.author_id in self._relations.of(user_id).blocked_parties():
            raise NotFoundError(f"post {post_id!r} not found")
        return self._after_change(user_id, post_id)

    def _load(self, post_id: str) -> Post:
        post = self._posts.get(post_id)
        if post is None:
            raise NotFoundError(f"post {post_id!r} not found")
        return post

    def _after_change(self, user_id: str, post_id: str) -> Post:
        """The post as it is now, with ``liked_by_me`` for the caller; the cached body is
        evicted (the posts stream refreshes it)."""
        try:
            self._post_cache.delete(post_id)
        except CacheError:
            count("CacheErrors")
        return self._load(post_id).for_reader(post_id in self._likes.liked(user_id, [post_id]))
