"""Notifications over HTTP on the whole local stack: a follow and likes become grouped
notifications through the streams; the unread count and mark-as-read; the contract's shape."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.client import Api

pytestmark = pytest.mark.e2e
DEADLINE_S = 15.0


def notifications(api: Api, token: str, **params: Any) -> dict[str, Any]:
    reply = api.call("GET", "/notifications", token, params=params)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def wait_until(api: Api, token: str, done: Any) -> dict[str, Any]:
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE_S:
        page = notifications(api, token)
        if done(page):
            return page
        time.sleep(0.05)
    pytest.fail(f"notifications did not converge within {DEADLINE_S}s: {page}")


def test_follows_and_likes_become_grouped_notifications_and_can_be_marked_read(stack: Api) -> None:
    author, fan, other = stack.signup("na"), stack.signup("nf"), stack.signup("no")
    assert stack.call("POST", f"/users/{author['user_id']}/follow", fan["token"]).status_code == 200
    post = stack.call("POST", "/posts", author["token"], json={"text": "notify me"}).json()
    for user in (fan, other, author):  # the author's own like notifies nobody
        assert stack.call("POST", f"/posts/{post['post_id']}/like", user["token"]).status_code == 200

    page = wait_until(
        stack,
        author["token"],
        lambda p: (
            len(p["items"]) == 2 and p["items"][0]["kind"] == "liked" and p["items"][0]["actor_count"] == 2
        ),
    )
    liked, followed = page["items"]
    assert liked["post_id"] == post["post_id"] and set(liked["actors"]) == {fan["user_id"], other["user_id"]}
    assert followed == {
        "notification_id": followed["notification_id"],
        "kind": "followed",
        "post_id": None,
        "actors": [fan["user_id"]],
        "actor_count": 1,
        "updated_at": followed["updated_at"],
        "read": False,
    }
    assert page["unread_count"] == 2 and page["next_cursor"] is None

    first = notifications(stack, author["token"], limit=1)
    assert [n["notification_id"] for n in first["items"]] == [liked["notification_id"]]
    second = notifications(stack, author["token"], limit=1, cursor=first["next_cursor"])
    assert [n["notification_id"] for n in second["items"]] == [followed["notification_id"]]

    marked = stack.call("POST", "/notifications/read", author["token"])
    assert marked.status_code == 200 and marked.json() == {"unread_count": 0}
    after = notifications(stack, author["token"])
    assert after["unread_count"] == 0 and all(n["read"] for n in after["items"])

    # An unlike takes its actor out; the fan is told nothing about any of this.
    assert stack.call("DELETE", f"/posts/{post['post_id']}/like", other["token"]).status_code == 200
    wait_until(
        stack,
        author["token"],
        lambda p: [n["actor_count"] for n in p["items"] if n["kind"] == "liked"] == [1],
    )
    assert notifications(stack, fan["token"])["items"] == []


def test_notifications_need_a_token_and_reject_a_bad_cursor(stack: Api) -> None:
    user = stack.signup("nc")
    assert stack.call("GET", "/notifications").status_code == 401
    assert stack.call("POST", "/notifications/read").status_code == 401
    reply = stack.call("GET", "/notifications", user["token"], params={"cursor": "nonsense"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "validation_error"
