"""The follow graph, stored both ways: follower -> followee rows (Follows, "whom I follow")
and followee -> follower rows (Followers, "who follows me"), written in one transaction.

Both directions are table partitions, so both are read strongly consistently: fan-out
reads a post's audience from Followers and sees every follow that committed before the post
(an index would lag its table). Follow and unfollow are transactions: both edges and both
users' counters change together, and the edge's condition makes repeating either a no-op
that counts nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from ripple.errors import AuthenticationError, ForbiddenError, NotFoundError
from ripple.repositories.batch import batch_get, concurrently
from ripple.repositories.blocks import no_block_checks
from ripple.repositories.models import FollowerModel, FollowModel, UserModel
from ripple.repositories.transactions import ConditionFailed, Transaction


def _commit_counted(tx: Transaction, follower_id: str, followee_id: str, delta: int) -> bool:
    """Move both users' counters by ``delta`` in ``tx`` (which holds the edge's write, named
    "edge") and commit. True if it committed; False if the edge's condition failed (a repeat,
    which then changes nothing). NotFoundError if the followee is gone; AuthenticationError
    if the caller's own account is (a token outliving its account); ForbiddenError
    (``blocked``) if ``tx`` checks for blocks (``no_block_checks``) and one exists."""
    for name, user_id, counter in (
        ("followee", followee_id, UserModel.follower_count),
        ("follower", follower_id, UserModel.following_count),
    ):
        tx.update(
            name,
            UserModel(user_id=user_id),
            actions=[counter.add(delta)],
            condition=UserModel.user_id.exists(),
        )
    try:
        tx.commit()
    except ConditionFailed as exc:
        if exc.item == "followee":
            raise NotFoundError(f"user {followee_id!r} not found") from exc
        if exc.item == "follower":
            raise AuthenticationError("your account no longer exists", code="invalid_token") from exc
        if exc.item in ("blocked", "blocked_by"):
            message = "you cannot follow this account: one of you blocks the other"
            raise ForbiddenError(message, code="blocked") from exc
        return False
    return True


def _edge_removal(follower_id: str, followee_id: str) -> Transaction:
    """A transaction removing the edge (named "edge", which must exist) and its inverse."""
    tx = Transaction()
    tx.delete(
        "edge",
        FollowModel(follower_id=follower_id, followee_id=followee_id),
        condition=FollowModel.followee_id.exists(),
    )
    tx.delete("inverse_edge", FollowerModel(followee_id=followee_id, follower_id=follower_id))
    return tx


class FollowRepository:
    def follow(self, follower_id: str, followee_id: str) -> bool:
        """Create the edge; False if it already existed. NotFoundError if the followee is gone;
        ForbiddenError (``blocked``) if either blocks the other, checked in the follow's own
        transaction, so a block committing at the same moment never leaves a follow behind."""
        created_at = int(time.time() * 1000)
        tx = Transaction()
        tx.save(
            "edge",
            FollowModel(follower_id=follower_id, followee_id=followee_id, created_at=created_at),
            condition=FollowModel.followee_id.does_not_exist(),
        )
        tx.save(
            "inverse_edge",
            FollowerModel(followee_id=followee_id, follower_id=follower_id, created_at=created_at),
        )
        no_block_checks(tx, follower_id, followee_id)
        return _commit_counted(tx, follower_id, followee_id, +1)

    def unfollow(self, follower_id: str, followee_id: str) -> bool:
        """Remove the edge; False if there was none."""
        tx = _edge_removal(follower_id, followee_id)
        return _commit_counted(tx, follower_id, followee_id, -1)

    def sever(self, follower_id: str, followee_id: str, erased_id: str) -> bool:
        """Remove an edge of a deleted account (``erased_id``, one of the two ends): both
        rows, and the counter of the other end only (the deleted account has no row to move,
        and an update would create one). True if the counter moved; False if the edge was
        already gone, or the other end's account is gone too (the rows go all the same)."""
        other, counter = (
            (followee_id, UserModel.follower_count)
            if erased_id == follower_id
            else (follower_id, UserModel.following_count)
        )
        tx = _edge_removal(follower_id, followee_id)
        tx.update(
            "other", UserModel(user_id=other), actions=[counter.add(-1)], condition=UserModel.user_id.exists()
        )
        try:
            tx.commit()
            return True
        except ConditionFailed:
            pass
        rows = Transaction()
        rows.delete("edge", FollowModel(follower_id=follower_id, followee_id=followee_id))
        rows.delete("inverse_edge", FollowerModel(followee_id=followee_id, follower_id=follower_id))
        rows.commit()
        return False

    def followers(self, followee_id: str, limit: int, after: str | None = None) -> list[str]:
        """A page of follower ids in id order, strictly after ``after``."""
        return [follower for follower, _ in self.followers_since(followee_id, limit, after)]

    def followers_since(
        self, followee_id: str, limit: int, after: str | None = None
    ) -> list[tuple[str, int]]:
        """A page of (follower id, followed_at ms) in id order, strictly after ``after``;
        strongly consistent, so every follow committed before this call is in it."""
        condition = FollowerModel.follower_id > after if after else None
        query = FollowerModel.query(
            followee_id, range_key_condition=condition, limit=limit, consistent_read=True
        )
        return [(row.follower_id, int(row.created_at)) for row in query]

    def followers_pages(
        self, pages: Sequence[tuple[str, str | None]], limit: int
    ) -> dict[tuple[str, str | None], list[tuple[str, int]]]:
        """:meth:`followers_since` for several (followee, after) pairs, the Queries sent at
        once; keyed by the pair (each distinct pair is read once)."""
        unique = list(dict.fromkeys(pages))
        found = concurrently(lambda page: self.followers_since(page[0], limit, page[1]), unique)
        return dict(zip(unique, found, strict=True))

    def following(self, follower_id: str, limit: int, after: str | None = None) -> list[str]:
        """A page of followee ids in id order, strictly after ``after``."""
        return [f for f, _ in self.following_since(follower_id, limit, after, consistent_read=False)]

    def following_since(
        self, follower_id: str, limit: int, after: str | None = None, *, consistent_read: bool = True
    ) -> list[tuple[str, int]]:
        """A page of (followee id, followed_at ms) in id order, strictly after ``after``
        (strongly consistent unless asked: a feed rebuild must see every follow)."""
        condition = FollowModel.followee_id > after if after else None
        query = FollowModel.query(
            follower_id, range_key_condition=condition, limit=limit, consistent_read=consistent_read
        )
        return [(row.followee_id, int(row.created_at)) for row in query]

    def followed_among(self, follower_id: str, candidates: list[str]) -> set[str]:
        """Which of ``candidates`` the follower follows (one BatchGetItem per 100)."""
        keys = [(follower_id, c) for c in dict.fromkeys(candidates) if c != follower_id]
        return {row.followee_id for row in batch_get(FollowModel, keys)}

    def follow_times(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """When each of these (follower, followee) edges was made (epoch ms), for those that
        exist now (strongly consistent; one BatchGetItem per 100 pairs)."""
        rows = batch_get(
            FollowModel, [(a, b) for a, b in dict.fromkeys(pairs) if a != b], consistent_read=True
        )
        return {(row.follower_id, row.followee_id): int(row.created_at) for row in rows}

    def followed_at(self, follower_id: str, followee_id: str) -> int | None:
        """When the edge was created (epoch ms), or None if there is none."""
        for row in FollowModel.query(
            follower_id, FollowModel.followee_id == followee_id, consistent_read=True
        ):
            return int(row.created_at)
        return None

    def all_following(self, follower_id: str) -> list[tuple[str, int]]:
        """Every (followee_id, followed_at) of a user (for checks and rebuilds)."""
        return [
            (row.followee_id, int(row.created_at))
            for row in FollowModel.query(follower_id, consistent_read=True)
        ]
