"""Fan-out on write: turns changes to posts and follows into feed items in DynamoDB.

Every write uses the deterministic key (reader, post_id), so any record delivered twice,
or a whole batch replayed, leaves exactly the same feed items.

Scaling with audience size: one invocation writes at most one page of followers
(``fanout_page_size``, 25 per BatchWriteItem). A larger audience continues through a
fan-out job item per further page, whose stream record brings the next page here, so the
work for an author with F followers is F / page_size short steps, each retried on its own.
Authors past ``high_follower_threshold`` followers are not fanned out at all: readers
pull their recent posts at read time (see ``FeedReader``), as large feeds do.
"""

from __future__ import annotations

import time
from dataclasses import replace

from ripple.domain import FeedEntry, Post
from ripple.ids import ulid_floor
from ripple.observability import count
from ripple.repositories.fanout_jobs import PURGE_LIKES, PUSH, RETRACT, FanoutJob, FanoutJobRepository
from ripple.repositories.feed import FeedRepository
from ripple.repositories.follows import FollowRepository
from ripple.repositories.likes import LikeRepository
from ripple.repositories.posts import PostRepository
from ripple.repositories.users import UserRepository
from ripple.streams import INSERT, REMOVE, StreamChange


class FanoutService:
    def __init__(
        self,
        posts: PostRepository,
        follows: FollowRepository,
        users: UserRepository,
        feed: FeedRepository,
        jobs: FanoutJobRepository,
        likes: LikeRepository,
        *,
        backfill_posts: int,
        page_size: int,
        high_follower_threshold: int,
        pull_grace_ms: int,
    ) -> None:
        self._posts = posts
        self._follows = follows
        self._users = users
        self._feed = feed
        self._jobs = jobs
        self._likes = likes
        self._backfill_posts = backfill_posts
        self._page_size = page_size
        self._threshold = high_follower_threshold
        self._pull_grace_ms = pull_grace_ms

    # ------------------------------------------------------------------ posts
    def post_created(self, post: Post) -> int:
        """The author's own item, then the first page of followers, unless the author is pulled.

        An author marked high-follower less than ``pull_grace_ms`` before the post is still
        pushed: readers learn of the mark only when their container reloads the registry of
        pulled authors (an index, ``PulledAuthors``), and until then they would neither get
        the post pushed nor pull it. Pushed and pulled copies of one post merge into one."""
        written = self._feed.put_many(
            [self._entry(post.author_id, post.post_id, post.author_id, post.created_at)]
        )
        since = self._users.high_follower_since(post.author_id)
        if since is not None and post.created_at - since >= self._pull_grace_ms:
            count("FanoutSkippedHighFollower")
            return written
        return written + self._push_page(
            FanoutJob(PUSH, post.author_id, post.post_id, post.created_at, after="")
        )

    def post_deleted(self, author_id: str, post_id: str) -> int:
        """Retract the post from the author's feed and, page by page, every follower's; and
        delete its likes, page by page (a like can only be made while the post exists: the
        like's transaction requires it, so every like is committed before this runs)."""
        removed = self._feed.delete_many([(author_id, post_id)])
        self._purge_likes_page(FanoutJob(PURGE_LIKES, author_id, post_id, 0, after=""))
        return removed + self._retract_page(FanoutJob(RETRACT, author_id, post_id, 0, after=""))

    def run_job(self, job: FanoutJob) -> int:
        """One continuation page. A push whose post is gone is dropped, not retried."""
        if job.kind == RETRACT:
            return self._retract_page(job)
        if job.kind == PURGE_LIKES:
            return self._purge_likes_page(job)
        if self._posts.get_by_key(job.author_id, job.post_id) is None:
            count("FanoutJobsDropped")
            return 0
        return self._push_page(job)

    def _push_page(self, job: FanoutJob) -> int:
        page = self._follows.followers_since(job.author_id, self._page_size, job.after or None)
        # Followers who followed after the post was made get it from their backfill instead,
        # so a feed holds exactly: posts since the follow + the backfill from before it.
        readers = [f for f, followed_at in page if followed_at <= job.created_at]
        written = self._feed.put_many(
            self._entry(f, job.post_id, job.author_id, job.created_at) for f in readers
        )
        if readers and self._posts.get_by_key(job.author_id, job.post_id) is None:
            # Deleted while we wrote: the retraction may already have passed these readers,
            # so undo our own writes (the retraction handles the rest).
            self._feed.delete_many((f, job.post_id) for f in readers)
            count("FanoutRacesUndone")
            return 0
        self._continue(job, [f for f, _ in page])
        count("FanoutItemsWritten", written)
        return written

    def _retract_page(self, job: FanoutJob) -> int:
        followers = self._follows.followers(job.author_id, self._page_size, job.after or None)
        removed = self._feed.delete_many((f, job.post_id) for f in followers)
        self._continue(job, followers)
        count("FanoutItemsRetracted", removed)
        return removed

    def _purge_likes_page(self, job: FanoutJob) -> int:
        likers = self._likes.likers(job.post_id, self._page_size, job.after or None)
        removed = self._likes.delete_likes(job.post_id, likers)
        self._continue(job, likers)
        count("LikesPurged", removed)
        return removed

    def _continue(self, job: FanoutJob, followers: list[str]) -> None:
        if len(followers) == self._page_size:  # there may be more: hand on the next page
            self._jobs.enqueue(replace(job, after=followers[-1]))
            count("FanoutJobsCreated")

    # ------------------------------------------------------------------ follows
    def follow_added(self, follower_id: str, followee_id: str, followed_at: int) -> int:
        """Backfill the followee's most recent posts from before the follow (later ones
        arrive by fan-out); mark the followee high-follower once past the threshold."""
        if self._users.follower_count(followee_id) >= self._threshold and not self._users.is_high_follower(
            followee_id
        ):
            self._users.mark_high_follower(followee_id, int(time.time() * 1000))
            count("HighFollowerAccountsMarked")
        if self._users.is_high_follower(followee_id):
            return 0  # pulled at read time: nothing to copy
        recent = self._posts.recent_by_author(
            followee_id, self._backfill_posts, before=ulid_floor(followed_at)
        )
        written = self._feed.put_many(
            self._entry(follower_id, p.post_id, p.author_id, p.created_at) for p in recent
        )
        count("BackfillItemsWritten", written)
        return written

    def follow_removed(self, follower_id: str, followee_id: str) -> int:
        """Remove the followee's posts from the follower's feed.

        If the follower has followed again since (the stream delivers this old unfollow
        late), keep what the current follow owns: posts since it, and its backfill."""
        entries = self._feed.entries_by_author(follower_id, followee_id)
        refollowed_at = self._follows.followed_at(follower_id, followee_id)
        if refollowed_at is not None:
            floor = ulid_floor(refollowed_at)
            backfill = {
                p.post_id
                for p in self._posts.recent_by_author(followee_id, self._backfill_posts, before=floor)
            }
            entries = [e for e in entries if e.post_id < floor and e.post_id not in backfill]
        removed = self._feed.delete_many((e.user_id, e.post_id) for e in entries)
        count("FanoutItemsRetracted", removed)
        return removed

    @staticmethod
    def _entry(reader_id: str, post_id: str, author_id: str, created_at: int) -> FeedEntry:
        return FeedEntry(user_id=reader_id, post_id=post_id, author_id=author_id, created_at=created_at)


class FanoutConsumer:
    """Routes one stream change (posts, follows or fan-out jobs table) to its use case."""

    def __init__(self, fanout: FanoutService, posts_table: str, follows_table: str, jobs_table: str) -> None:
        self._fanout = fanout
        self._posts_table = posts_table
        self._follows_table = follows_table
        self._jobs_table = jobs_table

    def handle(self, change: StreamChange) -> None:
        row = change.image
        if change.table == self._posts_table:
            if change.event == INSERT:
                self._fanout.post_created(
                    Post(
                        post_id=str(row["post_id"]),
                        author_id=str(row["author_id"]),
                        text=str(row.get("text", "")),
                        created_at=int(row["created_at"]),
                    )
                )
            elif change.event == REMOVE:
                self._fanout.post_deleted(str(row["author_id"]), str(row["post_id"]))
            # MODIFY (a like count) changes no feed.
        elif change.table == self._follows_table:
            follower, followee = str(row["follower_id"]), str(row["followee_id"])
            if change.event == INSERT:
                self._fanout.follow_added(follower, followee, int(row["created_at"]))
            elif change.event == REMOVE:
                self._fanout.follow_removed(follower, followee)
        elif change.table == self._jobs_table:
            if change.event == INSERT:  # REMOVE is the TTL sweeping a finished job
                self._fanout.run_job(
                    FanoutJob(
                        kind=str(row["kind"]),
                        author_id=str(row["author_id"]),
                        post_id=str(row["post_id"]),
                        created_at=int(row["created_at"]),
                        after=str(row["after"]),
                    )
                )
        else:
            raise ValueError(f"fan-out received a record from an unexpected table: {change.table}")
