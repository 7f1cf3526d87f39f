"""Blocks and mutes (README, "Blocks and mutes").

A block of B by A: B cannot follow A, nor A follow B (403 ``blocked``); the follows between
them end, both ways, in the block's transaction (the follows stream then retracts each one's
posts from the other's feed, and a hide job per side, written in the same transaction, what
reposts placed there; an unblock's jobs place such reposts again); neither sees the other's
posts in a feed, a posts list, ``GET /posts/{id}`` (404) or a followers/following list, and
neither can like or repost the other's posts (403 ``blocked``). A mute of B by A: B's posts
leave A's feed (a fan-out job written in the mute's transaction retracts them; an unmute's
job restores them) and A keeps following B. Both apply at fan-out (no item is written for a
reader who blocks or mutes the author) and at read (:class:`RelationsReader`), so they take
effect at once, before fan-out has caught up, also on a cached feed.
"""

from __future__ import annotations

import time

from ripple.cache.errors import CacheError
from ripple.cache.relations import RelationsCache
from ripple.cache.timeline import TimelineCache
from ripple.cursor import decode_cursor, encode_cursor
from ripple.domain import BLOCK, MUTE, Page, Relations, User
from ripple.errors import NotFoundError, ValidationError
from ripple.observability import count, logger
from ripple.repositories.blocks import BlockRepository
from ripple.repositories.fanout_jobs import HIDE as HIDE_JOB
from ripple.repositories.fanout_jobs import MUTE as MUTE_JOB
from ripple.repositories.fanout_jobs import UNHIDE as UNHIDE_JOB
from ripple.repositories.fanout_jobs import UNMUTE as UNMUTE_JOB
from ripple.repositories.fanout_jobs import FanoutJob
from ripple.repositories.users import UserRepository


class RelationsReader:
    """A user's blocks and mutes (:class:`ripple.domain.Relations`): Redis first, DynamoDB
    (two consistent Queries) when Redis does not hold them complete, then stored. Redis down
    means DynamoDB, never a failed read."""

    def __init__(self, blocks: BlockRepository, cache: RelationsCache) -> None:
        self._blocks = blocks
        self._cache = cache

    def of(self, user_id: str) -> Relations:
        """One Redis round trip, and DynamoDB only if Redis lacks them (or is down)."""
        try:
            found = self._cache.read(user_id)
        except CacheError:
            count("CacheErrors")
            return self._blocks.relations(user_id)
        if found is not None:
            return found
        return self.load(user_id)

    def load(self, user_id: str) -> Relations:
        """From DynamoDB, then stored in Redis (best effort)."""
        count("RelationsLoads")
        relations = self._blocks.relations(user_id)
        try:
            self._cache.store(user_id, relations)
        except CacheError:
            count("CacheErrors")
        return relations


class BlockService:
    def __init__(
        self,
        blocks: BlockRepository,
        users: UserRepository,
        cache: RelationsCache,
        timeline: TimelineCache,
    ) -> None:
        self._blocks = blocks
        self._users = users
        self._cache = cache
        self._timeline = timeline

    def block(self, user_id: str, target_id: str) -> bool:
        """Idempotent: True if the block was made now. ValidationError
        (``cannot_block_self``) for yourself, NotFoundError for an unknown user."""
        self._not_self(user_id, target_id, "block")
        jobs = [self._job(HIDE_JOB, user_id, target_id), self._job(HIDE_JOB, target_id, user_id)]
        created = self._blocks.block(user_id, target_id, jobs)
        if created:
            count("BlocksCreated")
            self._written_through(BLOCK, user_id, target_id, added=True)
            for account in (user_id, target_id):  # follows may have ended: pulled authors change
                self._forget_pulled(account)
        return created

    def unblock(self, user_id: str, target_id: str) -> bool:
        """Idempotent: True if a block was removed now. Follows it ended stay ended."""
        self._not_self(user_id, target_id, "block")
        self._require_user(target_id)
        jobs = [self._job(UNHIDE_JOB, user_id, target_id), self._job(UNHIDE_JOB, target_id, user_id)]
        removed = self._blocks.unblock(user_id, target_id, jobs)
        if removed:
            count("BlocksRemoved")
            self._written_through(BLOCK, user_id, target_id, added=False)
        return removed

    def mute(self, user_id: str, target_id: str) -> bool:
        """Idempotent: True if the mute was made now; the target's items then leave the
        user's feed (a fan-out job), and the user keeps following them."""
        self._not_self(user_id, target_id, "mute")
        created = self._blocks.mute(user_id, target_id, self._job(MUTE_JOB, user_id, target_id))
        if created:
            count("MutesCreated")
            self._written_through(MUTE, user_id, target_id, added=True)
        return created

    def unmute(self, user_id: str, target_id: str) -> bool:
        """Idempotent: True if a mute was removed now; the target's items come back (a
        fan-out job copies what the feed's definition holds of them)."""
        self._not_self(user_id, target_id, "mute")
        self._require_user(target_id)
        removed = self._blocks.unmute(user_id, target_id, self._job(UNMUTE_JOB, user_id, target_id))
        if removed:
            count("MutesRemoved")
            self._written_through(MUTE, user_id, target_id, added=False)
        return removed

    def listing(self, user_id: str, kind: str, limit: int, cursor: str | None) -> Page[User]:
        """Whom ``user_id`` blocks (``kind`` "block") or mutes ("mute"), in id order, a page
        at a time (accounts deleted since are left out)."""
        ids = self._blocks.listing(user_id, kind, limit + 1, decode_cursor(cursor))
        page_ids = ids[:limit]
        users = self._users.get_many(page_ids)
        next_cursor = encode_cursor(page_ids[-1]) if len(ids) > limit else None
        return Page(items=[users[i] for i in page_ids if i in users], next_cursor=next_cursor)

    @staticmethod
    def _job(kind: str, user_id: str, target_id: str) -> FanoutJob:
        """A job about ``target_id``'s items in ``user_id``'s feed (post_id names the reader)."""
        return FanoutJob(kind, target_id, user_id, int(time.time() * 1000), after="")

    @staticmethod
    def _not_self(user_id: str, target_id: str, verb: str) -> None:
        if user_id == target_id:
            raise ValidationError(f"you cannot {verb} yourself", code=f"cannot_{verb}_self")

    def _require_user(self, user_id: str) -> None:
        if not self._users.exists(user_id):
            raise NotFoundError(f"user {user_id!r} not found")

    def _written_through(self, kind: str, user_id: str, target_id: str, *, added: bool) -> None:
        """The change, in the cached relation sets (read-your-writes on a cached feed). If
        Redis cannot take it, those sets are loaded again within RELATIONS_TTL_SECONDS."""
        try:
            self._cache.change(kind, user_id, target_id, added=added)
        except CacheError as exc:
            logger.warning("relations write-through failed", extra={"error": str(exc)})
            count("CacheErrors")

    def _forget_pulled(self, user_id: str) -> None:
        try:
            self._timeline.forget_pulled(user_id)
        except CacheError:
            count("CacheErrors")
