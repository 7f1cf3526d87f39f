"""Body parsing and error mapping at the HTTP boundary."""

import pytest
from pynamodb.exceptions import PutError

from ripple.errors import ConflictError, PayloadTooLargeError, RateLimitedError, ValidationError
from ripple.http.errors import status_and_body, translate_chalice_body
from ripple.http.requests import bearer_token, parse_json_body


def test_json_body_parsing() -> None:
    assert parse_json_body(b'{"a": 1}', 100) == {"a": 1}
    with pytest.raises(ValidationError, match="malformed JSON"):
        parse_json_body(b'{"a": ', 100)
    with pytest.raises(ValidationError, match="required"):
        parse_json_body(b"", 100)
    with pytest.raises(PayloadTooLargeError):
        parse_json_body(b'{"a": "' + b"x" * 200 + b'"}', 100)
    with pytest.raises(ValidationError, match="UTF-8"):
        parse_json_body(b'{"a": "\xff"}', 100)
    with pytest.raises(ValidationError, match="nested"):
        parse_json_body(b"[" * 50 + b"]" * 50, 1000)
    with pytest.raises(ValidationError, match="nested"):
        parse_json_body(b"[" * 100_000 + b"]" * 100_000, 10**6)


def test_bearer_token() -> None:
    assert bearer_token({"authorization": "Bearer abc"}) == "abc"
    for headers in ({}, {"authorization": "Basic abc"}, {"authorization": "Bearer "}):
        with pytest.raises(Exception, match="Authorization"):
            bearer_token(headers)


def test_error_mapping() -> None:
    assert status_and_body(ConflictError("taken", code="username_taken")) == (
        409,
        {"error": {"code": "username_taken", "message": "taken"}},
        {},
    )
    status, body, headers = status_and_body(RateLimitedError("slow down", retry_after=17))
    assert (status, body["error"]["code"], headers) == (429, "rate_limited", {"Retry-After": "17"})
    assert status_and_body(RuntimeError("secret detail"))[0] == 500
    assert "secret detail" not in str(status_and_body(RuntimeError("secret detail")))


def test_throttling_after_retries_is_503() -> None:
    class Throttled(Exception):
        def __init__(self) -> None:
            super().__init__("throttled")
            self.response = {"Error": {"Code": "ProvisionedThroughputExceededException"}}

    try:
        raise PutError("Failed to put item") from Throttled()
    except PutError as exc:
        status, body, headers = status_and_body(exc)
    assert headers == {"Retry-After": "1"}
    assert status == 503
    assert body["error"]["code"] == "service_unavailable"


def test_chalice_errors_are_translated() -> None:
    assert translate_chalice_body({"Code": "MethodNotAllowedError", "Message": "nope"}) == {
        "error": {"code": "method_not_allowed", "message": "nope"}
    }
    # Chalice's 415 message repeats the caller's Content-Type: never passed on.
    assert translate_chalice_body(
        {"Code": "UnsupportedMediaType", "Message": "Unsupported media type: x/y"}
    ) == {
        "error": {
            "code": "unsupported_media_type",
            "message": "unsupported media type: send application/json",
        }
    }
    assert translate_chalice_body({"error": {"code": "x", "message": "y"}}) is None
