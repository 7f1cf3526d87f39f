"""Account erasure: what remains of a deleted account, removed a page at a time.

``DELETE /me`` (``AccountService.delete``) deletes the user row - from then on nothing of
theirs can be written: a post, a like and a follow each require the row in their
transaction - and, in the same transaction, enqueues the first erasure job. Each job's
stream record brings one step to the fan-out function (``FanoutConsumer``), which removes
up to ``ERASE_PAGE`` rows and enqueues the next step, so no invocation runs long whatever
the account holds, and each step is retried on its own. The phases, in order:

- ``posts``: their posts. Each REMOVE takes the path of any deleted post: fan-out retracts
  it from every feed and purges its likes and reposts, the cache refresher evicts it.
- ``likes``: their likes (the inverse rows, ``LikeByUserModel``); each post's
  ``like_count`` is corrected.
- ``reposts``: their reposts (``RepostByUserModel``); each post's ``repost_count`` is
  corrected, and each REMOVE retracts the repost from feeds as an undo does.
- ``following`` / ``followers``: their follows, both ways; the other side's counter is
  corrected, and each REMOVE retracts feed items as an unfollow does.
- ``blocks``: their blocks and mutes, made by them or naming them (both rows of each).
- ``feed``: their home feed items.
- ``notifications``: their notifications (their part in others' groups leaves with their
  likes, reposts and follows: each REMOVE takes an actor out of its group).
- ``tokens``: their refresh tokens (a refresh already fails: it needs the account).

Every step is idempotent (deleting what is gone changes nothing), so a redelivered record
or a replayed batch is harmless. The cache refresher forgets the account in Redis from the
users stream's REMOVE (``ripple.services.cache_refresh``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ripple.observability import count, logger
from ripple.repositories.batch import concurrently
from ripple.repositories.blocks import BlockRepository
from ripple.repositories.fanout_jobs import ERASE, FanoutJob, FanoutJobRepository
from ripple.repositories.feed import FeedRepository
from ripple.repositories.follows import FollowRepository
from ripple.repositories.likes import LikeRepository
from ripple.repositories.notifications import NotificationRepository
from ripple.repositories.posts import PostRepository
from ripple.repositories.refresh_tokens import RefreshTokenRepository
from ripple.repositories.reposts import RepostRepository

PHASES = ("posts", "likes", "reposts", "following", "followers", "blocks", "feed", "notifications", "tokens")
# Rows per step: a page of posts is four BatchWriteItem calls; a page of likes or follows is
# as many small transactions, sent at once on the container's pool. Well inside an invocation.
ERASE_PAGE = 100


def erasure_of(user_id: str, deleted_at_ms: int) -> FanoutJob:
    """The first step of erasing ``user_id``, deleted at ``deleted_at_ms`` (epoch ms)."""
    return FanoutJob(ERASE, user_id, PHASES[0], deleted_at_ms, after="")


class AccountErasure:
    def __init__(
        self,
        posts: PostRepository,
        likes: LikeRepository,
        follows: FollowRepository,
        feed: FeedRepository,
        refresh_tokens: RefreshTokenRepository,
        blocks: BlockRepository,
        notifications: NotificationRepository,
        jobs: FanoutJobRepository,
        reposts: RepostRepository,
    ) -> None:
        self._reposts = reposts
        self._blocks = blocks
        self._notifications = notifications
        self._posts = posts
        self._likes = likes
        self._follows = follows
        self._feed = feed
        self._refresh_tokens = refresh_tokens
        self._jobs = jobs
        self._phases: dict[str, Callable[[str, str | None], list[str]]] = {
            "posts": self._erase_posts,
            "likes": self._erase_likes,
            "reposts": self._erase_reposts,
            "following": self._erase_following,
            "followers": self._erase_followers,
            "blocks": self._erase_blocks,
            "notifications": self._erase_notifications,
            "feed": self._erase_feed,
            "tokens": self._erase_tokens,
        }

    def step(self, job: FanoutJob) -> int:
        """Run one step of ``job`` (an ERASE job: ``author_id`` the account, ``post_id`` the
        phase, ``after`` the last row handled) and enqueue the next. Returns the rows removed.
        Raises ValueError for an unknown phase (a job written by a newer version)."""
        if job.post_id not in self._phases:
            raise ValueError(f"unknown erasure phase {job.post_id!r}")
        handled = self._phases[job.post_id](job.author_id, job.after or None)
        count("AccountRowsErased", len(handled))
        if len(handled) == ERASE_PAGE:  # there may be more in this phase
            self._jobs.enqueue(replace(job, after=handled[-1]))
            return len(handled)
        following = PHASES.index(job.post_id) + 1
        if following < len(PHASES):
            self._jobs.enqueue(replace(job, post_id=PHASES[following], after=""))
        else:
            logger.info("audit: account erased", extra={"audit": "account_erased", "user_id": job.author_id})
            count("AccountsErased")
        return len(handled)

    # Each phase removes one page strictly after ``after`` and returns the keys it handled.
    def _erase_posts(self, user_id: str, after: str | None) -> list[str]:
        post_ids = [p.post_id for p in self._posts.recent_by_author(user_id, ERASE_PAGE, before=after)]
        self._posts.erase(user_id, post_ids)
        return post_ids

    def _erase_likes(self, user_id: str, after: str | None) -> list[str]:
        page = self._likes.liked_by(user_id, ERASE_PAGE, after)
        concurrently(lambda like: self._likes.erase(user_id, like[0], like[1]), page)
        return [post_id for post_id, _ in page]

    def _erase_reposts(self, user_id: str, after: str | None) -> list[str]:
        page = self._reposts.by_user(user_id, ERASE_PAGE, after)
        concurrently(lambda repost: self._reposts.erase(user_id, repost.post_id, repost.author_id), page)
        return [repost.post_id for repost in page]

    def _erase_following(self, user_id: str, after: str | None) -> list[str]:
        followees = [f for f, _ in self._follows.following_since(user_id, ERASE_PAGE, after)]
        concurrently(lambda followee: self._follows.sever(user_id, followee, user_id), followees)
        return followees

    def _erase_followers(self, user_id: str, after: str | None) -> list[str]:
        followers = self._follows.followers(user_id, ERASE_PAGE, after)
        concurrently(lambda follower: self._follows.sever(follower, user_id, user_id), followers)
        return followers

    def _erase_blocks(self, user_id: str, after: str | None) -> list[str]:
        removed = self._blocks.erase_user(user_id)  # one step: a user's blocks are few
        count("AccountRowsErased", removed)
        return []

    def _erase_notifications(self, user_id: str, after: str | None) -> list[str]:
        count("AccountRowsErased", self._notifications.erase_user(user_id))  # pages within
        return []

    def _erase_feed(self, user_id: str, after: str | None) -> list[str]:
        entries = self._feed.page(user_id, ERASE_PAGE, after)
        self._feed.delete_many((e.user_id, e.post_id) for e in entries)
        return [e.placed for e in entries]  # the page's cursor is a placement

    def _erase_tokens(self, user_id: str, after: str | None) -> list[str]:
        return self._refresh_tokens.revoke(user_id, ERASE_PAGE)
