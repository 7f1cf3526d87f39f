"""Blocks and mutes, stored both ways: user -> target rows (Blocks, "whom I block or mute")
and target -> user rows (BlockedBy, "who blocks or mutes me"), written in one transaction,
as follows are (``ripple.repositories.follows``): both directions are table partitions, read
strongly consistently, so fan-out and reads see a block the moment it committed.

Each row's range key is ``"{kind}#{other id}"`` (kind ``block`` or ``mute``): a block and a
mute of one account are independent rows, and a user's blocks (or mutes) are one Query by
prefix, in id order.

A block ends the follows between the two accounts, both ways, in its own transaction, with
both users' counters corrected; each follow edge it finds is deleted under the condition
that it exists, and each it does not find is checked absent, so a follow committing at the
same moment makes the block's transaction fail and be built again (``BLOCK_ATTEMPTS``). A
follow's transaction checks that no block exists either way (:func:`no_block_checks`), so
whichever commits second sees the other: no follow edge survives between blocked accounts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from pynamodb.expressions.update import Action
from tenacity import retry_if_exception

from ripple.domain import BLOCK, MUTE, Relations
from ripple.errors import AuthenticationError, NotFoundError
from ripple.repositories.batch import batch_get, batch_write, concurrently
from ripple.repositories.fanout_jobs import FanoutJob, job_row
from ripple.repositories.models import BlockedByModel, BlockModel, FollowerModel, FollowModel, UserModel
from ripple.repositories.transactions import (
    ConditionFailed,
    Transaction,
    TransactionConflictError,
    conflict_retrying,
)

# A block reads the follow edges, then writes in one transaction that requires them unchanged.
# A follow or unfollow between the two accounts in that instant fails it, and it is built again
# from a fresh read after a jittered backoff (as a conflicting transaction is: the constants of
# ripple.repositories.transactions), so someone toggling a follow to fend off a block (the
# fresh-clone review got a 503 with three immediate rounds) must win five random races.
BLOCK_ATTEMPTS = 5


def _follows_moved(exc: BaseException) -> bool:
    """A block's transaction failed because a follow edge between the two changed."""
    return isinstance(exc, ConditionFailed) and exc.item.startswith("follow")


def edge_key(kind: str, other_id: str) -> str:
    """The range key of a row: ``"block#01H..."`` or ``"mute#01H..."``."""
    return f"{kind}#{other_id}"


def no_block_checks(tx: Transaction, a: str, b: str) -> None:
    """Add to ``tx`` the ConditionChecks "a does not block b" and "b does not block a",
    named ``blocked`` and ``blocked_by`` (a failure of either means the two are blocked)."""
    tx.check("blocked", BlockModel(user_id=a, edge=edge_key(BLOCK, b)), BlockModel.edge.does_not_exist())
    tx.check("blocked_by", BlockModel(user_id=b, edge=edge_key(BLOCK, a)), BlockModel.edge.does_not_exist())


def _rows(user_id: str, side: str) -> list[tuple[str, str]]:
    """(kind, other id) of the user's own rows (``mine``) or of the rows naming them (``theirs``)."""
    if side == "mine":
        return [(r.kind, r.target_id) for r in BlockModel.query(user_id, consistent_read=True)]
    return [(r.kind, r.user_id) for r in BlockedByModel.query(user_id, consistent_read=True)]


class BlockRepository:
    # ------------------------------------------------------------------ writes
    def block(self, user_id: str, target_id: str, jobs: Sequence[FanoutJob] = ()) -> bool:
        """``user_id`` blocks ``target_id`` and the follows between them end (both ways, both
        users' counters moved, both marked as hidden from someone: ``UserModel.may_hide``);
        ``jobs`` (the retraction of each one's items from the other's feed) are enqueued in
        the same transaction. False if the block existed (nothing changes). NotFoundError if
        the target does not exist; AuthenticationError if the caller's account does not;
        TransactionConflictError (503) if the follow graph between them keeps changing."""
        try:
            return conflict_retrying(BLOCK_ATTEMPTS, retry_if_exception(_follows_moved))(
                self._block_once, user_id, target_id, jobs
            )
        except ConditionFailed as exc:
            if not exc.item.startswith("follow"):
                raise
            raise TransactionConflictError(["FollowsChanged"]) from exc

    def _block_once(self, user_id: str, target_id: str, jobs: Sequence[FanoutJob]) -> bool:
        now = int(time.time() * 1000)
        tx = Transaction()
        self._put_pair(tx, BLOCK, user_id, target_id, now)
        for index, job in enumerate(jobs):
            tx.save(f"job{index}", job_row(job))
        # Each one's posts are now hidden from the other (sticky: UserModel.may_hide).
        actions: dict[str, list[Action]] = {
            account: [UserModel.may_hide.set(1)] for account in (user_id, target_id)
        }
        followed = {
            (row.follower_id, row.followee_id)
            for row in batch_get(
                FollowModel, [(user_id, target_id), (target_id, user_id)], consistent_read=True
            )
        }
        for index, (follower, followee) in enumerate(((user_id, target_id), (target_id, user_id))):
            edge = FollowModel(follower_id=follower, followee_id=followee)
            if (follower, followee) in followed:
                tx.delete(f"follow{index}", edge, condition=FollowModel.followee_id.exists())
                tx.delete(f"follower{index}", FollowerModel(followee_id=followee, follower_id=follower))
                actions[follower].append(UserModel.following_count.add(-1))
                actions[followee].append(UserModel.follower_count.add(-1))
            else:
                tx.check(f"follow{index}", edge, FollowModel.followee_id.does_not_exist())
        for name, account in (("user", user_id), ("target", target_id)):
            tx.update(name, UserModel(user_id=account), actions[account], UserModel.user_id.exists())
        return self._commit(tx, target_id)

    def unblock(self, user_id: str, target_id: str, jobs: Sequence[FanoutJob] = ()) -> bool:
        """Remove the block and enqueue ``jobs`` (restoring what each may see of the other) in
        the same transaction; False if there was none. (Follows it ended stay ended.)"""
        tx = Transaction()
        self._delete_rows(tx, BLOCK, user_id, target_id)
        for index, job in enumerate(jobs):
            tx.save(f"job{index}", job_row(job))
        return self._commit(tx, target_id)

    def mute(self, user_id: str, target_id: str, job: FanoutJob) -> bool:
        """``user_id`` mutes ``target_id``; ``job`` (the retraction of the target's items from
        the user's feed) is enqueued in the same transaction, with the target marked as hidden
        from someone (``UserModel.may_hide``). False if already muted (nothing is written).
        NotFoundError if the target does not exist."""
        tx = Transaction()
        self._put_pair(tx, MUTE, user_id, target_id, int(time.time() * 1000))
        # The target's posts are now hidden from someone (sticky: UserModel.may_hide).
        tx.update(
            "target", UserModel(user_id=target_id), [UserModel.may_hide.set(1)], UserModel.user_id.exists()
        )
        tx.save("job", job_row(job))
        return self._commit(tx, target_id)

    def unmute(self, user_id: str, target_id: str, job: FanoutJob) -> bool:
        """Remove the mute and enqueue ``job`` (restoring the target's items) in the same
        transaction; False if there was no mute (nothing is written)."""
        tx = Transaction()
        self._delete_rows(tx, MUTE, user_id, target_id)
        tx.save("job", job_row(job))
        return self._commit(tx, target_id)

    @staticmethod
    def _put_pair(tx: Transaction, kind: str, user_id: str, target_id: str, now: int) -> None:
        tx.save(
            "edge",
            BlockModel(
                user_id=user_id,
                edge=edge_key(kind, target_id),
                target_id=target_id,
                kind=kind,
                created_at=now,
            ),
            condition=BlockModel.edge.does_not_exist(),
        )
        tx.save(
            "inverse_edge",
            BlockedByModel(
                target_id=target_id, edge=edge_key(kind, user_id), user_id=user_id, kind=kind, created_at=now
            ),
        )

    @staticmethod
    def _delete_rows(tx: Transaction, kind: str, user_id: str, target_id: str) -> None:
        tx.delete(
            "edge",
            BlockModel(user_id=user_id, edge=edge_key(kind, target_id)),
            condition=BlockModel.edge.exists(),
        )
        tx.delete("inverse_edge", BlockedByModel(target_id=target_id, edge=edge_key(kind, user_id)))

    def _delete_pair(self, kind: str, user_id: str, target_id: str) -> bool:
        tx = Transaction()
        self._delete_rows(tx, kind, user_id, target_id)
        return self._commit(tx, target_id)

    @staticmethod
    def _commit(tx: Transaction, target_id: str) -> bool:
        """Commit; False when the row's own condition failed (a repeat). Other failed
        conditions: NotFoundError (target), AuthenticationError (the caller's account), or
        ConditionFailed as raised (the follow edges moved: the caller builds it again)."""
        try:
            tx.commit()
        except ConditionFailed as exc:
            if exc.item == "edge":
                return False
            if exc.item == "target":
                raise NotFoundError(f"user {target_id!r} not found") from exc
            if exc.item == "user":
                raise AuthenticationError("your account no longer exists", code="invalid_token") from exc
            raise
        return True

    # ------------------------------------------------------------------ reads
    def listing(self, user_id: str, kind: str, limit: int, after: str | None = None) -> list[str]:
        """A page of the ids ``user_id`` blocks (or mutes), in id order, strictly after ``after``."""
        prefix = edge_key(kind, "")
        condition = (
            BlockModel.edge.between(edge_key(kind, after) + "\x00", prefix + "\U0010ffff")
            if after
            else BlockModel.edge.startswith(prefix)
        )
        query = BlockModel.query(user_id, range_key_condition=condition, limit=limit, consistent_read=True)
        return [row.target_id for row in query]

    def relations(self, user_id: str) -> Relations:
        """Every block and mute of ``user_id``, both ways: two strongly consistent Queries,
        sent at once (a user's rows are few; each Query pages through them all)."""
        return self.relations_of([user_id])[user_id]

    def relations_of(self, user_ids: Iterable[str]) -> dict[str, Relations]:
        """:meth:`relations` of several users: two Queries each, all sent at once."""
        unique = list(dict.fromkeys(user_ids))
        reads = [(u, side) for u in unique for side in ("mine", "theirs")]
        rows = concurrently(lambda read: _rows(*read), reads)
        found = dict(zip(reads, rows, strict=True))
        return {
            u: Relations(
                blocks=frozenset(i for k, i in found[(u, "mine")] if k == BLOCK),
                mutes=frozenset(i for k, i in found[(u, "mine")] if k == MUTE),
                blocked_by=frozenset(i for k, i in found[(u, "theirs")] if k == BLOCK),
                muted_by=frozenset(i for k, i in found[(u, "theirs")] if k == MUTE),
            )
            for u in unique
        }

    def holds(self, kind: str, user_id: str, target_id: str) -> bool:
        """Whether the row exists now (a consistent GetItem)."""
        key = edge_key(kind, target_id)
        return any(True for _ in BlockModel.query(user_id, BlockModel.edge == key, consistent_read=True))

    # ------------------------------------------------------------------ account deletion
    def erase_user(self, user_id: str) -> int:
        """Delete every block and mute row of ``user_id``, made by them or naming them, and
        every inverse row of those: for an account's deletion (not wired into it here).
        Returns the number of rows deleted (each relation is two rows). Idempotent; follows
        are not touched (a block has already ended them)."""
        mine = list(BlockModel.query(user_id, consistent_read=True))
        theirs = list(BlockedByModel.query(user_id, consistent_read=True))
        block_keys = [{"user_id": {"S": user_id}, "edge": {"S": r.edge}} for r in mine] + [
            {"user_id": {"S": r.user_id}, "edge": {"S": edge_key(r.kind, user_id)}} for r in theirs
        ]
        inverse_keys = [{"target_id": {"S": user_id}, "edge": {"S": r.edge}} for r in theirs] + [
            {"target_id": {"S": r.target_id}, "edge": {"S": edge_key(r.kind, user_id)}} for r in mine
        ]
        batch_write(BlockModel, delete_keys=block_keys)
        batch_write(BlockedByModel, delete_keys=inverse_keys)
        return len(block_keys) + len(inverse_keys)
