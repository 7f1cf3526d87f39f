"""Login sessions and their live refresh tokens (refresh-token rotation with reuse detection,
RFC 9700 4.14.2).

A session is one row: keyed by the session id (the login's first refresh token's id), it names
the one refresh token that is live now. A refresh replaces it (rotation); a logout deletes the
row; a refresh token that is not the live one of a session that still exists was rotated away
already, so someone replays it - the legitimate client or a thief, the server cannot tell - and
``ripple.services.accounts`` revokes the whole session. Account deletion revokes every session
of the user.
"""

from __future__ import annotations

from pynamodb.exceptions import DeleteError, UpdateError

from ripple.repositories.batch import batch_write
from ripple.repositories.conditions import condition_failed
from ripple.repositories.models import RefreshTokenModel


class RefreshTokenRepository:
    def store(self, session_id: str, token_id: str, user_id: str, expires_at: int) -> None:
        """Start a session whose live refresh token is ``token_id`` (expiry in epoch seconds)."""
        RefreshTokenModel(token_id=session_id, user_id=user_id, expires_at=expires_at, live=token_id).save()

    def rotate(
        self, session_id: str, presented_id: str, user_id: str, successor_id: str, expires_at: int
    ) -> bool:
        """Make ``successor_id`` the session's live token (expiring at ``expires_at``, epoch
        seconds) if ``presented_id`` is the live one and the session is the user's: one
        conditional UpdateItem, which never creates a session. False when it is not (a
        replay, or no such session: the caller decides what that ends). A row from before
        sessions has no ``live``; its live token is the one its key names. If
        ``successor_id`` is live already, this call's own write landed on an attempt whose
        response was lost (botocore retries): that is True, not a replay."""
        session = RefreshTokenModel(token_id=session_id)
        presented_is_live = (
            (RefreshTokenModel.live == presented_id)
            | (RefreshTokenModel.live == successor_id)
            | (RefreshTokenModel.live.does_not_exist() & (RefreshTokenModel.token_id == presented_id))
        )
        try:
            session.update(
                actions=[
                    RefreshTokenModel.live.set(successor_id),
                    RefreshTokenModel.expires_at.set(expires_at),
                ],
                condition=(RefreshTokenModel.user_id == user_id) & presented_is_live,
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def end(self, session_id: str, user_id: str) -> bool:
        """Delete the session if it exists and is the user's; False if it did not."""
        try:
            RefreshTokenModel(token_id=session_id).delete(condition=RefreshTokenModel.user_id == user_id)
        except DeleteError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def revoke(self, user_id: str, limit: int) -> list[str]:
        """Delete up to ``limit`` sessions of the user (a deleted account's) and return their
        ids. Read from the ``by_user`` index, which lags: a session started in the last
        moment may be missed, which is harmless, as a refresh also needs the account."""
        session_ids = [row.token_id for row in RefreshTokenModel.by_user.query(user_id, limit=limit)]
        batch_write(RefreshTokenModel, delete_keys=[{"token_id": {"S": s}} for s in session_ids])
        return session_ids
