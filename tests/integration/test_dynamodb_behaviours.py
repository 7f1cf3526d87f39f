"""What real DynamoDB does that no emulator shows, injected, and Ripple correct under each.

The API runs as Lambda runs it behind a fault proxy (``tests.integration.proxied``), which
answers some requests the way DynamoDB does under contention and load:

* ``TransactionCanceledException`` with a ``TransactionConflict`` reason, for two
  transactions (or a transaction and a write) on one item at once - likes on a hot post,
  follows of a popular account. DynamoDB Local serializes transactions and never says so.
* Global secondary indexes that lag their table: an index read shortly after a write does
  not see it yet.
* ``UnprocessedKeys`` / ``UnprocessedItems`` from BatchGetItem / BatchWriteItem under load.
* A write that lands but whose answer is lost (a 500 after the commit), retried by botocore:
  the retry meets the first attempt's own write.

And what DynamoDB rejects that moto accepts: a batch naming one key twice.
"""

from __future__ import annotations

import itertools
import uuid

import pytest
from botocore.exceptions import ClientError

from ripple.repositories import batch as batch_module
from ripple.repositories.batch import batch_write
from ripple.repositories.models import FeedItemModel
from ripple.repositories.transactions import MAX_ATTEMPTS as TRANSACTION_ATTEMPTS
from ripple_local.fault_proxy import ERROR_AFTER_COMMIT, FORWARD, TRANSACTION_CONFLICT, UNPROCESSED, FaultPlan
from tests.integration.proxied import Harness, Reply, calls_of

pytestmark = [pytest.mark.integration]

INDEX_LAG_S = 60.0  # far longer than any test: an index that never catches up while we look


def _feed_ids(h: Harness, user_id: str) -> set[str]:
    rows = h._query(
        "FeedTable", KeyConditionExpression="user_id = :u", ExpressionAttributeValues={":u": {"S": user_id}}
    )
    return {str(r["post_id"]) for r in rows}


# ------------------------------------------------------------------ transaction conflicts
def test_a_transaction_conflict_is_retried_with_a_new_token_after_a_backoff(h: Harness) -> None:
    # Given an author and a reader, and DynamoDB cancelling the next two transactions for conflicts
    author, reader = h.user("txa"), h.user("txr")
    h.proxy.clear()
    h.proxy.plan = FaultPlan.only({"TransactWriteItems"}, pattern="XX.")

    # When the author posts
    reply = h.call("POST", "/posts", author["token"], {"text": "contended"})
    h.proxy.plan = FaultPlan()

    # Then the third attempt went through: one post, counted once
    assert reply.status == 201, reply
    attempts = calls_of(h, "TransactWriteItems")
    assert [a.outcome for a in attempts] == [TRANSACTION_CONFLICT, TRANSACTION_CONFLICT, FORWARD]
    tokens = {a.document()["ClientRequestToken"] for a in attempts}
    assert len(tokens) == 3  # a cancelled attempt wrote nothing: each retry is a new transaction
    gaps = [b.started - (a.started + a.duration_s) for a, b in itertools.pairwise(attempts)]
    assert all(gap > 0 for gap in gaps) and sum(gaps) >= 0.005, f"no backoff between attempts: {gaps}"
    assert [r["post_id"] for r in h.posts_of(author["id"])] == [reply.json["post_id"]]
    h.assert_counters_match_rows(author["id"])

    # And the same holds for a like and a follow on contended items
    h.proxy.plan = FaultPlan.only({"TransactWriteItems"}, pattern="X.")
    like = h.call("POST", f"/posts/{reply.json['post_id']}/like", reader["token"])
    follow = h.call("POST", f"/users/{author['id']}/follow", reader["token"])
    repost = h.call("POST", f"/posts/{reply.json['post_id']}/repost", reader["token"])
    h.proxy.plan = FaultPlan()
    assert (repost.status, repost.json["repost_count"]) == (200, 1), repost
    assert (like.status, like.json["like_count"]) == (200, 1), like
    assert follow.status == 200 and follow.json["changed"] is True, follow
    assert h.likers_of(reply.json["post_id"]) == {reader["id"]}
    for user in (author, reader):
        h.assert_counters_match_rows(user["id"])


def test_conflicts_past_the_retries_are_a_503_that_changed_nothing(h: Harness) -> None:
    # Given an author with a post and a reader
    author, reader = h.user("txc"), h.user("txd")
    post = h.call("POST", "/posts", author["token"], {"text": "hot"}).json
    before = {u["id"]: h.user_row(u["id"]) for u in (author, reader)}

    # When every transaction conflicts, every write gives up with a 503 and Retry-After
    h.proxy.plan = FaultPlan.only({"TransactWriteItems"}, pattern="X")
    writes = [
        ("POST", "/posts", author["token"], {"text": "never stored"}),
        ("POST", f"/posts/{post['post_id']}/like", reader["token"], None),
        ("POST", f"/users/{author['id']}/follow", reader["token"], None),
        ("POST", f"/posts/{post['post_id']}/repost", reader["token"], None),
        ("DELETE", f"/posts/{post['post_id']}", author["token"], None),
        (
            "POST",
            "/auth/signup",
            None,
            {"username": f"tx_{uuid.uuid4().hex[:10]}", "password": "password123"},
        ),
    ]
    replies: list[tuple[str, Reply, int]] = []
    for method, path, token, body in writes:
        h.proxy.clear()
        reply = h.call(method, path, token, body)
        replies.append((f"{method} {path}", reply, len(calls_of(h, "TransactWriteItems"))))
    h.proxy.plan = FaultPlan()
    for what, reply, tries in replies:
        assert (reply.status, reply.code) == (503, "service_unavailable"), (what, reply)
        assert reply.headers.get("Retry-After") == "1", (what, reply.headers)
        assert tries == TRANSACTION_ATTEMPTS, (what, tries)  # bounded, not forever

    # Then nothing changed: the post is there, unliked, no follow, counters as before
    assert [r["post_id"] for r in h.posts_of(author["id"])] == [post["post_id"]]
    assert h.likers_of(post["post_id"]) == set() and h.following_of(reader["id"]) == set()
    assert h.posts_of(author["id"])[0].get("repost_count", 0) == 0
    for user in (author, reader):
        assert h.user_row(user["id"]) == before[user["id"]]
        h.assert_counters_match_rows(user["id"])


# ------------------------------------------------------------------ index lag
def test_a_post_is_found_by_id_at_once_however_long_indexes_lag(h: Harness) -> None:
    # Given global secondary indexes that do not show new items for a minute
    author, reader = h.user("lga"), h.user("lgr")
    h.proxy.plan = FaultPlan(gsi_lag_s=INDEX_LAG_S)

    # When a post is read, liked, unliked and deleted right after it was made
    post = h.call("POST", "/posts", author["token"], {"text": "fresh"}).json
    got = h.call("GET", f"/posts/{post['post_id']}", reader["token"])
    liked = h.call("POST", f"/posts/{post['post_id']}/like", reader["token"])
    unliked = h.call("DELETE", f"/posts/{post['post_id']}/like", reader["token"])
    deleted = h.call("DELETE", f"/posts/{post['post_id']}", author["token"])
    h.proxy.plan = FaultPlan()

    # Then none of them is a 404: the post's id leads to it without an index
    assert got.status == 200 and got.json["post_id"] == post["post_id"], got
    assert (liked.status, liked.json["like_count"]) == (200, 1), liked
    assert (unliked.status, unliked.json["like_count"]) == (200, 0), unliked
    assert deleted.status == 204, deleted
    assert h.posts_of(author["id"]) == []
    h.assert_counters_match_rows(author["id"])
    assert not any(c.document().get("IndexName") for c in h.proxy.calls(dynamodb_only=True))


def test_fan_out_reaches_a_follower_who_followed_just_before_the_post_however_long_indexes_lag(
    h: Harness,
) -> None:
    # Given indexes that lag by a minute, and a reader who follows an author just before a post
    h.stack.drain()
    author, reader, early = h.user("lgf"), h.user("lgg"), h.user("lgh")
    h.call("POST", f"/users/{author['id']}/follow", early["token"])
    h.stack.drain()  # an older follow, settled
    h.proxy.plan = FaultPlan(gsi_lag_s=INDEX_LAG_S)
    assert h.call("POST", f"/users/{author['id']}/follow", reader["token"]).status == 200

    # When the author posts and the streams are delivered (fan-out and backfill run in-process)
    post = h.call("POST", "/posts", author["token"], {"text": "right after your follow"}).json
    h.stack.drain()
    h.proxy.plan = FaultPlan()

    # Then both followers have the post in their feed table (neither push nor backfill missed it)
    assert post["post_id"] in _feed_ids(h, reader["id"])
    assert post["post_id"] in _feed_ids(h, early["id"])
    assert h.followers_of(author["id"]) == {reader["id"], early["id"]}


# ------------------------------------------------------------------ lost responses
def test_a_refresh_whose_rotation_landed_but_whose_answer_was_lost_is_not_taken_for_a_replay(
    h: Harness,
) -> None:
    # Given a session, and DynamoDB applying the next refresh-token rotation but answering a 500
    u = h.user("rot")
    h.proxy.clear()
    h.proxy.plan = FaultPlan.only({"UpdateItem"}, {h.tables["RefreshTokensTable"]}, pattern="C.")

    # When the user refreshes (botocore retries the rotation, which now finds its own write)
    reply = h.call("POST", "/auth/refresh", body={"refresh_token": u["refresh"]})
    h.proxy.plan = FaultPlan()

    # Then the retry is taken for what it is: 200, the session not revoked, the new token live
    assert reply.status == 200, reply
    assert [
        c.outcome for c in calls_of(h, "UpdateItem") if c.tables == (h.tables["RefreshTokensTable"],)
    ] == [
        ERROR_AFTER_COMMIT,
        FORWARD,
    ]
    deletes = [c for c in calls_of(h, "DeleteItem") if c.tables == (h.tables["RefreshTokensTable"],)]
    assert deletes == []  # no revocation
    assert h.call("POST", "/auth/refresh", body={"refresh_token": reply.json["refresh_token"]}).status == 200
    # while the rotated-away token is still a replay
    assert h.call("POST", "/auth/refresh", body={"refresh_token": u["refresh"]}).status == 401


# ------------------------------------------------------------------ unprocessed keys and items
@pytest.mark.timeout(120)
def test_unprocessed_keys_are_retried_with_backoff_until_answered(h: Harness) -> None:
    # Given a reader who liked some of an author's posts
    author, reader = h.user("upa"), h.user("upr")
    posts = [h.call("POST", "/posts", author["token"], {"text": f"p{i}"}).json["post_id"] for i in range(6)]
    for post_id in posts[::2]:
        assert h.call("POST", f"/posts/{post_id}/like", reader["token"]).status == 200

    # When every other BatchGetItem leaves half its keys unprocessed
    h.proxy.clear()
    h.proxy.plan = FaultPlan.only({"BatchGetItem"}, pattern="U.")
    page = h.call("GET", f"/users/{author['id']}/posts?limit=10", reader["token"])
    h.proxy.plan = FaultPlan()

    # Then the page is complete and right, after a backed-off retry of the unprocessed keys
    assert page.status == 200, page
    liked = {item["post_id"] for item in page.json["items"] if item["liked_by_me"]}
    assert liked == set(posts[::2])
    gets = calls_of(h, "BatchGetItem")
    assert [g.outcome for g in gets[:2]] == [UNPROCESSED, FORWARD], gets
    assert gets[1].started - (gets[0].started + gets[0].duration_s) > 0


@pytest.mark.timeout(120)
def test_keys_unprocessed_for_ever_end_in_a_503_not_a_hang(h: Harness) -> None:
    author, reader = h.user("upb"), h.user("ups")
    for i in range(3):
        h.call("POST", "/posts", author["token"], {"text": f"q{i}"})

    h.proxy.clear()
    h.proxy.plan = FaultPlan.only({"BatchGetItem"}, pattern="U")
    reply = h.call("GET", f"/users/{author['id']}/posts", reader["token"])
    h.proxy.plan = FaultPlan()

    assert (reply.status, reply.code) == (503, "service_unavailable"), reply
    assert reply.headers.get("Retry-After")
    assert len(calls_of(h, "BatchGetItem")) == batch_module.MAX_ATTEMPTS


def test_fan_out_writes_every_item_when_batches_come_back_half_unprocessed(h: Harness) -> None:
    # Given an author with five followers
    h.stack.drain()
    author = h.user("upf")
    followers = [h.user("upg") for _ in range(5)]
    for follower in followers:
        h.call("POST", f"/users/{author['id']}/follow", follower["token"])
    h.stack.drain()

    # When half of every feed write batch comes back unprocessed until the last attempt
    h.proxy.clear()
    h.proxy.plan = FaultPlan.only({"BatchWriteItem"}, unprocessed=0.7, seed=7)
    post = h.call("POST", "/posts", author["token"], {"text": "to everyone"}).json
    h.stack.drain()
    stats = h.proxy.stats()
    h.proxy.plan = FaultPlan()

    # Then every follower got the post, and the proxy really held items back
    assert stats[UNPROCESSED] > 0, stats
    for follower in followers:
        assert post["post_id"] in _feed_ids(h, follower["id"]), follower


# ------------------------------------------------------------------ what DynamoDB rejects
def test_dynamodb_rejects_a_key_twice_in_one_batch_and_batch_write_never_sends_one(h: Harness) -> None:
    table = h.tables["FeedTable"]
    user = f"dup-{uuid.uuid4().hex[:8]}"
    key = {"user_id": {"S": user}, "post_id": {"S": "01JDQ0000000000000000AAAAA"}}
    item = {**key, "author_id": {"S": "a"}, "created_at": {"N": "1"}}
    # DynamoDB itself (the session's engine): a put and a delete of one key is refused
    with pytest.raises(ClientError) as refused:
        h.dynamodb.batch_write_item(
            RequestItems={table: [{"PutRequest": {"Item": item}}, {"DeleteRequest": {"Key": key}}]}
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"

    # batch_write sends a key once (the last put wins), and refuses put-and-delete itself
    first = FeedItemModel(user_id=user, post_id="01JDQ0000000000000000AAAAA", author_id="a", created_at=1)
    second = FeedItemModel(user_id=user, post_id="01JDQ0000000000000000AAAAA", author_id="b", created_at=2)
    assert batch_write(FeedItemModel, puts=[first, second]) == 1
    assert _feed_ids(h, user) == {"01JDQ0000000000000000AAAAA"}
    with pytest.raises(ValueError, match="both put and deleted"):
        batch_write(FeedItemModel, puts=[first], delete_keys=[key])
