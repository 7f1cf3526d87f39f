"""Likes: one row per (post, user), and the post's like_count moved in the same transaction."""

from __future__ import annotations

import time
from collections.abc import Iterable

from ripple.errors import NotFoundError
from ripple.repositories.batch import batch_get
from ripple.repositories.models import LikeModel, PostModel
from ripple.repositories.transactions import ConditionFailed, Transaction


class LikeRepository:
    def like(self, user_id: str, author_id: str, post_id: str) -> bool:
        """Like once; False if already liked. NotFoundError if the post is gone."""
        tx = Transaction()
        tx.save(
            "like",
            LikeModel(post_id=post_id, user_id=user_id, created_at=int(time.time() * 1000)),
            condition=LikeModel.user_id.does_not_exist(),
        )
        tx.update(
            "post",
            PostModel(author_id=author_id, post_id=post_id),
            actions=[PostModel.like_count.add(1)],
            condition=PostModel.post_id.exists(),
        )
        try:
            tx.commit()
        except ConditionFailed as exc:
            if exc.item == "post":
                raise NotFoundError(f"post {post_id!r} not found") from exc
            return False
        return True

    def unlike(self, user_id: str, author_id: str, post_id: str) -> bool:
        """Remove the like; False if there was none."""
        tx = Transaction()
        tx.delete("like", LikeModel(post_id=post_id, user_id=user_id), condition=LikeModel.user_id.exists())
        tx.update(
            "post",
            PostModel(author_id=author_id, post_id=post_id),
            actions=[PostModel.like_count.add(-1)],
            condition=PostModel.post_id.exists(),
        )
        try:
            tx.commit()
        except ConditionFailed as exc:
            if exc.item == "post":
                raise NotFoundError(f"post {post_id!r} not found") from exc
            return False
        return True

    def liked(self, user_id: str, post_ids: Iterable[str]) -> set[str]:
        """Which of ``post_ids`` the user has liked (one BatchGetItem per 100)."""
        keys = [(p, user_id) for p in dict.fromkeys(post_ids)]
        return {m.post_id for m in batch_get(LikeModel, keys)}
