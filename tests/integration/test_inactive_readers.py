"""Readers who are away (issue 11): fan-out skips them, their feed is rebuilt from the follow
graph when they return (``GET /feed`` answers 206 until it is complete), and feed items
carry a TTL. Through the Chalice app and the real stream runners, on the session's emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from ripple.config import DAY
from ripple.container import Container
from ripple.repositories.fanout_jobs import REBUILD, FanoutJob
from ripple.repositories.models import FeedItemModel, UserModel
from ripple.services.activity import ACTIVITY_RESOLUTION_MS
from ripple_local.aws import client
from ripple_local.convergence import AWAY, BACKFILL, ConvergenceChecker
from ripple_local.stack import LocalStack
from tests.integration.test_api_routes import Http

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator


@pytest.fixture(scope="module")
def http(stack: LocalStack) -> Iterator[Http]:
    with Client(stack.handler("ApiFunction")) as api:
        yield Http(api)


def now_ms() -> int:
    return int(time.time() * 1000)


def send_away(container: Container, user_id: str) -> None:
    """Record the user's last activity as one day longer ago than the setting."""
    days = container.settings.inactive_reader_days + 1
    UserModel(user_id=user_id).update(actions=[UserModel.last_active_at.set(now_ms() - days * DAY * 1000)])


def feed_ids(http: Http, user: dict[str, Any]) -> tuple[int, list[str], Any]:
    r = http("GET", "/feed?limit=100", user["token"])
    return r.status_code, [p["post_id"] for p in r.json["items"]], r.json


def audience(http: Http, container: Container) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An author, a follower who is active and one who is away."""
    author, active, away = http.user("author"), http.user("active"), http.user("away")
    for reader in (active, away):
        assert http("POST", f"/users/{author['id']}/follow", reader["token"]).status_code == 200
    send_away(container, away["id"])
    return author, active, away


def test_fanout_skips_readers_away_longer_than_the_setting(
    http: Http, container: Container, stack: LocalStack
) -> None:
    assert container.settings.inactive_reader_days > 0
    author, active, away = audience(http, container)

    post = http("POST", "/posts", author["token"], {"text": "while you were out"}).json["post_id"]
    stack.drain()

    assert post in feed_ids(http, active)[1]
    assert container.feed.page(away["id"], 10) == []  # nothing written for an absent reader
    # The convergence check knows the rule: the absent reader is not judged, the rest are
    report = ConvergenceChecker.from_container(container).check([author["id"], active["id"], away["id"]])
    assert report.ok, report.summary()
    assert [u.not_judged for u in report.users] == ["", "", AWAY]
    assert "1 feeds not judged (away)" in report.summary()  # the text output says so too


def test_a_returning_reader_reads_206_until_the_rebuild_is_done_then_the_whole_feed(
    http: Http, container: Container, stack: LocalStack
) -> None:
    # Given a reader who missed posts while away
    author, _, away = audience(http, container)
    posts = [
        http("POST", "/posts", author["token"], {"text": f"missed {i}"}).json["post_id"] for i in range(3)
    ]
    stack.drain()
    assert container.feed.page(away["id"], 10) == []

    # When a rebuild has started and not yet run, the feed says so: 206, what it has so far
    started = now_ms()
    container.users.start_feed_rebuild(away["id"], started)
    status, ids, body = feed_ids(http, away)
    assert (status, ids, body["rebuilding"]) == (206, [], True)

    # When the rebuild runs, then the feed is whole and answers 200 (and is cached again)
    container.fanout.run_job(FanoutJob(REBUILD, away["id"], "", started, after=""))
    status, ids, body = feed_ids(http, away)
    assert (status, sorted(ids)) == (200, sorted(posts)) and "rebuilding" not in body
    assert container.users.feed_rebuild_started(away["id"]) is None
    assert UserModel.get(away["id"], consistent_read=True).feed_rebuilt_at == started


def test_logging_in_after_an_absence_rebuilds_the_feed_through_the_pipeline(
    http: Http, container: Container, stack: LocalStack
) -> None:
    author, _, away = audience(http, container)
    missed = http("POST", "/posts", author["token"], {"text": "missed"}).json["post_id"]
    stack.drain()

    login = http("POST", "/auth/login", body={"username": away["name"], "password": "password123"})
    assert login.status_code == 200
    stack.drain()  # the rebuild job's record reaches fan-out

    away["token"] = login.json["access_token"]
    assert feed_ids(http, away)[:2] == (200, [missed])
    row = UserModel.get(away["id"], consistent_read=True)
    assert row.feed_rebuild_started is None and row.feed_rebuilt_at is not None
    # ... and posts made now are pushed to them again
    later = http("POST", "/posts", author["token"], {"text": "welcome back"}).json["post_id"]
    stack.drain()
    assert [e.post_id for e in container.feed.page(away["id"], 10)] == [later, missed]

    # The convergence check judges the rebuilt feed (and would see a lost item of it)
    checker = ConvergenceChecker.from_container(container)
    assert checker.check([away["id"]]).ok, checker.check([away["id"]]).summary()
    container.feed.delete_many([(away["id"], missed)])
    lost = checker.check([away["id"]]).for_user(away["id"])
    assert [(e.post_id, lost.reasons[e.post_id]) for e in lost.missing] == [(missed, BACKFILL)]


def test_activity_is_recorded_at_most_once_per_resolution(http: Http, container: Container) -> None:
    user = http.user("seen")
    first = UserModel.get(user["id"], consistent_read=True).last_active_at
    assert first is not None and abs(first - now_ms()) < 60_000
    assert container.users.touch(user["id"], first + ACTIVITY_RESOLUTION_MS // 2, ACTIVITY_RESOLUTION_MS) == (
        first + ACTIVITY_RESOLUTION_MS // 2
    )  # within the hour: not written
    assert UserModel.get(user["id"], consistent_read=True).last_active_at == first
    later = first + ACTIVITY_RESOLUTION_MS + 1
    assert container.users.touch(user["id"], later, ACTIVITY_RESOLUTION_MS) == first
    assert UserModel.get(user["id"], consistent_read=True).last_active_at == later


def test_feed_items_expire_by_dynamodb_ttl(http: Http, container: Container, stack: LocalStack) -> None:
    ttl_days = container.settings.feed_item_ttl_days
    assert ttl_days > 0
    described = client("dynamodb", stack.endpoints).describe_time_to_live(
        TableName=stack.table_name("FeedTable")
    )
    assert described["TimeToLiveDescription"].get("AttributeName") == "expires_at"

    author, active, _ = audience(http, container)
    post = http("POST", "/posts", author["token"], {"text": "ephemeral"}).json["post_id"]
    stack.drain()
    expected = time.time() + ttl_days * DAY
    for reader in (author, active):  # the author's own item (the post's transaction), and fan-out's
        item = FeedItemModel.get(reader["id"], post, consistent_read=True)
        assert item.expires_at is not None and abs(item.expires_at - expected) < 120, reader
