"""AccountService.login: password and username rules apply where a password is set, never where
one is checked; every failure is the same 401 at the same cost (one scrypt verification)."""

from __future__ import annotations

from typing import Any

import pytest

from ripple.auth.passwords import PasswordHasher
from ripple.auth.tokens import TokenService
from ripple.domain import Credentials, User
from ripple.errors import AuthenticationError
from ripple.services.accounts import AccountService

PASSWORD = "correct horse"
# Passwords sign-up refuses today (too short, too long, empty, odd Unicode): at login each is
# just a wrong password.
WRONG = ["x" * 5, "", "x" * 129, "x" * 16_000, "\ud800", "p\u00e4ss\u200b", "\x00" * 3, PASSWORD + " "]


class CountingHasher(PasswordHasher):
    """A cheap scrypt that counts verifications (the cost an attacker could time)."""

    def __init__(self) -> None:
        super().__init__(n=2**4)
        self.verifications = 0

    def verify(self, password: str, stored: str) -> bool:
        self.verifications += 1
        return super().verify(password, stored)


def dynamodb_would_refuse(key: str) -> bool:
    """An empty key, one over 2048 bytes, or one UTF-8 cannot encode."""
    try:
        return not 0 < len(key.encode("utf-8")) <= 2048
    except UnicodeEncodeError:
        return True


class Users:
    """The one UserRepository method login uses; like DynamoDB, it refuses keys it cannot hold."""

    def __init__(self, hasher: PasswordHasher, passwords: dict[str, str]) -> None:
        self.rows = {
            name: Credentials(User(user_id=f"U{i}", username=name, created_at=1), hasher.hash(password))
            for i, (name, password) in enumerate(passwords.items())
        }
        self.lookups: list[str] = []

    def credentials_by_username(self, username: str) -> Credentials | None:
        if dynamodb_would_refuse(username):
            raise AssertionError(f"looked up {username[:40]!r}: DynamoDB refuses such a key")
        self.lookups.append(username)
        return self.rows.get(username)


class RefreshTokens:
    def store(self, *args: Any) -> None:
        pass


class Activity:
    def __init__(self) -> None:
        self.seen_users: list[str] = []

    def seen(self, user_id: str) -> bool:
        self.seen_users.append(user_id)
        return False


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


def service(hasher: PasswordHasher, **passwords: str) -> tuple[AccountService, Users]:
    users = Users(hasher, passwords)
    accounts = AccountService(
        users,  # type: ignore[arg-type]
        RefreshTokens(),  # type: ignore[arg-type]
        hasher,
        TokenService("k" * 40, 60, 600),
        Activity(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # login, the only use here, never touches Redis
        username_quarantine_ms=0,
    )
    return accounts, users


@pytest.mark.parametrize("wrong", WRONG, ids=lambda p: f"{len(p)} chars {p[:6]!r}")
def test_any_wrong_password_is_invalid_credentials_at_the_cost_of_one_verification(
    hasher: CountingHasher, wrong: str
) -> None:
    accounts, _ = service(hasher, alice=PASSWORD)
    with pytest.raises(AuthenticationError) as raised:
        accounts.login("alice", wrong)
    assert raised.value.code == "invalid_credentials"
    assert hasher.verifications == 1


@pytest.mark.parametrize("name", ["nobody_here", "", "x", "a" * 31, "al ice", "x" * 2049, "\ud800ab"])
def test_an_unknown_or_impossible_username_costs_the_same_as_a_wrong_password(
    hasher: CountingHasher, name: str
) -> None:
    accounts, users = service(hasher, alice=PASSWORD)
    with pytest.raises(AuthenticationError) as raised:
        accounts.login(name, PASSWORD)
    assert raised.value.code == "invalid_credentials"
    assert hasher.verifications == 1  # against the dummy hash
    assert users.lookups == ([] if dynamodb_would_refuse(name) else [name])


def test_a_password_or_username_outside_todays_policy_still_logs_in(hasher: CountingHasher) -> None:
    """A stricter policy must never lock out a user whose credentials met an older one."""
    for password in ("short", "x" * 300, "p\u00e4ss w\u00f6rd \U0001f511"):
        accounts, _ = service(hasher, alice=password)
        assert accounts.login("alice", password).user.username == "alice"
    for name in ("al", "old-style.name", "a" * 40):
        accounts, _ = service(hasher, **{name: PASSWORD})
        assert accounts.login(name, PASSWORD).user.username == name


# ------------------------------------------------------------------ refresh: the service's branches
class Sessions:
    """The session rows refresh uses, in memory: ``live`` maps a session id to (user, live token)."""

    def __init__(self) -> None:
        self.live: dict[str, tuple[str, str]] = {}
        self.calls: list[str] = []

    def rotate(
        self, session_id: str, presented_id: str, user_id: str, successor_id: str, expires_at: int
    ) -> bool:
        self.calls.append("rotate")
        if self.live.get(session_id) not in ((user_id, presented_id), (user_id, successor_id)):
            return False
        self.live[session_id] = (user_id, successor_id)
        return True

    def end(self, session_id: str, user_id: str) -> bool:
        self.calls.append("end")
        if self.live.get(session_id, ("", ""))[0] != user_id:
            return False
        del self.live[session_id]
        return True


class UsersById:
    def __init__(self, *user_ids: str) -> None:
        self.rows = {u: User(user_id=u, username=u.lower(), created_at=1) for u in user_ids}

    def get(self, user_id: str) -> User | None:
        return self.rows.get(user_id)


def audits(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ``audit`` field of each log line (Powertools keeps ``extra`` on the record)."""
    return [r.audit for r in caplog.records if hasattr(r, "audit")]


def refresh_service(
    users: UsersById, sessions: Sessions, activity: Activity
) -> tuple[AccountService, TokenService]:
    tokens = TokenService("k" * 40, 60, 600)
    accounts = AccountService(
        users,  # type: ignore[arg-type]
        sessions,  # type: ignore[arg-type]
        PasswordHasher(n=2**4),
        tokens,
        activity,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # refresh never touches Redis
        username_quarantine_ms=0,
    )
    return accounts, tokens


class OrderedActivity(Activity):
    """Activity whose marks go into the sessions' call list, to see the order."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    def seen(self, user_id: str) -> bool:
        self.calls.append("seen")
        return super().seen(user_id)


def test_a_refresh_rotates_the_live_token_and_marks_the_reader_active_first() -> None:
    sessions = Sessions()
    activity = OrderedActivity(sessions.calls)
    accounts, tokens = refresh_service(UsersById("U1"), sessions, activity)
    first = tokens.issue("U1")
    sessions.live[first.session_id] = ("U1", first.refresh_token_id)

    session = accounts.refresh(first.refresh_token)

    assert sessions.live[first.session_id] == ("U1", session.tokens.refresh_token_id)
    assert session.tokens.session_id == first.session_id
    # active before the rotation: nothing that can fail comes between it and the answer
    assert activity.seen_users == ["U1"] and sessions.calls == ["seen", "rotate"]


def test_a_replayed_token_revokes_its_session_audited_as_reuse(caplog: pytest.LogCaptureFixture) -> None:
    sessions, activity = Sessions(), Activity()
    accounts, tokens = refresh_service(UsersById("U1"), sessions, activity)
    first = tokens.issue("U1")
    sessions.live[first.session_id] = ("U1", first.refresh_token_id)
    accounts.refresh(first.refresh_token)

    with pytest.raises(AuthenticationError, match="revoked") as refused:
        accounts.refresh(first.refresh_token)

    assert refused.value.code == "invalid_token"
    assert first.session_id not in sessions.live  # the live successor went with it
    assert audits(caplog) == ["refresh_reuse"]


def test_a_token_of_an_ended_session_is_refused_audited_with_nothing_to_revoke(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions, activity = Sessions(), Activity()
    accounts, tokens = refresh_service(UsersById("U1"), sessions, activity)
    ended = tokens.issue("U1")  # its session was logged out: no row

    with pytest.raises(AuthenticationError, match="revoked"):
        accounts.refresh(ended.refresh_token)

    assert sessions.calls == ["rotate", "end"]
    assert audits(caplog) == ["refresh_refused"]


def test_a_refresh_for_a_deleted_account_touches_no_session() -> None:
    sessions, activity = Sessions(), Activity()
    accounts, tokens = refresh_service(UsersById(), sessions, activity)
    with pytest.raises(AuthenticationError, match="no longer exists"):
        accounts.refresh(tokens.issue("U1").refresh_token)
    assert sessions.calls == [] and activity.seen_users == []
