"""Sign-up, login, token refresh and logout."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ripple.auth.passwords import PasswordHasher
from ripple.auth.tokens import REFRESH, TokenPair, TokenService
from ripple.domain import User
from ripple.errors import AuthenticationError
from ripple.ids import new_ulid
from ripple.observability import count, logger
from ripple.repositories.refresh_tokens import RefreshTokenRepository
from ripple.repositories.users import UserRepository

# A real hash to verify against when the username does not exist, so a login for an
# unknown name costs the same time as one with a wrong password (no user enumeration).
_DUMMY_PASSWORD = "ripple-timing-equaliser"


@dataclass(frozen=True)
class Session:
    user: User
    tokens: TokenPair


class AccountService:
    def __init__(
        self,
        users: UserRepository,
        refresh_tokens: RefreshTokenRepository,
        hasher: PasswordHasher,
        tokens: TokenService,
    ) -> None:
        self._users = users
        self._refresh_tokens = refresh_tokens
        self._hasher = hasher
        self._tokens = tokens
        self._dummy_hash = hasher.hash(_DUMMY_PASSWORD)

    def signup(self, username: str, password: str) -> Session:
        user = User(user_id=new_ulid(), username=username, created_at=int(time.time() * 1000))
        # The first refresh token is stored in the same transaction as the user, so a sign-up
        # either happened completely (and may be answered) or not at all (and may be retried).
        pair = self._tokens.issue(user.user_id, user.roles)
        self._users.create(
            user, self._hasher.hash(password), refresh_token=(pair.refresh_token_id, pair.refresh_expires_at)
        )
        logger.info("audit: signup", extra={"audit": "signup", "user_id": user.user_id})
        count("UsersSignedUp")
        return Session(user=user, tokens=pair)

    def login(self, username: str, password: str) -> Session:
        found = self._users.credentials_by_username(username)
        stored = found.password_hash if found else self._dummy_hash
        if not self._hasher.verify(password, stored) or found is None:
            logger.warning("audit: login failed", extra={"audit": "login_failed", "username": username})
            count("LoginFailures")
            raise AuthenticationError("wrong username or password", code="invalid_credentials")
        return Session(user=found.user, tokens=self._issue(found.user))

    def refresh(self, refresh_token: str) -> Session:
        """Exchange a live refresh token for new tokens; the old refresh token is revoked
        (rotation), so a stolen one works at most once."""
        claims = self._tokens.verify(refresh_token, expected_type=REFRESH)
        if not self._refresh_tokens.consume(claims.token_id, claims.user_id):
            logger.warning(
                "audit: refresh token reuse", extra={"audit": "refresh_reuse", "user_id": claims.user_id}
            )
            raise AuthenticationError("refresh token has been revoked", code="invalid_token")
        user = self._users.get(claims.user_id)
        if user is None:
            raise AuthenticationError("your account no longer exists", code="invalid_token")
        return Session(user=user, tokens=self._issue(user))

    def logout(self, refresh_token: str) -> None:
        """Revoke the refresh token (idempotent: an expired one is already useless);
        access tokens expire on their own."""
        try:
            claims = self._tokens.verify(refresh_token, expected_type=REFRESH)
        except AuthenticationError as exc:
            if exc.code == "token_expired":
                return
            raise
        self._refresh_tokens.consume(claims.token_id, claims.user_id)
        logger.info("audit: logout", extra={"audit": "logout", "user_id": claims.user_id})

    def _issue(self, user: User) -> TokenPair:
        pair = self._tokens.issue(user.user_id, user.roles)
        self._refresh_tokens.store(pair.refresh_token_id, user.user_id, pair.refresh_expires_at)
        return pair
