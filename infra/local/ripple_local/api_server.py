"""Serve the Chalice app locally, in a background thread.

moto's API Gateway cannot route requests in server mode, so the local stack serves the API
itself with Chalice's local server, which turns HTTP requests into API Gateway proxy events
exactly as ``chalice local`` does.

It also compresses responses as API Gateway does for an API with ``MinimumCompressionSize``:
a body of at least that many bytes is gzipped when the request's ``Accept-Encoding`` allows it.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, CustomLocalChalice, LocalChalice, LocalDevServer

from ripple_local.cfn import CfnResolutionError, Resolver

__all__ = ["DEFAULT_MINIMUM_COMPRESSION_SIZE", "ApiServer", "accepts_gzip", "minimum_compression_size"]

logger = logging.getLogger(__name__)

# template.yaml's RippleApi MinimumCompressionSize (a test keeps the two equal).
DEFAULT_MINIMUM_COMPRESSION_SIZE = 1024
_API_TYPES = frozenset({"AWS::Serverless::Api", "AWS::ApiGateway::RestApi"})


def minimum_compression_size(
    template: Mapping[str, Any], api_id: str | None = None, resolver: Resolver | None = None
) -> int | None:
    """The ``MinimumCompressionSize`` of a REST API in ``template`` (None: compression is off).

    ``api_id`` names the API resource; it may be omitted when the template has exactly one.
    A value given by an intrinsic function (``!Ref SomeParameter``) needs ``resolver``.
    """
    resources: Mapping[str, Any] = template.get("Resources") or {}
    apis = {name: res for name, res in resources.items() if res.get("Type") in _API_TYPES}
    if api_id is None:
        if len(apis) != 1:
            names = ", ".join(sorted(apis)) or "none"
            raise ValueError(f"name the API: the template has {len(apis)} REST APIs ({names})")
        (api_id,) = apis
    if api_id not in apis:
        raise ValueError(f"{api_id!r} is not a REST API of the template")
    value = (apis[api_id].get("Properties") or {}).get("MinimumCompressionSize")
    if value is None:
        return None
    if isinstance(value, dict):
        if resolver is None:
            raise CfnResolutionError(f"{api_id}.MinimumCompressionSize is {value!r}: pass a resolver")
        value = resolver.resolve(value)
    size = int(value)
    if size < 0:
        raise ValueError(f"{api_id}.MinimumCompressionSize must not be negative, got {size}")
    return size


def accepts_gzip(accept_encoding: Iterable[str]) -> bool:
    """True if ``Accept-Encoding`` header values allow gzip (``gzip``, ``x-gzip`` or ``*``, q > 0)."""
    explicit: float | None = None
    wildcard: float | None = None
    for header in accept_encoding:
        for item in header.split(","):
            coding, *params = (part.strip() for part in item.split(";"))
            q = 1.0
            for param in params:
                name, _, raw = param.partition("=")
                if name.strip().lower() == "q":
                    try:
                        q = float(raw)
                    except ValueError:
                        q = 0.0
            coding = coding.lower()
            if coding in ("gzip", "x-gzip"):
                explicit = q if explicit is None else max(explicit, q)
            elif coding == "*":
                wildcard = q
    if explicit is not None:
        return explicit > 0
    return wildcard is not None and wildcard > 0


def _header(headers: Mapping[str, Any], name: str) -> tuple[str, Any] | None:
    """The (key, value) of a header, matched case-insensitively."""
    for key, value in headers.items():
        if key.lower() == name.lower():
            return key, value
    return None


class CompressingRequestHandler(ChaliceRequestHandler):
    """Chalice's local request handler plus API Gateway's response compression.

    ``minimum_compression_size`` None turns compression off; otherwise a body of at least
    that many bytes carries ``Vary: Accept-Encoding`` and is gzipped for clients that accept it.
    """

    def __init__(
        self,
        request: Any,
        client_address: tuple[str, int],
        server: Any,
        app_object: Any,
        config: Config,
        *,
        minimum_compression_size: int | None = DEFAULT_MINIMUM_COMPRESSION_SIZE,
    ) -> None:
        # Set before the base __init__, which handles the whole request.
        self.minimum_compression_size = minimum_compression_size
        super().__init__(request, client_address, server, app_object, config)

    def _method_not_allowed(self) -> None:
        """Methods Chalice's local server has no handler for answer as API Gateway does: 405."""
        body = json.dumps(
            {"error": {"code": "method_not_allowed", "message": f"method {self.command} is not allowed"}}
        )
        self._send_http_response_with_body(405, {"Content-Type": "application/json"}, body.encode())

    do_TRACE = do_CONNECT = _method_not_allowed

    def _send_http_response_with_body(self, code: int, headers: dict[str, Any], body: str | bytes) -> None:
        raw = body.encode("utf-8") if isinstance(body, str) else body
        threshold = self.minimum_compression_size
        if threshold is not None and raw and len(raw) >= threshold:
            headers = dict(headers)
            vary = _header(headers, "Vary")
            if vary is None:
                headers["Vary"] = "Accept-Encoding"
            elif "accept-encoding" not in str(vary[1]).lower() and str(vary[1]).strip() != "*":
                headers[vary[0]] = f"{vary[1]}, Accept-Encoding"
            already_encoded = _header(headers, "Content-Encoding") is not None
            if not already_encoded and accepts_gzip(self.headers.get_all("Accept-Encoding") or []):
                raw = gzip.compress(raw, mtime=0)
                headers["Content-Encoding"] = "gzip"
        # The base class sets Content-Length from the bytes it is given.
        super()._send_http_response_with_body(code, headers, raw)


class ApiServer:
    """The Chalice ``app`` object on http://host:port, served by a daemon thread.

    ``port=0`` picks a free port (see ``url`` after ``start``). Timeout and memory feed the
    Lambda context Chalice builds for each request. ``minimum_compression_size`` is the API's
    ``MinimumCompressionSize`` (see :func:`minimum_compression_size`); None disables gzip.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 3000,
        *,
        timeout_s: int = 30,
        memory_mb: int = 512,
        minimum_compression_size: int | None = DEFAULT_MINIMUM_COMPRESSION_SIZE,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.minimum_compression_size = minimum_compression_size
        self.config = Config.create(lambda_timeout=timeout_s, lambda_memory_size=memory_mb)
        self._server: LocalDevServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the API (no stage prefix: Chalice local serves routes at the root)."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the serving thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ApiServer:
        """Bind the socket (errors surface here) and serve in the background."""
        if self.running:
            return self
        if not isinstance(self.app, LocalChalice):
            # What chalice.local.create_local_server does: rebase the app's class so that
            # current_request is thread-local. Only once per app object: doing it twice (a second
            # server for the same app in one process) would make the class its own base.
            CustomLocalChalice.__bases__ = (LocalChalice, self.app.__class__)
            self.app.__class__ = CustomLocalChalice
        handler = functools.partial(
            CompressingRequestHandler, minimum_compression_size=self.minimum_compression_size
        )
        server = LocalDevServer(self.app, self.config, self.host, self.port, handler_cls=handler)
        self.port = int(server.server.server_address[1])
        self._server = server
        # LocalDevServer.serve_forever prints a banner; serve from the HTTPServer directly.
        self._thread = threading.Thread(
            target=server.server.serve_forever, kwargs={"poll_interval": 0.1}, name="api-server", daemon=True
        )
        self._thread.start()
        logger.info("API listening on %s", self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting requests and release the port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
