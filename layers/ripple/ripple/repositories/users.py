"""Users and their unique usernames."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from ripple.domain import Credentials, User
from ripple.errors import ConflictError
from ripple.repositories.models import UserModel, UsernameModel


def _to_user(m: UserModel) -> User:
    return User(
        user_id=m.user_id,
        username=m.username,
        display_name=m.display_name or "",
        created_at=int(m.created_at),
        roles=tuple(sorted(m.roles or ())),
    )


class UserRepository:
    def create(self, user: User, password_hash: str) -> None:
        """Store the user and claim the username atomically; 409 if the name is taken."""
        claim = UsernameModel(username=user.username, user_id=user.user_id)
        row = UserModel(
            user_id=user.user_id,
            username=user.username,
            password_hash=password_hash,
            display_name=user.display_name,
            roles=set(user.roles) or None,
            created_at=user.created_at,
        )
        connection = UserModel._get_connection().connection  # same endpoint and timeouts
        try:
            with TransactWrite(connection=connection) as tx:
                tx.save(claim, condition=UsernameModel.username.does_not_exist())
                tx.save(row, condition=UserModel.user_id.does_not_exist())
        except TransactWriteError as exc:
            reasons = [r.code for r in (exc.cancellation_reasons or []) if r is not None]
            if "ConditionalCheckFailed" in reasons:
                raise ConflictError(f"username '{user.username}' is taken", code="username_taken") from exc
            raise

    def get(self, user_id: str) -> User | None:
        try:
            return _to_user(UserModel.get(user_id))
        except DoesNotExist:
            return None

    def exists(self, user_id: str) -> bool:
        return self.get(user_id) is not None

    def credentials_by_username(self, username: str) -> Credentials | None:
        try:
            claim = UsernameModel.get(username)
            row = UserModel.get(claim.user_id)
        except DoesNotExist:
            return None
        return Credentials(user=_to_user(row), password_hash=row.password_hash)
