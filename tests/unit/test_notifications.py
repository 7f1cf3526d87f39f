"""Notification grouping and the producer's rules, without I/O: keys, windows and the
activity order; follows, likes and reposts as events, self-notification, the "may notify"
seam, the recipient lookup; and the fan-out consumer's routing of follows and likes to the
producer."""

from __future__ import annotations

from typing import Any

import pytest

from ripple.cursor import decode_cursor, encode_cursor
from ripple.errors import ValidationError
from ripple.notifications import (
    FOLLOWED,
    GROUP_WINDOW_MS,
    LIKED,
    REPOSTED,
    activity_key,
    group_key,
    is_activity_key,
    parse_group_key,
)
from ripple.repositories.notifications import Event
from ripple.services.fanout import FanoutConsumer
from ripple.services.notifications import NotificationProducer
from ripple.streams import INSERT, MODIFY, REMOVE, StreamChange

POST = "01JDQ7Z8M3K2P4R6T8V0W2X4Y6"
ALICE, BOB = "01JDQ0000000000000000AAAAA", "01JDQ0000000000000000BBBBB"
DAY_START = 20_000 * GROUP_WINDOW_MS


# ------------------------------------------------------------------ grouping
def test_one_group_per_kind_object_and_day() -> None:
    morning, evening = DAY_START + 1, DAY_START + GROUP_WINDOW_MS - 1
    assert group_key(LIKED, POST, morning) == group_key(LIKED, POST, evening) == f"liked#20000#{POST}"
    assert group_key(LIKED, POST, evening + 1) != group_key(LIKED, POST, evening)  # the next day
    assert group_key(LIKED, POST, morning) != group_key(REPOSTED, POST, morning)  # the kind
    assert group_key(LIKED, POST, morning) != group_key(LIKED, POST[:-1] + "7", morning)  # the post
    assert group_key(FOLLOWED, None, morning) == "followed#20000#-"
    with pytest.raises(ValueError):
        group_key("poked", None, morning)


def test_group_keys_parse_back_to_kind_and_object() -> None:
    assert parse_group_key(group_key(LIKED, POST, DAY_START)) == (LIKED, POST)
    assert parse_group_key(group_key(FOLLOWED, None, DAY_START)) == (FOLLOWED, None)
    assert parse_group_key(group_key(REPOSTED, POST, DAY_START)) == (REPOSTED, POST)


def test_activity_keys_order_by_time_then_group_and_are_the_cursor() -> None:
    a = activity_key(DAY_START + 5, group_key(LIKED, POST, DAY_START))
    b = activity_key(DAY_START + 40, group_key(FOLLOWED, None, DAY_START))
    c = activity_key(DAY_START + 40, group_key(LIKED, POST, DAY_START))
    assert a < b < c  # later activity sorts higher; a tie is broken by the group key
    assert all(is_activity_key(k) for k in (a, b, c))
    assert decode_cursor(encode_cursor(b), is_activity_key) == b
    for bad in (POST, "1#liked#1#X", f"{b}#extra", ""):
        assert not is_activity_key(bad)
    with pytest.raises(ValidationError):
        decode_cursor(encode_cursor(POST), is_activity_key)  # a feed cursor is not one of these


# ------------------------------------------------------------------ the producer
class FakeRepository:
    def __init__(self) -> None:
        self.added: list[Event] = []
        self.removed: list[Event] = []

    def add(self, event: Event) -> bool:
        self.added.append(event)
        return True

    def remove(self, event: Event) -> bool:
        self.removed.append(event)
        return True


def producer(
    repo: FakeRepository, authors: dict[str, str] | None = None, allow: bool = True
) -> NotificationProducer:
    return NotificationProducer(
        repo,  # type: ignore[arg-type]
        lambda post_id: (authors or {}).get(post_id),
        may_notify=lambda actor, recipient: allow,
    )


def test_follows_and_likes_become_events_for_the_followee_and_the_author() -> None:
    repo = FakeRepository()
    p = producer(repo, {POST: ALICE})
    assert p.followed(BOB, ALICE, DAY_START)
    assert p.liked(BOB, POST, ALICE, DAY_START + 1)
    assert p.liked(BOB, POST, None, DAY_START + 2)  # no author on the row: looked up
    assert repo.added == [
        Event(ALICE, FOLLOWED, None, BOB, DAY_START),
        Event(ALICE, LIKED, POST, BOB, DAY_START + 1),
        Event(ALICE, LIKED, POST, BOB, DAY_START + 2),
    ]
    assert p.unfollowed(BOB, ALICE, DAY_START) and p.unliked(BOB, POST, ALICE, DAY_START + 1)
    assert repo.removed == [
        Event(ALICE, FOLLOWED, None, BOB, DAY_START),
        Event(ALICE, LIKED, POST, BOB, DAY_START + 1),
    ]


def test_reposts_become_events_for_the_author_in_the_day_of_the_repost() -> None:
    repo = FakeRepository()
    p = producer(repo)  # the repost row names the author: nothing is looked up
    carol = "01JDQ0000000000000000CCCCC"
    assert p.reposted(BOB, POST, ALICE, DAY_START + 1)
    assert p.reposted(carol, POST, ALICE, DAY_START + GROUP_WINDOW_MS)  # the next day
    assert repo.added == [
        Event(ALICE, REPOSTED, POST, BOB, DAY_START + 1),
        Event(ALICE, REPOSTED, POST, carol, DAY_START + GROUP_WINDOW_MS),
    ]
    assert [e.group for e in repo.added] == [f"reposted#20000#{POST}", f"reposted#20001#{POST}"]
    # The removed row's time names the membership its repost made.
    assert p.unreposted(BOB, POST, ALICE, DAY_START + 1)
    assert repo.removed == [Event(ALICE, REPOSTED, POST, BOB, DAY_START + 1)]
    assert repo.removed[0].group == repo.added[0].group


def test_nobody_is_notified_of_their_own_like() -> None:
    repo = FakeRepository()
    p = producer(repo, {POST: ALICE})
    assert not p.liked(ALICE, POST, ALICE, DAY_START) and not p.unliked(ALICE, POST, None, DAY_START)
    assert repo.added == [] and repo.removed == []


def test_nobody_is_notified_of_their_own_repost() -> None:
    repo = FakeRepository()
    p = producer(repo)
    assert not p.reposted(ALICE, POST, ALICE, DAY_START) and not p.unreposted(ALICE, POST, ALICE, DAY_START)
    assert repo.added == [] and repo.removed == []


def test_a_like_of_a_post_that_is_gone_notifies_nobody() -> None:
    repo = FakeRepository()
    assert not producer(repo).liked(BOB, POST, None, DAY_START)
    assert repo.added == []


def test_a_refusing_may_notify_predicate_produces_nothing_but_removals_still_apply() -> None:
    repo = FakeRepository()
    asked: list[tuple[str, str]] = []

    def may_notify(actor: str, recipient: str) -> bool:
        asked.append((actor, recipient))
        return False

    p = NotificationProducer(repo, lambda _: ALICE, may_notify)  # type: ignore[arg-type]
    assert not p.followed(BOB, ALICE, DAY_START)
    assert not p.liked(BOB, POST, None, DAY_START)
    assert not p.reposted(BOB, POST, ALICE, DAY_START)
    assert repo.added == [] and asked == [(BOB, ALICE)] * 3
    # Taking an actor out never asks: what was produced before a block must be retractable.
    assert p.unliked(BOB, POST, ALICE, DAY_START) and p.unreposted(BOB, POST, ALICE, DAY_START)
    assert len(repo.removed) == 2 and len(asked) == 3


# ------------------------------------------------------------------ routing (fan-out)
class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, *args)) or True


class NoFanout:
    def follow_added(self, *args: Any) -> int:
        return 0

    def follow_removed(self, *args: Any) -> int:
        return 0


def consumer(notifier: Any) -> FanoutConsumer:
    return FanoutConsumer(
        NoFanout(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # no erasure job here
        "posts",
        "follows",
        "jobs",
        likes_table="likes",
        notifier=notifier,
    )


def change(table: str, event: str, row: dict[str, Any]) -> StreamChange:
    new, old = (row, {}) if event != REMOVE else ({}, row)
    return StreamChange(table=table, event=event, sequence_number="1", new_image=new, old_image=old)


def test_likes_and_follows_reach_the_notifier_with_their_rows_times() -> None:
    notifier = RecordingNotifier()
    c = consumer(notifier)
    like = {"post_id": POST, "user_id": BOB, "created_at": DAY_START, "author_id": ALICE}
    legacy = {"post_id": POST, "user_id": BOB, "created_at": DAY_START}
    follow = {"follower_id": BOB, "followee_id": ALICE, "created_at": DAY_START}
    for table, event, row in [
        ("likes", INSERT, like),
        ("likes", REMOVE, like),
        ("likes", INSERT, legacy),
        ("follows", INSERT, follow),
        ("follows", REMOVE, follow),
    ]:
        c.handle(change(table, event, row))
    assert c.action(change("likes", MODIFY, like)) is None
    assert notifier.calls == [
        ("liked", BOB, POST, ALICE, DAY_START),
        ("unliked", BOB, POST, ALICE, DAY_START),
        ("liked", BOB, POST, None, DAY_START),
        ("followed", BOB, ALICE, DAY_START),
        ("unfollowed", BOB, ALICE, DAY_START),
    ]


def test_without_a_notifier_likes_are_ignored_and_follows_only_fan_out() -> None:
    c = consumer(None)
    assert c.action(change("likes", INSERT, {"post_id": POST, "user_id": BOB, "created_at": 1})) is None
    c.handle(change("follows", INSERT, {"follower_id": BOB, "followee_id": ALICE, "created_at": 1}))
