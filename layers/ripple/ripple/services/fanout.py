"""Fan-out on write: turns changes to posts and follows into feed items in DynamoDB.

Every write uses the deterministic key (reader, post_id), so any record delivered twice,
or a whole batch replayed, leaves exactly the same feed items. Followers are read one
index page at a time and written 25 per BatchWriteItem, so memory stays bounded.
"""

from __future__ import annotations

import time

from ripple.domain import FeedEntry, Post
from ripple.observability import count, logger
from ripple.repositories.feed import FeedRepository
from ripple.repositories.follows import FollowRepository
from ripple.repositories.posts import PostRepository
from ripple.streams import INSERT, REMOVE, StreamChange


class FanoutService:
    def __init__(
        self,
        posts: PostRepository,
        follows: FollowRepository,
        feed: FeedRepository,
        backfill_posts: int,
    ) -> None:
        self._posts = posts
        self._follows = follows
        self._feed = feed
        self._backfill_posts = backfill_posts

    def post_created(self, post: Post) -> int:
        """Write the post into the author's and every follower's feed; returns items written."""
        written = self._feed.put_many([self._entry(post.author_id, post)])
        for followers in self._follows.follower_pages(post.author_id):
            written += self._feed.put_many(self._entry(f, post) for f in followers)
        count("FanoutItemsWritten", written)
        return written

    def post_deleted(self, author_id: str, post_id: str) -> int:
        """Retract the post from the author's and every follower's feed."""
        removed = self._feed.delete_many([(author_id, post_id)])
        for followers in self._follows.follower_pages(author_id):
            removed += self._feed.delete_many((f, post_id) for f in followers)
        count("FanoutItemsRetracted", removed)
        return removed

    def follow_added(self, follower_id: str, followee_id: str) -> int:
        """Backfill the follower's feed with the followee's most recent posts."""
        recent = self._posts.recent_by_author(followee_id, self._backfill_posts)
        written = self._feed.put_many(self._entry(follower_id, p) for p in recent)
        count("BackfillItemsWritten", written)
        return written

    def follow_removed(self, follower_id: str, followee_id: str) -> int:
        """Remove the followee's posts from the follower's feed."""
        entries = self._feed.entries_by_author(follower_id, followee_id)
        removed = self._feed.delete_many((e.user_id, e.post_id) for e in entries)
        count("FanoutItemsRetracted", removed)
        return removed

    @staticmethod
    def _entry(reader_id: str, post: Post) -> FeedEntry:
        return FeedEntry(
            user_id=reader_id, post_id=post.post_id, author_id=post.author_id, created_at=post.created_at
        )


class FanoutConsumer:
    """Routes one stream change (posts or follows table) to the fan-out use case."""

    def __init__(self, fanout: FanoutService, posts_table: str, follows_table: str) -> None:
        self._fanout = fanout
        self._posts_table = posts_table
        self._follows_table = follows_table

    def handle(self, change: StreamChange) -> None:
        row = change.image
        if change.table == self._posts_table:
            if change.event == INSERT:
                post = Post(
                    post_id=str(row["post_id"]),
                    author_id=str(row["author_id"]),
                    text=str(row.get("text", "")),
                    created_at=int(row["created_at"]),
                )
                self._fanout.post_created(post)
                lag_ms = time.time() * 1000 - post.created_at
                logger.debug("fanned out post", extra={"post_id": post.post_id, "lag_ms": lag_ms})
            elif change.event == REMOVE:
                self._fanout.post_deleted(str(row["author_id"]), str(row["post_id"]))
        elif change.table == self._follows_table:
            follower, followee = str(row["follower_id"]), str(row["followee_id"])
            if change.event == INSERT:
                self._fanout.follow_added(follower, followee)
            elif change.event == REMOVE:
                self._fanout.follow_removed(follower, followee)
        else:
            raise ValueError(f"fan-out received a record from an unexpected table: {change.table}")
