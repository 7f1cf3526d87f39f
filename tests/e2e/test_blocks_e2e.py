"""Blocks and mutes over HTTP on the running stack (processes, streams, Redis): a mute hides
at once and the stored feed follows, an unmute restores, a block ends the follows, and
``check-convergence`` (the operator's process) agrees at the end."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.client import Api
from tests.e2e.test_convergence_e2e import check_convergence

pytestmark = pytest.mark.e2e
DEADLINE_S = 60.0  # a hang guard: the loops end at the first success


def ids(feed: dict[str, Any]) -> list[str]:
    return [item["post_id"] for item in feed["items"]]


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json() if response.content else {}


def eventually(condition: Any) -> None:
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE_S:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"not within {DEADLINE_S}s")


def test_mute_unmute_and_block_over_http_converge(stack: Api) -> None:
    author, reader = stack.signup("bauthor"), stack.signup("breader")
    ok(stack.call("POST", f"/users/{author['user_id']}/follow", reader["token"]))
    first = stack.call("POST", "/posts", author["token"], json={"text": "before the mute"}).json()
    eventually(lambda: first["post_id"] in ids(stack.feed(reader["token"])))

    # A mute hides the author at once; later posts never arrive; the follow stays
    assert ok(stack.call("POST", f"/users/{author['user_id']}/mute", reader["token"]))["changed"] is True
    assert first["post_id"] not in ids(stack.feed(reader["token"]))
    second = stack.call("POST", "/posts", author["token"], json={"text": "while muted"}).json()
    time.sleep(1.0)
    assert second["post_id"] not in ids(stack.feed(reader["token"]))
    assert ok(stack.call("GET", f"/users/{author['user_id']}", reader["token"]))["follower_count"] == 1
    eventually(lambda: check_convergence(stack, reader["user_id"]).returncode == 0)

    # Unmuting brings both back
    ok(stack.call("DELETE", f"/users/{author['user_id']}/mute", reader["token"]))
    eventually(lambda: {first["post_id"], second["post_id"]} <= set(ids(stack.feed(reader["token"]))))

    # A block by the author ends the follow, hides everything both ways, and refuses a follow
    ok(stack.call("POST", f"/users/{reader['user_id']}/block", author["token"]))
    assert ids(stack.feed(reader["token"])) == []
    assert ok(stack.call("GET", f"/users/{author['user_id']}", reader["token"]))["follower_count"] == 0
    refused = stack.call("POST", f"/users/{author['user_id']}/follow", reader["token"])
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "blocked")
    eventually(lambda: check_convergence(stack, reader["user_id"], author["user_id"]).returncode == 0)
