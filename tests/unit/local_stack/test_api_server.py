"""The local API server answers what never reaches the app - unknown routes, unknown methods,
malformed requests - in Ripple's error shape, as template.yaml's GatewayResponses make API
Gateway answer on AWS, and never repeats a credential (issue 12, items 4 and 5).

A real ApiServer on a free port serves a tiny Chalice app built here (no Ripple services).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chalice import Chalice

from ripple_local import api_server
from ripple_local.api_server import ApiServer
from ripple_local.cfn import load_template

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
UNKNOWN_METHODS = ["QUERY", "PURGE", "PROPFIND", "get", "Post", "FOO-BAR", "X", "OPTIONS", "TRACE"]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def shows(self, secret: str) -> bool:
        return secret in self.body.decode("latin-1") or secret in str(self.headers)


def probe_app() -> Chalice:
    app = Chalice(app_name="gateway-probe")

    @app.route("/posts", methods=["GET", "POST"])
    def posts() -> dict[str, Any]:
        DISPATCHED.append(app.current_request.method)
        return {"items": []}

    @app.route("/users/{user_id}")
    def user(user_id: str) -> dict[str, Any]:
        return {"user_id": "fixed"}

    return app


LOGGED: list[tuple[str, str, int, float]] = []  # the request log's lines, as `make up` prints them
DISPATCHED: list[str] = []  # the methods of the requests the probe app's /posts was called with


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    # With a request log, as `make up` runs it: the log is called for every answer, also for a
    # request refused before its request line was parsed.
    with ApiServer(probe_app(), port=0, request_log=lambda *line: LOGGED.append(line)) as api:
        yield api


def send(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Reply:
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return Reply(response.status, response.headers, response.read())


def call(server: ApiServer, method: str, path: str, **kwargs: Any) -> Reply:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        return send(connection, method, path, **kwargs)
    finally:
        connection.close()


def assert_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, (reply.status, reply.body[:200])
    assert reply.headers["Content-Type"] == "application/json"
    body = reply.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body


AUTH_HEADERS = [{}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": TOKEN}]


@pytest.mark.parametrize("path", ["/feeds", "/", "/posts/1/2/3", "/users", f"/nope?token={TOKEN}"])
@pytest.mark.parametrize("headers", AUTH_HEADERS, ids=["no auth", "bearer", "bare token"])
def test_an_unknown_route_is_a_404_in_the_error_shape_that_repeats_nothing(
    server: ApiServer, path: str, headers: dict[str, str]
) -> None:
    """Chalice's local server answered 403 {"message": "Missing Authentication Token"}, and with
    an Authorization header a message ending with the whole header."""
    for method in ("GET", "POST", "DELETE", "PATCH", "PUT"):
        reply = call(server, method, path, headers=headers)
        assert_error(reply, 404, "not_found")
        assert not reply.shows(TOKEN), (method, path, reply.body)


@pytest.mark.parametrize("method", UNKNOWN_METHODS)
def test_a_method_no_route_has_is_a_405_with_allow_not_a_501_page(server: ApiServer, method: str) -> None:
    """http.server answered any method without a do_* handler with its 501 HTML page."""
    reply = call(server, method, "/posts", headers={"Authorization": f"Bearer {TOKEN}"})
    assert_error(reply, 405, "method_not_allowed")
    assert reply.headers["Allow"] == "GET, POST"
    assert not reply.shows(TOKEN)
    reply = call(server, method, "/users/01JDQ7Z8M3K2P4R6T8V0W2X4Y6")
    assert_error(reply, 405, "method_not_allowed")
    assert reply.headers["Allow"] == "GET"


@pytest.mark.parametrize("method", ["QUERY", "PURGE", "get"])
def test_an_unknown_method_on_an_unknown_route_is_a_404(server: ApiServer, method: str) -> None:
    assert_error(call(server, method, "/feeds"), 404, "not_found")


def test_a_method_the_app_routes_but_the_route_lacks_keeps_its_405(server: ApiServer) -> None:
    reply = call(server, "DELETE", "/posts")
    assert reply.status == 405 and "POST" in reply.headers["Allow"]


def test_the_connection_survives_unknown_methods_with_bodies_and_head(server: ApiServer) -> None:
    """A body the app never reads is read anyway, and HEAD gets no body: either would
    otherwise be taken for the start of the next request or response on a kept-alive connection."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        body = json.dumps({"query": "x" * 5000}).encode()
        headers = {"Content-Type": "application/json"}
        assert send(connection, "QUERY", "/posts", headers=headers, body=body).status == 405
        assert send(connection, "PURGE", "/feeds", headers=headers, body=body).status == 404
        head = send(connection, "HEAD", "/posts")
        assert head.status == 405 and head.body == b"" and int(head.headers["Content-Length"]) > 0
        assert send(connection, "GET", "/posts").json() == {"items": []}
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GARBAGE / HTTP/x\r\n\r\n", 400),
        (b"GET /posts HTTP/9.9\r\n\r\n", 505),
        (b"GET /posts HTTP/2.0\r\n\r\n", 505),
        (b"GET /posts HTTP/1\r\n\r\n", 400),
        (b"GET /posts?" + TOKEN.encode() + b" HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    ],
)
def test_a_malformed_request_is_answered_in_the_error_shape(
    server: ApiServer, request_line: bytes, status: int
) -> None:
    data = raw_exchange(server, request_line)
    assert data, "the connection was closed unanswered"
    if len(request_line.split(b"\r\n")[0].split()) >= 3:  # it names a version: HTTP/1.x's answer
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + str(status).encode()), head[:200]
    else:  # a line without a version is HTTP/0.9's: the body alone
        body = data
    error = json.loads(body)["error"]
    assert error["code"] == ("internal_error" if status >= 500 else "bad_request"), error
    assert TOKEN.encode() not in data
    assert any(line[2] == status for line in LOGGED), "the answer was not logged"


def raw_exchange(server: ApiServer, request: bytes) -> bytes:
    """Send ``request`` as raw bytes; everything the server answers until it closes."""
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        raw.sendall(request)
        data = b""
        while chunk := raw.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        (b"Content-Length: abc\r\n", 400),
        (b"Content-Length: -1\r\n", 400),
        (b"Content-Length: 99999999999999999999\r\n", 413),
        (b"Content-Length: \xd9\xa3\r\n", 400),  # a digit, but not an ASCII one
        (b"Content-Length: 2\r\nContent-Length: 3\r\n", 400),
        (b"Content-Length: 2, 2\r\n", 400),
        (b"Content-Length: 2,2\r\n", 400),
        (b"Content-Length: +2\r\n", 400),
        (b"Transfer-Encoding: chunked\r\n", 411),
        (b"Transfer-Encoding: gzip, chunked\r\n", 411),
    ],
)
def test_a_body_with_unreadable_framing_is_refused_in_the_error_shape_and_the_connection_closed(
    server: ApiServer, framing: bytes, status: int
) -> None:
    """Chalice's local handler read ``int(Content-Length)`` unguarded and ignored a chunked body:
    a bad length dropped the connection unanswered, a chunked body reached the app as none."""
    request = b"POST /posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framing
    data = raw_exchange(server, request + b"\r\n" + b"2\r\n{}\r\n0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), data[:300]
    assert b"Connection: close" in head
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_a_body_with_a_plain_length_still_reaches_the_app(server: ApiServer) -> None:
    reply = call(server, "POST", "/posts", headers={"Content-Length": "2"}, body=b"{}")
    assert reply.status == 200 and reply.json() == {"items": []}
    repeated = b"POST /posts HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n"
    data = raw_exchange(server, repeated + b"Connection: close\r\n\r\n{}")
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]


def test_a_body_cut_short_is_never_handed_to_the_app(server: ApiServer) -> None:
    """A client that announces 100 bytes, sends 20 and stops: the fresh-clone review saw the
    20 bytes posted (201) as the whole body. API Gateway only invokes with a complete body."""
    DISPATCHED.clear()
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        head = b"POST /posts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        raw.sendall(head + b'{"text":"truncated"}')
        raw.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := raw.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    assert DISPATCHED == []
    assert call(server, "GET", "/posts").status == 200  # and the server serves on


# ------------------------------------------------------------------ the same answers on AWS
def gateway_responses() -> dict[str, Any]:
    api = load_template(ROOT / "template.yaml")["Resources"]["RippleApi"]["Properties"]
    responses: dict[str, Any] = api["GatewayResponses"]
    return responses


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response["ResponseTemplates"]["application/json"])
    return body


def test_template_gateway_responses_answer_as_the_local_server_does() -> None:
    responses = gateway_responses()
    assert {"MISSING_AUTHENTICATION_TOKEN", "DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    missing = responses["MISSING_AUTHENTICATION_TOKEN"]
    status, code, message = api_server.NO_ROUTE
    assert int(missing["StatusCode"]) == status
    assert body_of(missing) == {"error": {"code": code, "message": message}}
    for name, (_, code, message) in (
        ("DEFAULT_4XX", api_server.GATEWAY_4XX),
        ("DEFAULT_5XX", api_server.GATEWAY_5XX),
    ):
        assert "StatusCode" not in responses[name], name  # keeps API Gateway's own status
        assert body_of(responses[name]) == {"error": {"code": code, "message": message}}, name


def test_every_gateway_response_is_static_json_in_the_error_shape() -> None:
    """No template may use $context.error.message (it can quote the Authorization header) or
    any request value: a gateway answer never repeats what the request carried."""
    documented = json.loads((ROOT / "functions/api/openapi.json").read_text())["info"]["description"]
    for name, response in gateway_responses().items():
        assert set(response["ResponseTemplates"]) == {"application/json"}, name
        template = response["ResponseTemplates"]["application/json"]
        assert "$" not in template and "#" not in template, name
        body = body_of(response)
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, name
        assert response["ResponseParameters"]["Headers"]["Content-Type"] == "'application/json'", name
        for value in response["ResponseParameters"]["Headers"].values():
            assert value.startswith("'") and value.endswith("'"), (name, value)  # static values
        assert f"`{body['error']['code']}`" in documented or body["error"]["code"] in documented, name


def test_a_burst_of_connections_is_queued_not_reset() -> None:
    """A burst of concurrent clients waits in the listen queue, as API Gateway queues them.

    With socketserver's default backlog of 5, the 7th connection that arrives before the
    server accepts is dropped (and, under load, reset): tests/e2e/test_attacks.py's
    16-thread burst saw ``Connection reset by peer``. Here the accept loop is stopped, so
    every connection must fit in the backlog.
    """
    with ApiServer(probe_app(), port=0) as api:
        assert api._server is not None
        api._server.server.shutdown()  # stop accepting; the socket keeps listening
        clients = []
        try:
            for _ in range(64):
                clients.append(socket.create_connection(("127.0.0.1", api.port), timeout=0.5))
        finally:
            for client in clients:
                client.close()
        assert len(clients) == 64
