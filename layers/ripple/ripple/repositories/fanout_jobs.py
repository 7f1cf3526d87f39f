"""Fan-out continuation jobs: one item per page of followers still to be handled."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from pynamodb.exceptions import PutError

from ripple.repositories.batch import batch_write
from ripple.repositories.models import FanoutJobModel

# Long after any retry; TTL sweeps them. At least the streams' 24 h retention: a redelivered
# stream record always finds its push continuation still there, so writing it again
# (enqueue_many) is a MODIFY, never a job created a second time.
JOB_TTL_SECONDS = 24 * 3600
# push: a post to a page of followers; retract: a deleted post from a page of followers;
# purge_likes: a deleted post's likes, a page of likers at a time; rebuild: a returning
# reader's feed, a page of followees at a time (author_id is the reader, created_at the
# rebuild's start, post_id empty); erase: a deleted account's data, a page at a time
# (author_id is the account, created_at its deletion, post_id the phase: ripple.services.erasure);
# mute / unmute: a muted author's items leave a reader's feed, or come back (author_id is the
# muted author, post_id the reader, created_at the mute's time), written in the mute's own
# transaction (ripple.repositories.blocks); hide / unhide: the same for a block (both ways)
# and an unblock; repost / unrepost: a repost placed in (or retracted from) a page of its
# reposter's followers' feeds (author_id the reposter, ref the repost's id);
# purge_reposts: a deleted post's reposts, a page of reposters at a time
# (ripple.services.placement).
PUSH, RETRACT, PURGE_LIKES, REBUILD, ERASE = "push", "retract", "purge_likes", "rebuild", "erase"
MUTE, UNMUTE, HIDE, UNHIDE = "mute", "unmute", "hide", "unhide"
REPOST, UNREPOST, PURGE_REPOSTS = "repost", "unrepost", "purge_reposts"


@dataclass(frozen=True)
class FanoutJob:
    kind: str  # one of the kinds above
    author_id: str
    post_id: str
    created_at: int
    after: str  # last follower (liker, followee) id already handled
    ref: str = ""  # a repost's id (REPOST, UNREPOST)

    @property
    def job_id(self) -> str:
        if self.kind == REBUILD:
            return f"{self.kind}#{self.author_id}#{self.created_at}#{self.after}"
        if self.kind == ERASE:
            return f"{self.kind}#{self.author_id}#{self.post_id}#{self.after}"
        if self.kind in (MUTE, UNMUTE, HIDE, UNHIDE):  # a mute, unmute and mute again are three jobs
            return f"{self.kind}#{self.post_id}#{self.author_id}#{self.created_at}"
        if self.kind in (REPOST, UNREPOST):  # a repost, its undo and a repost again: each its own
            return f"{self.kind}#{self.post_id}#{self.author_id}#{self.ref}#{self.after}"
        return f"{self.kind}#{self.post_id}#{self.after}"


def job_row(job: FanoutJob) -> FanoutJobModel:
    """The job's item, swept by TTL a day from now (also for a transaction that enqueues it
    with other writes)."""
    return FanoutJobModel(
        job_id=job.job_id,
        kind=job.kind,
        author_id=job.author_id,
        post_id=job.post_id,
        created_at=job.created_at,
        after=job.after,
        ref=job.ref or None,
        expires_at=int(time.time()) + JOB_TTL_SECONDS,
    )


class FanoutJobRepository:
    def enqueue(self, job: FanoutJob) -> bool:
        """Create the job unless it exists (a redelivered record re-enqueues nothing)."""
        try:
            job_row(job).save(condition=FanoutJobModel.job_id.does_not_exist())
        except PutError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def enqueue_many(self, jobs: Sequence[FanoutJob]) -> int:
        """Create these jobs, 25 per BatchWriteItem (the calls sent at once); returns how many.

        Unconditional, unlike :meth:`enqueue`: a job that exists already (a stream batch
        delivered again) is written again, which its stream shows as a MODIFY, not an INSERT,
        and only INSERTs start a job (the jobs stream's FilterCriteria in template.yaml, and
        ``FanoutConsumer.action``), so nothing runs twice either way."""
        return batch_write(FanoutJobModel, puts=[job_row(job) for job in jobs])
