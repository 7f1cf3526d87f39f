"""Account deletion (issue 13): ``DELETE /me`` removes the account at once, and the erasure
that follows (``ripple.services.erasure``) leaves nothing of it in any table or cache, with
the counters on the other side corrected. Through the Chalice app and the real stream
runners, on the session's emulator; ``check-convergence`` proves the end state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from ripple.cache.errors import CacheError
from ripple.container import Container
from ripple.domain import Post
from ripple.errors import AuthenticationError, NotFoundError
from ripple.ids import new_ulid
from ripple.repositories.models import UsernameModel
from ripple.services.erasure import ERASE_PAGE, PHASES, erasure_of
from ripple_local.convergence import ConvergenceChecker
from ripple_local.stack import LocalStack
from tests.integration.test_api_routes import Http, error_code

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator

PASSWORD = "password123"  # Http.user's


@pytest.fixture(scope="module")
def http(stack: LocalStack) -> Iterator[Http]:
    with Client(stack.handler("ApiFunction")) as api:
        yield Http(api)


def delete_me(http: Http, user: dict[str, Any], password: str = PASSWORD) -> Any:
    return http("DELETE", "/me", user["token"], {"password": password})


def profile(http: Http, viewer: dict[str, Any], user_id: str) -> dict[str, Any]:
    r = http("GET", f"/users/{user_id}", viewer["token"])
    assert r.status_code == 200, r.body
    return dict(r.json)


def feed_ids(http: Http, user: dict[str, Any]) -> list[str]:
    r = http("GET", "/feed?limit=100", user["token"])
    assert r.status_code == 200, r.body
    return [p["post_id"] for p in r.json["items"]]


def test_deleting_an_account_needs_its_password_and_a_wrong_one_changes_nothing(http: Http) -> None:
    user = http.user("keeper")
    wrong = delete_me(http, user, "not my password")
    assert wrong.status_code == 403 and error_code(wrong) == "invalid_credentials"
    assert "not my password" not in wrong.body.decode()
    for bad in (None, {}, {"password": 123}, {"password": PASSWORD, "extra": 1}, [PASSWORD]):
        r = http("DELETE", "/me", user["token"], bad)
        assert r.status_code == 400 and error_code(r) == "validation_error", (bad, r.body)
    assert http("DELETE", "/me", None, {"password": PASSWORD}).status_code == 401
    # Still there, and still able to log in
    assert http("GET", "/me", user["token"]).status_code == 200
    login = http("POST", "/auth/login", body={"username": user["name"], "password": PASSWORD})
    assert login.status_code == 200


def test_a_deleted_account_is_gone_at_once(http: Http, stack: LocalStack) -> None:
    user, other = http.user("leaver"), http.user("other")
    assert delete_me(http, user).status_code == 204
    # Before any stream record is delivered: its tokens no longer work ...
    for method, path in (("GET", "/me"), ("GET", "/feed"), ("POST", "/posts")):
        r = http(method, path, user["token"], {"text": "still here?"} if method == "POST" else None)
        assert r.status_code == 401 and error_code(r) == "invalid_token", (path, r.body)
    refresh = http("POST", "/auth/refresh", body={"refresh_token": user["refresh"]})
    assert refresh.status_code == 401
    login = http("POST", "/auth/login", body={"username": user["name"], "password": PASSWORD})
    assert login.status_code == 401 and error_code(login) == "invalid_credentials"
    # ... and others cannot find or follow it
    assert http("GET", f"/users/{user['id']}", other["token"]).status_code == 404
    assert http("GET", f"/users/by-name/{user['name']}", other["token"]).status_code == 404
    assert http("GET", f"/users/{user['id']}/posts", other["token"]).status_code == 404
    assert http("POST", f"/users/{user['id']}/follow", other["token"]).status_code == 404
    # A second deletion with the same token: the account is gone
    assert delete_me(http, user).status_code == 401
    stack.drain()


def test_a_deleted_account_leaves_nothing_and_corrects_the_counters_of_others(
    http: Http, container: Container, stack: LocalStack
) -> None:
    # Given an account with posts, likes, follows both ways, a mute and a block both ways,
    # and a follower who has read its posts (so they are in DynamoDB and the cached feed)
    leaver, fan, idol, foe = http.user("leaver"), http.user("fan"), http.user("idol"), http.user("foe")
    assert http("POST", f"/users/{idol['id']}/mute", leaver["token"]).status_code == 200
    assert http("POST", f"/users/{foe['id']}/block", leaver["token"]).status_code == 200
    assert http("POST", f"/users/{leaver['id']}/block", foe["token"]).status_code == 200
    assert http("POST", f"/users/{leaver['id']}/follow", fan["token"]).status_code == 200
    assert http("POST", f"/users/{idol['id']}/follow", leaver["token"]).status_code == 200
    mine = [http("POST", "/posts", leaver["token"], {"text": f"mine {i}"}).json["post_id"] for i in range(3)]
    theirs = http("POST", "/posts", idol["token"], {"text": "idol's"}).json["post_id"]
    assert http("POST", f"/posts/{theirs}/like", leaver["token"]).status_code == 200
    assert http("POST", f"/posts/{theirs}/like", fan["token"]).status_code == 200
    assert http("POST", f"/posts/{mine[0]}/like", fan["token"]).status_code == 200
    stack.drain()
    assert set(mine) <= set(feed_ids(http, fan))  # cached now
    assert profile(http, fan, idol["id"])["follower_count"] == 1
    assert http("GET", f"/posts/{theirs}", fan["token"]).json["like_count"] == 2

    # When the account is deleted and the pipeline settles
    assert delete_me(http, leaver).status_code == 204
    stack.drain()

    # Then none of its posts is readable, in a feed or by id
    assert not set(mine) & set(feed_ids(http, fan))
    for post_id in mine:
        assert http("GET", f"/posts/{post_id}", fan["token"]).status_code == 404
    # and the counters of the others are corrected
    assert profile(http, fan, fan["id"])["following_count"] == 0
    idol_now = profile(http, fan, idol["id"])
    assert idol_now["follower_count"] == 0
    liked = http("GET", f"/posts/{theirs}", fan["token"]).json
    assert liked["like_count"] == 1 and liked["liked_by_me"] is True
    # and no table or cache names it any more: the convergence check proves it
    ids = [leaver["id"], fan["id"], idol["id"], foe["id"]]
    report = ConvergenceChecker.from_container(container).check(ids)
    assert report.ok, report.summary()
    assert [e.user_id for e in report.erased] == [leaver["id"]]
    assert http("GET", "/me/blocks", foe["token"]).json["items"] == []


def test_the_check_reports_what_a_deleted_account_left(
    http: Http, container: Container, stack: LocalStack
) -> None:
    leaver, fan = http.user("leaver"), http.user("fan")
    assert http("POST", f"/users/{leaver['id']}/follow", fan["token"]).status_code == 200
    post_id = http("POST", "/posts", leaver["token"], {"text": "soon gone"}).json["post_id"]
    stack.drain()
    assert delete_me(http, leaver).status_code == 204
    # Nothing delivered yet: the check sees the posts, the follow and the feed items left
    report = ConvergenceChecker.from_container(container).check([leaver["id"]])
    assert not report.ok
    (left,) = report.erased
    assert left.leftovers["posts"] == 1 and left.leftovers["followers"] == 1
    assert left.leftovers["feed_items_of_their_posts"] == 2  # their own and the fan's
    assert "blocks_and_mutes" not in left.leftovers  # a place with nothing is absent
    assert post_id and "deleted account" in report.summary()
    stack.drain()
    assert ConvergenceChecker.from_container(container).check([leaver["id"]]).ok


def test_an_erasure_pages_through_more_posts_than_one_step_holds(
    http: Http, container: Container, stack: LocalStack
) -> None:
    leaver = http.user("prolific")
    now = int(time.time() * 1000)
    for i in range(ERASE_PAGE + 5):  # straight to the repository: the API's rate limit is 40/min
        container.posts.create(Post(new_ulid(now - i), leaver["id"], f"post {i}", now - i))
    assert delete_me(http, leaver).status_code == 204
    stack.drain()
    report = ConvergenceChecker.from_container(container).check([leaver["id"]])
    assert report.ok, report.summary()


def test_a_post_being_fanned_out_when_its_author_is_deleted_reaches_no_feed(
    http: Http, container: Container, stack: LocalStack
) -> None:
    leaver, fans = http.user("leaver"), [http.user("fan") for _ in range(3)]
    for fan in fans:
        assert http("POST", f"/users/{leaver['id']}/follow", fan["token"]).status_code == 200
    stack.drain()
    # The post's fan-out and the account's erasure are both pending when the stream runs
    post_id = http("POST", "/posts", leaver["token"], {"text": "last words"}).json["post_id"]
    assert delete_me(http, leaver).status_code == 204
    stack.drain()
    for fan in fans:
        assert post_id not in feed_ids(http, fan)
        assert container.feed.page(fan["id"], 10) == []
    report = ConvergenceChecker.from_container(container).check([leaver["id"], *(f["id"] for f in fans)])
    assert report.ok, report.summary()


def test_no_like_follow_or_post_of_a_deleted_account_commits_after_its_deletion(
    http: Http, container: Container, stack: LocalStack
) -> None:
    # A request that passed the token check before the deletion reaches DynamoDB after it:
    # each transaction requires the account, so nothing is left behind the erasure.
    leaver, other = http.user("leaver"), http.user("other")
    post_id = http("POST", "/posts", other["token"], {"text": "like me"}).json["post_id"]
    assert delete_me(http, leaver).status_code == 204
    with pytest.raises(AuthenticationError):
        container.likes.like(leaver["id"], other["id"], post_id)
    with pytest.raises(AuthenticationError):
        container.follows.follow(leaver["id"], other["id"])
    with pytest.raises(NotFoundError):
        container.follows.follow(other["id"], leaver["id"])
    with pytest.raises(AuthenticationError):
        container.posts.create(Post(new_ulid(), leaver["id"], "ghost", int(time.time() * 1000)))
    stack.drain()
    assert http("GET", f"/posts/{post_id}", other["token"]).json["like_count"] == 0
    report = ConvergenceChecker.from_container(container).check([leaver["id"], other["id"]])
    assert report.ok, report.summary()


def test_replaying_every_step_of_an_erasure_changes_nothing(
    http: Http, container: Container, stack: LocalStack
) -> None:
    leaver, fan, idol = http.user("leaver"), http.user("fan"), http.user("idol")
    assert http("POST", f"/users/{leaver['id']}/follow", fan["token"]).status_code == 200
    assert http("POST", f"/users/{idol['id']}/follow", leaver["token"]).status_code == 200
    assert http("POST", f"/users/{idol['id']}/follow", fan["token"]).status_code == 200
    theirs = http("POST", "/posts", idol["token"], {"text": "idol's"}).json["post_id"]
    assert http("POST", f"/posts/{theirs}/like", leaver["token"]).status_code == 200
    assert http("POST", f"/posts/{theirs}/like", fan["token"]).status_code == 200
    assert delete_me(http, leaver).status_code == 204
    stack.drain()
    # Every step delivered again (a replayed batch, a redelivered record)
    first = erasure_of(leaver["id"], int(time.time() * 1000))
    for phase in PHASES:
        container.erasure.step(first.__class__(first.kind, first.author_id, phase, first.created_at, ""))
    stack.drain()
    assert profile(http, fan, idol["id"])["follower_count"] == 1
    assert http("GET", f"/posts/{theirs}", fan["token"]).json["like_count"] == 1
    assert ConvergenceChecker.from_container(container).check([leaver["id"], idol["id"]]).ok


def test_the_username_is_held_by_nobody_during_the_quarantine_then_released(
    http: Http, container: Container, stack: LocalStack
) -> None:
    leaver = http.user("leaver")
    assert delete_me(http, leaver).status_code == 204
    claim = UsernameModel.get(leaver["name"], consistent_read=True)
    quarantine_ms = container.settings.username_quarantine_days * 86_400_000
    assert (
        claim.released_at is not None
        and claim.released_at >= int(time.time() * 1000) + quarantine_ms - 60_000
    )
    taken = http("POST", "/auth/signup", body={"username": leaver["name"], "password": "another one"})
    assert taken.status_code == 409 and error_code(taken) == "username_taken"
    # When the quarantine ends, anyone may take the name: a new account, with a new id
    UsernameModel(username=leaver["name"]).update(
        actions=[UsernameModel.released_at.set(int(time.time() * 1000))]
    )
    again = http("POST", "/auth/signup", body={"username": leaver["name"], "password": "another one"})
    assert again.status_code == 201 and again.json["user"]["user_id"] != leaver["id"]
    assert container.users.id_by_username(leaver["name"]) == again.json["user"]["user_id"]
    stack.drain()


def test_if_redis_misses_the_forget_the_users_stream_repairs_it(
    http: Http, container: Container, stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an account Redis knows (its marker answers the token check without DynamoDB)
    leaver = http.user("leaver")
    assert http("GET", "/me", leaver["token"]).status_code == 200
    assert container.known_users.is_known(leaver["id"])

    # When the API's own forget fails at deletion
    def failing_forget(user_id: str) -> None:
        raise CacheError("redis unavailable")

    monkeypatch.setattr(container.known_users, "forget", failing_forget)
    assert delete_me(http, leaver).status_code == 204
    monkeypatch.undo()
    assert container.known_users.is_known(leaver["id"])  # stale: the token would still pass

    # Then the cache refresher, from the users stream's REMOVE, forgets it
    stack.drain()
    assert not container.known_users.is_known(leaver["id"])
    r = http("GET", "/me", leaver["token"])
    assert r.status_code == 401 and error_code(r) == "invalid_token"


def test_concurrent_deletions_of_one_account_delete_and_audit_it_once(
    http: Http, container: Container, stack: LocalStack
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    leaver = http.user("leaver")

    def attempt(_: int) -> str:
        try:
            container.accounts.delete(leaver["id"], PASSWORD)
        except AuthenticationError as exc:
            return exc.code
        return "deleted"

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    assert outcomes.count("deleted") == 1 and set(outcomes) == {"deleted", "invalid_token"}, outcomes
    stack.drain()


def test_a_deleted_accounts_token_is_a_401_on_every_write_never_a_429(http: Http, stack: LocalStack) -> None:
    leaver = http.user("leaver")
    assert delete_me(http, leaver).status_code == 204
    limit = 40  # RATE_LIMIT_WRITES_PER_MINUTE in the integration environment (conftest)
    statuses = {
        http("POST", "/posts", leaver["token"], {"text": "ghost"}).status_code for _ in range(limit + 5)
    }
    assert statuses == {401}
    stack.drain()


def test_an_own_profile_read_or_edit_racing_the_deletion_is_a_401(
    http: Http, container: Container, stack: LocalStack
) -> None:
    # The token passed its check; the account went before the profile was read or written.
    leaver = http.user("leaver")
    assert delete_me(http, leaver).status_code == 204
    for call in (lambda: container.user_service.me(leaver["id"]),
                 lambda: container.user_service.update_profile(leaver["id"], "x", None)):  # fmt: skip
        with pytest.raises(AuthenticationError) as raised:
            call()
        assert raised.value.code == "invalid_token"
    stack.drain()
