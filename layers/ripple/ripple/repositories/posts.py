"""Posts, partitioned by author so "a user's newest posts" is a single Query.

Creating and deleting a post move the author's post_count, and the post id -> author
lookup row, in the same transaction: a post found by id alone is found at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pynamodb.attributes import NumberAttribute
from pynamodb.exceptions import DoesNotExist

from ripple.domain import FeedEntry, Post
from ripple.errors import AuthenticationError, ForbiddenError, NotFoundError
from ripple.repositories.batch import batch_get, batch_write, concurrently
from ripple.repositories.feed import feed_item_row
from ripple.repositories.models import PostIdModel, PostModel, UserModel
from ripple.repositories.transactions import ConditionFailed, Transaction


def _to_post(m: PostModel) -> Post:
    return Post(
        post_id=m.post_id,
        author_id=m.author_id,
        text=m.text,
        created_at=int(m.created_at),
        like_count=int(m.like_count or 0),
        repost_count=int(m.repost_count or 0),
    )


def commit_counted(
    tx: Transaction,
    author_id: str,
    post_id: str,
    counter: NumberAttribute,
    delta: int,
    *,
    actor: str,
    verb: str,
) -> bool:
    """Move one of the post's counters (``like_count``, ``repost_count``) by ``delta`` in
    ``tx`` and commit it. ``tx`` holds the act's own row write, whose condition makes a repeat
    change nothing, and may hold checks named ``actor`` (the acting account exists),
    ``blocked`` / ``blocked_by`` (no block either way), ``post_id`` and ``author`` (the post
    and its author's account exist). True if it committed; False if the act's own condition
    failed (a repeat). NotFoundError if the post (or its author) is gone; AuthenticationError
    if the acting account is; ForbiddenError (``blocked``) if a block stands between them."""
    tx.update(
        "post",
        PostModel(author_id=author_id, post_id=post_id),
        actions=[counter.add(delta)],
        condition=PostModel.post_id.exists(),
    )
    try:
        tx.commit()
    except ConditionFailed as exc:
        if exc.item in ("post", "post_id", "author"):  # an author's deletion takes their posts
            raise NotFoundError(f"post {post_id!r} not found") from exc
        if exc.item == actor:
            raise AuthenticationError("your account no longer exists", code="invalid_token") from exc
        if exc.item in ("blocked", "blocked_by"):
            message = f"you cannot {verb} this post: one of you blocks the other"
            raise ForbiddenError(message, code="blocked") from exc
        return False
    return True


class PostRepository:
    def __init__(self, feed_item_ttl_seconds: int = 0) -> None:
        self._feed_item_ttl = feed_item_ttl_seconds

    def create(self, post: Post) -> None:
        """The post, its id -> author row, the author's post_count and the author's own feed
        item, in one transaction (read-your-writes in one round trip; fan-out writes the same
        deterministic feed item again, which changes nothing). AuthenticationError if the
        author's account is gone."""
        row = PostModel(
            author_id=post.author_id, post_id=post.post_id, text=post.text, created_at=post.created_at
        )
        tx = Transaction()
        tx.save("post", row, condition=PostModel.post_id.does_not_exist())
        tx.save("post_id", PostIdModel(post_id=post.post_id, author_id=post.author_id))
        own = FeedEntry(
            user_id=post.author_id, post_id=post.post_id, author_id=post.author_id, created_at=post.created_at
        )
        tx.save("own_feed_item", feed_item_row(own, self._feed_item_ttl))
        tx.update(
            "author",
            UserModel(user_id=post.author_id),
            actions=[UserModel.post_count.add(1)],
            condition=UserModel.user_id.exists(),
        )
        try:
            tx.commit()
        except ConditionFailed as exc:
            if exc.item == "author":
                raise AuthenticationError("your account no longer exists", code="invalid_token") from exc
            # "post": this fresh ULID already exists, so it is this request's own transaction,
            # committed on an attempt whose response was lost and then retried: success.

    def author_of(self, post_id: str) -> str | None:
        """The author of a post, by its id alone (strongly consistent); None if there is none."""
        try:
            return str(PostIdModel.get(post_id, consistent_read=True).author_id)
        except DoesNotExist:
            return None

    def get(self, post_id: str) -> Post | None:
        """Find a post by id alone: its author from the post-ids table, then the post."""
        author_id = self.author_of(post_id)
        return self.get_by_key(author_id, post_id) if author_id is not None else None

    def get_by_key(self, author_id: str, post_id: str) -> Post | None:
        try:
            return _to_post(PostModel.get(author_id, post_id, consistent_read=True))
        except DoesNotExist:
            return None

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[str, Post]:
        """Batch-get posts by (author_id, post_id); missing (deleted) posts are absent."""
        return {m.post_id: _to_post(m) for m in batch_get(PostModel, list(keys))}

    def existing(self, keys: Iterable[tuple[str, str]]) -> set[str]:
        """Which of these (author_id, post_id) posts exist now: strongly consistent, so a
        delete committed before the call is seen (keys only: one BatchGetItem per 100)."""
        rows = batch_get(PostModel, list(keys), attributes=[], consistent_read=True)
        return {row.post_id for row in rows}

    def repost_counts(self, keys: Iterable[tuple[str, str]]) -> dict[str, int]:
        """The ``repost_count`` of each of these (author_id, post_id) posts that exists now
        (strongly consistent, so a delete or repost committed before the call is seen; one
        BatchGetItem per 100)."""
        rows = batch_get(PostModel, list(keys), attributes=["repost_count"], consistent_read=True)
        return {row.post_id: int(row.repost_count or 0) for row in rows}

    def reposted(self, keys: Iterable[tuple[str, str]]) -> set[str]:
        """Which of these posts exist and have reposts now (:meth:`repost_counts` above 0)."""
        return {post_id for post_id, n in self.repost_counts(keys).items() if n}

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

    def since(self, author_id: str, floor: str) -> list[Post]:
        """Every post of the author with an id at or above ``floor``, newest first (a Query
        paged to its end; strongly consistent)."""
        query = PostModel.query(
            author_id, PostModel.post_id >= floor, scan_index_forward=False, consistent_read=True
        )
        return [_to_post(m) for m in query]

    def recent_by_authors(self, wanted: Sequence[tuple[str, str | None]], limit: int) -> list[list[Post]]:
        """:meth:`recent_by_author` for several (author, before) pairs, the Queries sent at
        once; one list per pair, in order."""
        return concurrently(lambda pair: self.recent_by_author(pair[0], limit, before=pair[1]), wanted)

    def erase(self, author_id: str, post_ids: Sequence[str]) -> int:
        """Delete posts of a deleted account, and their id rows (missing ones are no-ops). No
        counter moves: the author's row is gone, and an update would create one again. Each
        REMOVE takes the same path as a deleted post (fan-out retracts it, its likes go)."""
        batch_write(
            PostModel, delete_keys=[{"author_id": {"S": author_id}, "post_id": {"S": p}} for p in post_ids]
        )
        return batch_write(PostIdModel, delete_keys=[{"post_id": {"S": p}} for p in post_ids])

    def delete(self, author_id: str, post_id: str) -> bool:
        """Delete the post; False if it was already gone (a concurrent delete)."""
        tx = Transaction()
        tx.delete(
            "post", PostModel(author_id=author_id, post_id=post_id), condition=PostModel.post_id.exists()
        )
        tx.delete("post_id", PostIdModel(post_id=post_id))
        tx.update("author", UserModel(user_id=author_id), actions=[UserModel.post_count.add(-1)])
        try:
            tx.commit()
        except ConditionFailed:
            return False
        return True
