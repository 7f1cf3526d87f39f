"""The follow graph: follower -> followee rows, and followers through the by_followee index.

Follow and unfollow are transactions: the edge and both users' counters change together,
and the edge's condition makes repeating either a no-op that counts nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from ripple.errors import AuthenticationError, NotFoundError
from ripple.repositories.models import FollowModel, UserModel
from ripple.repositories.transactions import ConditionFailed, transaction

FOLLOWER_PAGE_SIZE = 500  # one Query page: bounded memory however large the audience


class FollowRepository:
    def follow(self, follower_id: str, followee_id: str) -> bool:
        """Create the edge; False if it already existed. NotFoundError if the followee is gone."""
        edge = FollowModel(
            follower_id=follower_id, followee_id=followee_id, created_at=int(time.time() * 1000)
        )
        try:
            with transaction() as tx:
                tx.save(edge, condition=FollowModel.followee_id.does_not_exist())
                tx.update(
                    UserModel(user_id=followee_id),
                    actions=[UserModel.follower_count.add(1)],
                    condition=UserModel.user_id.exists(),
                )
                tx.update(
                    UserModel(user_id=follower_id),
                    actions=[UserModel.following_count.add(1)],
                    condition=UserModel.user_id.exists(),
                )
        except ConditionFailed as exc:
            if exc.index == 1:
                raise NotFoundError(f"user {followee_id!r} not found") from exc
            if exc.index == 2:
                raise AuthenticationError("your account no longer exists", code="invalid_token") from exc
            return False
        return True

    def unfollow(self, follower_id: str, followee_id: str) -> bool:
        """Remove the edge; False if there was none."""
        try:
            with transaction() as tx:
                tx.delete(
                    FollowModel(follower_id=follower_id, followee_id=followee_id),
                    condition=FollowModel.followee_id.exists(),
                )
                for user_id, counter in (
                    (followee_id, UserModel.follower_count),
                    (follower_id, UserModel.following_count),
                ):
                    tx.update(
                        UserModel(user_id=user_id),
                        actions=[counter.add(-1)],
                        condition=UserModel.user_id.exists(),
                    )
        except ConditionFailed as exc:
            if exc.index != 0:
                raise NotFoundError("user not found") from exc
            return False
        return True

    def is_following(self, follower_id: str, followee_id: str) -> bool:
        return FollowModel.count(follower_id, FollowModel.followee_id == followee_id) > 0

    def follower_pages(self, followee_id: str, page_size: int = FOLLOWER_PAGE_SIZE) -> Iterator[list[str]]:
        """Followers of ``followee_id``, a page at a time (never the whole list in memory)."""
        results = FollowModel.by_followee.query(followee_id, page_size=page_size)
        page: list[str] = []
        for row in results:
            page.append(row.follower_id)
            if len(page) >= page_size:
                yield page
                page = []
        if page:
            yield page

    def followers(self, followee_id: str, limit: int, after: str | None = None) -> list[str]:
        """A page of follower ids in id order, strictly after ``after``."""
        return [follower for follower, _ in self.followers_since(followee_id, limit, after)]

    def followers_since(
        self, followee_id: str, limit: int, after: str | None = None
    ) -> list[tuple[str, int]]:
        """A page of (follower id, followed_at ms) in id order, strictly after ``after``."""
        condition = FollowModel.follower_id > after if after else None
        query = FollowModel.by_followee.query(followee_id, range_key_condition=condition, limit=limit)
        return [(row.follower_id, int(row.created_at)) for row in query]

    def following(self, follower_id: str, limit: int, after: str | None = None) -> list[str]:
        """A page of followee ids in id order, strictly after ``after``."""
        condition = FollowModel.followee_id > after if after else None
        return [
            row.followee_id
            for row in FollowModel.query(follower_id, range_key_condition=condition, limit=limit)
        ]

    def followed_among(self, follower_id: str, candidates: list[str]) -> set[str]:
        """Which of ``candidates`` the follower follows (one BatchGetItem per 100)."""
        keys = [(follower_id, c) for c in dict.fromkeys(candidates) if c != follower_id]
        return {row.followee_id for row in FollowModel.batch_get(keys)} if keys else set()

    def followed_at(self, follower_id: str, followee_id: str) -> int | None:
        """When the edge was created (epoch ms), or None if there is none."""
        for row in FollowModel.query(
            follower_id, FollowModel.followee_id == followee_id, consistent_read=True
        ):
            return int(row.created_at)
        return None

    def all_following(self, follower_id: str) -> list[tuple[str, int]]:
        """Every (followee_id, followed_at) of a user (for checks and rebuilds)."""
        return [(row.followee_id, int(row.created_at)) for row in FollowModel.query(follower_id)]
