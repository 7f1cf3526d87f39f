"""Likes: one row per (post, user), and the post's like_count moved in the same transaction."""

from __future__ import annotations

import time
from collections.abc import Iterable

from ripple.errors import NotFoundError
from ripple.repositories.models import LikeModel, PostModel
from ripple.repositories.transactions import ConditionFailed, transaction


class LikeRepository:
    def like(self, user_id: str, author_id: str, post_id: str) -> bool:
        """Like once; False if already liked. NotFoundError if the post is gone."""
        try:
            with transaction() as tx:
                tx.save(
                    LikeModel(post_id=post_id, user_id=user_id, created_at=int(time.time() * 1000)),
                    condition=LikeModel.user_id.does_not_exist(),
                )
                tx.update(
                    PostModel(author_id=author_id, post_id=post_id),
                    actions=[PostModel.like_count.add(1)],
                    condition=PostModel.post_id.exists(),
                )
        except ConditionFailed as exc:
            if exc.index == 1:
                raise NotFoundError(f"post {post_id!r} not found") from exc
            return False
        return True

    def unlike(self, user_id: str, author_id: str, post_id: str) -> bool:
        """Remove the like; False if there was none."""
        try:
            with transaction() as tx:
                tx.delete(LikeModel(post_id=post_id, user_id=user_id), condition=LikeModel.user_id.exists())
                tx.update(
                    PostModel(author_id=author_id, post_id=post_id),
                    actions=[PostModel.like_count.add(-1)],
                    condition=PostModel.post_id.exists(),
                )
        except ConditionFailed as exc:
            if exc.index == 1:
                raise NotFoundError(f"post {post_id!r} not found") from exc
            return False
        return True

    def liked(self, user_id: str, post_ids: Iterable[str]) -> set[str]:
        """Which of ``post_ids`` the user has liked (one BatchGetItem per 100)."""
        keys = [(p, user_id) for p in dict.fromkeys(post_ids)]
        return {m.post_id for m in LikeModel.batch_get(keys)} if keys else set()
