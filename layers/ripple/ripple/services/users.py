"""Profiles: reading users (with their counters) and editing your own."""

from __future__ import annotations

from ripple.domain import User
from ripple.errors import AuthenticationError, NotFoundError
from ripple.repositories.users import UserRepository


class UserService:
    def __init__(self, users: UserRepository) -> None:
        self._users = users

    def get(self, user_id: str) -> User:
        user = self._users.get(user_id)
        if user is None:
            raise NotFoundError(f"user {user_id!r} not found")
        return user

    def me(self, user_id: str) -> User:
        """The caller's own profile; AuthenticationError (401 ``invalid_token``) if their
        account is gone (deleted after the token's check: the token is what is stale)."""
        user = self._users.get(user_id)
        if user is None:
            raise AuthenticationError("your account no longer exists", code="invalid_token")
        return user

    def by_username(self, username: str) -> User:
        user_id = self._users.id_by_username(username)
        if user_id is None:
            raise NotFoundError(f"user '{username}' not found")
        return self.get(user_id)

    def update_profile(self, user_id: str, display_name: str | None, bio: str | None) -> User:
        """Edit the caller's own profile; AuthenticationError (401 ``invalid_token``) if their
        account is gone (as :meth:`me`)."""
        user = self._users.update_profile(user_id, display_name, bio)
        if user is None:
            raise AuthenticationError("your account no longer exists", code="invalid_token")
        return user
