"""Every route of the API, through the very Chalice app Lambda runs (chalice.test.Client
builds API Gateway proxy events), against the real emulator and Redis: success paths,
validation, 401/403/404/409/429, idempotency, counters and pagination."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from chalice.test import Client

from ripple.auth.passwords import PasswordHasher
from ripple.cache.rate_limit import Limit
from ripple.container import Container
from ripple.domain import User
from ripple.errors import RateLimitedError
from ripple.ids import new_ulid
from ripple.repositories.models import RefreshTokenModel
from ripple_local.stack import LocalStack
from tests.integration.support import Http, error_code

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator
UNKNOWN_ID = "01JDQ0000000000000000ZZZZZ"


@pytest.fixture(scope="module")
def http(stack: LocalStack) -> Iterator[Http]:
    with Client(stack.handler("ApiFunction")) as client:
        yield Http(client)


# ------------------------------------------------------------------ response bodies
def test_bodies_leave_as_utf8_json_and_a_body_json_cannot_carry_is_a_500_in_the_error_shape(
    http: Http, stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies are written by ripple.http.responses (orjson), not Chalice: compact UTF-8. A
    view that returned an object JSON cannot carry (a datetime, a domain dataclass) is a bug:
    a 500 in the error shape, never the object's fields."""
    author = http.user("utf8")
    created = http("POST", "/posts", author["token"], {"text": "café 🙂"})
    assert created.status_code == 201 and created.json["text"] == "café 🙂"
    assert "café 🙂".encode() in created.body and b"\\u" not in created.body
    route = stack.handler("ApiFunction").routes["/feed"]["GET"]
    monkeypatch.setattr(route, "view_function", lambda: {"items": [datetime.now(UTC)]})
    broken = http("GET", "/feed", author["token"])
    assert broken.status_code == 500 and broken.json == {
        "error": {"code": "internal_error", "message": "an internal error occurred"}
    }


# ------------------------------------------------------------------ auth
def test_signup_login_refresh_logout(http: Http) -> None:
    u = http.user()
    login = http("POST", "/auth/login", body={"username": u["name"].upper(), "password": "password123"})
    assert login.status_code == 200 and login.json["user"]["user_id"] == u["id"]
    assert login.json["token_type"] == "Bearer" and login.json["expires_in"] > 0

    refreshed = http("POST", "/auth/refresh", body={"refresh_token": login.json["refresh_token"]})
    assert refreshed.status_code == 200
    assert http("GET", "/me", refreshed.json["access_token"]).json["user_id"] == u["id"]
    again = http("POST", "/auth/refresh", body={"refresh_token": refreshed.json["refresh_token"]})
    assert again.status_code == 200  # the successor is live, and so is its own successor

    assert (
        http("POST", "/auth/logout", body={"refresh_token": again.json["refresh_token"]}).status_code == 204
    )
    after = http("POST", "/auth/refresh", body={"refresh_token": again.json["refresh_token"]})
    assert after.status_code == 401 and error_code(after) == "invalid_token"
    # Logout is idempotent
    assert (
        http("POST", "/auth/logout", body={"refresh_token": again.json["refresh_token"]}).status_code == 204
    )
    # An access token is not a refresh token.
    wrong = http("POST", "/auth/refresh", body={"refresh_token": u["token"]})
    assert wrong.status_code == 401


def refresh(http: Http, token: str) -> Any:
    return http("POST", "/auth/refresh", body={"refresh_token": token})


def test_replaying_a_rotated_refresh_token_revokes_its_session_and_no_other(http: Http) -> None:
    # Given a user logged in on two devices, one of which has refreshed once
    u = http.user()
    phone, laptop = (
        http("POST", "/auth/login", body={"username": u["name"], "password": "password123"}).json
        for _ in range(2)
    )
    rotated = refresh(http, phone["refresh_token"])
    assert rotated.status_code == 200

    # When the phone's rotated-away token is replayed (by a thief, or by the phone itself)
    replay = refresh(http, phone["refresh_token"])

    # Then it is refused, and so is the session's live token: whoever holds it logs in again
    assert (replay.status_code, error_code(replay)) == (401, "invalid_token")
    live = refresh(http, rotated.json["refresh_token"])
    assert (live.status_code, error_code(live)) == (401, "invalid_token")
    # And the laptop's session goes on, as does the phone once it logs in again
    assert refresh(http, laptop["refresh_token"]).status_code == 200
    relogin = http("POST", "/auth/login", body={"username": u["name"], "password": "password123"})
    assert refresh(http, relogin.json["refresh_token"]).status_code == 200


def test_logout_with_any_token_of_a_session_ends_the_session(http: Http) -> None:
    # Given a session whose first refresh token has been rotated away
    u = http.user()
    first = u["refresh"]
    live = refresh(http, first).json["refresh_token"]
    # When the old token is presented to log out
    assert http("POST", "/auth/logout", body={"refresh_token": first}).status_code == 204
    # Then the live token is revoked with its session
    assert refresh(http, live).status_code == 401


def test_a_refresh_token_from_before_sessions_still_refreshes_and_its_replay_revokes(
    http: Http, container: Container
) -> None:
    # Given a refresh token issued before sessions existed: no sid, its row keyed by its own id
    # and naming no live token
    u = http.user()
    now, jti = int(time.time()), uuid.uuid4().hex
    claims = {"sub": u["id"], "typ": "refresh", "roles": [], "iat": now, "exp": now + 600, "jti": jti}
    legacy = jwt.encode(claims, container.jwt_secret, algorithm="HS256")
    RefreshTokenModel(token_id=jti, user_id=u["id"], expires_at=now + 600).save()

    # When it is used, it refreshes, and its successor continues its session
    rotated = refresh(http, legacy)
    assert rotated.status_code == 200
    successor = jwt.decode(rotated.json["refresh_token"], options={"verify_signature": False})
    assert successor["sid"] == jti

    # And a replay of it revokes that session, as for any rotated token
    assert refresh(http, legacy).status_code == 401
    assert refresh(http, rotated.json["refresh_token"]).status_code == 401


def test_auth_errors(http: Http) -> None:
    u = http.user()
    cases = [
        ("/auth/signup", {"username": u["name"], "password": "password123"}, 409, "username_taken"),
        ("/auth/signup", {"username": "x", "password": "password123"}, 400, "validation_error"),
        ("/auth/signup", {"username": "valid_name", "password": "short"}, 400, "validation_error"),
        ("/auth/signup", {"username": "valid_name", "password": "password123", "role": "admin"}, 400,
         "validation_error"),
        ("/auth/login", {"username": u["name"], "password": "wrong-password"}, 401, "invalid_credentials"),
        ("/auth/login", {"username": "nobody_here", "password": "password123"}, 401, "invalid_credentials"),
        ("/auth/refresh", {"refresh_token": "garbage"}, 401, "invalid_token"),
        ("/auth/refresh", {}, 400, "validation_error"),
    ]  # fmt: skip
    for path, body, status, code in cases:
        r = http("POST", path, body=body)
        assert (r.status_code, error_code(r)) == (status, code), (path, body, r.json)


def test_login_never_applies_the_signup_password_policy(http: Http, container: Container) -> None:
    """Issue 12, item 1: a wrong password of any length or content is 401, never 400."""
    u = http.user("pol")
    wrong = ["12345", "", " ", "x" * 129, "x" * 15_000, "\ud800", "p\u00e4ss\u200b", "password12", "\x00"]
    for password in wrong:
        r = http("POST", "/auth/login", body={"username": u["name"], "password": password})
        assert (r.status_code, error_code(r)) == (401, "invalid_credentials"), (len(password), r.json)
    for name in ("", "x", "a" * 31, "no such name!", "y" * 10_000):  # names sign-up would refuse
        r = http("POST", "/auth/login", body={"username": name, "password": "password123"})
        assert (r.status_code, error_code(r)) == (401, "invalid_credentials"), (name[:20], r.json)
    # The request's shape is still checked: 400.
    for body in ({"username": u["name"]}, {"username": u["name"], "password": 12345678},
                 {"username": u["name"], "password": "password123", "remember": True}, ["x"]):  # fmt: skip
        r = http("POST", "/auth/login", body=body)
        assert (r.status_code, error_code(r)) == (400, "validation_error"), body
    # The right password always works - also one set under an older, looser policy.
    assert (
        http("POST", "/auth/login", body={"username": u["name"], "password": "password123"}).status_code
        == 200
    )
    hasher = PasswordHasher(container.settings.password_scrypt_n)
    for name in (f"old_{uuid.uuid4().hex[:10]}", f"old-style.{uuid.uuid4().hex[:10]}"):  # the 2nd: a name
        legacy = User(user_id=new_ulid(), username=name, created_at=1)  # today's policy refuses
        container.users.create(legacy, hasher.hash("abc"))
        r = http("POST", "/auth/login", body={"username": name, "password": "abc"})
        assert r.status_code == 200 and r.json["user"]["user_id"] == legacy.user_id, name


def test_a_token_from_a_clock_a_few_seconds_ahead_is_accepted(http: Http, container: Container) -> None:
    """Issue 12, item 3: another container whose clock is 1-5 s ahead issued the token."""
    u = http.user("skew")
    for ahead in (1, 3, 5):
        now = int(time.time()) + ahead
        claims = {"sub": u["id"], "typ": "access", "roles": [], "iat": now, "exp": now + 900, "jti": "j"}
        token = jwt.encode(claims, container.jwt_secret, algorithm="HS256")
        r = http("GET", "/me", token)
        assert r.status_code == 200, (ahead, r.json)
    leeway = container.settings.jwt_leeway_seconds
    now = int(time.time()) + leeway + 30  # well beyond the leeway: refused
    claims = {"sub": u["id"], "typ": "access", "roles": [], "iat": now, "exp": now + 900, "jti": "j"}
    r = http("GET", "/me", jwt.encode(claims, container.jwt_secret, algorithm="HS256"))
    assert (r.status_code, error_code(r)) == (401, "invalid_token")


# ------------------------------------------------------------------ users
def test_profiles(http: Http) -> None:
    u = http.user("prof")
    me = http("GET", "/me", u["token"])
    assert me.status_code == 200 and me.json["username"] == u["name"]
    assert {"follower_count", "following_count", "post_count"} <= set(me.json)

    patched = http("PATCH", "/me", u["token"], {"display_name": "Pro File", "bio": "hello ✨"})
    assert patched.status_code == 200 and patched.json["display_name"] == "Pro File"
    assert http("GET", f"/users/{u['id']}", u["token"]).json["bio"] == "hello ✨"
    assert http("GET", f"/users/by-name/{u['name']}", u["token"]).json["user_id"] == u["id"]

    for body in ({}, {"bio": "x" * 161}, {"display_name": 5}, {"username": "other"}):
        r = http("PATCH", "/me", u["token"], body)
        assert (r.status_code, error_code(r)) == (400, "validation_error"), body
    for path in (
        f"/users/{UNKNOWN_ID}",
        "/users/not-an-id",
        "/users/by-name/nobody_at_all",
        "/users/by-name/!!",
    ):
        r = http("GET", path, u["token"])
        assert (r.status_code, error_code(r)) == (404, "not_found"), path


def test_every_non_public_route_needs_a_valid_token(http: Http, container: Container) -> None:
    u = http.user()
    routes = [
        ("GET", "/me"), ("PATCH", "/me"), ("GET", f"/users/{u['id']}"),
        ("GET", f"/users/by-name/{u['name']}"),
        ("POST", f"/users/{u['id']}/follow"), ("DELETE", f"/users/{u['id']}/follow"),
        ("GET", f"/users/{u['id']}/followers"), ("GET", f"/users/{u['id']}/following"),
        ("GET", f"/users/{u['id']}/posts"), ("POST", "/posts"), ("GET", f"/posts/{UNKNOWN_ID}"),
        ("DELETE", f"/posts/{UNKNOWN_ID}"), ("POST", f"/posts/{UNKNOWN_ID}/like"),
        ("DELETE", f"/posts/{UNKNOWN_ID}/like"), ("GET", "/feed"),
    ]  # fmt: skip
    forged = container.tokens.issue(u["id"]).access_token[:-4] + "AAAA"
    for method, path in routes:
        for token, code in (
            (None, "missing_token"),
            (forged, "invalid_token"),
            (u["refresh"], "invalid_token"),
        ):
            r = http(method, path, token, {"text": "x"})
            assert (r.status_code, error_code(r)) == (401, code), (method, path, token is None)


# ------------------------------------------------------------------ follows
def test_follow_is_idempotent_and_counted(http: Http) -> None:
    a, b = http.user("fa"), http.user("fb")
    first = http("POST", f"/users/{a['id']}/follow", b["token"])
    again = http("POST", f"/users/{a['id']}/follow", b["token"])
    assert (first.json["changed"], again.json["changed"]) == (True, False)
    assert http("GET", f"/users/{a['id']}", b["token"]).json["follower_count"] == 1
    assert http("GET", "/me", b["token"]).json["following_count"] == 1

    followers = http("GET", f"/users/{a['id']}/followers", b["token"]).json
    assert [x["user_id"] for x in followers["items"]] == [b["id"]] and followers["next_cursor"] is None
    assert [x["user_id"] for x in http("GET", f"/users/{b['id']}/following", a["token"]).json["items"]] == [
        a["id"]
    ]

    assert http("DELETE", f"/users/{a['id']}/follow", b["token"]).json["changed"] is True
    assert http("DELETE", f"/users/{a['id']}/follow", b["token"]).json["changed"] is False
    assert http("GET", f"/users/{a['id']}", b["token"]).json["follower_count"] == 0

    self_follow = http("POST", f"/users/{b['id']}/follow", b["token"])
    assert (self_follow.status_code, error_code(self_follow)) == (400, "cannot_follow_self")
    unknown = http("POST", f"/users/{UNKNOWN_ID}/follow", b["token"])
    assert (unknown.status_code, error_code(unknown)) == (404, "not_found")


def test_followers_paginate(http: Http) -> None:
    star = http.user("star")
    fans = [http.user("fan") for _ in range(5)]
    for f in fans:
        http("POST", f"/users/{star['id']}/follow", f["token"])
    seen, cursor = [], None
    while True:
        path = f"/users/{star['id']}/followers?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = http("GET", path, star["token"]).json
        seen += [x["user_id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(f["id"] for f in fans)


# ------------------------------------------------------------------ posts and likes
def test_posts_likes_and_ownership(http: Http, container: Container) -> None:
    author, other = http.user("author"), http.user("other")
    created = http("POST", "/posts", author["token"], {"text": "mine"})
    assert created.status_code == 201
    post = created.json
    assert post["like_count"] == 0 and post["author_id"] == author["id"] and post["liked_by_me"] is False
    assert http("GET", "/me", author["token"]).json["post_count"] == 1

    liked = http("POST", f"/posts/{post['post_id']}/like", other["token"])
    assert liked.json["like_count"] == 1 and liked.json["liked_by_me"] is True
    assert (
        http("POST", f"/posts/{post['post_id']}/like", other["token"]).json["like_count"] == 1
    )  # idempotent
    seen_by_other = http("GET", f"/posts/{post['post_id']}", other["token"]).json
    assert (seen_by_other["like_count"], seen_by_other["liked_by_me"]) == (1, True)
    assert http("GET", f"/posts/{post['post_id']}", author["token"]).json["liked_by_me"] is False
    unliked = http("DELETE", f"/posts/{post['post_id']}/like", other["token"])
    assert (unliked.json["like_count"], unliked.json["liked_by_me"]) == (0, False)

    # Another user cannot delete it (403) and it is unchanged afterwards.
    forbidden = http("DELETE", f"/posts/{post['post_id']}", other["token"])
    assert (forbidden.status_code, error_code(forbidden)) == (403, "forbidden")
    assert http("GET", f"/posts/{post['post_id']}", other["token"]).json["text"] == "mine"
    # The author can; then it is gone everywhere.
    assert http("DELETE", f"/posts/{post['post_id']}", author["token"]).status_code == 204
    for method, path in (("GET", f"/posts/{post['post_id']}"), ("DELETE", f"/posts/{post['post_id']}"),
                         ("POST", f"/posts/{post['post_id']}/like")):  # fmt: skip
        r = http(method, path, author["token"])
        assert (r.status_code, error_code(r)) == (404, "not_found"), (method, path)
    assert http("GET", "/me", author["token"]).json["post_count"] == 0


def test_admin_role_may_delete_any_post(http: Http, container: Container) -> None:
    author, admin = http.user("victim"), http.user("admin")
    container.users.set_roles(admin["id"], ["admin"])
    admin_token = http(
        "POST", "/auth/login", body={"username": admin["name"], "password": "password123"}
    ).json["access_token"]
    post = http("POST", "/posts", author["token"], {"text": "moderate me"}).json
    assert http("DELETE", f"/posts/{post['post_id']}", admin_token).status_code == 204


def test_user_posts_paginate_newest_first_while_new_posts_arrive(http: Http) -> None:
    a = http.user("pager")
    first_batch = [http("POST", "/posts", a["token"], {"text": f"p{i}"}).json["post_id"] for i in range(5)]
    page1 = http("GET", f"/users/{a['id']}/posts?limit=2", a["token"]).json
    # New posts arrive between page reads: they must not shift or duplicate older pages.
    for i in range(3):
        http("POST", "/posts", a["token"], {"text": f"late{i}"})
    seen = [p["post_id"] for p in page1["items"]]
    cursor = page1["next_cursor"]
    while cursor:
        page = http("GET", f"/users/{a['id']}/posts?limit=2&cursor={cursor}", a["token"]).json
        seen += [p["post_id"] for p in page["items"]]
        cursor = page["next_cursor"]
    assert seen == list(reversed(first_batch))


def test_feed_paginates_stably_while_new_posts_arrive(http: Http, stack: LocalStack) -> None:
    a, b = http.user("fa"), http.user("fb")
    http("POST", f"/users/{a['id']}/follow", b["token"])
    older = [http("POST", "/posts", a["token"], {"text": f"old{i}"}).json["post_id"] for i in range(6)]
    stack.drain()
    page1 = http("GET", "/feed?limit=4", b["token"]).json
    newer = [http("POST", "/posts", a["token"], {"text": f"new{i}"}).json["post_id"] for i in range(3)]
    stack.drain()
    page2 = http("GET", f"/feed?limit=4&cursor={page1['next_cursor']}", b["token"]).json
    assert [p["post_id"] for p in page1["items"] + page2["items"]] == list(reversed(older))
    assert page2["next_cursor"] is None
    top = http("GET", "/feed?limit=3", b["token"]).json
    assert [p["post_id"] for p in top["items"]] == list(reversed(newer))


def test_post_validation(http: Http) -> None:
    u = http.user()
    cases = [
        (b'{"text": ', 400, "validation_error"),
        (b"[]", 400, "validation_error"),
        (b'{"text": ""}', 400, "validation_error"),
        (json.dumps({"text": "x" * 501}).encode(), 400, "validation_error"),
        (json.dumps({"text": "x" * 20_000}).encode(), 413, "payload_too_large"),
        (b"[" * 40 + b"]" * 40, 400, "validation_error"),
    ]
    for raw, status, code in cases:
        r = http("POST", "/posts", u["token"], raw=raw)
        assert (r.status_code, error_code(r)) == (status, code), raw[:30]
    for query in ("limit=0", "limit=101", "limit=x", "cursor=%21%21"):
        r = http("GET", f"/feed?{query}", u["token"])
        assert (r.status_code, error_code(r)) == (400, "validation_error"), query


# ------------------------------------------------------------------ rate limits
def test_write_rate_limit_per_user_gives_429_with_retry_after(http: Http, container: Container) -> None:
    u = http.user("burst")
    limit = container.settings.rate_limit_writes_per_minute
    statuses = [http("PATCH", "/me", u["token"], {"bio": str(i)}).status_code for i in range(limit + 3)]
    assert statuses[:limit] == [200] * limit
    r = http("PATCH", "/me", u["token"], {"bio": "one more"})
    assert r.status_code == 429 and error_code(r) == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 61
    # Reads are not limited.
    assert http("GET", "/me", u["token"]).status_code == 200


def test_auth_rate_limit_per_ip(http: Http, container: Container) -> None:
    """Fill this IP's auth limit, then one more login is refused, with Retry-After."""
    limit = Limit("auth:ip", container.settings.rate_limit_auth_per_minute)  # app.AUTH_PER_IP
    try:
        with contextlib.suppress(RateLimitedError):
            for _ in range(limit.amount + 1):
                container.rate_limiter.check(limit, "127.0.0.1")
        r = http("POST", "/auth/login", body={"username": "whoever", "password": "password123"})
        assert r.status_code == 429 and error_code(r) == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
    finally:
        container.rate_limiter.reset(limit, "127.0.0.1")


# ------------------------------------------------------------------ meta
def test_openapi_and_health_are_public(http: Http) -> None:
    assert http("GET", "/health/live").json == {"status": "ok"}
    spec = http("GET", "/openapi.json")
    assert spec.status_code == 200 and spec.json["openapi"].startswith("3.")


def test_unsupported_method_and_media_type_use_the_error_shape(http: Http) -> None:
    u = http.user()
    r = http._client.http.request(
        "POST",
        "/posts",
        headers={"Authorization": f"Bearer {u['token']}", "Content-Type": "text/plain"},
        body=b"hi",
    )
    assert r.status_code == 415 and json.loads(r.body)["error"]["code"] == "unsupported_media_type"
    r = http("PUT", "/posts")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"


def test_no_response_repeats_caller_input_that_could_be_a_credential(http: Http) -> None:
    """A token pasted into a path, a body key or a Content-Type never comes back (a fresh-clone
    review found 404 and 400 messages repeating it, and 415 repeating any header)."""
    u = http.user("echo")
    token = u["token"]
    replies = [
        http("GET", f"/users/{token}", token),
        http("GET", f"/posts/{token}", token),
        http("GET", f"/users/by-name/{token}", token),
        http("POST", f"/users/{token}/follow", token),
        http("PATCH", "/me", token, body={token: "x", "bio": "fine"}),
    ]
    response = http._client.http.request(
        "POST",
        "/posts",
        headers={"Authorization": f"Bearer {token}", "Content-Type": f"text/{token}"},
        body=b"{}",
    )
    response.json = json.loads(response.body)
    replies.append(response)
    for reply in replies:
        assert 400 <= reply.status_code < 500, reply.body
        assert token not in reply.body.decode() and token not in str(reply.headers), reply.body
    assert [error_code(r) for r in replies] == ["not_found"] * 4 + [
        "validation_error",
        "unsupported_media_type",
    ]
    assert "1 other" in replies[4].json["error"]["message"]
