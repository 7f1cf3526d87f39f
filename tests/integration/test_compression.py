"""The local API server compresses like API Gateway with ``MinimumCompressionSize``: a body of
at least the threshold is gzipped when the client accepts gzip; anything else leaves as is.

A real ApiServer on a free port serves a tiny Chalice app built here (no Ripple services).
"""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chalice import Chalice, Response

from ripple_local.api_server import (
    DEFAULT_MINIMUM_COMPRESSION_SIZE,
    ApiServer,
    accepts_gzip,
    minimum_compression_size,
)
from ripple_local.cfn import load_template

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIG = {"items": [{"post_id": f"{i:026d}", "text": "hello, ripple " * 4} for i in range(40)]}
SMALL = {"status": "ok"}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes  # the bytes on the wire (not decoded)


def probe_app() -> Chalice:
    app = Chalice(app_name="compression-probe")

    @app.route("/big")
    def big() -> dict[str, Any]:
        return BIG

    @app.route("/small")
    def small() -> dict[str, Any]:
        return SMALL

    @app.route("/text/{size}")
    def text(size: str) -> Response:
        return Response(body="x" * int(size), headers={"Content-Type": "text/plain"})

    @app.route("/empty", methods=["DELETE"])
    def empty() -> Response:
        return Response(body="", status_code=204)

    @app.route("/encoded")
    def encoded() -> Response:  # the app compressed it itself: leave it alone
        body = gzip.compress(b"y" * 4096)
        return Response(
            body=body, headers={"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}
        )

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    with ApiServer(probe_app(), port=0) as api:
        yield api


def get(api: ApiServer, path: str, accept_encoding: str | None = None, method: str = "GET") -> Reply:
    """One request over a fresh connection; http.client never decodes Content-Encoding."""
    connection = http.client.HTTPConnection(api.host, api.port, timeout=10)
    try:
        headers = {"Accept": "*/*"}
        if accept_encoding is not None:
            headers["Accept-Encoding"] = accept_encoding
        # skip_accept_encoding: http.client would otherwise send "Accept-Encoding: identity".
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def test_the_default_threshold_is_the_templates() -> None:
    template = load_template(ROOT / "template.yaml")
    assert minimum_compression_size(template, "RippleApi") == DEFAULT_MINIMUM_COMPRESSION_SIZE
    assert minimum_compression_size(template) == DEFAULT_MINIMUM_COMPRESSION_SIZE  # the only REST API
    assert ApiServer(probe_app()).minimum_compression_size == DEFAULT_MINIMUM_COMPRESSION_SIZE


def test_large_json_is_gzipped_when_the_client_accepts_it(server: ApiServer) -> None:
    reply = get(server, "/big", "gzip, deflate")
    assert reply.status == 200
    assert reply.headers["Content-Encoding"] == "gzip"
    assert int(reply.headers["Content-Length"]) == len(reply.raw)
    assert "Accept-Encoding" in reply.headers["Vary"]
    assert reply.headers["Content-Type"] == "application/json"
    plain = gzip.decompress(reply.raw)
    assert len(plain) >= DEFAULT_MINIMUM_COMPRESSION_SIZE > len(reply.raw)
    assert json.loads(plain) == BIG


def test_large_json_without_accept_encoding_is_identity(server: ApiServer) -> None:
    reply = get(server, "/big")
    assert reply.status == 200
    assert "Content-Encoding" not in reply.headers
    assert int(reply.headers["Content-Length"]) == len(reply.raw)
    assert reply.headers["Vary"] == "Accept-Encoding"  # the representation depends on it
    assert json.loads(reply.raw) == BIG


def test_small_bodies_are_never_compressed(server: ApiServer) -> None:
    reply = get(server, "/small", "gzip")
    assert reply.status == 200
    assert "Content-Encoding" not in reply.headers
    assert json.loads(reply.raw) == SMALL
    assert int(reply.headers["Content-Length"]) == len(reply.raw)


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("br, gzip;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("identity", False),
        ("br, deflate", False),
        ("gzip;q=0", False),
        ("*;q=0.5, gzip;q=0", False),
        ("", False),
    ],
)
def test_accept_encoding_negotiation(server: ApiServer, accept_encoding: str, gzipped: bool) -> None:
    reply = get(server, "/big", accept_encoding)
    assert (reply.headers.get("Content-Encoding") == "gzip") is gzipped
    body = gzip.decompress(reply.raw) if gzipped else reply.raw
    assert json.loads(body) == BIG


@pytest.mark.parametrize(("size", "gzipped"), [(1023, False), (1024, True), (1025, True)])
def test_the_threshold_is_inclusive(server: ApiServer, size: int, gzipped: bool) -> None:
    reply = get(server, f"/text/{size}", "gzip")
    assert (reply.headers.get("Content-Encoding") == "gzip") is gzipped
    assert reply.headers["Content-Type"] == "text/plain"
    assert (gzip.decompress(reply.raw) if gzipped else reply.raw) == b"x" * size


def test_no_content_stays_empty(server: ApiServer) -> None:
    reply = get(server, "/empty", "gzip", method="DELETE")
    assert reply.status == 204
    assert reply.raw == b""
    assert "Content-Encoding" not in reply.headers


def test_a_body_the_app_encoded_is_not_compressed_twice(server: ApiServer) -> None:
    reply = get(server, "/encoded", "gzip")
    assert reply.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(reply.raw) == b"y" * 4096


def test_threshold_and_switch_are_configurable() -> None:
    app = probe_app()
    with ApiServer(app, port=0, minimum_compression_size=10) as api:
        assert get(api, "/small", "gzip").headers.get("Content-Encoding") == "gzip"
    with ApiServer(app, port=0, minimum_compression_size=None) as api:
        reply = get(api, "/big", "gzip")
        assert "Content-Encoding" not in reply.headers
        assert "Vary" not in reply.headers
        assert json.loads(reply.raw) == BIG


def test_accepts_gzip_reads_every_header_value() -> None:
    assert accepts_gzip(["deflate", "gzip"])
    assert not accepts_gzip([])
    assert not accepts_gzip(["gzip;q=nonsense"])
