"""Request validation: clean values out, clear ValidationErrors for everything else."""

import pytest

from ripple import validation
from ripple.errors import NotFoundError, ValidationError


def test_credentials_are_normalised() -> None:
    assert validation.signup_credentials({"username": " Alice_1 ", "password": "s3cret-pass"}) == (
        "alice_1",
        "s3cret-pass",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"username": "alice"}, "missing field(s): password"),
        ({"username": "alice", "password": "longenough", "admin": True}, "unknown field(s): admin"),
        ({"username": "al", "password": "longenough"}, "3-30"),
        ({"username": "bad name!", "password": "longenough"}, "3-30"),
        ({"username": 7, "password": "longenough"}, "must be a string"),
        ({"username": "alice", "password": "short"}, "8-128"),
    ],
)
def test_bad_credentials_explain_themselves(body: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validation.signup_credentials(body)


@pytest.mark.parametrize(
    "password", ["short", "", "x" * 129, "x" * 16_000, "\ud800", "p\u00e4ss", " ", "\x00"]
)
def test_login_applies_no_password_policy(password: str) -> None:
    """Rules apply when a password is set: at login any string is a credential to check."""
    assert validation.login_credentials({"username": " Alice ", "password": password}) == ("alice", password)
    assert validation.login_credentials({"username": "x", "password": password}) == ("x", password)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"username": "alice"}, "missing field(s): password"),
        ({"password": "whatever"}, "missing field(s): username"),
        ({"username": "alice", "password": "pw", "admin": True}, "unknown field(s): admin"),
        ({"username": "alice", "password": None}, "'password' must be a string"),
        ({"username": "alice", "password": 12345678}, "'password' must be a string"),
        ({"username": ["alice"], "password": "pw"}, "'username' must be a string"),
    ],
)
def test_login_still_refuses_a_malformed_request(body: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validation.login_credentials(body)


def test_post_text_limits() -> None:
    assert validation.post_text({"text": "hi ✨"}, max_chars=10) == "hi ✨"
    with pytest.raises(ValidationError, match="at most 10"):
        validation.post_text({"text": "x" * 11}, max_chars=10)
    with pytest.raises(ValidationError, match="empty"):
        validation.post_text({"text": "   "}, max_chars=10)
    with pytest.raises(ValidationError, match="control"):
        validation.post_text({"text": "a\x00b"}, max_chars=10)
    with pytest.raises(ValidationError, match="unknown"):
        validation.post_text({"text": "ok", "author_id": "someone-else"}, max_chars=10)


def test_page_limit_bounds() -> None:
    assert validation.page_limit(None) == validation.DEFAULT_PAGE_LIMIT
    assert validation.page_limit("100") == 100
    assert validation.page_limit("007") == 7
    too_long = ["9" * 5000, "0" * 20 + "5"]  # int() refuses the first: a ValueError, not a 400
    for bad in ["0", "101", "-1", "ten", " 5", "5 ", "+5", "1_0", "\u0665", "5.0", *too_long]:
        with pytest.raises(ValidationError):
            validation.page_limit(bad)


def test_malformed_ids_are_not_found() -> None:
    with pytest.raises(NotFoundError):
        validation.entity_id("../../etc/passwd", "user")
