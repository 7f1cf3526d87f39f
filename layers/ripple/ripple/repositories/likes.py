"""Likes: one row per (post, user), and the post's like_count moved in the same transaction."""

from __future__ import annotations

import time
from collections.abc import Iterable

from ripple.errors import NotFoundError
from ripple.repositories.batch import batch_get, batch_write
from ripple.repositories.models import LikeModel, PostModel
from ripple.repositories.transactions import ConditionFailed, Transaction


def _commit_counted(tx: Transaction, author_id: str, post_id: str, delta: int) -> bool:
    """Move the post's like_count by ``delta`` in ``tx`` (which holds the like row's write,
    named "like") and commit. True if it committed; False if the like row's condition failed
    (a repeated like or unlike, which then changes nothing). NotFoundError if the post is gone.
    """
    tx.update(
        "post",
        PostModel(author_id=author_id, post_id=post_id),
        actions=[PostModel.like_count.add(delta)],
        condition=PostModel.post_id.exists(),
    )
    try:
        tx.commit()
    except ConditionFailed as exc:
        if exc.item == "post":
            raise NotFoundError(f"post {post_id!r} not found") from exc
        return False
    return True


class LikeRepository:
    def like(self, user_id: str, author_id: str, post_id: str) -> bool:
        """Like once; False if already liked. NotFoundError if the post is gone."""
        tx = Transaction()
        tx.save(
            "like",
            LikeModel(
                post_id=post_id, user_id=user_id, created_at=int(time.time() * 1000), author_id=author_id
            ),
            condition=LikeModel.user_id.does_not_exist(),
        )
        return _commit_counted(tx, author_id, post_id, +1)

    def unlike(self, user_id: str, author_id: str, post_id: str) -> bool:
        """Remove the like; False if there was none."""
        tx = Transaction()
        tx.delete("like", LikeModel(post_id=post_id, user_id=user_id), condition=LikeModel.user_id.exists())
        return _commit_counted(tx, author_id, post_id, -1)

    def liked(self, user_id: str, post_ids: Iterable[str]) -> set[str]:
        """Which of ``post_ids`` the user has liked (one BatchGetItem per 100)."""
        keys = [(p, user_id) for p in dict.fromkeys(post_ids)]
        return {m.post_id for m in batch_get(LikeModel, keys)}

    def likers(self, post_id: str, limit: int, after: str | None = None) -> list[str]:
        """A page of the users who like a post, in id order, strictly after ``after``
        (strongly consistent: every like committed before the call is in it)."""
        condition = LikeModel.user_id > after if after else None
        query = LikeModel.query(post_id, range_key_condition=condition, limit=limit, consistent_read=True)
        return [row.user_id for row in query]

    def delete_likes(self, post_id: str, user_ids: Iterable[str]) -> int:
        """Remove these users' like rows of a (deleted) post; missing rows are no-ops."""
        keys = [{"post_id": {"S": post_id}, "user_id": {"S": u}} for u in dict.fromkeys(user_ids)]
        return batch_write(LikeModel, delete_keys=keys)
