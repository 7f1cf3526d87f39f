"""Tokens refuse forgery, expiry, the wrong type and alg=none; passwords use scrypt."""

import base64
import json
import time

import jwt
import pytest

from ripple.auth.passwords import PasswordHasher
from ripple.auth.tokens import ACCESS, REFRESH, TokenService
from ripple.config import Settings
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


def test_a_refresh_token_names_its_session(tokens: TokenService) -> None:
    # A login starts a session named by its first refresh token; a rotation continues it
    first = tokens.issue("U1")
    assert first.session_id == first.refresh_token_id
    assert tokens.verify(first.refresh_token, expected_type=REFRESH).session_id == first.session_id
    rotated = tokens.issue("U1", session_id=first.session_id)
    assert rotated.refresh_token_id != first.refresh_token_id
    claims = tokens.verify(rotated.refresh_token, expected_type=REFRESH)
    assert (claims.token_id, claims.session_id) == (rotated.refresh_token_id, first.session_id)


def test_a_refresh_token_from_before_sessions_is_its_own_session(tokens: TokenService) -> None:
    now = int(time.time())
    claims = {"sub": "U1", "typ": REFRESH, "roles": [], "iat": now, "exp": now + 60, "jti": "j1"}
    for extra in ({}, {"sid": ""}, {"sid": 7}):  # none, or none usable
        legacy = jwt.encode({**claims, **extra}, SECRET, algorithm="HS256")
        assert tokens.verify(legacy, expected_type=REFRESH).session_id == "j1"


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


# ------------------------------------------------------------------ clock skew (leeway)
def _signed(**overrides: int) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": "U1", "typ": ACCESS, "iat": now, "exp": now + 60, "jti": "j1"}
    claims.update({k: now + v for k, v in overrides.items()})
    return jwt.encode(claims, SECRET, "HS256")


def test_the_default_leeway_is_ten_seconds_and_configurable() -> None:
    assert Settings.from_env({}).jwt_leeway_seconds == 10
    assert Settings.from_env({"JWT_LEEWAY_SECONDS": "3"}).jwt_leeway_seconds == 3
    with pytest.raises(ValueError, match="JWT_LEEWAY_SECONDS"):
        Settings.from_env({"JWT_LEEWAY_SECONDS": "-1"})


@pytest.mark.parametrize("ahead", [1, 2, 5, 10])
def test_a_token_from_a_clock_a_few_seconds_ahead_is_accepted(ahead: int) -> None:
    """Another container issued it; its clock is ``ahead`` seconds ahead of this one's."""
    tokens = TokenService(SECRET, 60, 600, leeway_seconds=Settings.from_env({}).jwt_leeway_seconds)
    assert tokens.verify(_signed(iat=ahead, exp=ahead + 60)).user_id == "U1"
    assert tokens.verify(_signed(nbf=ahead)).user_id == "U1"


def test_the_leeway_applies_to_iat_nbf_and_exp_and_no_further() -> None:
    tokens = TokenService(SECRET, 60, 600, leeway_seconds=10)
    assert tokens.verify(_signed(exp=-5)).user_id == "U1"  # expired 5 s ago by this clock
    for claims in ({"iat": 30, "exp": 90}, {"nbf": 30}):
        with pytest.raises(AuthenticationError) as raised:
            tokens.verify(_signed(**claims))
        assert raised.value.code == "invalid_token", claims
    with pytest.raises(AuthenticationError) as raised:
        tokens.verify(_signed(iat=-120, exp=-30))
    assert raised.value.code == "token_expired"


def test_without_leeway_a_token_from_the_future_is_refused() -> None:
    with pytest.raises(AuthenticationError):
        TokenService(SECRET, 60, 600).verify(_signed(iat=5, exp=65))
    with pytest.raises(ValueError, match="leeway"):
        TokenService(SECRET, 60, 600, leeway_seconds=-1)


# ------------------------------------------------------------------ verified tokens kept per container
def test_a_kept_token_still_expires(tokens: TokenService, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature is checked once; ``exp`` on every call, against the clock of that call."""
    token = tokens.issue("U1").access_token
    assert tokens.verify(token).user_id == "U1"
    later = time.time() + 61  # the access TTL is 60 s, the leeway 0
    monkeypatch.setattr("ripple.auth.tokens.time.time", lambda: later)
    with pytest.raises(AuthenticationError) as raised:
        tokens.verify(token)
    assert raised.value.code == "token_expired"


def test_a_kept_token_expires_at_pyjwts_boundary_with_a_leeway(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT refuses ``exp <= now - leeway``; a kept token meets the same boundary: with a 10 s
    leeway it is still accepted 9 s after ``exp`` and refused 10 s after."""
    tokens = TokenService(SECRET, 60, 600, leeway_seconds=10)
    now = time.time()
    token = tokens.issue("U1").access_token
    expires_at = tokens.verify(token).expires_at  # kept from here on
    assert now <= expires_at <= now + 61
    monkeypatch.setattr("ripple.auth.tokens.time.time", lambda: expires_at + 9)
    assert tokens.verify(token).user_id == "U1"
    monkeypatch.setattr("ripple.auth.tokens.time.time", lambda: expires_at + 10)
    with pytest.raises(AuthenticationError) as raised:
        tokens.verify(token)
    assert raised.value.code == "token_expired"


def test_a_token_is_decoded_once_and_a_refused_one_every_time(
    tokens: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    real = jwt.decode

    def counted(token: str, *args: object, **kwargs: object) -> object:
        decoded.append(token)
        return real(token, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("ripple.auth.tokens.jwt.decode", counted)
    good = tokens.issue("U1").access_token
    forged = TokenService("y" * 48, 60, 600).issue("U1").access_token
    for _ in range(3):
        assert tokens.verify(good).user_id == "U1"
        with pytest.raises(AuthenticationError, match="invalid"):
            tokens.verify(forged)
        with pytest.raises(AuthenticationError, match=r"^a refresh token is required$"):
            tokens.verify(good, expected_type=REFRESH)
    assert decoded.count(good) == 1 + 3  # kept as an access token; refused as a refresh token each time
    assert decoded.count(forged) == 3
    refresh = tokens.issue("U1").refresh_token
    for _ in range(2):
        assert tokens.verify(refresh, expected_type=REFRESH).user_id == "U1"
    assert decoded.count(refresh) == 2  # used once each (rotation): never kept


def test_tokens_kept_are_bounded_and_per_secret() -> None:
    from ripple.auth.tokens import VERIFIED_TOKENS

    first, other = TokenService(SECRET, 60, 600), TokenService("y" * 48, 60, 600)
    token = first.issue("U1").access_token
    first.verify(token)
    with pytest.raises(AuthenticationError, match="invalid"):
        other.verify(token)  # another secret's cache never saw it
    for i in range(VERIFIED_TOKENS + 10):
        first.verify(first.issue(f"U{i}").access_token)
    assert first._checked.cache_info().currsize == VERIFIED_TOKENS
