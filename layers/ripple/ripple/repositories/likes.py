"""Likes: one row per (post, user), its inverse (user, post) and the post's like_count, moved
together in one transaction."""

from __future__ import annotations

import time
from collections.abc import Iterable

from ripple.errors import NotFoundError
from ripple.repositories.batch import batch_get, batch_write
from ripple.repositories.blocks import no_block_checks
from ripple.repositories.models import LikeByUserModel, LikeModel, PostModel, UserModel
from ripple.repositories.posts import commit_counted
from ripple.repositories.transactions import Transaction


def _inverse_keys(post_id: str, user_ids: Iterable[str]) -> list[dict[str, dict[str, str]]]:
    return [{"user_id": {"S": u}, "post_id": {"S": post_id}} for u in user_ids]


class LikeRepository:
    def like(self, user_id: str, author_id: str, post_id: str) -> bool:
        """Like once; False if already liked. NotFoundError if the post is gone; ForbiddenError
        (``blocked``) if the liker or the author blocks the other; AuthenticationError if the
        liker's account is gone (all checked in the like's transaction): no like commits after
        its account's deletion, so the erasure's pass over the user's likes misses none."""
        tx = Transaction()
        tx.save(
            "like",
            LikeModel(
                post_id=post_id, user_id=user_id, created_at=int(time.time() * 1000), author_id=author_id
            ),
            condition=LikeModel.user_id.does_not_exist(),
        )
        tx.save("inverse", LikeByUserModel(user_id=user_id, post_id=post_id, author_id=author_id))
        tx.check("liker", UserModel(user_id=user_id), condition=UserModel.user_id.exists())
        if user_id != author_id:  # nobody blocks themselves (and a key may not appear twice)
            no_block_checks(tx, user_id, author_id)
        return commit_counted(tx, author_id, post_id, PostModel.like_count, +1, actor="liker", verb="like")

    def unlike(self, user_id: str, author_id: str, post_id: str) -> bool:
        """Remove the like; False if there was none."""
        tx = Transaction()
        tx.delete("like", LikeModel(post_id=post_id, user_id=user_id), condition=LikeModel.user_id.exists())
        tx.delete("inverse", LikeByUserModel(user_id=user_id, post_id=post_id))
        return commit_counted(tx, author_id, post_id, PostModel.like_count, -1, actor="liker", verb="like")

    def liked_by(self, user_id: str, limit: int, after: str | None = None) -> list[tuple[str, str]]:
        """A page of (post_id, author_id) the user likes, in post id order strictly after
        ``after`` (strongly consistent: every like committed before the call is in it)."""
        condition = LikeByUserModel.post_id > after if after else None
        query = LikeByUserModel.query(
            user_id, range_key_condition=condition, limit=limit, consistent_read=True
        )
        return [(row.post_id, row.author_id) for row in query]

    def erase(self, user_id: str, post_id: str, author_id: str) -> bool:
        """Remove a deleted account's like: the row, its inverse and one from the post's
        like_count (the liker has no counter). True if the count moved; False if the like was
        already gone or the post is (its rows are removed all the same)."""
        tx = Transaction()
        tx.delete("like", LikeModel(post_id=post_id, user_id=user_id), condition=LikeModel.user_id.exists())
        tx.delete("inverse", LikeByUserModel(user_id=user_id, post_id=post_id))
        try:
            if commit_counted(tx, author_id, post_id, PostModel.like_count, -1, actor="liker", verb="like"):
                return True
        except NotFoundError:  # the post was deleted (its own purge removes the like row too)
            pass
        rows = Transaction()  # not batch_write: this runs on the pool batch_write itself uses
        rows.delete("like", LikeModel(post_id=post_id, user_id=user_id))
        rows.delete("inverse", LikeByUserModel(user_id=user_id, post_id=post_id))
        rows.commit()
        return False

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
        """Remove these users' like rows of a (deleted) post, and their inverse rows; missing
        rows are no-ops. The inverse rows go first: a crash in between leaves like rows the
        redelivered purge finds again, never an inverse row nothing points at."""
        unique = list(dict.fromkeys(user_ids))
        batch_write(LikeByUserModel, delete_keys=_inverse_keys(post_id, unique))
        keys = [{"post_id": {"S": post_id}, "user_id": {"S": u}} for u in unique]
        return batch_write(LikeModel, delete_keys=keys)
