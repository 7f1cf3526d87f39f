"""Reposts: one row per (post, reposter), its inverse (reposter, post) and the post's
repost_count, moved together in one transaction (as likes are)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist

from ripple.errors import NotFoundError
from ripple.ids import new_ulid, ulid_timestamp_ms
from ripple.repositories.batch import batch_write
from ripple.repositories.blocks import no_block_checks
from ripple.repositories.models import PostIdModel, PostModel, RepostByUserModel, RepostModel, UserModel
from ripple.repositories.posts import commit_counted
from ripple.repositories.transactions import Transaction


@dataclass(frozen=True)
class Repost:
    """``user_id`` reposted ``post_id`` (by ``author_id``) at ``created_at`` (epoch ms);
    ``repost_id`` is a ULID of that time: where the post is placed in feeds."""

    post_id: str
    user_id: str
    repost_id: str
    author_id: str
    created_at: int


def _to_repost(m: RepostModel) -> Repost:
    return Repost(
        post_id=m.post_id,
        user_id=m.user_id,
        repost_id=m.repost_id,
        author_id=m.author_id,
        created_at=int(m.created_at),
    )


class RepostRepository:
    def repost(self, user_id: str, author_id: str, post_id: str) -> Repost | None:
        """Repost once, now; None if already reposted. In one transaction: the row and its
        inverse, the post's repost_count, and checks that the post still exists (its id row:
        a delete committed first makes this a NotFoundError, and a delete committed after
        finds this repost when it purges the post's reposts), and so does its author's account
        (NotFoundError: its erasure is taking the post), that the reposter's account does
        (AuthenticationError), and that no block stands between them (ForbiddenError)."""
        now = int(time.time() * 1000)
        row = RepostModel(
            post_id=post_id, user_id=user_id, repost_id=new_ulid(now), author_id=author_id, created_at=now
        )
        tx = Transaction()
        tx.save("repost", row, condition=RepostModel.user_id.does_not_exist())
        tx.save(
            "inverse",
            RepostByUserModel(user_id=user_id, post_id=post_id, repost_id=row.repost_id, author_id=author_id),
        )
        tx.check("post_id", PostIdModel(post_id=post_id), condition=PostIdModel.post_id.exists())
        tx.check("reposter", UserModel(user_id=user_id), condition=UserModel.user_id.exists())
        tx.check("author", UserModel(user_id=author_id), condition=UserModel.user_id.exists())
        no_block_checks(tx, user_id, author_id)
        counted = commit_counted(
            tx, author_id, post_id, PostModel.repost_count, +1, actor="reposter", verb="repost"
        )
        return _to_repost(row) if counted else None

    def unrepost(self, user_id: str, author_id: str, post_id: str) -> bool:
        """Undo the repost; False if there was none. NotFoundError if the post is gone (its
        purge removes the repost)."""
        tx = Transaction()
        tx.delete(
            "repost", RepostModel(post_id=post_id, user_id=user_id), condition=RepostModel.user_id.exists()
        )
        tx.delete("inverse", RepostByUserModel(user_id=user_id, post_id=post_id))
        return commit_counted(
            tx, author_id, post_id, PostModel.repost_count, -1, actor="reposter", verb="repost"
        )

    def erase(self, user_id: str, post_id: str, author_id: str) -> bool:
        """Remove a deleted account's repost: both rows and one from the post's repost_count.
        True if the count moved; False if the repost or the post was already gone (the rows
        are removed all the same)."""
        try:
            if self.unrepost(user_id, author_id, post_id):
                return True
        except NotFoundError:  # the post is gone: its purge removes the repost row too
            pass
        rows = Transaction()  # not batch_write: this may run on the pool batch_write uses
        rows.delete("repost", RepostModel(post_id=post_id, user_id=user_id))
        rows.delete("inverse", RepostByUserModel(user_id=user_id, post_id=post_id))
        rows.commit()
        return False

    def get(self, post_id: str, user_id: str) -> Repost | None:
        """The repost, strongly consistent; None if there is none (undone, or purged)."""
        try:
            return _to_repost(RepostModel.get(post_id, user_id, consistent_read=True))
        except DoesNotExist:
            return None

    def of_post(self, post_id: str) -> list[Repost]:
        """Every repost of a post (strongly consistent: every repost committed before the call
        is in it), paged to the end."""
        return [_to_repost(m) for m in RepostModel.query(post_id, consistent_read=True)]

    def reposters(self, post_id: str, limit: int, after: str | None = None) -> list[str]:
        """A page of a post's reposters in id order, strictly after ``after``."""
        condition = RepostModel.user_id > after if after else None
        query = RepostModel.query(post_id, range_key_condition=condition, limit=limit, consistent_read=True)
        return [row.user_id for row in query]

    def by_user(self, user_id: str, limit: int, after: str | None = None) -> list[Repost]:
        """A page of a user's reposts in post id order, strictly after ``after`` (strongly
        consistent)."""
        condition = RepostByUserModel.post_id > after if after else None
        query = RepostByUserModel.query(
            user_id, range_key_condition=condition, limit=limit, consistent_read=True
        )
        return [
            Repost(
                post_id=m.post_id,
                user_id=user_id,
                repost_id=m.repost_id,
                author_id=m.author_id,
                created_at=ulid_timestamp_ms(m.repost_id),
            )
            for m in query
        ]

    def delete_reposts(self, post_id: str, user_ids: Iterable[str]) -> int:
        """Remove these users' repost rows of a (deleted) post, inverse rows first (a crash in
        between leaves rows the redelivered purge finds again). Each REMOVE retracts that
        repost from feeds (``ripple.services.placement``)."""
        unique = list(dict.fromkeys(user_ids))
        batch_write(
            RepostByUserModel, delete_keys=[{"user_id": {"S": u}, "post_id": {"S": post_id}} for u in unique]
        )
        return batch_write(
            RepostModel, delete_keys=[{"post_id": {"S": post_id}, "user_id": {"S": u}} for u in unique]
        )
