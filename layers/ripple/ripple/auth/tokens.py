"""JWT access and refresh tokens (HS256).

Only HS256 is accepted on decode (so ``alg: none`` and algorithm confusion are refused),
every token carries ``typ`` so a refresh token cannot be used as an access token, and
``exp``/``iat``/``sub`` are required. ``iat``, ``nbf`` and ``exp`` are checked with a small
leeway (``Settings.jwt_leeway_seconds``): the container that issued a token and the one
verifying it may disagree about the time by a few seconds.

A container keeps the claims of the access tokens it has verified (``VERIFIED_TOKENS`` of them,
least recently used out): a client sends the same access token with every request until it expires,
and its signature, claims and type cannot change, so they are checked once. Only ``exp`` depends
on the time; it is checked on every call.

A refresh token carries ``sid``, its session: the id of the login's first refresh token, kept by
every token rotated from it, so that reuse of a rotated token revokes the session's live one
(RFC 9700 4.14.2, "refresh token rotation"). A token issued before sessions existed has no
``sid``; its session is its own ``jti``, as its stored row is keyed.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass

import jwt

from ripple.errors import AuthenticationError

ALGORITHM = "HS256"
ACCESS, REFRESH = "access", "refresh"
_REQUIRED = {ACCESS: "an access token is required", REFRESH: "a refresh token is required"}
# Verified tokens a container keeps: about one per client active in the token's lifetime (a
# Lambda container serves one request at a time, so its active clients are few); each is a
# few hundred bytes. Verifying one again costs about 0.1 ms of HMAC and JSON.
VERIFIED_TOKENS = 1024


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_token_id: str
    refresh_expires_at: int  # epoch seconds
    session_id: str  # the refresh token's sid: its session (token family)

    def to_public(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


@dataclass(frozen=True)
class Claims:
    user_id: str
    token_type: str
    roles: tuple[str, ...]
    token_id: str
    expires_at: int
    session_id: str  # a refresh token's sid (its own jti when it has none); an access token's jti


class TokenService:
    """Issues and verifies tokens.

    ``access_ttl`` and ``refresh_ttl`` are lifetimes in seconds. ``leeway_seconds`` is the clock
    skew tolerated on verification (PyJWT's ``leeway``): a token issued up to that many seconds
    "in the future" (``iat``/``nbf``), or expired less than that long ago (``exp``), is accepted.
    """

    def __init__(self, secret: str, access_ttl: int, refresh_ttl: int, leeway_seconds: int = 0) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT secret must be at least 32 characters")
        if leeway_seconds < 0:
            raise ValueError("the JWT leeway must not be negative")
        self._secret = secret
        self._access_ttl = access_ttl
        self._refresh_ttl = refresh_ttl
        self._leeway = leeway_seconds
        # Per instance (not a decorated method): the cache goes with its secret.
        self._checked = functools.lru_cache(maxsize=VERIFIED_TOKENS)(self._check)

    def issue(self, user_id: str, roles: tuple[str, ...] = (), session_id: str | None = None) -> TokenPair:
        """An access token and a refresh token for ``user_id``. The refresh token continues
        ``session_id`` (a rotation) or, when None, starts a session named by its own id (a
        sign-up or a login)."""
        now = int(time.time())
        refresh_id = uuid.uuid4().hex
        session = session_id or refresh_id
        return TokenPair(
            access_token=self._encode(user_id, ACCESS, now, self._access_ttl, roles, uuid.uuid4().hex),
            refresh_token=self._encode(
                user_id, REFRESH, now, self._refresh_ttl, roles, refresh_id, {"sid": session}
            ),
            expires_in=self._access_ttl,
            refresh_token_id=refresh_id,
            refresh_expires_at=now + self._refresh_ttl,
            session_id=session,
        )

    def _encode(
        self,
        user_id: str,
        token_type: str,
        now: int,
        ttl: int,
        roles: tuple[str, ...],
        token_id: str,
        extra: dict[str, str] | None = None,
    ) -> str:
        payload: dict[str, object] = {
            "sub": user_id,
            "typ": token_type,
            "roles": list(roles),
            "iat": now,
            "exp": now + ttl,
            "jti": token_id,
            **(extra or {}),
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str, expected_type: str = ACCESS) -> Claims:
        """The claims of a valid token of ``expected_type``. Raises AuthenticationError:
        ``token_expired`` once ``exp`` is more than the leeway in the past, ``invalid_token``
        for anything else (bad signature or algorithm, a missing claim, ``iat``/``nbf`` more
        than the leeway ahead of this container's clock, the wrong ``typ``)."""
        if expected_type != ACCESS:  # refresh tokens are used once (rotation): none is kept
            claims = self._check(token, expected_type)
        else:
            claims = self._checked(token, expected_type)  # raises; a refused token is not kept
        if claims.expires_at <= time.time() - self._leeway:  # PyJWT's rule, for a kept token
            raise AuthenticationError("token has expired", code="token_expired")
        return claims

    def _check(self, token: str, expected_type: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "sub", "typ", "jti"]},
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("token has expired", code="token_expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError("token is invalid", code="invalid_token") from exc
        if payload.get("typ") != expected_type:
            raise AuthenticationError(_REQUIRED[expected_type], code="invalid_token")
        roles = payload.get("roles") or []
        token_id = str(payload.get("jti", ""))
        session = payload.get("sid")
        return Claims(
            user_id=str(payload["sub"]),
            token_type=str(payload["typ"]),
            roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
            token_id=token_id,
            expires_at=int(payload["exp"]),
            session_id=session if isinstance(session, str) and session else token_id,
        )
