"""Reposts in home feeds: where each reader's item of a post is placed (README, "Reposts").

A feed holds a post once (its key is (reader, post)). The item is *placed* - the order
feeds are read in - at the newest repost that brings the post to the reader, else at the
post itself. A repost by k (of P, by A, at time t, id ``rid``) brings P to:

* k itself (your own reposts are in your feed, as your own posts are), and
* each follower R of k who followed at or before t (later followers get no backfill of
  reposts), except the author A (whose own feed keeps the post where it was made), readers
  away longer than ``inactive_reader_days`` (as for posts), and readers who hide A or k
  (``Relations.hidden_authors``: they block or mute them, or are blocked by them).

Reposts are pushed whatever the reposter's follower count: high-follower accounts are pulled
for their own posts only. The pulled copy of a post and a pushed repost of it merge at read
(``ripple.services.feed``).

**Newest wins, in any order.** Placing is a conditional UpdateItem that writes only over an
older placement (:meth:`FeedRepository.place`), so concurrent reposts converge however
their fan-outs interleave. Taking a placement away - an undo, the post's deletion, an
unfollow of the reposter, a block or mute - *settles* the item: the best placement left is
computed from the truth (the post's other reposts, the reader's follows and relations, the
original's rule) and written only over the placement being removed
(:meth:`FeedRepository.replace_placement`). Writers of original items (a post's push, a
follow's backfill, an unmute, a rebuild) use plain puts, which would move a placed item
back to the post; they settle afterwards every item whose post has reposts (its
``repost_count``, read after the write: a repost committed later places itself over them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from ripple.domain import FeedEntry, Relations
from ripple.ids import ulid_floor, ulid_timestamp_ms
from ripple.observability import count
from ripple.repositories.batch import concurrently
from ripple.repositories.blocks import BlockRepository
from ripple.repositories.fanout_jobs import PURGE_REPOSTS, REPOST, UNREPOST, FanoutJob, FanoutJobRepository
from ripple.repositories.feed import FeedRepository
from ripple.repositories.follows import FollowRepository
from ripple.repositories.posts import PostRepository
from ripple.repositories.reposts import Repost, RepostRepository
from ripple.repositories.users import UserRepository


def _placement(entry: FeedEntry | None) -> tuple[str, str | None] | None:
    return (entry.placed, entry.reposted_by) if entry is not None else None


# Reposters whose follows are read at once when settling (newest reposts first).
REPOST_CHUNK = 25
# Reads of the truth per settled item at most (each after the previous round's writes).
SETTLE_ROUNDS = 3
# Followees per step of an unhide's restore (each one Query of their reposts, sent at once).
RESTORE_PAGE = 100


class RepostPlacement:
    def __init__(
        self,
        feed: FeedRepository,
        reposts: RepostRepository,
        follows: FollowRepository,
        posts: PostRepository,
        users: UserRepository,
        blocks: BlockRepository,
        jobs: FanoutJobRepository,
        *,
        page_size: int,
        backfill_posts: int,
        away: Callable[[set[str]], set[str]],
    ) -> None:
        self._feed = feed
        self._reposts = reposts
        self._follows = follows
        self._posts = posts
        self._users = users
        self._blocks = blocks
        self._jobs = jobs
        self._page_size = page_size
        self._backfill_posts = backfill_posts
        self._away = away

    # ------------------------------------------------------------------ jobs
    @staticmethod
    def push_of(repost: Repost) -> FanoutJob:
        """The fan-out of a new repost, from its reposter's first page of followers."""
        return FanoutJob(
            REPOST, repost.user_id, repost.post_id, repost.created_at, after="", ref=repost.repost_id
        )

    @staticmethod
    def retraction_of(repost: Repost) -> FanoutJob:
        """The retraction of an undone (or purged) repost, a page of followers at a time."""
        return FanoutJob(
            UNREPOST, repost.user_id, repost.post_id, repost.created_at, after="", ref=repost.repost_id
        )

    @staticmethod
    def purge_of(author_id: str, post_id: str) -> FanoutJob:
        """The removal of a deleted post's reposts, a page of reposters at a time."""
        return FanoutJob(PURGE_REPOSTS, author_id, post_id, 0, after="")

    def run(self, job: FanoutJob) -> int:
        """One page of a REPOST, UNREPOST or PURGE_REPOSTS job. Returns items (or rows) changed."""
        if job.kind == REPOST:
            return self._push_page(job)
        if job.kind == UNREPOST:
            return self._retract_page(job)
        if job.kind == PURGE_REPOSTS:
            return self._purge_page(job)
        raise ValueError(f"not a repost job: {job.kind!r}")

    def _push_page(self, job: FanoutJob) -> int:
        reposter, post_id, rid = job.author_id, job.post_id, job.ref
        repost = self._reposts.get(post_id, reposter)
        if repost is None or repost.repost_id != rid:
            return 0  # undone (or undone and made again: that repost has its own job)
        pages = self._follows.followers_pages([(reposter, job.after or None)], self._page_size)
        page = pages[(reposter, job.after or None)]
        readers = [f for f, followed_at in page if followed_at <= repost.created_at]
        away = self._away(set(readers))
        if not job.after:
            readers.append(reposter)  # the reposter is active: they just reposted
        hidden = self._hidden_readers(repost)
        entries = [
            self._entry_of(repost, reader)
            for reader in readers
            if reader != repost.author_id and reader not in away and reader not in hidden
        ]
        placed = sum(concurrently(self._feed.place, entries))
        # Undo what a concurrent undo, post deletion or block may have passed by: settle the
        # items just placed, if the repost is gone or the reader hides an account now.
        again = self._reposts.get(post_id, reposter)
        if again is None or again.repost_id != rid:
            self.settle(entries)
            count("RepostRacesUndone")
        else:
            # ... or the reader hides an account now, or unfollowed the reposter meanwhile.
            unfollowed = self._unfollowed(reposter, [e.user_id for e in entries if e.user_id != reposter])
            newly_hidden = self._hidden_readers(repost) | unfollowed
            if newly_hidden:
                self.settle([e for e in entries if e.user_id in newly_hidden])
        if len(page) == self._page_size:
            self._jobs.enqueue(replace(job, after=page[-1][0]))
            count("FanoutJobsCreated")
        count("RepostItemsPlaced", placed)
        return placed

    def _retract_page(self, job: FanoutJob) -> int:
        reposter, post_id, rid = job.author_id, job.post_id, job.ref
        followers = self._follows.followers(reposter, self._page_size, job.after or None)
        readers = followers + ([] if job.after else [reposter])
        items = self._feed.get_many((r, post_id) for r in readers)
        placed_here = [e for e in items.values() if e.reposted_by == reposter and e.placed == rid]
        changed = self.settle(placed_here)
        if len(followers) == self._page_size:
            self._jobs.enqueue(replace(job, after=followers[-1]))
            count("FanoutJobsCreated")
        count("RepostItemsRetracted", changed)
        return changed

    def _purge_page(self, job: FanoutJob) -> int:
        reposters = self._reposts.reposters(job.post_id, self._page_size, job.after or None)
        removed = self._reposts.delete_reposts(job.post_id, reposters)  # each REMOVE retracts
        if len(reposters) == self._page_size:
            self._jobs.enqueue(replace(job, after=reposters[-1]))
            count("FanoutJobsCreated")
        count("RepostsPurged", removed)
        return removed

    # ------------------------------------------------------------------ settling
    def settle(self, current: Sequence[FeedEntry]) -> int:
        """Move each of these items (as they were written or read) to the best placement the
        truth gives now, or delete it if none; an item placed otherwise meanwhile is left (a
        newer repost won it). Returns the number changed."""
        changed = 0
        by_post: dict[tuple[str, str], list[FeedEntry]] = defaultdict(list)
        for entry in current:
            by_post[(entry.author_id, entry.post_id)].append(entry)
        for (author_id, post_id), entries in by_post.items():
            # What was read may change while this writes (an unfollow, another undo): the
            # truth is read again after each write, until a round moves nothing. Whatever
            # commits after that read has its own record, which finds this write.
            for _ in range(SETTLE_ROUNDS):
                best = self.best_placements(author_id, post_id, [e.user_id for e in entries])
                moves = [
                    (e, best[e.user_id]) for e in entries if _placement(best[e.user_id]) != _placement(e)
                ]
                done = concurrently(lambda move: self._feed.replace_placement(*move), moves)
                changed += sum(done)
                entries = [new for (_, new), ok in zip(moves, done, strict=True) if ok and new is not None]
                if not entries:
                    break
        if changed:
            count("FeedItemsSettled", changed)
        return changed

    def settle_reposted(self, written: Sequence[FeedEntry]) -> int:
        """After plain puts of original items: settle those whose post has reposts (its
        ``repost_count``, read now, strongly consistent)."""
        if not written:
            return 0
        reposted = self._posts.reposted({(e.author_id, e.post_id) for e in written})
        return self.settle([e for e in written if e.post_id in reposted]) if reposted else 0

    def restore(self, reader_id: str, keys: Iterable[tuple[str, str]]) -> int:
        """Write the best placement of these (author, post) for the reader, where it is newer
        than what the feed holds (an unmute or unblock bringing reposts back). Returns the
        number written."""
        wanted: dict[tuple[str, str], None] = dict.fromkeys(keys)
        entries = [
            entry
            for author_id, post_id in wanted
            if (entry := self.best_placements(author_id, post_id, [reader_id])[reader_id]) is not None
        ]
        placed = [e for e, ok in zip(entries, concurrently(self._feed.place, entries), strict=True) if ok]
        self.settle(placed)  # a hide, undo or unfollow committed meanwhile moves them again
        return len(placed)

    def best_placements(
        self, author_id: str, post_id: str, readers: Sequence[str]
    ) -> dict[str, FeedEntry | None]:
        """Per reader, the item the truth gives for this post now (module docstring), or None.

        The post's reposts are tried newest first, ``REPOST_CHUNK`` reposters at a time (one
        BatchGetItem of the follows of the readers still without one), so a reader is settled
        by the first eligible repost and a post with many reposts costs readers x reposters
        follow reads only for readers who follow none of them."""
        if not self._posts.existing({(author_id, post_id)}):
            return dict.fromkeys(readers)
        reposts = sorted(self._reposts.of_post(post_id), key=lambda r: r.repost_id, reverse=True)
        relations = self._blocks.relations_of(readers)
        hidden = {reader: relations[reader].hidden_authors() for reader in readers}
        best: dict[str, FeedEntry | None] = {}
        pending = [r for r in readers if r != author_id and author_id not in hidden[r]]
        for start in range(0, len(reposts), REPOST_CHUNK):
            if not pending:
                break
            chunk = reposts[start : start + REPOST_CHUNK]
            followed = self._followed_at(pending, {r.user_id for r in chunk})
            for reader in list(pending):
                for repost in chunk:  # newest first: the first eligible one wins
                    since = followed.get((reader, repost.user_id))
                    if repost.user_id not in hidden[reader] and (
                        repost.user_id == reader or (since is not None and since <= repost.created_at)
                    ):
                        best[reader] = self._entry_of(repost, reader)
                        pending.remove(reader)
                        break
        rest = [reader for reader in readers if reader not in best]
        follows_author = self._followed_at(rest, {author_id})
        pulled = self._users.is_high_follower(author_id) if rest else False
        for reader in rest:
            since = follows_author.get((reader, author_id))
            if self._original_holds(reader, author_id, post_id, hidden[reader], since, pulled):
                best[reader] = FeedEntry(reader, post_id, author_id, ulid_timestamp_ms(post_id))
            else:
                best[reader] = None
        return best

    def _original_holds(
        self,
        reader: str,
        author_id: str,
        post_id: str,
        hidden: frozenset[str],
        followed_at: int | None,
        pulled: bool,
    ) -> bool:
        """Whether the reader's feed holds the post itself (``ripple_local.convergence``'s
        rule): their own; a followee's since the follow, or in the follow's backfill; not a
        pulled author's (merged at read) nor a hidden one's."""
        if reader == author_id:
            return True
        if followed_at is None or pulled or author_id in hidden:
            return False
        if ulid_timestamp_ms(post_id) >= followed_at:
            return True
        floor = ulid_floor(followed_at)
        backfill = self._posts.recent_by_author(author_id, self._backfill_posts, before=floor)
        return any(p.post_id == post_id for p in backfill)

    def _followed_at(self, readers: Sequence[str], followees: set[str]) -> dict[tuple[str, str], int]:
        return self._follows.follow_times((r, f) for r in readers for f in followees)

    def _unfollowed(self, followee_id: str, readers: Sequence[str]) -> set[str]:
        """Which of these readers no longer follow ``followee_id``."""
        still = self._follows.follow_times((r, followee_id) for r in readers)
        return {r for r in readers if (r, followee_id) not in still}

    def _hidden_readers(self, repost: Repost) -> frozenset[str]:
        """Readers who hide the author or the reposter, or whom either blocks."""
        relations: dict[str, Relations] = self._blocks.relations_of([repost.author_id, repost.user_id])
        return relations[repost.author_id].hidden_readers() | relations[repost.user_id].hidden_readers()

    @staticmethod
    def _entry_of(repost: Repost, reader: str) -> FeedEntry:
        return FeedEntry(
            user_id=reader,
            post_id=repost.post_id,
            author_id=repost.author_id,
            created_at=ulid_timestamp_ms(repost.post_id),
            placed=repost.repost_id,
            reposted_by=repost.user_id,
        )

    # ------------------------------------------------------------------ hides
    def unhidden(self, reader_id: str, other_id: str) -> int:
        """The reader no longer hides ``other_id``: its reposts (those the reader follows it
        for) and the reposts of its posts by the reader's followees place again. Reads every
        followee's reposts: an unmute or unblock is rare, and no index maps a post's author
        to its reposts consistently. The caller has checked that nothing hides ``other_id``
        (``FanoutService.unmuted``); a hide committed since is undone by the settling."""
        keys: list[tuple[str, str]] = []
        # The reader's own reposts too (of the other's posts), and every followee's.
        followees = [reader_id, *(f for f, _ in self._follows.all_following(reader_id))]
        for reposter, reposts in zip(followees, concurrently(self._all_reposts_by, followees), strict=True):
            keys += [
                (r.author_id, r.post_id) for r in reposts if reposter == other_id or r.author_id == other_id
            ]
        written = self.restore(reader_id, keys)
        count("RepostItemsRestored", written)
        return written

    def _all_reposts_by(self, user_id: str) -> list[Repost]:
        found: list[Repost] = []
        after: str | None = None
        while True:
            page = self._reposts.by_user(user_id, RESTORE_PAGE, after)
            found += page
            if len(page) < RESTORE_PAGE:
                return found
            after = page[-1].post_id
