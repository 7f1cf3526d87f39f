"""Follow and unfollow. The fan-out function reacts to the follows stream (backfill/retract)."""

from __future__ import annotations

from ripple.errors import NotFoundError, ValidationError
from ripple.observability import count
from ripple.repositories.follows import FollowRepository
from ripple.repositories.users import UserRepository


class FollowService:
    def __init__(self, follows: FollowRepository, users: UserRepository) -> None:
        self._follows = follows
        self._users = users

    def follow(self, follower_id: str, followee_id: str) -> bool:
        """Idempotent: following someone you already follow changes nothing."""
        if follower_id == followee_id:
            raise ValidationError("you cannot follow yourself", code="cannot_follow_self")
        if not self._users.exists(followee_id):
            raise NotFoundError(f"user {followee_id!r} not found")
        created = self._follows.follow(follower_id, followee_id)
        if created:
            count("FollowsCreated")
        return created

    def unfollow(self, follower_id: str, followee_id: str) -> bool:
        if follower_id == followee_id:
            raise ValidationError("you cannot unfollow yourself", code="cannot_follow_self")
        if not self._users.exists(followee_id):
            raise NotFoundError(f"user {followee_id!r} not found")
        removed = self._follows.unfollow(follower_id, followee_id)
        if removed:
            count("FollowsRemoved")
        return removed
