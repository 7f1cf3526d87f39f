"""Posts, partitioned by author so "a user's newest posts" is a single Query.

Creating and deleting a post move the author's post_count in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from pynamodb.exceptions import DoesNotExist

from ripple.domain import Post
from ripple.errors import AuthenticationError
from ripple.repositories.models import PostModel, UserModel
from ripple.repositories.transactions import ConditionFailed, transaction


def _to_post(m: PostModel) -> Post:
    return Post(
        post_id=m.post_id,
        author_id=m.author_id,
        text=m.text,
        created_at=int(m.created_at),
        like_count=int(m.like_count or 0),
    )


class PostRepository:
    def create(self, post: Post) -> None:
        row = PostModel(
            author_id=post.author_id, post_id=post.post_id, text=post.text, created_at=post.created_at
        )
        try:
            with transaction() as tx:
                tx.save(row, condition=PostModel.post_id.does_not_exist())
                tx.update(
                    UserModel(user_id=post.author_id),
                    actions=[UserModel.post_count.add(1)],
                    condition=UserModel.user_id.exists(),
                )
        except ConditionFailed as exc:
            if exc.index == 1:
                raise AuthenticationError("your account no longer exists", code="invalid_token") from exc
            # index 0: this fresh ULID already exists, so it is this request's own transaction,
            # committed on an attempt whose response was lost and then retried: success.

    def get(self, post_id: str) -> Post | None:
        """Find a post by id alone (through the by_post_id index, then the table)."""
        for key in PostModel.by_post_id.query(post_id, limit=1):
            return self.get_by_key(key.author_id, post_id)
        return None

    def get_by_key(self, author_id: str, post_id: str) -> Post | None:
        try:
            return _to_post(PostModel.get(author_id, post_id, consistent_read=True))
        except DoesNotExist:
            return None

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[str, Post]:
        """Batch-get posts by (author_id, post_id); missing (deleted) posts are absent."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        return {m.post_id: _to_post(m) for m in PostModel.batch_get(unique)}

    def recent_by_author(self, author_id: str, limit: int, before: str | None = None) -> list[Post]:
        """The author's newest posts (ids below ``before`` if given), newest first."""
        condition = PostModel.post_id < before if before else None
        query = PostModel.query(
            author_id,
            range_key_condition=condition,
            scan_index_forward=False,
            limit=limit,
            consistent_read=True,
        )
        return [_to_post(m) for m in query]

    def delete(self, author_id: str, post_id: str) -> bool:
        """Delete the post; False if it was already gone (a concurrent delete)."""
        try:
            with transaction() as tx:
                tx.delete(
                    PostModel(author_id=author_id, post_id=post_id), condition=PostModel.post_id.exists()
                )
                tx.update(UserModel(user_id=author_id), actions=[UserModel.post_count.add(-1)])
        except ConditionFailed:
            return False
        return True
