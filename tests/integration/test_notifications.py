"""Notifications end to end on the real emulator: the services write follows and likes, the
local event source mappings deliver the follows and likes streams to the fan-out function
(the producer), and the notification service reads the groups back. Reposts: the rows are
put directly and the producer called as fan-out calls it on their stream records."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from ripple.container import Container
from ripple.cursor import encode_cursor
from ripple.domain import Post
from ripple.errors import ValidationError
from ripple.ids import new_ulid
from ripple.notifications import FOLLOWED, GROUP_WINDOW_MS, LIKED, MAX_ACTORS, REPOSTED, group_key
from ripple.repositories.models import RepostModel
from ripple.repositories.notifications import Event
from ripple.services.notifications import NotificationProducer
from ripple_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator


def signup(container: Container, name: str) -> str:
    return container.accounts.signup(f"{name}_{uuid.uuid4().hex[:8]}", "password123").user.user_id


def everything(container: Container, user_id: str) -> list[dict[str, Any]]:
    return [n.to_public() for n in container.notification_service.page(user_id, 100).items]


def unread(container: Container, user_id: str) -> int:
    return container.notification_service.page(user_id, 1).unread_count


def like_record(container: Container, event: str, liker: str, post_id: str, image: dict[str, Any]) -> dict:
    """A likes-stream record as Lambda delivers it (NEW_AND_OLD_IMAGES)."""
    typed = {k: ({"N": str(v)} if isinstance(v, int) else {"S": v}) for k, v in image.items()}
    table = container.settings.likes_table
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": time.time(),
            "Keys": {"post_id": {"S": post_id}, "user_id": {"S": liker}},
            "SequenceNumber": str(10**20 + int(time.time() * 1000)),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            ("NewImage" if event == "INSERT" else "OldImage"): typed,
        },
        "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2026-11-30",
    }


def test_a_follow_notifies_the_followee_once_and_an_unfollow_takes_it_back(
    stack: LocalStack, container: Container
) -> None:
    alice, bob = signup(container, "alice"), signup(container, "bob")
    container.follow_service.follow(bob, alice)
    stack.drain()

    [item] = everything(container, alice)
    assert item["kind"] == FOLLOWED and item["post_id"] is None
    assert item["actors"] == [bob] and item["actor_count"] == 1 and item["read"] is False
    assert unread(container, alice) == 1
    assert everything(container, bob) == []  # the follower is told nothing

    container.follow_service.unfollow(bob, alice)
    stack.drain()
    assert everything(container, alice) == [] and unread(container, alice) == 0


def test_likes_of_one_post_are_one_group_with_the_count_and_the_newest_actors(
    stack: LocalStack, container: Container
) -> None:
    author = signup(container, "author")
    post = container.post_service.create(author, "like me")
    likers = [signup(container, f"l{i}") for i in range(MAX_ACTORS + 2)]
    for liker in likers:
        container.post_service.like(liker, post.post_id)
        time.sleep(0.003)  # distinct like times: "newest" is well defined
    stack.drain()

    [group] = everything(container, author)
    assert group["kind"] == LIKED and group["post_id"] == post.post_id
    assert group["actor_count"] == len(likers)
    assert group["actors"] == list(reversed(likers))[:MAX_ACTORS]
    assert unread(container, author) == 1  # one group, however many likes

    # Unliking takes the actor out (the count and the names), and the last unlike the group.
    container.post_service.unlike(likers[-1], post.post_id)
    stack.drain()
    [group] = everything(container, author)
    assert group["actor_count"] == len(likers) - 1
    assert group["actors"] == list(reversed(likers[:-1]))[:MAX_ACTORS]
    for liker in likers[:-1]:
        container.post_service.unlike(liker, post.post_id)
    stack.drain()
    assert everything(container, author) == [] and unread(container, author) == 0


def test_a_redelivered_like_record_counts_once_and_a_redelivered_unlike_uncounts_once(
    container: Container, fanout_handler: Any
) -> None:
    author, liker, other = signup(container, "author"), signup(container, "liker"), signup(container, "o")
    post = container.post_service.create(author, "twice")
    liked_at = int(time.time() * 1000)
    row = {"post_id": post.post_id, "user_id": liker, "created_at": liked_at, "author_id": author}
    insert = {"Records": [like_record(container, "INSERT", liker, post.post_id, row)]}
    other_row = {**row, "user_id": other, "created_at": liked_at - 5}
    other_insert = {"Records": [like_record(container, "INSERT", other, post.post_id, other_row)]}

    for _ in range(3):  # at-least-once: the same record (and its whole batch) again
        assert fanout_handler(insert) == {"batchItemFailures": []}
    assert fanout_handler(other_insert) == {"batchItemFailures": []}
    [group] = everything(container, author)
    assert group["actor_count"] == 2 and group["actors"] == [liker, other]

    remove = {"Records": [like_record(container, "REMOVE", liker, post.post_id, row)]}
    for _ in range(2):
        assert fanout_handler(remove) == {"batchItemFailures": []}
    [group] = everything(container, author)
    assert group["actor_count"] == 1 and group["actors"] == [other]


def test_a_like_row_without_its_author_finds_the_recipient_by_post_id(
    container: Container, fanout_handler: Any
) -> None:
    author, liker = signup(container, "author"), signup(container, "liker")
    post = container.post_service.create(author, "legacy like")
    row = {"post_id": post.post_id, "user_id": liker, "created_at": int(time.time() * 1000)}
    assert fanout_handler({"Records": [like_record(container, "INSERT", liker, post.post_id, row)]}) == {
        "batchItemFailures": []
    }
    assert [n["actors"] for n in everything(container, author)] == [[liker]]


def test_liking_your_own_post_notifies_nobody(stack: LocalStack, container: Container) -> None:
    author = signup(container, "self")
    post = container.post_service.create(author, "mine")
    container.post_service.like(author, post.post_id)
    stack.drain()
    assert everything(container, author) == [] and unread(container, author) == 0


def test_a_deleted_posts_likes_leave_its_notification(stack: LocalStack, container: Container) -> None:
    author, liker = signup(container, "author"), signup(container, "liker")
    post = container.post_service.create(author, "soon gone")
    container.post_service.like(liker, post.post_id)
    stack.drain()
    assert len(everything(container, author)) == 1

    container.post_service.delete(post.post_id, author)
    stack.drain()  # fan-out purges the likes; their REMOVE records retract the notification
    assert everything(container, author) == []


def test_pages_are_newest_first_without_duplicates_or_gaps_while_activity_arrives(
    stack: LocalStack, container: Container
) -> None:
    author = signup(container, "author")
    fans = [signup(container, f"f{i}") for i in range(3)]
    posts = [container.post_service.create(author, f"p{i}") for i in range(4)]
    for fan in fans:
        container.follow_service.follow(fan, author)
    for p in posts:  # one like each, a group per post, each newer than the last
        container.post_service.like(fans[0], p.post_id)
        time.sleep(0.003)
    stack.drain()
    groups = everything(container, author)
    assert len(groups) == 5  # the follows (one group) and four posts
    times = [g["updated_at"] for g in groups]
    assert times == sorted(times, reverse=True)

    seen: list[str] = []
    page = container.notification_service.page(author, 2)
    seen += [n.notification_id for n in page.items]
    # New activity between page reads: a new group and new actors in an old one go to the
    # top; the next pages continue strictly after the cursor.
    late = container.post_service.create(author, "late")
    container.post_service.like(fans[1], late.post_id)
    container.post_service.like(fans[2], posts[0].post_id)
    stack.drain()
    while page.next_cursor:
        page = container.notification_service.page(author, 2, page.next_cursor)
        seen += [n.notification_id for n in page.items]
    assert len(seen) == len(set(seen))
    before = {g["notification_id"] for g in groups}
    moved = next(g["notification_id"] for g in groups if g["post_id"] == posts[0].post_id)
    # Everything that existed is seen once, except a group that moved above the cursor
    # after it was passed (it is at the top of a fresh first page).
    assert before - {moved} <= set(seen)
    assert [n.notification_id for n in container.notification_service.page(author, 2).items] == [
        moved,
        next(g["notification_id"] for g in everything(container, author) if g["post_id"] == late.post_id),
    ]


def test_a_bad_cursor_is_a_validation_error(container: Container) -> None:
    user = signup(container, "cursor")
    for cursor in ("nonsense", encode_cursor("01JDQ7Z8M3K2P4R6T8V0W2X4Y6")):
        with pytest.raises(ValidationError):
            container.notification_service.page(user, 10, cursor)


def test_unread_count_and_mark_as_read(stack: LocalStack, container: Container) -> None:
    author, fan = signup(container, "author"), signup(container, "fan")
    posts = [container.post_service.create(author, f"p{i}") for i in range(3)]
    for p in posts:
        container.post_service.like(fan, p.post_id)
    stack.drain()
    assert unread(container, author) == 3

    assert container.notification_service.mark_read(author) == 0
    assert unread(container, author) == 0
    assert all(n["read"] for n in everything(container, author))
    assert container.notification_service.mark_read(author) == 0  # idempotent

    time.sleep(0.005)
    newer = signup(container, "newer")
    container.post_service.like(newer, posts[1].post_id)  # new activity in a read group
    stack.drain()
    assert unread(container, author) == 1
    top = everything(container, author)[0]
    assert top["post_id"] == posts[1].post_id and top["read"] is False
    assert top["actors"] == [newer, fan] and top["actor_count"] == 2


def test_the_unread_count_stops_at_its_cap_in_one_query(container: Container) -> None:
    from ripple.repositories.notifications import UNREAD_COUNT_CAP

    recipient, actor = signup(container, "popular"), signup(container, "fan")
    base = int(time.time() * 1000)
    for i in range(UNREAD_COUNT_CAP + 1):  # one group per post
        container.notifications.add(
            Event(recipient, LIKED, f"01JDQ7Z8M3K2P4R6T8V0W2{i:04d}", actor, base + i)
        )
    assert container.notifications.unread_count(recipient, 0) == UNREAD_COUNT_CAP
    assert unread(container, recipient) == UNREAD_COUNT_CAP


def test_a_refusing_may_notify_predicate_produces_nothing(container: Container) -> None:
    author, liker = signup(container, "author"), signup(container, "blocked")
    post = container.post_service.create(author, "guarded")
    refused: list[tuple[str, str]] = []

    def may_notify(actor: str, recipient: str) -> bool:
        refused.append((actor, recipient))
        return False

    producer = NotificationProducer(container.notifications, container.posts.author_of, may_notify)
    now = int(time.time() * 1000)
    assert producer.liked(liker, post.post_id, author, now) is False
    assert producer.followed(liker, author, now) is False
    assert refused == [(liker, author), (liker, author)]
    assert everything(container, author) == []


def test_blocked_and_muted_accounts_produce_no_notification(stack: LocalStack, container: Container) -> None:
    from ripple_local.notification_check import check_notifications

    alice, muted, blocked, friend = (signup(container, n) for n in ("alice", "muted", "blocked", "friend"))
    post = container.post_service.create(alice, "notify me")
    container.block_service.mute(alice, muted)
    # A like committed before the block, delivered after it: the block wins too
    container.post_service.like(blocked, post.post_id)
    container.block_service.block(alice, blocked)
    container.follow_service.follow(muted, alice)
    container.post_service.like(muted, post.post_id)
    container.post_service.like(friend, post.post_id)
    stack.drain()

    items = everything(container, alice)
    assert [(i["kind"], i["actors"]) for i in items] == [(LIKED, [friend])]
    # ... and the check does not count what a hidden account did as missing
    report = check_notifications([alice])
    assert report.ok, report.summary()


def test_erase_user_removes_every_notification_of_the_user(container: Container) -> None:
    recipient, actor = signup(container, "erased"), signup(container, "actor")
    repo = container.notifications
    now = int(time.time() * 1000)
    repo.add(Event(recipient, FOLLOWED, None, actor, now))
    repo.add(Event(recipient, LIKED, "01JDQ7Z8M3K2P4R6T8V0W2X4Y6", actor, now))
    container.notification_service.mark_read(recipient)
    assert len(everything(container, recipient)) == 2

    # two groups, two memberships, the read mark
    assert repo.erase_user(recipient) == 5
    assert everything(container, recipient) == [] and repo.last_read_at(recipient) == 0
    assert repo.erase_user(recipient) == 0


def test_concurrent_changes_to_one_group_converge_to_the_exact_count_and_newest_actors(
    container: Container,
) -> None:
    """Likes of a hot post change one group from several invocations at once (and, across
    shards, in any order): memberships count each actor once, and whichever summary is
    written last was computed from the final version."""
    from concurrent.futures import ThreadPoolExecutor

    recipient = signup(container, "hot")
    actors = [signup(container, f"c{i}") for i in range(12)]
    base = int(time.time() * 1000)
    events = [
        Event(recipient, LIKED, "01JDQ7Z8M3K2P4R6T8V0W2X4Y6", a, base + i) for i, a in enumerate(actors)
    ]
    repo = container.notifications
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(repo.add, events + events))  # each twice, interleaved
        list(pool.map(repo.remove, events[:3]))
    [group] = everything(container, recipient)
    assert group["actor_count"] == len(actors) - 3
    assert group["actors"] == list(reversed(actors[3:]))[:MAX_ACTORS]
    assert group["updated_at"] == base + len(actors) - 1


def test_check_notifications_finds_nothing_on_a_settled_stack_and_reports_what_diverges(
    stack: LocalStack, container: Container
) -> None:
    from ripple.repositories.models import NotificationModel
    from ripple_local.notification_check import check_notifications

    author, fans = signup(container, "checked"), [signup(container, f"cf{i}") for i in range(2)]
    post = container.post_service.create(author, "checked")
    for fan in fans:
        container.follow_service.follow(fan, author)
        container.post_service.like(fan, post.post_id)
    container.post_service.like(author, post.post_id)  # one's own like is expected nowhere
    container.post_service.unlike(fans[1], post.post_id)
    stack.drain()
    report = check_notifications([author, *fans])
    assert report.ok, report.summary()
    assert report.summary() == "converged: 3 users' notifications checked, 0 differences"

    # A lost membership (a record that never arrived) and a stale summary are reported.
    member = next(r for r in NotificationModel.query(author) if r.sk.startswith("m#followed#"))
    member.delete()
    [check] = check_notifications([author]).users
    assert [(m[0].split("#")[0], m[2]) for m in check.missing] == [("followed", member.actor_id)]
    assert any("member_count 2 for 1 memberships" in p for p in check.bad_groups), check.bad_groups
    assert not check_notifications([author]).ok


def test_the_sample_like_events_notify_the_author_and_take_it_back(
    container: Container, fanout_handler: Any
) -> None:
    from tests.integration.support import (
        SAMPLE_AUTHOR,
        SAMPLE_CREATED_AT,
        SAMPLE_FOLLOWER,
        ensure_users,
        fresh_ids,
        load_event,
    )

    ids = fresh_ids()
    author, liker = ids[SAMPLE_AUTHOR], ids[SAMPLE_FOLLOWER]
    ensure_users(container, author, liker)
    assert fanout_handler(load_event("fanout/likes_insert.json", **ids)) == {"batchItemFailures": []}
    [group] = everything(container, author)
    assert group["kind"] == LIKED and group["actors"] == [liker]
    assert group["updated_at"] == int(ids[SAMPLE_CREATED_AT])
    assert fanout_handler(load_event("fanout/likes_remove.json", **ids)) == {"batchItemFailures": []}
    assert everything(container, author) == []


# ------------------------------------------------------------------ reposts
# The Reposts stream reaches the producer through fan-out (INSERT -> reposted, REMOVE ->
# unreposted); here the rows are put with the model and the producer is called as that
# consumer calls it, with the row's values.
def repost(reposter: str, post: Post, at: int) -> RepostModel:
    """A repost row as the write path leaves it (made at ``at``, epoch ms)."""
    row = RepostModel(
        post_id=post.post_id,
        user_id=reposter,
        repost_id=new_ulid(at),
        author_id=post.author_id,
        created_at=at,
    )
    row.save()
    return row


def moment() -> int:
    """Now (epoch ms), moved a second away from a UTC midnight: acts a few ms apart share a day."""
    now = int(time.time() * 1000)
    into_day = now % GROUP_WINDOW_MS
    return now + 1000 if into_day < 1000 else now - 1000 if into_day > GROUP_WINDOW_MS - 1000 else now


def reposted(container: Container, row: RepostModel) -> bool:
    """The row's INSERT record, delivered."""
    return container.notification_producer.reposted(
        row.user_id, row.post_id, row.author_id, int(row.created_at)
    )


def unreposted(container: Container, row: RepostModel) -> bool:
    """The row deleted (an undo, its post's purge, its reposter's erasure) and its REMOVE
    record (the old image: the repost's own time) delivered."""
    row.delete()
    return container.notification_producer.unreposted(
        row.user_id, row.post_id, row.author_id, int(row.created_at)
    )


def test_reposts_of_a_post_are_one_group_per_day_shaped_like_likes_and_served_by_the_api(
    stack: LocalStack, container: Container
) -> None:
    from chalice.test import Client

    with Client(stack.handler("ApiFunction")) as api:
        name = f"author_{uuid.uuid4().hex[:8]}"
        signed = api.http.post(
            "/auth/signup",
            headers={"Content-Type": "application/json"},
            body=json.dumps({"username": name, "password": "password123"}).encode(),
        )
        author, token = json.loads(signed.body)["user"]["user_id"], json.loads(signed.body)["access_token"]
        post = container.post_service.create(author, "repost me")
        now = moment()
        yesterday = now - GROUP_WINDOW_MS
        today_reposters = [signup(container, f"r{i}") for i in range(MAX_ACTORS + 1)]
        earlier_reposters = [signup(container, f"y{i}") for i in range(2)]
        for i, reposter in enumerate(earlier_reposters):
            assert reposted(container, repost(reposter, post, yesterday + i))
        for i, reposter in enumerate(today_reposters):
            assert reposted(container, repost(reposter, post, now + i))
        liker = signup(container, "liker")
        assert container.notification_producer.liked(liker, post.post_id, author, now - 1)

        today, liked, earlier = everything(container, author)  # newest activity first
        assert today["notification_id"] == group_key(REPOSTED, post.post_id, now)
        assert today["kind"] == REPOSTED and today["post_id"] == post.post_id
        assert today["actor_count"] == MAX_ACTORS + 1
        assert today["actors"] == list(reversed(today_reposters))[:MAX_ACTORS]
        assert today["updated_at"] == now + MAX_ACTORS
        assert liked["kind"] == LIKED and liked["actors"] == [liker]
        assert earlier["notification_id"] == group_key(REPOSTED, post.post_id, yesterday)
        assert earlier["kind"] == REPOSTED and earlier["post_id"] == post.post_id
        assert earlier["actors"] == list(reversed(earlier_reposters)) and earlier["actor_count"] == 2
        assert set(today) == set(earlier) == set(liked)  # one shape for both post kinds
        assert unread(container, author) == 3

        served = api.http.get("/notifications", headers={"Authorization": f"Bearer {token}"})
        assert served.status_code == 200
        assert json.loads(served.body) == {
            "items": [today, liked, earlier],
            "next_cursor": None,
            "unread_count": 3,
        }


def test_an_unrepost_takes_its_actor_out_of_the_group_its_repost_joined(container: Container) -> None:
    author, again, other = signup(container, "author"), signup(container, "again"), signup(container, "o")
    post = container.post_service.create(author, "undo me")
    now = moment()
    first = repost(again, post, now - GROUP_WINDOW_MS)  # yesterday's
    assert reposted(container, first)
    assert reposted(container, repost(other, post, now))
    assert [n["actors"] for n in everything(container, author)] == [[other], [again]]

    # The undo names yesterday's membership (the removed row's time): that group empties and
    # leaves the list; today's is untouched.
    assert unreposted(container, first)
    assert [n["actors"] for n in everything(container, author)] == [[other]]
    # A repost again today joins today's group; its undo takes out that membership only.
    second = repost(again, post, now + 1)
    assert reposted(container, second)
    [group] = everything(container, author)
    assert group["actors"] == [again, other] and group["actor_count"] == 2
    assert unreposted(container, second)
    [group] = everything(container, author)
    assert group["actors"] == [other] and group["actor_count"] == 1
    assert not container.notification_producer.unreposted(again, post.post_id, author, now - GROUP_WINDOW_MS)


def test_a_redelivered_repost_counts_once_and_a_redelivered_unrepost_uncounts_once(
    container: Container,
) -> None:
    author, reposter, other = (signup(container, n) for n in ("author", "reposter", "o"))
    post = container.post_service.create(author, "twice")
    now = moment()
    row = repost(reposter, post, now)
    assert [reposted(container, row) for _ in range(3)] == [True, False, False]  # at-least-once
    assert reposted(container, repost(other, post, now - 5))
    [group] = everything(container, author)
    assert group["actor_count"] == 2 and group["actors"] == [reposter, other]

    producer = container.notification_producer
    assert unreposted(container, row)
    assert not producer.unreposted(reposter, post.post_id, author, now)  # the REMOVE again
    [group] = everything(container, author)
    assert group["actor_count"] == 1 and group["actors"] == [other]


def test_reposting_your_own_post_notifies_nobody(container: Container) -> None:
    from ripple_local.notification_check import check_notifications

    author = signup(container, "self")
    post = container.post_service.create(author, "mine")
    row = repost(author, post, moment())
    assert not reposted(container, row)
    assert everything(container, author) == [] and unread(container, author) == 0
    assert check_notifications([author]).ok  # expected nowhere either
    assert not unreposted(container, row)


def test_reposts_by_blocked_or_muted_accounts_produce_no_notification(container: Container) -> None:
    from ripple_local.notification_check import check_notifications

    alice, muted, blocked, blocker, friend, earlier = (
        signup(container, n) for n in ("alice", "muted", "blocked", "blocker", "friend", "earlier")
    )
    post = container.post_service.create(alice, "notify me")
    now = moment()
    before = repost(earlier, post, now - 10)
    assert reposted(container, before)  # produced before the mute: it stays
    container.block_service.mute(alice, muted)
    container.block_service.mute(alice, earlier)
    container.block_service.block(alice, blocked)
    container.block_service.block(blocker, alice)
    for actor in (muted, blocked, blocker):
        assert not reposted(container, repost(actor, post, now))
    assert reposted(container, repost(friend, post, now + 1))
    [group] = everything(container, alice)
    assert group["kind"] == REPOSTED and group["actors"] == [friend, earlier]
    # ... the check judges none of the hidden accounts' reposts ...
    report = check_notifications([alice])
    assert report.ok, report.summary()
    # ... and removals never ask: a muted account's undo takes it out.
    assert unreposted(container, before)
    assert [n["actors"] for n in everything(container, alice)] == [[friend]]


def test_check_notifications_reports_reposts_not_yet_notified_and_notifications_of_undone_ones(
    container: Container,
) -> None:
    from ripple_local.notification_check import check_notifications

    author, fans = signup(container, "checked"), [signup(container, f"rf{i}") for i in range(2)]
    post = container.post_service.create(author, "checked")
    now = moment()
    rows = [repost(fan, post, now + i) for i, fan in enumerate(fans)]
    [check] = check_notifications([author]).users  # the records not delivered yet
    key = group_key(REPOSTED, post.post_id, now)
    assert check.missing == [(key, now, fans[0]), (key, now + 1, fans[1])]
    assert check.extra == [] and check.bad_groups == []

    for row in rows:
        reposted(container, row)
    report = check_notifications([author, *fans])
    assert report.ok, report.summary()

    rows[1].delete()  # an undo whose REMOVE record has not arrived
    [check] = check_notifications([author]).users
    assert check.extra == [(key, now + 1, fans[1])] and check.missing == []
    assert container.notification_producer.unreposted(fans[1], post.post_id, author, now + 1)
    assert check_notifications([author]).ok


def test_an_erased_accounts_reposts_leave_the_groups_they_joined(container: Container) -> None:
    """Erasure removes the account's reposts (their REMOVE records reach ``unreposted``) and
    its own notifications (``erase_user``), reposted groups among them."""
    from ripple.repositories.models import RepostByUserModel
    from ripple_local.notification_check import check_notifications

    erased, stays = signup(container, "erased"), signup(container, "stays")
    authors = [signup(container, f"a{i}") for i in range(2)]
    posts = [container.post_service.create(a, "reposted by the erased") for a in authors]
    own = container.post_service.create(erased, "the erased one's")
    now = moment()
    rows = []
    for post in posts:
        rows.append(repost(erased, post, now))
        RepostByUserModel(
            user_id=erased, post_id=post.post_id, repost_id=rows[-1].repost_id, author_id=post.author_id
        ).save()
        assert reposted(container, rows[-1])
        assert reposted(container, repost(stays, post, now - 1))
    assert reposted(container, repost(stays, own, now))
    assert [n["actors"] for n in everything(container, erased)] == [[stays]]

    for inverse in RepostByUserModel.query(erased, consistent_read=True):  # the erasure's reposts phase
        unreposted(container, RepostModel.get(inverse.post_id, erased, consistent_read=True))
        inverse.delete()
    for author in authors:
        assert [n["actors"] for n in everything(container, author)] == [[stays]]
    assert container.notifications.erase_user(erased) == 2  # the group and its membership
    assert everything(container, erased) == []
    report = check_notifications(authors)
    assert report.ok, report.summary()
