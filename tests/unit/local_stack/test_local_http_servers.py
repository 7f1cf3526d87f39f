"""Every HTTP server ripple_local runs answers on sockets with Nagle's algorithm off.

Each handler sends a response's headers and its body in two writes. With Nagle's algorithm on,
the body waits for the ACK of the headers, and a keep-alive client delays that ACK by up to
40 ms: every request to the local API (and every DynamoDB call through the fault proxy) paid
it. What is checked is the option on the accepted socket itself, read from the kernel after
the handler's own setup, for a real request from a keep-alive client.
"""

from __future__ import annotations

import http.client
import socket
import socketserver
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from chalice import Chalice

from ripple_local.api_server import ApiServer
from ripple_local.fault_proxy import FaultProxy
from ripple_local.metrics_exporter import MetricsExporter


@pytest.fixture
def nodelay_seen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """TCP_NODELAY of each accepted connection, as the kernel reports it after setup()."""
    seen: list[int] = []
    setup = socketserver.StreamRequestHandler.setup

    def recording_setup(self: socketserver.StreamRequestHandler) -> None:
        setup(self)
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(socketserver.StreamRequestHandler, "setup", recording_setup)
    return seen


def api() -> ApiServer:
    app = Chalice(app_name="nodelay-probe")

    @app.route("/")
    def index() -> dict[str, Any]:
        return {"ok": True}

    return ApiServer(app, port=0)


def proxy() -> FaultProxy:
    # Nothing listens upstream: the proxy still accepts, and answers the failed forward itself.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    return FaultProxy(f"http://127.0.0.1:{free}", upstream_timeout_s=1.0)


SERVERS: dict[str, tuple[Callable[[], AbstractContextManager[Any]], str]] = {
    "local API": (api, "/"),
    "metrics exporter": (lambda: MetricsExporter(port=0), "/metrics"),
    "DynamoDB fault proxy": (proxy, "/"),
}


def port_of(server: Any) -> int:
    return int(server.port)


@pytest.mark.parametrize("name", list(SERVERS))
def test_connections_are_served_with_nagle_off(name: str, nodelay_seen: list[int]) -> None:
    make, path = SERVERS[name]
    with make() as server:
        connection = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=10)
        try:
            for _ in range(2):  # keep-alive: the second response is the one Nagle held back
                connection.request("GET", path)
                connection.getresponse().read()
        finally:
            connection.close()
    assert nodelay_seen, f"the {name} served no connection"
    assert all(nodelay_seen), f"the {name} answered on a socket with Nagle's algorithm on"
