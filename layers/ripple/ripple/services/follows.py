"""Follow and unfollow. The fan-out function reacts to the follows stream (backfill/retract)."""

from __future__ import annotations

from ripple.cache.errors import CacheError
from ripple.cache.timeline import TimelineCache
from ripple.cursor import decode_cursor, encode_cursor
from ripple.domain import Page, User
from ripple.errors import NotFoundError, ValidationError
from ripple.observability import count
from ripple.repositories.follows import FollowRepository
from ripple.repositories.users import UserRepository
from ripple.services.blocks import RelationsReader


class FollowService:
    def __init__(
        self,
        follows: FollowRepository,
        users: UserRepository,
        timeline: TimelineCache,
        relations: RelationsReader,
    ) -> None:
        self._follows = follows
        self._users = users
        self._timeline = timeline
        self._relations = relations

    def follow(self, follower_id: str, followee_id: str) -> bool:
        """Idempotent: following someone you already follow changes nothing. ForbiddenError
        (``blocked``) if either blocks the other."""
        if follower_id == followee_id:
            raise ValidationError("you cannot follow yourself", code="cannot_follow_self")
        created = self._follows.follow(follower_id, followee_id)  # NotFoundError if no such user
        if created:
            count("FollowsCreated")
            self._recompute_pulled(follower_id)
        return created

    def unfollow(self, follower_id: str, followee_id: str) -> bool:
        if follower_id == followee_id:
            raise ValidationError("you cannot unfollow yourself", code="cannot_follow_self")
        if not self._users.exists(followee_id):
            raise NotFoundError(f"user {followee_id!r} not found")
        removed = self._follows.unfollow(follower_id, followee_id)
        if removed:
            count("FollowsRemoved")
            self._recompute_pulled(follower_id)
        return removed

    def _recompute_pulled(self, follower_id: str) -> None:
        """The followee may be a pulled (high-follower) author: the reader's next page
        computes its pulled authors again. If Redis cannot take that, they are recomputed
        within timeline.PULLED_TTL_SECONDS anyway."""
        try:
            self._timeline.forget_pulled(follower_id)
        except CacheError:
            count("CacheErrors")

    def followers(
        self, user_id: str, limit: int, cursor: str | None, viewer_id: str | None = None
    ) -> Page[User]:
        """Who follows ``user_id``, in id order, a page at a time; accounts the viewer blocks
        or is blocked by are left out (the page may then be short; the cursor is exact)."""
        self._require_user(user_id)
        ids = self._follows.followers(user_id, limit + 1, decode_cursor(cursor))
        return self._page_of_users(ids, limit, viewer_id)

    def following(
        self, user_id: str, limit: int, cursor: str | None, viewer_id: str | None = None
    ) -> Page[User]:
        """Whom ``user_id`` follows, in id order, a page at a time (as :meth:`followers`)."""
        self._require_user(user_id)
        ids = self._follows.following(user_id, limit + 1, decode_cursor(cursor))
        return self._page_of_users(ids, limit, viewer_id)

    def _require_user(self, user_id: str) -> None:
        if not self._users.exists(user_id):
            raise NotFoundError(f"user {user_id!r} not found")

    def _page_of_users(self, ids: list[str], limit: int, viewer_id: str | None) -> Page[User]:
        page_ids = ids[:limit]
        next_cursor = encode_cursor(page_ids[-1]) if len(ids) > limit else None
        if viewer_id is not None and page_ids:
            hidden = self._relations.of(viewer_id).blocked_parties()
            page_ids = [i for i in page_ids if i not in hidden]
        users = self._users.get_many(page_ids)
        return Page(items=[users[i] for i in page_ids if i in users], next_cursor=next_cursor)
