"""The whole pipeline through HTTP: API -> DynamoDB -> streams -> fan-out -> Redis -> feed."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from tests.e2e.client import MEASUREMENTS, Api

pytestmark = pytest.mark.e2e
CONVERGENCE_DEADLINE_S = 15.0


def ids(feed: dict[str, Any]) -> list[str]:
    return [item["post_id"] for item in feed["items"]]


def wait_for(api: Api, token: str, post_id: str) -> float:
    """Poll the feed until ``post_id`` shows; returns seconds waited (fails at the deadline)."""
    start = time.monotonic()
    while time.monotonic() - start < CONVERGENCE_DEADLINE_S:
        if post_id in ids(api.feed(token)):
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail(f"post {post_id} did not reach the feed within {CONVERGENCE_DEADLINE_S}s")


def test_follower_sees_post_author_at_once_stranger_never(stack: Api) -> None:
    # Given B follows A, and C follows nobody
    a, b, c = stack.signup("a"), stack.signup("b"), stack.signup("c")
    assert stack.call("POST", f"/users/{a['user_id']}/follow", b["token"]).status_code == 200
    time.sleep(0.5)  # let the follow's own backfill (of nothing) pass

    # When A posts
    created = stack.call("POST", "/posts", a["token"], json={"text": "hello, ripple"})
    assert created.status_code == 201, created.text
    post = created.json()
    assert post["author_id"] == a["user_id"] and post["text"] == "hello, ripple"

    # Then A sees it immediately (read-your-writes) ...
    assert ids(stack.feed(a["token"]))[0] == post["post_id"]
    # ... B within a few seconds ...
    lag = wait_for(stack, b["token"], post["post_id"])
    MEASUREMENTS.append(f"follower convergence (one post, one follower): {lag * 1000:.0f} ms")
    # ... and C never (checked after B has converged, plus a margin).
    time.sleep(1.0)
    assert post["post_id"] not in ids(stack.feed(c["token"]))


def test_feed_paginates_newest_first_without_gaps(stack: Api) -> None:
    a, b = stack.signup("pa"), stack.signup("pb")
    stack.call("POST", f"/users/{a['user_id']}/follow", b["token"])
    posted = []
    for i in range(7):
        r = stack.call("POST", "/posts", a["token"], json={"text": f"post {i}"})
        assert r.status_code == 201
        posted.append(r.json()["post_id"])
    wait_for(stack, b["token"], posted[-1])
    lags = [wait_for(stack, b["token"], p) for p in posted]
    assert max(lags) < CONVERGENCE_DEADLINE_S

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = stack.feed(b["token"], **params)
        seen += ids(page)
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(posted))
    assert pages == 3


def test_unfollow_retracts_and_follow_backfills(stack: Api) -> None:
    a, b = stack.signup("ua"), stack.signup("ub")
    first = stack.call("POST", "/posts", a["token"], json={"text": "before the follow"}).json()
    # Following backfills A's recent posts into B's feed.
    stack.call("POST", f"/users/{a['user_id']}/follow", b["token"])
    wait_for(stack, b["token"], first["post_id"])
    # Unfollowing takes them out again.
    assert stack.call("DELETE", f"/users/{a['user_id']}/follow", b["token"]).status_code == 200
    deadline = time.monotonic() + CONVERGENCE_DEADLINE_S
    while first["post_id"] in ids(stack.feed(b["token"])):
        assert time.monotonic() < deadline, "unfollow was not retracted"
        time.sleep(0.05)


def test_convergence_lag_over_several_posts(stack: Api) -> None:
    author = stack.signup("la")
    followers = [stack.signup("lf") for _ in range(3)]
    for f in followers:
        stack.call("POST", f"/users/{author['user_id']}/follow", f["token"])
    time.sleep(0.5)
    lags = []
    for i in range(5):
        post = stack.call("POST", "/posts", author["token"], json={"text": f"lag probe {i}"}).json()
        lags += [wait_for(stack, f["token"], post["post_id"]) for f in followers[:1]]
    MEASUREMENTS.append(
        f"follower convergence over {len(lags)} posts: median {statistics.median(lags) * 1000:.0f} ms, "
        f"max {max(lags) * 1000:.0f} ms (poll interval 50 ms)"
    )


def test_bad_input_gets_4xx_in_one_shape(stack: Api) -> None:
    a = stack.signup("bad")
    token = a["token"]
    cases = [
        ("POST", "/posts", token, {"data": b'{"text": '}, 400, "validation_error"),
        ("POST", "/posts", token, {"json": {}}, 400, "validation_error"),
        ("POST", "/posts", token, {"json": {"text": "x" * 501}}, 400, "validation_error"),
        ("POST", "/posts", token, {"json": {"text": "hi", "extra": 1}}, 400, "validation_error"),
        ("POST", "/posts", None, {"json": {"text": "hi"}}, 401, "missing_token"),
        ("POST", "/posts", "not.a.jwt", {"json": {"text": "hi"}}, 401, "invalid_token"),
        ("POST", "/users/01JDQ0000000000000000ZZZZZ/follow", token, {}, 404, "not_found"),
        ("POST", "/users/nobody/follow", token, {}, 404, "not_found"),
        ("POST", f"/users/{a['user_id']}/follow", token, {}, 400, "cannot_follow_self"),
        ("GET", "/posts/01JDQ0000000000000000ZZZZZ", token, {}, 404, "not_found"),
        ("GET", "/feed", token, {"params": {"limit": "0"}}, 400, "validation_error"),
        ("GET", "/feed", token, {"params": {"cursor": "garbage"}}, 400, "validation_error"),
        ("POST", "/auth/signup", None, {"json": {"username": a["username"], "password": "whatever1"}}, 409,
         "username_taken"),
        ("POST", "/auth/login", None, {"json": {"username": a["username"], "password": "wrong pass"}}, 401,
         "invalid_credentials"),
        ("POST", "/posts", token, {"data": b"text=hi", "headers": {"Content-Type": "text/plain"}}, 415,
         "unsupported_media_type"),
        ("POST", "/posts", token, {"data": b'{"text": "' + b"x" * 20000 + b'"}'}, 413, "payload_too_large"),
    ]  # fmt: skip
    for method, path, tok, kwargs, status, code in cases:
        if "data" in kwargs:
            kwargs.setdefault("headers", {}).setdefault("Content-Type", "application/json")
        response = stack.call(method, path, tok, **kwargs)
        assert response.status_code == status, (method, path, response.status_code, response.text)
        error = response.json()["error"]
        assert error["code"] == code, (path, error)
        assert isinstance(error["message"], str) and error["message"]


def test_login_returns_tokens_that_work(stack: Api) -> None:
    a = stack.signup("login")
    r = stack.call("POST", "/auth/login", json={"username": a["username"], "password": "correct horse 1"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"access_token", "refresh_token", "user"}
    assert stack.call("GET", "/feed", body["access_token"]).status_code == 200
    assert stack.call("GET", "/feed", body["refresh_token"]).status_code == 401
