"""functions/api/openapi.json is a valid OpenAPI 3.0 document that matches the code: the same
routes as the Chalice app and template.yaml, security exactly where the app authenticates,
every status a handler can produce documented, request schemas that accept what the validators
accept, response schemas that fit the domain objects, and sample events for real routes."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from ripple import validation
from ripple.auth.tokens import TokenPair
from ripple.domain import Post, User
from ripple.errors import ValidationError
from ripple.ids import is_ulid
from ripple_local.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "functions/api/app.py"
SPEC: dict[str, Any] = json.loads((ROOT / "functions/api/openapi.json").read_text())
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
PUBLIC = {
    ("/auth/signup", "POST"),
    ("/auth/login", "POST"),
    ("/auth/refresh", "POST"),
    ("/auth/logout", "POST"),
    ("/health/live", "GET"),
    ("/health/ready", "GET"),
    ("/openapi.json", "GET"),
}
PAGINATED = {
    ("/users/{user_id}/followers", "GET"),
    ("/users/{user_id}/following", "GET"),
    ("/users/{user_id}/posts", "GET"),
    ("/me/blocks", "GET"),
    ("/me/mutes", "GET"),
    ("/feed", "GET"),
    ("/notifications", "GET"),
}
ULID = "01JDQ7Z8M3K2P4R6T8V0W2X4Y6"


# ------------------------------------------------------------------ helpers
def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, METHOD, operation) for every operation of the spec."""
    for path, item in SPEC["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method.upper(), item[method]


def operation(path: str, method: str) -> dict[str, Any]:
    op: dict[str, Any] = SPEC["paths"][path][method.lower()]
    return op


def resolve(node: Any) -> Any:
    """``node`` with every local ``$ref`` replaced by its target (the spec has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = SPEC
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(target)
        return {key: resolve(value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item) for item in node]
    return node


def schema(name: str) -> dict[str, Any]:
    resolved: dict[str, Any] = resolve(SPEC["components"]["schemas"][name])
    return resolved


def valid(schema_: dict[str, Any], instance: Any) -> bool:
    return bool(OAS30Validator(schema_).is_valid(instance))


def request_schema(path: str, method: str) -> dict[str, Any]:
    body = resolve(operation(path, method)["requestBody"])
    assert body["required"] is True
    assert set(body["content"]) == {"application/json"}
    result: dict[str, Any] = body["content"]["application/json"]["schema"]
    return result


def response_schema(path: str, method: str, status: str) -> dict[str, Any]:
    result: dict[str, Any] = resolve(operation(path, method)["responses"][status])["content"][
        "application/json"
    ]["schema"]
    return result


def accepted(check: Callable[[Any], object], value: Any) -> bool:
    try:
        check(value)
    except ValidationError:
        return False
    return True


def template_params(path: str) -> set[str]:
    return set(re.findall(r"{([^}/]+)}", path))


@cache
def chalice_routes() -> frozenset[tuple[str, str]]:
    """The app's routes, read in a child process so this process's container stays unbuilt."""
    code = (
        "import json, importlib.util as u;"
        "s = u.spec_from_file_location('api_app', 'functions/api/app.py'); m = u.module_from_spec(s);"
        "s.loader.exec_module(m);"
        "print(json.dumps([[p, meth] for p, e in m.app.routes.items() for meth in e]))"
    )
    env = {
        "JWT_SECRET": "x" * 40,
        "PYTHONPATH": f"{ROOT / 'layers/ripple'}",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return frozenset(
        (path, method.upper()) for path, method in json.loads(out.stdout.strip().splitlines()[-1])
    )


# Methods of an OpenAPI path item (the rest of its keys are not operations).
_METHODS = {
    "get",
    "put",
    "post",
    "delete",
    "options",
    "head",
    "patch",
    "trace",
    "x-amazon-apigateway-any-method",
}


def template_routes(api_id: str) -> set[tuple[str, str]]:
    """(path, METHOD) of every route an API of template.yaml declares in its DefinitionBody;
    ``ANY`` for ``x-amazon-apigateway-any-method``."""
    api = load_template(ROOT / "template.yaml")["Resources"][api_id]["Properties"]
    return {
        (path, "ANY" if method == "x-amazon-apigateway-any-method" else method.upper())
        for path, item in api["DefinitionBody"]["paths"].items()
        for method in item
        if method in _METHODS
    }


# ------------------------------------------------------------------ the document
def test_spec_is_a_valid_openapi_3_0_document() -> None:
    validate(SPEC)
    assert SPEC["openapi"] == "3.0.3"


def test_spec_has_exactly_the_routes_of_the_app_and_the_template() -> None:
    documented = {(path, method) for path, method, _ in operations()}
    assert documented == set(chalice_routes())
    assert documented == template_routes("RippleApi")
    # The HTTP API also has its catch-all routes, which reach no view (tests/unit/test_template.py)
    assert documented < template_routes("RippleHttpApi")


def test_every_operation_is_identified_and_has_a_success_and_a_client_error() -> None:
    ids = [op.get("operationId") for _, _, op in operations()]
    assert all(ids), "every operation needs an operationId"
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for path, method, op in operations():
        statuses = set(op["responses"])
        assert any(s.startswith("2") for s in statuses), (path, method)
        assert any(s.startswith("4") for s in statuses), (path, method)


def test_security_is_declared_exactly_on_the_non_public_routes() -> None:
    scheme = SPEC["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert "security" not in SPEC, "no global default: each operation says what it needs"
    for path, method, op in operations():
        if (path, method) in PUBLIC:
            assert not op.get("security"), (path, method)
            assert "401" not in op["responses"] or path in {"/auth/login", "/auth/refresh", "/auth/logout"}
        else:
            assert op.get("security") == [{"bearerAuth": []}], (path, method)
            assert "401" in op["responses"], (path, method)


def test_path_parameters_match_the_path_templates() -> None:
    for path, method, op in operations():
        params = [resolve(p) for p in op.get("parameters", [])]
        in_path = {p["name"] for p in params if p["in"] == "path"}
        assert in_path == template_params(path), (path, method)
        assert all(p["required"] for p in params if p["in"] == "path")


def test_paginated_routes_take_limit_and_cursor() -> None:
    for path, method, op in operations():
        query = {p["name"]: p for p in (resolve(p) for p in op.get("parameters", [])) if p["in"] == "query"}
        if (path, method) not in PAGINATED:
            assert not query, (path, method)
            continue
        assert set(query) == {"limit", "cursor"}, (path, method)
        assert query["limit"]["schema"] == {
            "type": "integer",
            "minimum": 1,
            "maximum": validation.MAX_PAGE_LIMIT,
            "default": validation.DEFAULT_PAGE_LIMIT,
        }
        assert query["cursor"]["schema"] == {"type": "string"}
        page = response_schema(path, method, "200")
        assert page["required"][:2] == ["items", "next_cursor"]  # notifications add unread_count
        assert page["properties"]["next_cursor"]["nullable"] is True


def test_responses_are_json_or_empty_and_errors_have_the_error_shape() -> None:
    error = schema("Error")
    for path, method, op in operations():
        for status, response in op["responses"].items():
            response = resolve(response)
            if status == "204":
                assert "content" not in response, (path, method)
                continue
            assert set(response["content"]) == {"application/json"}, (path, method, status)
            if path.startswith("/health/") and status == "503":
                # A failing health check answers with its report (which dependency, how slow).
                assert response["content"]["application/json"]["schema"] == schema("HealthReport")
                continue
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == error, (path, method, status)
            for name in ("429", "503"):
                if status == name:
                    assert "Retry-After" in response["headers"]
    assert resolve(SPEC["components"]["responses"]["TooManyRequests"])["headers"]["Retry-After"]["required"]


# ------------------------------------------------------------------ statuses the handlers can produce
# A helper a view calls -> the statuses it can raise (see app.py and ripple.validation).
HELPER_STATUSES: dict[str, set[str]] = {
    "authenticated": {"401"},
    "writer": {"401", "429"},
    "auth_attempt": {"429"},
    "body": {"400", "413"},
    "user_id_param": {"404"},
    "post_id_param": {"404"},
}


def _route_views() -> Iterator[tuple[str, str, ast.FunctionDef]]:
    """(path, METHOD, view) for every @app.route in app.py, read from its source."""
    for node in ast.parse(APP.read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "route"
            ):
                path = ast.literal_eval(decorator.args[0])
                methods = ["GET"]
                for keyword in decorator.keywords:
                    if keyword.arg == "methods":
                        methods = ast.literal_eval(keyword.value)
                for method in methods:
                    yield path, method.upper(), node


def _called_names(view: ast.FunctionDef) -> set[str]:
    return {n.func.id for n in ast.walk(view) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _query_names(view: ast.FunctionDef) -> set[str]:
    return {
        str(n.args[0].value)
        for n in ast.walk(view)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id == "query"
        and n.args
        and isinstance(n.args[0], ast.Constant)
    }


def test_every_status_a_handler_can_produce_is_documented() -> None:
    views = list(_route_views())
    assert {(p, m) for p, m, _ in views} == {(p, m) for p, m, _ in operations()}
    for path, method, view in views:
        documented = set(operation(path, method)["responses"])
        expected = {"415"}  # Chalice refuses a non-JSON Content-Type on every route
        if any(isinstance(d, ast.Name) and d.id == "json_errors" for d in view.decorator_list):
            expected |= {"500", "503"}  # unexpected errors; DynamoDB throttling after retries
        for name in _called_names(view):
            expected |= HELPER_STATUSES.get(name, set())
        if _query_names(view):
            expected.add("400")  # a bad limit or cursor
        assert expected <= documented, (path, method, sorted(expected - documented))
        assert any(s.startswith("2") for s in documented)


def test_documented_query_parameters_are_the_ones_the_handlers_read() -> None:
    for path, method, view in _route_views():
        params = [resolve(p) for p in operation(path, method).get("parameters", [])]
        assert {p["name"] for p in params if p["in"] == "query"} == _query_names(view), (path, method)


# ------------------------------------------------------------------ request schemas vs validators
NAMES = [
    "alice",
    "al",
    "abc",
    "a" * 30,
    "a" * 31,
    " Alice_1 ",
    "\talice\n",
    "\u3000bob\u00a0",
    "al ice",
    "alice!",
    "\u212aelvin",  # KELVIN SIGN lower-cases to "k"
    "\u0130stanbul",  # lower-cases to two characters
    "\u00e9lise",
    "alice\x00",
    "",
    "   ",
]
PASSWORDS = ["x" * 7, "x" * 8, "x" * 128, "x" * 129, "p\u00e4ss w\u00f6rd!", "x" * 5000]


@pytest.mark.parametrize(
    ("path", "check"),
    [("/auth/signup", validation.signup_credentials), ("/auth/login", validation.login_credentials)],
)
def test_credentials_schema_accepts_what_the_server_accepts(
    path: str, check: Callable[[Any], object]
) -> None:
    body_schema = request_schema(path, "POST")
    bodies: list[Any] = [{"username": name, "password": "correct horse"} for name in NAMES]
    bodies += [{"username": "alice", "password": p} for p in PASSWORDS]
    bodies += [
        {},
        [],
        "alice",
        {"username": "alice"},
        {"password": "correct horse"},
        {"username": "alice", "password": "correct horse", "extra": 1},
        {"username": 5, "password": "correct horse"},
        {"username": "alice", "password": None},
        {"username": "alice", "password": ""},
        {"username": "", "password": "correct horse"},
    ]
    for body in bodies:
        assert valid(body_schema, body) == accepted(check, body), body


def test_post_schema_accepts_what_the_server_accepts() -> None:
    body_schema = request_schema("/posts", "POST")
    texts = [
        "hello, ripple",
        "h",
        "",
        " ",
        "\n\t ",
        "\u3000",
        "x" * 500,
        "x" * 501,
        "line one\nline two\ttabbed",
        "bell\x07",
        "nul\x00",
        "del\x7f",
        "\x85next line",
        " padded ",
        "\u00e9t\u00e9 \U0001f600",
    ]
    bodies: list[Any] = [{"text": t} for t in texts]
    bodies += [{}, {"text": 1}, {"text": None}, {"text": "hi", "extra": True}, ["hi"]]

    def check(body: Any) -> str:
        return validation.post_text(body, max_chars=500)

    for body in bodies:
        assert valid(body_schema, body) == accepted(check, body), body


def test_profile_schema_accepts_what_the_server_accepts() -> None:
    body_schema = request_schema("/me", "PATCH")
    values = [
        "",
        "   ",
        "Alice",
        "x" * validation.DISPLAY_NAME_MAX,
        "x" * (validation.DISPLAY_NAME_MAX + 1),
        "  " + "x" * validation.DISPLAY_NAME_MAX + "\n\t ",  # trimmed first
        "x" * validation.BIO_MAX,
        "x" * (validation.BIO_MAX + 1),
        "a b\u00a0c",
        "two\nlines",
        "tab\tinside",
        "\nleading and trailing controls that are whitespace\r\n",
        "nul\x00",
        "\x00",
        "\u3000wide\u3000",
    ]
    bodies: list[Any] = []
    for value in values:
        bodies += [{"display_name": value}, {"bio": value}, {"display_name": value, "bio": "ok"}]
    bodies += [{}, {"display_name": None}, {"bio": 3}, {"username": "alice"}, [], "Alice"]
    for body in bodies:
        assert valid(body_schema, body) == accepted(validation.profile_update, body), body


@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/logout"])
def test_refresh_token_schema_accepts_what_the_server_accepts(path: str) -> None:
    body_schema = request_schema(path, "POST")
    bodies: list[Any] = [
        {"refresh_token": "a.b.c"},
        {"refresh_token": ""},
        {"refresh_token": "x" * 4096},
        {"refresh_token": "x" * 4097},
        {"refresh_token": None},
        {},
        {"refresh_token": "a.b.c", "access_token": "a.b.c"},
    ]
    for body in bodies:
        assert valid(body_schema, body) == accepted(validation.refresh_token, body), body


def test_path_and_query_schemas_accept_what_the_server_accepts() -> None:
    limit = next(
        resolve(p)["schema"] for p in operation("/feed", "GET")["parameters"] if resolve(p)["name"] == "limit"
    )
    for raw in [1, 20, 100, 0, 101, -1]:
        assert valid(limit, raw) == accepted(validation.page_limit, str(raw)), raw
    user_id = schema("Ulid")
    for value in [ULID, ULID.lower(), ULID[:-1], "8" + ULID[1:], "01JDQ7Z8M3K2P4R6T8V0W2X4YU"]:
        assert valid(user_id, value) == is_ulid(value), value
    username = resolve(next(p for p in operation("/users/by-name/{username}", "GET")["parameters"]))
    for name in NAMES:
        assert valid(username["schema"], name) == accepted(validation.username, name), name


# ------------------------------------------------------------------ response schemas vs the domain
def test_response_schemas_fit_the_domain_objects() -> None:
    user = User(user_id=ULID, username="alice", created_at=1_732_579_200_000, display_name="Al", bio="hi")
    post = Post(post_id=ULID, author_id=ULID, text="hello", created_at=1_732_579_200_000, like_count=2)
    tokens = TokenPair("a.b.c", "d.e.f", 900, "id", 0, "id")

    assert set(schema("User")["properties"]) == set(user.to_public())
    reposted = post.shown(ULID, 1_732_579_300_000, True)
    assert set(schema("Post")["properties"]) == set(reposted.to_public())
    assert "liked_by_me" not in schema("Post")["required"]
    assert {"reposted_by", "reposted_at"}.isdisjoint(schema("Post")["required"])
    assert valid(schema("Post"), reposted.to_public())
    assert set(schema("Session")["properties"]) == {"user", *tokens.to_public()}

    assert valid(schema("User"), user.to_public())
    assert valid(schema("Post"), post.to_public())  # no reader: liked_by_me absent
    assert valid(schema("Post"), post.for_reader(False).to_public())
    assert valid(schema("Session"), {"user": user.to_public(), **tokens.to_public()})
    assert valid(schema("PostPage"), {"items": [post.for_reader(True).to_public()], "next_cursor": None})
    rebuilding = {"items": [post.for_reader(True).to_public()], "next_cursor": None, "rebuilding": True}
    assert valid(schema("RebuildingFeedPage"), rebuilding) and not valid(schema("PostPage"), rebuilding)
    assert valid(schema("UserPage"), {"items": [user.to_public()], "next_cursor": "eyJhZnRlciI6IjAxIn0"})
    assert valid(schema("FollowResult"), {"following": True, "user_id": ULID, "changed": False})
    assert valid(schema("BlockResult"), {"blocking": True, "user_id": ULID, "changed": False})
    assert valid(schema("MuteResult"), {"muting": False, "user_id": ULID, "changed": True})
    assert valid(schema("Health"), {"status": "ok"})
    assert valid(schema("Error"), {"error": {"code": "not_found", "message": "post not found"}})
    assert not valid(schema("User"), {**user.to_public(), "password_hash": "x"})
    assert not valid(schema("Error"), {"Code": "NotFoundError", "Message": "chalice's own shape"})
    assert valid(response_schema("/openapi.json", "GET", "200"), SPEC)


def test_the_notification_schema_knows_every_kind_and_fits_the_post_kinds() -> None:
    from ripple.notifications import KINDS, POST_KINDS, Notification

    notification = schema("Notification")
    assert notification["properties"]["kind"]["enum"] == list(KINDS)
    for kind in sorted(POST_KINDS):  # liked, reposted: the same shape, post_id set
        item = Notification(f"{kind}#20054#{ULID}", kind, ULID, (ULID,), 1, 1_732_579_200_000).to_public()
        assert set(notification["properties"]) == set(item)
        assert valid(notification, item), kind
        assert valid(schema("NotificationPage"), {"items": [item], "next_cursor": None, "unread_count": 1})
        assert not valid(notification, {**item, "kind": "poked"})


def test_success_statuses_match_the_handlers() -> None:
    created = {("/auth/signup", "POST"), ("/posts", "POST")}
    no_content = {("/auth/logout", "POST"), ("/posts/{post_id}", "DELETE"), ("/me", "DELETE")}
    partial = {("/feed", "GET")}  # 206 while a returning reader's feed is rebuilt
    for path, method, op in operations():
        success = {s for s in op["responses"] if s.startswith("2")}
        if (path, method) in partial:
            assert success == {"200", "206"}, (path, method)
        elif (path, method) in created:
            assert success == {"201"}, (path, method)
        elif (path, method) in no_content:
            assert success == {"204"}, (path, method)
        else:
            assert success == {"200"}, (path, method)


# ------------------------------------------------------------------ sample events
EVENTS = sorted((ROOT / "events/api").glob("*.json"))


def test_there_are_sample_api_events() -> None:
    assert EVENTS


@pytest.mark.parametrize("event_file", EVENTS, ids=lambda p: p.stem)
def test_sample_api_event_references_an_existing_route(event_file: Path) -> None:
    event = json.loads(event_file.read_text())
    resource, method = event["resource"], event["httpMethod"]
    assert (resource, method) in chalice_routes()
    assert event["requestContext"]["resourcePath"] == resource
    assert event["requestContext"]["httpMethod"] == method
    op = operation(resource, method)

    path_params = event.get("pathParameters") or {}
    assert set(path_params) == template_params(resource)
    assert event["path"] == re.sub(r"{([^}/]+)}", lambda m: path_params[m.group(1)], resource)
    assert event["requestContext"]["path"].endswith(event["path"])
    declared = {p["name"]: p for p in (resolve(p) for p in op.get("parameters", []))}
    for name, value in path_params.items():
        assert valid(declared[name]["schema"], value), (name, value)
    for name, value in (event.get("queryStringParameters") or {}).items():
        assert declared[name]["in"] == "query"
        coerced = int(value) if declared[name]["schema"]["type"] == "integer" else value
        assert valid(declared[name]["schema"], coerced), (name, value)

    headers = {k.lower(): v for k, v in event["headers"].items()}
    if op.get("security"):
        assert headers.get("authorization", "").startswith("Bearer ")
    if "requestBody" in op:
        assert headers.get("content-type") == "application/json"
        assert valid(request_schema(resource, method), json.loads(event["body"]))
    else:
        assert event["body"] is None
