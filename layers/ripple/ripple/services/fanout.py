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
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from ripple.domain import MUTE, FeedEntry, Post
from ripple.ids import ulid_floor
from ripple.observability import count
from ripple.repositories.batch import concurrently
from ripple.repositories.blocks import BlockRepository
from ripple.repositories.fanout_jobs import (
    ERASE,
    HIDE,
    PURGE_LIKES,
    PURGE_REPOSTS,
    PUSH,
    REBUILD,
    REPOST,
    RETRACT,
    UNHIDE,
    UNMUTE,
    UNREPOST,
    FanoutJob,
    FanoutJobRepository,
)
from ripple.repositories.fanout_jobs import (
    MUTE as MUTE_JOB,
)
from ripple.repositories.feed import FeedRepository
from ripple.repositories.follows import FollowRepository
from ripple.repositories.likes import LikeRepository
from ripple.repositories.posts import PostRepository
from ripple.repositories.reposts import Repost, RepostRepository
from ripple.repositories.users import AuthorState, UserRepository
from ripple.services.erasure import AccountErasure
from ripple.services.notifications import NotificationProducer
from ripple.services.placement import RepostPlacement
from ripple.stream_processing import PartialCommit
from ripple.streams import INSERT, REMOVE, StreamChange


class FanoutService:
    # Followees per rebuild step: one Query each (sent at once), so a step stays well inside
    # a Lambda invocation however many accounts the reader follows.
    REBUILD_PAGE = 100

    def __init__(
        self,
        posts: PostRepository,
        follows: FollowRepository,
        users: UserRepository,
        feed: FeedRepository,
        jobs: FanoutJobRepository,
        likes: LikeRepository,
        blocks: BlockRepository,
        reposts: RepostRepository,
        *,
        backfill_posts: int,
        page_size: int,
        high_follower_threshold: int,
        pull_grace_ms: int,
        inactive_after_ms: int = 0,
    ) -> None:
        self._posts = posts
        self._follows = follows
        self._users = users
        self._feed = feed
        self._jobs = jobs
        self._likes = likes
        self._blocks = blocks
        self._backfill_posts = backfill_posts
        self._page_size = page_size
        self._threshold = high_follower_threshold
        self._pull_grace_ms = pull_grace_ms
        self._inactive_after_ms = inactive_after_ms  # 0: push to every follower
        self.placement = RepostPlacement(
            feed,
            reposts,
            follows,
            posts,
            users,
            blocks,
            jobs,
            page_size=page_size,
            backfill_posts=backfill_posts,
            away=self._away,
        )

    # ------------------------------------------------------------------ posts
    def post_created(self, post: Post) -> int:
        """Fan out one new post (:meth:`push_many` of one)."""
        return self.push_many([self.push_of(post)])

    @staticmethod
    def push_of(post: Post) -> FanoutJob:
        """The push of a new post to its author's first page of followers."""
        return FanoutJob(PUSH, post.author_id, post.post_id, post.created_at, after="")

    def push_many(self, pushes: Sequence[FanoutJob]) -> int:
        """Push posts to a page of their authors' followers each, a stream batch at once.

        ``pushes`` are new posts (``after == ""``: the author's own item too, then the first
        page) and continuation jobs (the page after ``after``). Whatever the batch holds, it
        costs at most nine round trips, not nine per post: the authors' accounts (one
        BatchGetItem: which are pulled, and which may be hidden from someone), their follower
        pages (one Query per distinct author and page, sent at once), which followers are
        away, who blocks or mutes those authors who may be hidden (two Queries per such
        author, at once; again after the write, with the accounts that could not be hidden
        before, to undo a block that committed meanwhile), the feed items (BatchWriteItem
        calls sent at once), a check that the posts still exist, and the jobs for the pages
        after full ones (BatchWriteItem); six when no author may be hidden and no page is
        full. Returns the number of feed items written.

        A new post by an author marked high-follower at least ``pull_grace_ms`` before it is
        not pushed: readers learn of the mark only when their container reloads the registry
        of pulled authors (an index, ``PulledAuthors``), and until then they would neither
        get the post pushed nor pull it. Pushed and pulled copies of one post merge into one.
        """
        if not pushes:
            return 0
        new = [p for p in pushes if not p.after]
        states = self._users.fanout_states({p.author_id for p in pushes})
        pulled = {
            p.post_id
            for p in new
            if (since := _marked_since(states, p.author_id)) is not None
            and p.created_at - since >= self._pull_grace_ms
        }
        if pulled:
            count("FanoutSkippedHighFollower", len(pulled))
        to_push = [p for p in pushes if p.post_id not in pulled]
        wanted = [(p.author_id, p.after or None) for p in to_push]
        pages = self._follows.followers_pages(wanted, self._page_size)

        def page_of(push: FanoutJob) -> list[tuple[str, int]]:
            return pages[(push.author_id, push.after or None)]

        away = self._away({f for page in pages.values() for f, _ in page})
        audience_authors = {p.author_id for p in to_push if page_of(p)}
        hidden = self._hidden_readers(audience_authors, states)
        entries = [self._entry(p.author_id, p.post_id, p.author_id, p.created_at) for p in new]
        for push in to_push:
            # Followers who followed after the post was made get it from their backfill
            # instead, so a feed holds exactly: posts since the follow + the backfill before it.
            entries += [
                self._entry(f, push.post_id, push.author_id, push.created_at)
                for f, followed_at in page_of(push)
                if followed_at <= push.created_at and f not in away and f not in hidden[push.author_id]
            ]
        written = self._feed.put_many(entries)
        written -= self._undo_newly_hidden(entries[len(new) :], states)
        reposts = self._posts.repost_counts({(p.author_id, p.post_id) for p in pushes})
        gone = {p.post_id for p in pushes if p.post_id not in reposts}
        if gone:
            # Deleted while we wrote: the retraction may already have passed these readers,
            # so undo our own writes (the retraction handles the rest).
            self._feed.delete_many((e.user_id, e.post_id) for e in entries if e.post_id in gone)
            count("FanoutRacesUndone", len(gone))
            written -= sum(1 for e in entries if e.post_id in gone)
        # A post reposted already: our plain puts may have moved a repost's placement back.
        self.placement.settle([e for e in entries if reposts.get(e.post_id)])
        further = []  # after a full page there may be more followers: a job of their own each
        for push in to_push:
            following = self._next_page(push, [f for f, _ in page_of(push)])
            if following is not None and push.post_id not in gone:
                further.append(following)
        if further:
            self._jobs.enqueue_many(further)
            count("FanoutJobsCreated", len(further))
        # One value per push (the metric is also a histogram of items per post), counting
        # followers' items only: the author's own was written with the post.
        per_push = Counter(e.post_id for e in entries[len(new) :])
        for push in to_push:
            if push.post_id not in gone:
                count("FanoutItemsWritten", per_push[push.post_id])
        return written

    def _hidden_readers(
        self, authors: set[str], states: Mapping[str, AuthorState]
    ) -> dict[str, frozenset[str]]:
        """Per author, the readers who get none of their posts (blocks and mutes), read only
        for those whose account says a block or mute may hide them (``AuthorState.may_hide``;
        an account missing from ``states`` is read too)."""
        hiding = sorted(a for a in authors if a not in states or states[a].may_hide)
        relations = self._blocks.relations_of(hiding) if hiding else {}
        hidden = {a: relations[a].hidden_readers() if a in relations else frozenset() for a in authors}
        skipped = sum(len(h) for h in hidden.values())
        if skipped:
            count("FanoutSkippedBlocked", skipped)
        return hidden

    def _undo_newly_hidden(
        self, entries: Sequence[FeedEntry], before: Mapping[str, AuthorState] | None = None
    ) -> int:
        """After writing followers' ``entries``: delete those whose reader now blocks or mutes
        the author, or is blocked by them (a block or mute that committed during the write).
        ``before``: the authors' states read before the write; ``may_hide`` never goes back
        to 0, so only the authors it said 0 for are read again. Returns the number deleted."""
        if not entries:
            return 0
        authors = {e.author_id for e in entries}
        known = before or {}
        unmarked = {a for a in authors if a not in known or not known[a].may_hide}
        states = {a: state for a, state in known.items() if a not in unmarked}
        if unmarked:  # read again now; an account gone meanwhile has no state: its relations are read
            states.update(self._users.fanout_states(unmarked))
        hidden = self._hidden_readers(authors, states)
        undo = [(e.user_id, e.post_id) for e in entries if e.user_id in hidden[e.author_id]]
        if undo:
            self._feed.delete_many(undo)
            count("FanoutBlockRacesUndone", len(undo))
        return len(undo)

    def _away(self, readers: set[str]) -> set[str]:
        """The readers not seen for longer than the setting (``ripple.services.activity``):
        no items are written for them; their feed is rebuilt when they return."""
        if not self._inactive_after_ms or not readers:
            return set()
        away = self._users.inactive_among(readers, int(time.time() * 1000) - self._inactive_after_ms)
        if away:
            count("FanoutSkippedInactive", len(away))
        return away

    def post_deleted(self, author_id: str, post_id: str) -> int:
        """Retract the post from the author's feed and, page by page, every follower's; and
        delete its likes and its reposts, page by page (a like or repost can only be made
        while the post exists: its transaction requires it, so every one is committed before
        this runs; each repost's removal retracts it from its reposter's followers' feeds)."""
        removed = self._feed.delete_many([(author_id, post_id)])
        self._purge_likes_page(FanoutJob(PURGE_LIKES, author_id, post_id, 0, after=""))
        self.placement.run(self.placement.purge_of(author_id, post_id))
        return removed + self._retract_page(FanoutJob(RETRACT, author_id, post_id, 0, after=""))

    def run_job(self, job: FanoutJob) -> int:
        """One continuation page. A push whose post is gone writes nothing lasting."""
        if job.kind == RETRACT:
            return self._retract_page(job)
        if job.kind == PURGE_LIKES:
            return self._purge_likes_page(job)
        if job.kind == REBUILD:
            return self._rebuild_page(job)
        if job.kind in (MUTE_JOB, HIDE):
            return self.muted(job.post_id, job.author_id)
        if job.kind in (UNMUTE, UNHIDE):
            return self.unmuted(job.post_id, job.author_id)
        if job.kind in (REPOST, UNREPOST, PURGE_REPOSTS):
            return self.placement.run(job)
        return self.push_many([job])

    # ------------------------------------------------------------------ mutes
    def muted(self, reader_id: str, author_id: str) -> int:
        """A mute's (or a block's) job: the author's items leave the reader's feed, and items
        placed by the author's reposts move to what else brings their post (or leave), if the
        reader still hides the author (an unmute since has its own job). Should an unmute
        commit while this runs, what it removed is put back (:meth:`unmuted`), so the two
        converge in either order. Returns the number of items removed or moved."""
        if not self._hides(reader_id, author_id):
            return 0
        involved = self._feed.entries_involving(reader_id, author_id)
        entries = [e for e in involved if e.author_id == author_id]
        removed = self._feed.delete_many((e.user_id, e.post_id) for e in entries)
        # Items its reposts placed move to what else brings their post (or leave).
        removed += self.placement.settle([e for e in involved if e.author_id != author_id])
        count("MuteItemsRetracted", removed)
        if not self._hides(reader_id, author_id):
            self.unmuted(reader_id, author_id)
        return removed

    def _hides(self, reader_id: str, author_id: str) -> bool:
        return author_id in self._blocks.relations(reader_id).hidden_authors()

    def unmuted(self, reader_id: str, author_id: str) -> int:
        """An unmute's (or an unblock's) job: the author's items come back to the reader's
        feed as the feed's definition has them (posts since the follow, plus the backfill
        from before it, if the reader follows the author), and so do the placements of the
        reposts the author made and of the author's posts reposted by the reader's followees
        (``RepostPlacement.unhidden``), if neither blocks nor mutes hide them now. A hide that
        commits while this writes is undone here too. Returns the number of items written."""
        if author_id in self._blocks.relations(reader_id).hidden_authors():
            return 0
        written = 0
        followed_at = self._follows.followed_at(reader_id, author_id)
        # Nothing pushed to restore if not followed, or pulled at read time.
        if followed_at is not None and not self._users.is_high_follower(author_id):
            floor = ulid_floor(followed_at)
            posts = self._posts.since(author_id, floor)
            posts += self._posts.recent_by_author(author_id, self._backfill_posts, before=floor)
            entries = [self._entry(reader_id, p.post_id, p.author_id, p.created_at) for p in posts]
            written = self._feed.put_many(entries)
            written -= self._undo_newly_hidden(entries)
            self.placement.settle_reposted(entries)
        written += self.placement.unhidden(reader_id, author_id)
        count("UnmuteItemsRestored", written)
        return written

    def _rebuild_page(self, job: FanoutJob) -> int:
        """A returning reader's feed, ``REBUILD_PAGE`` followees at a time: what a follow made
        at the rebuild's start would have copied (each followee's ``backfill_posts`` newest
        posts from before it; from before the follow if that is later, which is what the
        follow's own backfill copied). Posts since the start are pushed (the reader is active
        again). Pulled authors are skipped, as a follow skips them. The last page ends the
        rebuild (``GET /feed`` stops answering 206)."""
        reader, started = job.author_id, job.created_at
        page = self._follows.following_since(reader, self.REBUILD_PAGE, job.after or None)
        marked = self._users.high_followers_among([f for f, _ in page]) if page else {}
        hidden = self._blocks.relations(reader).hidden_authors() if page else frozenset()
        wanted = [
            (f, ulid_floor(max(followed_at, started)))
            for f, followed_at in page
            if f not in marked and f not in hidden
        ]
        recent = self._posts.recent_by_authors(wanted, self._backfill_posts)
        entries = [
            self._entry(reader, p.post_id, p.author_id, p.created_at) for posts in recent for p in posts
        ]
        written = self._feed.put_many(entries)
        self.placement.settle_reposted(entries)
        count("FeedRebuildItemsWritten", written)
        if len(page) == self.REBUILD_PAGE:
            self._jobs.enqueue(replace(job, after=page[-1][0]))
            count("FanoutJobsCreated")
        else:
            self._users.finish_feed_rebuild(reader, started)
            count("FeedRebuildsFinished")
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
        if (following := self._next_page(job, followers)) is not None:
            self._jobs.enqueue(following)
            count("FanoutJobsCreated")

    def _next_page(self, job: FanoutJob, handled: Sequence[str]) -> FanoutJob | None:
        """The job for the page after ``handled`` (ids in order), if it was a full page (there
        may be more), else None."""
        return replace(job, after=handled[-1]) if len(handled) == self._page_size else None

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
        if self._blocks.holds(MUTE, follower_id, followee_id):
            return 0  # a muted account's posts stay out (a block would have refused the follow)
        recent = self._posts.recent_by_author(
            followee_id, self._backfill_posts, before=ulid_floor(followed_at)
        )
        entries = [self._entry(follower_id, p.post_id, p.author_id, p.created_at) for p in recent]
        written = self._feed.put_many(entries)
        written -= self._undo_newly_hidden(entries)
        self.placement.settle_reposted(entries)
        count("BackfillItemsWritten", written)
        return written

    def follow_removed(self, follower_id: str, followee_id: str) -> int:
        """Remove the followee's posts from the follower's feed (those a repost by another
        followee placed stay), and move items the followee's reposts placed to what else
        brings their post (or remove them).

        If the follower has followed again since (the stream delivers this old unfollow
        late), keep what the current follow owns: posts since it, and its backfill."""
        involved = self._feed.entries_involving(follower_id, followee_id)
        moved = self.placement.settle([e for e in involved if e.reposted_by == followee_id])
        entries = [e for e in involved if e.author_id == followee_id and e.reposted_by is None]
        refollowed_at = self._follows.followed_at(follower_id, followee_id)
        if refollowed_at is not None:
            floor = ulid_floor(refollowed_at)
            backfill = {
                p.post_id
                for p in self._posts.recent_by_author(followee_id, self._backfill_posts, before=floor)
            }
            entries = [e for e in entries if e.post_id < floor and e.post_id not in backfill]
        # Each only if still at its post: a repost may have placed it since it was read.
        removed = sum(concurrently(lambda e: self._feed.replace_placement(e, None), entries))
        count("FanoutItemsRetracted", removed)
        return removed + moved

    @staticmethod
    def _entry(reader_id: str, post_id: str, author_id: str, created_at: int) -> FeedEntry:
        return FeedEntry(user_id=reader_id, post_id=post_id, author_id=author_id, created_at=created_at)


class FanoutConsumer:
    """Routes stream changes (posts, follows, likes or fan-out jobs table) to their use
    cases: :meth:`open_batch` for a whole stream batch (the function), :meth:`handle` for one.

    Follows and likes also produce notifications (``notifier``; README, "Notifications"):
    a follow's notification after its backfill, an unfollow's retraction after its feed
    retraction, in the same change, so a retried record redoes both (each is idempotent)."""

    def __init__(
        self,
        fanout: FanoutService,
        erasure: AccountErasure,
        posts_table: str,
        follows_table: str,
        jobs_table: str,
        *,
        likes_table: str | None = None,
        reposts_table: str | None = None,
        notifier: NotificationProducer | None = None,
    ) -> None:
        self._reposts_table = reposts_table
        self._fanout = fanout
        self._erasure = erasure
        self._posts_table = posts_table
        self._follows_table = follows_table
        self._jobs_table = jobs_table
        self._likes_table = likes_table
        self._notifier = notifier

    def open_batch(self) -> FanoutBatch:
        return FanoutBatch(self.action, self._fanout)

    def handle(self, change: StreamChange) -> None:
        batch = self.open_batch()
        batch.add(change)
        batch.commit()

    def action(self, change: StreamChange) -> FanoutJob | Callable[[], int] | None:
        """What a change asks for, without doing it: a push (grouped with its neighbours by
        :class:`FanoutBatch`), another use case to call, or None (nothing to do). Raises
        ValueError for a table this function does not read, KeyError for a malformed image."""
        row = change.image
        fanout = self._fanout
        if change.table == self._posts_table:
            author, post_id = str(row["author_id"]), str(row["post_id"])
            if change.event == INSERT:
                return FanoutJob(PUSH, author, post_id, int(row["created_at"]), after="")
            if change.event == REMOVE:
                return lambda: fanout.post_deleted(author, post_id)
            return None  # MODIFY (a like count) changes no feed
        notifier = self._notifier
        if change.table == self._follows_table:
            follower, followee = str(row["follower_id"]), str(row["followee_id"])
            if change.event == INSERT:
                followed_at = int(row["created_at"])

                def follow_added() -> int:
                    written = fanout.follow_added(follower, followee, followed_at)
                    if notifier is not None:
                        notifier.followed(follower, followee, followed_at)
                    return written

                return follow_added
            if change.event == REMOVE:
                # The removed row's time names the membership this follow made (a re-follow
                # since made another, which stays).
                made_at = int(row["created_at"]) if "created_at" in row else None

                def follow_removed() -> int:
                    removed = fanout.follow_removed(follower, followee)
                    if notifier is not None and made_at is not None:
                        notifier.unfollowed(follower, followee, made_at)
                    return removed

                return follow_removed
            return None
        if self._likes_table is not None and change.table == self._likes_table:
            if notifier is None or change.event not in (INSERT, REMOVE):
                return None
            liker, post_id = str(row["user_id"]), str(row["post_id"])
            recipient = str(row["author_id"]) if row.get("author_id") else None
            liked_at = int(row["created_at"])
            if change.event == INSERT:
                return lambda: int(notifier.liked(liker, post_id, recipient, liked_at))
            return lambda: int(notifier.unliked(liker, post_id, recipient, liked_at))
        if self._reposts_table is not None and change.table == self._reposts_table:
            return self._repost_action(change)
        if change.table == self._jobs_table:
            if change.event != INSERT:
                return None  # REMOVE is the TTL sweeping a finished job
            job = FanoutJob(
                kind=str(row["kind"]),
                author_id=str(row["author_id"]),
                post_id=str(row["post_id"]),
                created_at=int(row["created_at"]),
                after=str(row["after"]),
                ref=str(row.get("ref") or ""),
            )
            if job.kind == ERASE:
                return lambda: self._erasure.step(job)
            return job if job.kind == PUSH else (lambda: fanout.run_job(job))
        raise ValueError(f"fan-out received a record from an unexpected table: {change.table}")

    def _repost_action(self, change: StreamChange) -> Callable[[], int] | None:
        """A repost placed in its reposter's followers' feeds (and its notification), or an
        undone or purged one retracted (and its notification withdrawn)."""
        if change.event not in (INSERT, REMOVE):
            return None
        row = change.image
        repost = Repost(
            post_id=str(row["post_id"]),
            user_id=str(row["user_id"]),
            repost_id=str(row["repost_id"]),
            author_id=str(row["author_id"]),
            created_at=int(row["created_at"]),
        )
        placement, notifier = self._fanout.placement, self._notifier

        def reposted() -> int:
            if change.event == INSERT:
                changed = placement.run(placement.push_of(repost))
                if notifier is not None:
                    notifier.reposted(repost.user_id, repost.post_id, repost.author_id, repost.created_at)
                return changed
            changed = placement.run(placement.retraction_of(repost))
            if notifier is not None:
                notifier.unreposted(repost.user_id, repost.post_id, repost.author_id, repost.created_at)
            return changed

        return reposted


class FanoutBatch:
    """One stream batch's fan-out (a ``ripple.stream_processing.ChangeBatch``).

    Changes run in stream order, except that consecutive pushes (new posts and push
    continuations, whatever their authors) run together through
    :meth:`FanoutService.push_many`. Grouping never crosses another change, so a post's
    deletion or an unfollow later in the batch still runs after the push it follows.
    On a failure :meth:`commit` raises :class:`PartialCommit` with the number of changes
    applied before the failing group: Lambda delivers the batch again from that record.
    """

    def __init__(
        self, action_of: Callable[[StreamChange], FanoutJob | Callable[[], int] | None], fanout: FanoutService
    ) -> None:
        self._action_of = action_of  # FanoutConsumer.action
        self._fanout = fanout
        self._actions: list[FanoutJob | Callable[[], int] | None] = []

    def add(self, change: StreamChange) -> None:
        self._actions.append(self._action_of(change))

    def commit(self) -> None:
        fanout = self._fanout
        index = 0
        while index < len(self._actions):
            end = index + 1
            action = self._actions[index]
            try:
                if isinstance(action, FanoutJob):
                    while end < len(self._actions) and isinstance(self._actions[end], FanoutJob):
                        end += 1
                    fanout.push_many([a for a in self._actions[index:end] if isinstance(a, FanoutJob)])
                elif action is not None:
                    action()
            except Exception as exc:
                raise PartialCommit(index) from exc
            index = end


def _marked_since(states: Mapping[str, AuthorState], author_id: str) -> int | None:
    """When the author was marked high-follower (epoch ms), None if not (or no account)."""
    state = states.get(author_id)
    return state.high_follower_since if state is not None else None
