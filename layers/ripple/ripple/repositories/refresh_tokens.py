"""Live refresh tokens. A refresh token is valid only while its id is stored here, so
logout (delete) and rotation (delete old, store new) revoke tokens before they expire."""

from __future__ import annotations

from pynamodb.exceptions import DeleteError

from ripple.repositories.batch import batch_write
from ripple.repositories.models import RefreshTokenModel


class RefreshTokenRepository:
    def store(self, token_id: str, user_id: str, expires_at: int) -> None:
        RefreshTokenModel(token_id=token_id, user_id=user_id, expires_at=expires_at).save()

    def consume(self, token_id: str, user_id: str) -> bool:
        """Delete the token if it is live and belongs to the user; False if it was not."""
        try:
            RefreshTokenModel(token_id=token_id).delete(condition=RefreshTokenModel.user_id == user_id)
        except DeleteError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def revoke(self, user_id: str, limit: int) -> list[str]:
        """Delete up to ``limit`` refresh tokens of the user (a deleted account's) and return
        their ids. Read from the ``by_user`` index, which lags: a token stored in the last
        moment may be missed, which is harmless, as a refresh also needs the account."""
        token_ids = [row.token_id for row in RefreshTokenModel.by_user.query(user_id, limit=limit)]
        batch_write(RefreshTokenModel, delete_keys=[{"token_id": {"S": t}} for t in token_ids])
        return token_ids
