"""Concurrent writes on the running stack lose nothing and count everything exactly.

The scenario that lost data on stock moto (its transactions copy whole tables and restore
them, unlocked, when a condition fails): one user repeating likes of one post from two
threads - so most of those transactions are cancelled by their own conditions - while
another user writes 25 posts and is followed and unfollowed by others in bursts. On
DynamoDB's own engine every 201 post exists, reaches every follower, and every counter
equals the rows it counts; ``check-convergence`` then finds nothing to report.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from ripple_local.aws import client
from tests.e2e.client import MEASUREMENTS, Api
from tests.e2e.test_convergence_e2e import SETTLE_DEADLINE_S, check_convergence

pytestmark = pytest.mark.e2e

POSTS = 25
LIKE_ROUNDS = 9  # per thread: like, like again, unlike: 2 x 27 writes, inside the 60/min limit
_DESERIALIZE = TypeDeserializer().deserialize


def _count(stack: Api, table: str, key: str, value: str) -> int:
    dynamodb = client("dynamodb", stack.endpoints)
    total, request = (
        0,
        {
            "TableName": f"ripple-local-{table}",
            "KeyConditionExpression": f"{key} = :v",
            "ExpressionAttributeValues": {":v": {"S": value}},
            "ConsistentRead": True,
            "Select": "COUNT",
        },
    )
    while True:
        page = dynamodb.query(**request)
        total += int(page["Count"])
        if "LastEvaluatedKey" not in page:
            return total
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _post_row(stack: Api, author_id: str, post_id: str) -> dict[str, Any]:
    item = client("dynamodb", stack.endpoints).get_item(
        TableName="ripple-local-PostsTable",
        Key={"author_id": {"S": author_id}, "post_id": {"S": post_id}},
        ConsistentRead=True,
    )["Item"]
    return {k: _DESERIALIZE(v) for k, v in item.items()}


def _in_threads(*jobs: Callable[[], None]) -> None:
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], None]) -> None:
        start.wait()
        job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        for future in [pool.submit(run, job) for job in jobs]:
            future.result()


@pytest.mark.slow
def test_concurrent_likes_posts_and_follows_lose_nothing_and_count_exactly(stack: Api) -> None:
    # Given an author with a post to like, a liker, two steady followers and two fickle ones
    author, liker = stack.signup("cc_author"), stack.signup("cc_liker")
    steady = [stack.signup("cc_steady") for _ in range(2)]
    fickle = [stack.signup("cc_fickle") for _ in range(2)]
    for follower in steady:
        assert stack.call("POST", f"/users/{author['user_id']}/follow", follower["token"]).status_code == 200
    hot = stack.call("POST", "/posts", author["token"], json={"text": "like me"}).json()["post_id"]
    statuses: list[int] = []
    created: list[str] = []
    lock = threading.Lock()

    def record(response: Any) -> Any:
        with lock:
            statuses.append(response.status_code)
        return response

    def like_repeatedly() -> None:
        for _ in range(LIKE_ROUNDS):
            record(stack.call("POST", f"/posts/{hot}/like", liker["token"]))
            record(stack.call("POST", f"/posts/{hot}/like", liker["token"]))
            record(stack.call("DELETE", f"/posts/{hot}/like", liker["token"]))

    def post_repeatedly() -> None:
        for i in range(POSTS):
            reply = record(stack.call("POST", "/posts", author["token"], json={"text": f"concurrent {i}"}))
            if reply.status_code == 201:
                with lock:
                    created.append(reply.json()["post_id"])

    def follow_in_bursts(follower: dict[str, Any]) -> Callable[[], None]:
        def burst() -> None:
            for _ in range(6):
                for method in ("POST", "POST", "DELETE", "POST"):
                    record(stack.call(method, f"/users/{author['user_id']}/follow", follower["token"]))

        return burst

    # When all of it happens at once
    started = time.monotonic()
    _in_threads(like_repeatedly, like_repeatedly, post_repeatedly, *(follow_in_bursts(f) for f in fickle))
    elapsed = time.monotonic() - started

    # Then every request succeeded (no 5xx, nothing rate limited), and no post was lost
    assert set(statuses) <= {200, 201}, sorted(set(statuses))
    assert len(created) == POSTS
    stored = {p["post_id"] for p in stack.call("GET", f"/users/{author['user_id']}/posts?limit=100",
                                                author["token"]).json()["items"]}  # fmt: skip
    assert set(created) | {hot} == stored

    # ... every counter equals the rows it counts ...
    profile = stack.call("GET", f"/users/{author['user_id']}", author["token"]).json()
    assert profile["post_count"] == POSTS + 1 == _count(stack, "PostsTable", "author_id", author["user_id"])
    followers = _count(stack, "FollowersTable", "followee_id", author["user_id"])
    assert profile["follower_count"] == followers == len(steady) + len(fickle)  # each burst ends following
    for follower in steady + fickle:
        me = stack.call("GET", f"/users/{follower['user_id']}", follower["token"]).json()
        assert me["following_count"] == _count(stack, "FollowsTable", "follower_id", follower["user_id"]) == 1
    likes = _count(stack, "LikesTable", "post_id", hot)
    assert int(_post_row(stack, author["user_id"], hot)["like_count"]) == likes
    assert likes in (0, 1)

    # ... and the feeds converge to their definition: each follower has every post
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while True:
        report = check_convergence(stack, author["user_id"], *(u["user_id"] for u in steady + fickle))
        if report.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-2000:]
    assert json.loads(report.stdout)["ok"] is True
    for follower in steady:
        feed = stack.feed(follower["token"], limit=50)["items"]
        assert set(created) <= {item["post_id"] for item in feed}
    MEASUREMENTS.append(
        f"concurrency: {len(statuses)} concurrent writes (5 threads) in {elapsed:.1f}s, "
        f"{POSTS}/{POSTS} posts kept, like_count {likes} = like rows, follower_count {followers} = rows"
    )
