"""The follow graph: follower -> followee rows, and followers through the by_followee index."""

from __future__ import annotations

import time
from collections.abc import Iterator

from pynamodb.exceptions import DeleteError, PutError

from ripple.repositories.models import FollowModel

FOLLOWER_PAGE_SIZE = 500  # one Query page: bounded memory however large the audience


def _condition_failed(exc: PutError | DeleteError) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


class FollowRepository:
    def follow(self, follower_id: str, followee_id: str) -> bool:
        """Create the edge; False if it already existed (so the call is idempotent)."""
        try:
            FollowModel(
                follower_id=follower_id, followee_id=followee_id, created_at=int(time.time() * 1000)
            ).save(condition=FollowModel.followee_id.does_not_exist())
        except PutError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    def unfollow(self, follower_id: str, followee_id: str) -> bool:
        """Remove the edge; False if there was none."""
        try:
            FollowModel(follower_id=follower_id, followee_id=followee_id).delete(
                condition=FollowModel.followee_id.exists()
            )
        except DeleteError as exc:
            if _condition_failed(exc):
                return False
            raise
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
