"""Sign-up, login, token refresh, logout and account deletion."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ripple import validation
from ripple.auth.passwords import PasswordHasher
from ripple.auth.tokens import REFRESH, TokenPair, TokenService
from ripple.cache.errors import CacheError
from ripple.cache.known_users import KnownUsers
from ripple.domain import User
from ripple.errors import AuthenticationError, ForbiddenError
from ripple.ids import new_ulid
from ripple.observability import count, logger
from ripple.repositories.refresh_tokens import RefreshTokenRepository
from ripple.repositories.users import UserRepository
from ripple.services.activity import ReaderActivity
from ripple.services.erasure import erasure_of

# A real hash to verify against when the username does not exist, so a login for an
# unknown name costs the same time as one with a wrong password (no user enumeration).
_DUMMY_PASSWORD = "ripple-timing-equaliser"


# DynamoDB refuses an empty key or one over 2048 bytes (UTF-8), which cannot carry an unpaired
# surrogate either; such a name cannot belong to anyone.
_MAX_KEY_BYTES = 2048


def _is_key(name: str) -> bool:
    try:
        return 0 < len(name.encode("utf-8")) <= _MAX_KEY_BYTES
    except UnicodeEncodeError:
        return False


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
        activity: ReaderActivity,
        known_users: KnownUsers,
        *,
        username_quarantine_ms: int,
    ) -> None:
        self._users = users
        self._refresh_tokens = refresh_tokens
        self._hasher = hasher
        self._tokens = tokens
        self._activity = activity
        self._known_users = known_users
        self._quarantine_ms = username_quarantine_ms
        self._dummy_hash = hasher.hash(_DUMMY_PASSWORD)

    def signup(self, username: str, password: str) -> Session:
        user = User(user_id=new_ulid(), username=username, created_at=int(time.time() * 1000))
        # The first refresh token is stored in the same transaction as the user, so a sign-up
        # either happened completely (and may be answered) or not at all (and may be retried).
        pair = self._tokens.issue(user.user_id, user.roles)
        self._users.create(
            user,
            self._hasher.hash(password),
            refresh_token=(pair.session_id, pair.refresh_token_id, pair.refresh_expires_at),
        )
        logger.info("audit: signup", extra={"audit": "signup", "user_id": user.user_id})
        count("UsersSignedUp")
        return Session(user=user, tokens=pair)

    def login(self, username: str, password: str) -> Session:
        """Exchange a username (folded, see ``validation.login_credentials``) and a password for
        tokens. Raises AuthenticationError ``invalid_credentials`` (401) for any wrong pair.

        No password or username policy applies, so a stricter one can never lock out a user
        who signed up under an older one: a password sign-up would refuse today (too short,
        too long, odd Unicode, empty) is just a wrong password, and any name is looked up
        unless DynamoDB could not hold it as a key (then it is an unknown user). Every failure
        costs one scrypt verification - against the user's hash, or against a dummy hash when
        there is no such user - so the response time does not tell an unknown user from a
        wrong password (no user enumeration by timing)."""
        found = self._users.credentials_by_username(username) if _is_key(username) else None
        stored = found.password_hash if found else self._dummy_hash
        if not self._hasher.verify(password, stored) or found is None:
            # Only a name as sign-up makes them is logged: anything else may be a password
            # typed into the wrong field.
            logged = username if validation.is_username(username) else None
            logger.warning("audit: login failed", extra={"audit": "login_failed", "username": logged})
            count("LoginFailures")
            raise AuthenticationError("wrong username or password", code="invalid_credentials")
        return Session(user=found.user, tokens=self._issue(found.user))

    def refresh(self, refresh_token: str) -> Session:
        """Exchange the live refresh token of a session for new tokens: the presented token is
        rotated away, its successor continues the session (RFC 9700 4.14.2). Raises
        AuthenticationError ``invalid_token`` (401) for a token that is not live: after a
        logout, for a deleted account, and for a token already rotated away - a replay,
        whether by a thief or by the client, which revokes the whole session (its live token
        too: both parties must log in again). Every refusal of a token that verified is an
        audit line: ``refresh_reuse`` when it revoked a session, ``refresh_refused`` when
        there was none left to revoke (logged out, revoked before, expired, erased)."""
        claims = self._tokens.verify(refresh_token, expected_type=REFRESH)
        user = self._users.get(claims.user_id)
        if user is None:
            raise AuthenticationError("your account no longer exists", code="invalid_token")
        # Before the rotation, as nothing that can fail may come between the rotation and the
        # answer: a client that never got its new token retries with the old one, a replay.
        self._activity.seen(user.user_id)
        pair = self._tokens.issue(user.user_id, user.roles, session_id=claims.session_id)
        if self._refresh_tokens.rotate(
            claims.session_id, claims.token_id, user.user_id, pair.refresh_token_id, pair.refresh_expires_at
        ):
            return Session(user=user, tokens=pair)
        revoked = self._refresh_tokens.end(claims.session_id, user.user_id)
        audit = {"user_id": user.user_id, "session_id": claims.session_id}
        if revoked:
            logger.warning(
                "audit: refresh token reuse, session revoked", extra={"audit": "refresh_reuse", **audit}
            )
            count("RefreshTokenReuse")
        else:
            logger.warning(
                "audit: refresh refused, no live session", extra={"audit": "refresh_refused", **audit}
            )
        raise AuthenticationError("refresh token has been revoked", code="invalid_token")

    def logout(self, refresh_token: str) -> None:
        """End the token's session: its live refresh token is revoked, whichever of the
        session's unexpired tokens is presented (idempotent). An expired token is a 204 that
        ends nothing: it is useless already, and a leaked old token should not be able to log
        its owner out of a session that went on. Access tokens expire on their own."""
        try:
            claims = self._tokens.verify(refresh_token, expected_type=REFRESH)
        except AuthenticationError as exc:
            if exc.code == "token_expired":
                return
            raise
        self._refresh_tokens.end(claims.session_id, claims.user_id)
        logger.info("audit: logout", extra={"audit": "logout", "user_id": claims.user_id})

    def delete(self, user_id: str, password: str) -> None:
        """Delete the caller's account, confirmed by their password (a stolen access token
        alone cannot). Raises ForbiddenError ``invalid_credentials`` (403) for a wrong
        password, AuthenticationError ``invalid_token`` (401) if the account is already gone.

        One transaction deletes the user row, releases the username (held by nobody for
        ``username_quarantine_ms``) and enqueues the erasure of everything else
        (``ripple.services.erasure``). Then the account is forgotten in Redis, so its access
        tokens fail at once; if Redis fails here, the users stream makes the cache refresher
        forget it, and meanwhile Redis cannot vouch for it either. Audit-logged."""
        found = self._users.credentials(user_id)
        if found is None:
            raise AuthenticationError("your account no longer exists", code="invalid_token")
        if not self._hasher.verify(password, found.password_hash):
            logger.warning(
                "audit: account deletion refused", extra={"audit": "delete_refused", "user_id": user_id}
            )
            raise ForbiddenError("the password does not match", code="invalid_credentials")
        now_ms = int(time.time() * 1000)
        if not self._users.delete(found.user, now_ms + self._quarantine_ms, erasure_of(user_id, now_ms)):
            # A concurrent deletion of the same account won: it is audited once, by that one.
            raise AuthenticationError("your account no longer exists", code="invalid_token")
        try:
            self._known_users.forget(user_id)
        except CacheError:
            count("CacheErrors")
        logger.info("audit: account deleted", extra={"audit": "account_deleted", "user_id": user_id})
        count("AccountsDeleted")

    def _issue(self, user: User) -> TokenPair:
        """Tokens for a login, starting a session: the user is active (their feed is rebuilt if they
        were away long enough for fan-out to skip them)."""
        self._activity.seen(user.user_id)
        pair = self._tokens.issue(user.user_id, user.roles)
        self._refresh_tokens.store(
            pair.session_id, pair.refresh_token_id, user.user_id, pair.refresh_expires_at
        )
        return pair
