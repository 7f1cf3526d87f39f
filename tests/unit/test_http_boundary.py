"""Body parsing and error mapping at the HTTP boundary."""

import pytest
from pynamodb.exceptions import PutError

from ripple.errors import ConflictError, PayloadTooLargeError, RateLimitedError, ValidationError
from ripple.http.errors import error_body, status_and_body, translate_chalice_body
from ripple.http.instrumentation import UNMATCHED_ROUTE, route_template
from ripple.http.requests import bearer_token, parse_json_body
from ripple.http.routing import (
    METHOD_NOT_ALLOWED,
    NO_ROUTE,
    allowed_methods,
    request_path,
    unrouted_response,
)


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


def test_what_python_reads_and_json_does_not_is_malformed_and_said_plainly() -> None:
    """The fresh-clone review: ``NaN`` was read (and reported as an unknown field's value), a
    5,000-digit integer answered with Python's advice on sys.set_int_max_str_digits, and an
    unterminated string said "starting at at line 1"."""
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(ValidationError, match="is not a JSON value"):
            parse_json_body(b'{"text": "a", "x": ' + constant + b"}", 1000)
    with pytest.raises(ValidationError) as raised:
        parse_json_body(b'{"n": ' + b"9" * 5000 + b"}", 10_000)
    assert raised.value.message == "malformed JSON: a number has too many digits"
    with pytest.raises(ValidationError) as raised:
        parse_json_body(b'{"text": "hel', 1000)
    assert raised.value.message == "malformed JSON: Unterminated string starting at (line 1, column 10)"
    with pytest.raises(ValidationError) as raised:
        parse_json_body(b'\xef\xbb\xbf{"text": "bom"}', 1000)
    assert raised.value.message == "malformed JSON: a byte order mark before the JSON"
    assert parse_json_body(b'{"x": 1e400, "y": -0.0}', 1000) == {"x": float("inf"), "y": -0.0}


def test_an_object_that_repeats_a_name_is_refused_without_echoing_it() -> None:
    # The fresh-clone review deleted an account with {"password": wrong, "password": right}:
    # the last one won. Any object, at any depth, that repeats a name is a 400 now.
    for body in (
        b'{"password": "wrong", "password": "secret-right"}',
        b'{"text": "a", "nested": {"k": 1, "k": 2}}',
        b'[{"a": 1, "a": 1}]',
    ):
        with pytest.raises(ValidationError) as raised:
            parse_json_body(body, 1000)
        assert "repeats a name" in raised.value.message and "secret-right" not in raised.value.message
    assert parse_json_body(b'{"a": 1, "b": {"a": 2}}', 1000) == {"a": 1, "b": {"a": 2}}


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


# ------------------------------------------------------------------ requests no route matched
ROUTES = {
    "/posts/{post_id}": {"GET": None, "DELETE": None},
    "/users/by-name/{username}": {"GET": None},
    "/users/{user_id}/follow": {"POST": None, "DELETE": None},
    "/feed": {"GET": None},
    "/{proxy+}": {},  # what Chalice's defaultdict holds after it was asked for an unknown route
}


def test_a_raw_path_is_matched_against_the_route_templates() -> None:
    # Given the app's route templates, when a catch-all route hands over a raw path
    assert allowed_methods(ROUTES, "/posts/01JDQ7Z8M3K2P4R6T8V0W2X4Y6") == ["DELETE", "GET"]
    assert allowed_methods(ROUTES, "/feed") == ["GET"]
    # Then overlapping templates give every method API Gateway would route for the path
    assert allowed_methods(ROUTES, "/users/by-name/follow") == ["DELETE", "GET", "POST"]
    # And a parameter is one non-empty segment; nothing else matches a template
    for path in ("/posts", "/posts/", "/posts/a/b", "/feed/", "/", "/{proxy+}", "/nope"):
        assert allowed_methods(ROUTES, path) is None, path


def test_the_request_path_comes_from_the_greedy_parameter_whatever_the_stage() -> None:
    assert request_path("/{proxy+}", {"proxy": "posts/abc"}) == "/posts/abc"
    assert request_path("/", None) == "/"
    assert request_path("/{proxy+}", None) == "/"
    assert request_path("/feed", None) == "/feed"


def test_an_unrouted_request_is_405_with_allow_on_a_known_path_and_404_elsewhere() -> None:
    status, body, headers = unrouted_response(ROUTES, "/{proxy+}", {"proxy": "posts/abc"})
    assert (status, body["error"]["code"], headers) == (405, "method_not_allowed", {"Allow": "DELETE, GET"})
    status, body, headers = unrouted_response(ROUTES, "/{proxy+}", {"proxy": "no/such/route"})
    assert (status, body, headers) == (404, error_body("not_found", NO_ROUTE[2]), {})
    assert unrouted_response(ROUTES, "/", None)[0] == 404
    assert METHOD_NOT_ALLOWED[:2] == (405, "method_not_allowed")


def test_catch_all_routes_are_one_metric_label() -> None:
    assert route_template({"resourcePath": "/{proxy+}"}) == UNMATCHED_ROUTE
    assert route_template({"resourcePath": "/"}) == UNMATCHED_ROUTE
    assert route_template({"resourcePath": "/posts/{post_id}"}) == "/posts/{post_id}"


# ------------------------------------------------------------------ response bodies (orjson)
def test_response_bodies_are_the_json_chalice_would_write() -> None:
    import json
    from decimal import Decimal

    from ripple.http.responses import json_text

    body = {
        "items": [{"post_id": "P1", "text": "café 🙂", "like_count": 3, "liked_by_me": True}],
        "next": None,
    }
    assert json.loads(json_text(body)) == body
    assert json_text({"a": 1, "b": [1, 2]}) == json.dumps({"a": 1, "b": [1, 2]}, separators=(",", ":"))
    assert json.loads(json_text([{"n": Decimal("1.5")}])) == [{"n": 1.5}]  # as handle_extra_types
    assert json_text("already text") == "already text" and json_text(None) is None
    # What orjson refuses, the standard library writes, as Chalice would have.
    for refused in ({"text": "a\ud800b"}, {"n": 10**30}):
        assert json_text(refused) == json.dumps(refused, separators=(",", ":"))
    with pytest.raises(TypeError):
        json_text({"not json": object()})


def test_a_body_that_contains_itself_or_nests_too_deep_is_a_type_error() -> None:
    """One ``except TypeError`` (app.py's response_shape) catches every body that cannot be
    sent: json.dumps's ValueError (a cycle) and RecursionError (depth) arrive as TypeError."""
    from ripple.http.responses import json_text

    cyclic: dict[str, object] = {"a": 1}
    cyclic["self"] = cyclic
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    for body in (cyclic, [cyclic], {"deep": deep}):
        with pytest.raises(TypeError):
            json_text(body)


def test_where_orjson_and_json_differ_the_output_is_still_json() -> None:
    import json
    import math
    import uuid

    from ripple.http.responses import json_text

    # json wrote the non-JSON tokens NaN/Infinity; orjson writes null, which any parser reads
    assert json.loads(json_text({"x": math.nan, "y": math.inf})) == {"x": None, "y": None}
    u = uuid.UUID(int=7)
    assert json.loads(json_text({"id": u})) == {"id": str(u)}


def test_a_domain_object_or_datetime_is_refused_not_written_field_by_field() -> None:
    from datetime import UTC, datetime

    from ripple.domain import Post
    from ripple.http.responses import json_text

    for value in (Post("P1", "U1", "t", 1), datetime.now(UTC)):
        with pytest.raises(TypeError):
            json_text({"item": value})


def test_a_shown_post_is_the_post_with_its_reader_fields_replaced() -> None:
    """Post.shown copies the fields by hand (a feed page builds one per item): every field of
    Post, a later one too, is set here to a value that is not its default, so a field shown
    forgot would come out as its default and differ from ``replace``'s copy."""
    from dataclasses import fields, replace

    from ripple.domain import Post

    samples = {"str": "x", "str | None": "x", "int": 7, "int | None": 7, "bool | None": True}
    unknown = {f.name: f.type for f in fields(Post) if f.type not in samples}
    assert not unknown, f"give these Post fields a sample value: {unknown}"
    post = Post(**{f.name: samples[str(f.type)] for f in fields(Post)})
    shown_as = (("U2", 1_700_000_000_500, True), (None, 1_700_000_000_500, False), (None, None, None))
    for by, at, liked in shown_as:
        expected = replace(post, reposted_by=by, reposted_at=at if by else None, liked_by_me=liked)
        assert post.shown(by, at, liked) == expected
