"""Tokens refuse forgery, expiry, the wrong type and alg=none; passwords use scrypt."""

import base64
import json
import time

import jwt
import pytest

from ripple.auth.passwords import PasswordHasher
from ripple.auth.tokens import ACCESS, REFRESH, TokenService
from ripple.errors import AuthenticationError

SECRET = "x" * 48


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET, access_ttl=60, refresh_ttl=600)


def test_issued_tokens_verify_with_their_type(tokens: TokenService) -> None:
    pair = tokens.issue("U1", roles=("admin",))
    claims = tokens.verify(pair.access_token)
    assert (claims.user_id, claims.token_type, claims.roles) == ("U1", ACCESS, ("admin",))
    assert tokens.verify(pair.refresh_token, expected_type=REFRESH).user_id == "U1"


def test_refresh_token_is_not_an_access_token(tokens: TokenService) -> None:
    with pytest.raises(AuthenticationError, match="access token is required"):
        tokens.verify(tokens.issue("U1").refresh_token)


def test_forged_signature_is_refused(tokens: TokenService) -> None:
    forged = TokenService("y" * 48, 60, 600).issue("U1").access_token
    with pytest.raises(AuthenticationError, match="invalid"):
        tokens.verify(forged)


def test_expired_token_is_refused(tokens: TokenService) -> None:
    now = int(time.time())
    claims = {"sub": "U1", "typ": ACCESS, "iat": now - 120, "exp": now - 60, "jti": "j1"}
    expired = jwt.encode(claims, SECRET, "HS256")
    with pytest.raises(AuthenticationError, match="expired"):
        tokens.verify(expired)


def test_alg_none_is_refused(tokens: TokenService) -> None:
    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    now = int(time.time())
    header = b64({"alg": "none", "typ": "JWT"})
    payload = b64({"sub": "U1", "typ": ACCESS, "iat": now, "exp": now + 60, "jti": "j1"})
    unsigned = f"{header}.{payload}."
    with pytest.raises(AuthenticationError):
        tokens.verify(unsigned)


def test_short_secrets_are_rejected_at_startup() -> None:
    with pytest.raises(ValueError):
        TokenService("short", 60, 60)


def test_password_hash_verifies_only_the_right_password() -> None:
    hasher = PasswordHasher(n=2**10)
    stored = hasher.hash("correct horse")
    assert stored.startswith("scrypt$1024$")
    assert hasher.verify("correct horse", stored)
    assert not hasher.verify("wrong horse", stored)
    assert not hasher.verify("correct horse", "garbage")
    assert hasher.hash("correct horse") != stored  # salted
