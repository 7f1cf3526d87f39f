"""Attacks over HTTP against the running local stack (the session's ``stack`` fixture).

* Authentication: forged, tampered, ``alg: none``, wrong-algorithm, expired, not-yet-valid,
  claim-less and wrong-type tokens are a 401 on every protected route of the contract, and
  write nothing.
* Broken object-level authorisation: every mutating route, called with another user's token
  and the victim's ids, is a 403 or acts on the caller's own data only; the victim's data,
  read back afterwards, is unchanged.
* Rate limits hold under a concurrent burst from one user: exactly the per-user write limit
  succeeds in a window, the rest are 429 with ``Retry-After``, and other users are unaffected.
* No response of the API - any route, known or not, any method, any status - repeats a
  credential the request carried: the bearer token, a password, a refresh token.

Tokens that need the real signing key (expired, a user that does not exist) are signed with
the stack's JWT secret, read from the emulator the stack runs (``stack.endpoints``).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from ripple.ids import new_ulid
from ripple_local.aws import client
from ripple_local.cfn import load_template, parameter_values
from ripple_local.samconfig import load_sam_environment
from tests.e2e.client import MEASUREMENTS, Api

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SPEC = json.loads((ROOT / "functions/api/openapi.json").read_text())
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
PROTECTED = sorted(
    (method.upper(), path)
    for path, operations in SPEC["paths"].items()
    for method, operation in operations.items()
    if method in HTTP_METHODS and operation.get("security")
)
MUTATING = {(m, p) for m, p in PROTECTED if m != "GET"}


# ------------------------------------------------------------------ helpers
def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _claims(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": user_id,
        "typ": "access",
        "roles": [],
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _fill(path: str, user_id: str, post_id: str, username: str) -> str:
    return path.replace("{user_id}", user_id).replace("{post_id}", post_id).replace("{username}", username)


def _body(method: str, path: str) -> dict[str, Any] | None:
    if (method, path) == ("POST", "/posts"):
        return {"text": "should never be stored"}
    if (method, path) == ("PATCH", "/me"):
        return {"bio": "should never be stored"}
    return None


@pytest.fixture(scope="module")
def jwt_secret(stack: Api) -> str:
    """The stack's signing key, from the Secrets Manager secret it created on its emulator."""
    endpoints = getattr(stack, "endpoints", None)
    if not endpoints:
        pytest.skip("the e2e stack fixture does not expose its endpoints")
    secrets = client("secretsmanager", endpoints)
    names = [s["Name"] for s in secrets.list_secrets()["SecretList"] if "JwtSecret" in s["Name"]]
    assert len(names) == 1, names
    return str(secrets.get_secret_value(SecretId=names[0])["SecretString"])


@pytest.fixture(scope="module")
def victim(stack: Api) -> dict[str, Any]:
    """A user with a post they like themselves, following a third user, with a bio."""
    v, third = stack.signup("victim"), stack.signup("third")
    login = stack.call("POST", "/auth/login", json={"username": v["username"], "password": "correct horse 1"})
    v["refresh"] = login.json()["refresh_token"]
    assert stack.call("PATCH", "/me", v["token"], json={"bio": "the victim's bio"}).status_code == 200
    post = stack.call("POST", "/posts", v["token"], json={"text": "the victim's post"}).json()
    assert stack.call("POST", f"/posts/{post['post_id']}/like", v["token"]).status_code == 200
    assert stack.call("POST", f"/users/{third['user_id']}/follow", v["token"]).status_code == 200
    v.update(post_id=post["post_id"], third_id=third["user_id"])
    return v


def snapshot(stack: Api, v: dict[str, Any]) -> dict[str, Any]:
    """Everything of the victim's an attacker might change, read with the victim's token."""
    me = stack.call("GET", "/me", v["token"]).json()
    post = stack.call("GET", f"/posts/{v['post_id']}", v["token"]).json()
    following = stack.call("GET", f"/users/{v['user_id']}/following", v["token"]).json()
    posts = stack.call("GET", f"/users/{v['user_id']}/posts", v["token"]).json()
    return {
        "me": {k: me[k] for k in ("bio", "display_name", "following_count", "post_count", "username")},
        "post": {k: post[k] for k in ("text", "author_id", "liked_by_me")},
        "following": [u["user_id"] for u in following["items"]],
        "posts": [p["post_id"] for p in posts["items"]],
    }


# ------------------------------------------------------------------ authentication
def _bad_tokens(secret: str, user_id: str, refresh_token: str, access_token: str) -> dict[str, str]:
    header, payload, signature = access_token.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tampered["roles"] = ["admin"]
    now = int(time.time())
    return {
        "forged signature": jwt.encode(_claims(user_id), "an attacker's key " * 4, algorithm="HS256"),
        "tampered payload": f"{header}.{_b64(tampered)}.{signature}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user_id))}.",
        "alg none, signature kept": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}",
        "HS512 with the real key": jwt.encode(_claims(user_id), secret, algorithm="HS512"),
        "expired": jwt.encode(_claims(user_id, iat=now - 3600, exp=now - 60), secret, algorithm="HS256"),
        "not yet valid": jwt.encode(_claims(user_id, nbf=now + 3600), secret, algorithm="HS256"),
        "no exp": jwt.encode(_claims(user_id, exp=None), secret, algorithm="HS256"),
        "no sub": jwt.encode(_claims(user_id, sub=None), secret, algorithm="HS256"),
        "refresh as access": refresh_token,
        "unknown typ": jwt.encode(_claims(user_id, typ="admin"), secret, algorithm="HS256"),
        "garbage": "not.a.jwt",
        "empty segments": "..",
    }


def test_invalid_tokens_are_401_on_every_protected_route_and_write_nothing(
    stack: Api, jwt_secret: str, victim: dict[str, Any]
) -> None:
    before = snapshot(stack, victim)
    tokens = _bad_tokens(jwt_secret, victim["user_id"], victim["refresh"], victim["token"])
    failures = []
    for kind, token in tokens.items():
        for method, template in PROTECTED:
            path = _fill(template, victim["user_id"], victim["post_id"], victim["username"])
            r = stack.call(method, path, token, json=_body(method, template))
            code = r.json().get("error", {}).get("code") if r.content else None
            if r.status_code != 401 or code not in ("invalid_token", "token_expired"):
                failures.append((kind, method, template, r.status_code, r.text[:120]))
    assert not failures, failures
    assert snapshot(stack, victim) == before


def test_a_valid_token_for_a_user_that_does_not_exist_cannot_write(stack: Api, jwt_secret: str) -> None:
    ghost = new_ulid()
    token = jwt.encode(_claims(ghost), jwt_secret, algorithm="HS256")
    author = stack.signup("ghosted")
    for method, path, body in (
        ("POST", "/posts", {"text": "from nobody"}),
        ("POST", f"/users/{author['user_id']}/follow", None),
    ):
        r = stack.call(method, path, token, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_token"), (method, path, r.text)
    assert stack.call("GET", f"/users/{ghost}", author["token"]).status_code == 404
    assert stack.call("GET", f"/users/{author['user_id']}", author["token"]).json()["follower_count"] == 0


def test_a_valid_token_for_a_user_that_does_not_exist_is_401_on_every_protected_route(
    stack: Api, jwt_secret: str, victim: dict[str, Any]
) -> None:
    ghost = new_ulid()
    token = jwt.encode(_claims(ghost), jwt_secret, algorithm="HS256")
    outcomes = {}
    for method, template in PROTECTED:
        path = _fill(template, victim["user_id"], victim["post_id"], victim["username"])
        outcomes[(method, template)] = stack.call(
            method, path, token, json=_body(method, template)
        ).status_code
    stack.call("DELETE", f"/posts/{victim['post_id']}/like", token)  # undo a ghost like, if any
    stack.call("DELETE", f"/posts/{victim['post_id']}/repost", token)  # ... and a ghost repost
    wrong = [f"{method} {path} -> {status}" for (method, path), status in outcomes.items() if status != 401]
    assert not wrong, "; ".join(wrong)


# ------------------------------------------------------------------ object-level authorisation
def test_every_mutating_route_with_another_users_token_acts_only_as_the_caller(
    stack: Api, victim: dict[str, Any]
) -> None:
    attacker, fan = stack.signup("attacker"), stack.signup("fan")
    v, t, p = victim["user_id"], victim["third_id"], victim["post_id"]
    # An unread notification of the victim's, which the attacker's mark-as-read must leave unread.
    assert stack.call("POST", f"/users/{v}/follow", fan["token"]).status_code == 200
    unread = None
    for _ in range(300):
        items = stack.call("GET", "/notifications", victim["token"]).json()["items"]
        unread = next((n for n in items if n["actors"] == [fan["user_id"]] and not n["read"]), None)
        if unread:
            break
        time.sleep(0.05)
    assert unread, "the fan's follow never reached the victim's notifications"
    before = snapshot(stack, victim)
    attempts: list[tuple[str, str, str, Any, set[int]]] = [  # (method, template, path, body, allowed)
        ("PATCH", "/me", "/me", {"bio": "pwned"}, {200}),  # edits the attacker's own profile
        ("PATCH", "/me", "/me", {"bio": "pwned", "user_id": v}, {400}),
        ("POST", "/posts", "/posts", {"text": "as the victim?", "author_id": v}, {400}),
        ("POST", "/posts", "/posts", {"text": "the attacker's own post"}, {201}),
        ("DELETE", "/posts/{post_id}", f"/posts/{p}", None, {403}),
        ("POST", "/posts/{post_id}/like", f"/posts/{p}/like", None, {200}),  # the attacker's like
        (
            "DELETE",
            "/posts/{post_id}/like",
            f"/posts/{p}/like",
            None,
            {200},
        ),  # ... removed; the victim's stays
        ("POST", "/posts/{post_id}/repost", f"/posts/{p}/repost", None, {200}),  # the attacker's repost
        ("DELETE", "/posts/{post_id}/repost", f"/posts/{p}/repost", None, {200}),  # ... and its undo
        ("POST", "/users/{user_id}/follow", f"/users/{v}/follow", None, {200}),  # the attacker follows
        ("DELETE", "/users/{user_id}/follow", f"/users/{t}/follow", None, {200}),  # not the victim's edge
        ("DELETE", "/users/{user_id}/follow", f"/users/{v}/follow", None, {200}),
        # Blocks and mutes are the caller's own relations: the victim's stay as they were
        ("POST", "/users/{user_id}/block", f"/users/{t}/block", None, {200}),
        ("DELETE", "/users/{user_id}/block", f"/users/{t}/block", None, {200}),
        ("POST", "/users/{user_id}/mute", f"/users/{v}/mute", None, {200}),
        ("DELETE", "/users/{user_id}/mute", f"/users/{v}/mute", None, {200}),
        # Account deletion acts on the caller's own account, and only with the caller's password
        ("DELETE", "/me", "/me", {"password": "the victim's, guessed"}, {403}),
        ("DELETE", "/me", "/me", {"password": "correct horse 1", "user_id": v}, {400}),
        ("POST", "/notifications/read", "/notifications/read", None, {200}),  # the attacker's own
    ]
    assert {(m, tpl) for m, tpl, *_ in attempts} == MUTATING, "a mutating route is not attacked here"
    for method, _, path, body, allowed in attempts:
        r = stack.call(method, path, attacker["token"], json=body)
        assert r.status_code in allowed, (method, path, body, r.status_code, r.text)
        if r.status_code == 403:
            expected = "invalid_credentials" if (method, path) == ("DELETE", "/me") else "forbidden"
            assert r.json()["error"]["code"] == expected
    # The victim's refresh token is not usable as an access token by whoever holds it either.
    assert stack.call("GET", "/me", victim["refresh"]).status_code == 401
    after = snapshot(stack, victim)
    assert after == before
    assert stack.call("GET", f"/posts/{p}", victim["token"]).json()["like_count"] == 1
    followers = stack.call("GET", f"/users/{v}/followers", victim["token"]).json()["items"]
    assert attacker["user_id"] not in [u["user_id"] for u in followers]
    assert stack.call("GET", "/me", attacker["token"]).json()["bio"] == "pwned"
    victims = stack.call("GET", "/notifications", victim["token"]).json()
    assert victims["unread_count"] >= 1
    assert any(n["notification_id"] == unread["notification_id"] and not n["read"] for n in victims["items"])


# ------------------------------------------------------------------ rate limits
def _per_user_write_limit() -> int:
    """RateLimitWritesPerMinute as the local stack runs it (template default + samconfig [local])."""
    template = load_template(ROOT / "template.yaml")
    overrides = load_sam_environment(ROOT / "samconfig.toml", "local").parameter_overrides
    return int(parameter_values(template, overrides)["RateLimitWritesPerMinute"])


def _burst(base_url: str, token: str, count: int, workers: int) -> list[requests.Response]:
    local = threading.local()

    def one(i: int) -> requests.Response:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        return session.patch(
            f"{base_url}/me",
            json={"bio": f"burst {i}"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(count)))


def test_a_concurrent_burst_from_one_user_gets_exactly_the_per_user_limit(stack: Api) -> None:
    limit = _per_user_write_limit()
    burster, bystander = stack.signup("burst"), stack.signup("bystander")
    extra = 30
    # The limit holds over any 60-second span (a moving window), wherever in a minute it starts.
    started = time.monotonic()
    responses = _burst(stack.base_url, burster["token"], limit + extra, workers=16)
    elapsed = time.monotonic() - started
    assert elapsed < 60, "the burst took longer than the window"

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: limit, 429: extra}, statuses
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(r.headers["Retry-After"]) <= 60
    # The limit is per user: someone else writing from the same address is unaffected.
    assert stack.call("PATCH", "/me", bystander["token"], json={"bio": "still fine"}).status_code == 200
    # Reads are not limited.
    assert stack.call("GET", "/me", burster["token"]).status_code == 200
    MEASUREMENTS.append(
        f"rate limit burst: {limit + extra} concurrent writes (16 threads) in {elapsed:.2f}s -> "
        f"{statuses[200]} x 200, {statuses[429]} x 429 (limit {limit}/min)"
    )


# ------------------------------------------------------------------ credentials are never echoed
UNKNOWN_PATHS = ["/feeds", "/", "/users", "/auth", "/posts/{post_id}/like/extra", "/me/"]
ALL_METHODS = [
    *("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"),
    *("TRACE", "QUERY", "PURGE", "PROPFIND"),
]


def _echoes(response: requests.Response, secrets: dict[str, str]) -> list[str]:
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    shown = response.content.decode("latin-1") + "\n" + headers
    return [name for name, secret in secrets.items() if secret in shown]


def test_no_response_repeats_a_credential_on_any_route_or_method(stack: Api) -> None:
    """Issue 12, item 4: Chalice's local answer to an unknown route ended with the caller's
    whole Authorization header. Every route of the contract and some that do not exist, every
    method, with a valid token, a password and a refresh token in the request (header, query
    and body): none of them may come back, in a body or a header, whatever the status."""
    password = f"pw-{uuid.uuid4().hex}"
    username = f"echo_{uuid.uuid4().hex[:10]}"
    signup = stack.call("POST", "/auth/signup", json={"username": username, "password": password}).json()
    token, refresh = signup["access_token"], signup["refresh_token"]
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    secrets = {
        "access token": token,
        "its signature": token.rsplit(".", 1)[1],
        "password": password,
        "password (basic auth)": basic,
        "refresh token": refresh,
    }
    target = stack.signup("target")
    post = stack.call("POST", "/posts", target["token"], json={"text": "a post to aim at"}).json()
    bodies = [
        {"username": username, "password": password},
        {"refresh_token": refresh},
        {"password": password, "token": token, "refresh_token": refresh},
    ]
    # Each (route, method) is sent once, with the next of every (Authorization, body) pair.
    variants = itertools.cycle(itertools.product([f"Bearer {token}", token, f"Basic {basic}"], bodies))
    templates = sorted({path for _, path in PROTECTED} | set(SPEC["paths"]) | set(UNKNOWN_PATHS))
    leaks, statuses = [], Counter()
    for template in templates:
        path = _fill(template, target["user_id"], post["post_id"], target["username"])
        for method in ALL_METHODS:
            auth, body = next(variants)
            r = stack.call(
                method, f"{path}?cursor={token}&limit={password}", headers={"Authorization": auth}, json=body
            )
            statuses[r.status_code] += 1
            if shown := _echoes(r, secrets):
                leaks.append((method, path, auth[:6], r.status_code, shown, r.text[:150]))
    assert not leaks, leaks
    assert statuses[404] and statuses[405] and statuses[401] and statuses[400], statuses
    # A wrong password and a garbage refresh token are not echoed either.
    for path, body in (
        ("/auth/login", {"username": username, "password": password + "x"}),
        ("/auth/refresh", {"refresh_token": refresh + "x"}),
    ):
        r = stack.call("POST", path, json=body)
        sent = next(iter(body.values())) if path.endswith("refresh") else body["password"]
        assert r.status_code == 401 and not _echoes(r, {**secrets, "sent": sent}), r.text


@pytest.mark.parametrize("path", ["/feeds", "/", "/posts/x/y/z"])
def test_an_unknown_route_is_a_404_in_the_error_shape(stack: Api, path: str) -> None:
    """Issue 12, item 4: ``GET /feeds`` answered 403 {"message": "Missing Authentication Token"}."""
    token = stack.signup("lost")["token"]
    for auth in (None, token):
        r = stack.call("GET", path, auth)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        assert r.json()["error"] == {"code": "not_found", "message": "no route matches this method and path"}
