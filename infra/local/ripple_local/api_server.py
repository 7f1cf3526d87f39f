"""Serve the Chalice app locally, in a background thread.

moto's API Gateway cannot route requests in server mode, so the local stack serves the API
itself with Chalice's local server, which turns HTTP requests into API Gateway proxy events
exactly as ``chalice local`` does.

It also compresses responses as API Gateway does for an API with ``MinimumCompressionSize``:
a body of at least that many bytes is gzipped when the request's ``Accept-Encoding`` allows it.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    ForbiddenError,
    LocalChalice,
    LocalDevServer,
    LocalGatewayException,
    ThreadedHTTPServer,
)

from ripple.http.routing import METHOD_NOT_ALLOWED, NO_ROUTE
from ripple_local.cfn import CfnResolutionError, Resolver

__all__ = ["DEFAULT_MINIMUM_COMPRESSION_SIZE", "ApiServer", "accepts_gzip", "minimum_compression_size"]

logger = logging.getLogger(__name__)

# Called once per response: (method, route template, status, milliseconds).
RequestLog = Callable[[str, str, int, float], None]

# template.yaml's RippleApi MinimumCompressionSize (a test keeps the two equal).
DEFAULT_MINIMUM_COMPRESSION_SIZE = 1024
# API Gateway's maximum request payload (its quotas: 10 MB); the app's own limit is far lower.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


class _IncompleteBody(Exception):
    """The connection ended before the body its Content-Length announced."""


class _ListeningServer(ThreadedHTTPServer):
    # socketserver's listen backlog is 5: a burst of concurrent connections beyond it is
    # reset by the kernel before a thread ever sees it. API Gateway queues bursts instead;
    # 128 is the kernel's usual somaxconn floor.
    request_queue_size = 128
    daemon_threads = True


_API_TYPES = frozenset({"AWS::Serverless::Api", "AWS::ApiGateway::RestApi"})

# (status, code, message) of what API Gateway answers before the app runs, as template.yaml's
# RippleApi GatewayResponses configure it (tests/unit/local_stack/test_api_server.py keeps the
# two equal): an unknown route (MISSING_AUTHENTICATION_TOKEN, NO_ROUTE), any other 4XX and 5XX.
# Static messages: nothing of the request is ever repeated (it may carry a credential).
GATEWAY_4XX = (400, "bad_request", "the request was refused before it reached the API")
GATEWAY_5XX = (500, "internal_error", "the API could not complete the request")
# NO_ROUTE and METHOD_NOT_ALLOWED (a method the matched route does not have) are the app's own
# answers behind an HTTP API (ripple.http.routing). On a REST API a method the route lacks is
# an unknown route, NO_ROUTE; locally the route is known, so 405 with Allow, as the app answers.
_MAX_DISCARDED_BODY = 1024 * 1024


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

    # TCP_NODELAY on each connection (socketserver's own knob). The handler sends the headers
    # and then the body; with Nagle's algorithm on, the body waits for the ACK of the headers,
    # which a keep-alive client delays by up to 40 ms: a request to a one-line route took
    # 44 ms at the median on one keep-alive connection, 0.4 ms with Nagle off.
    disable_nagle_algorithm = True

    def __init__(
        self,
        request: Any,
        client_address: tuple[str, int],
        server: Any,
        app_object: Any,
        config: Config,
        *,
        minimum_compression_size: int | None = DEFAULT_MINIMUM_COMPRESSION_SIZE,
        request_log: RequestLog | None = None,
    ) -> None:
        # Set before the base __init__, which handles the whole request.
        self.minimum_compression_size = minimum_compression_size
        self.request_log = request_log
        self._started = time.perf_counter()
        super().__init__(request, client_address, server, app_object, config)

    def parse_request(self) -> bool:
        self._started = time.perf_counter()  # per request: one connection serves several
        return bool(super().parse_request()) and self._framing_is_valid()

    def _framing_is_valid(self) -> bool:
        """The body's framing, checked before Chalice reads the body (it would raise on a bad
        ``Content-Length`` and drop the connection unanswered). Answers as API Gateway's front
        door does: a ``Content-Length`` that is not a decimal number, or two that differ, is
        400; one over API Gateway's 10 MB payload limit is 413. A chunked body (or another
        transfer coding) is 411: http.server cannot read one, and ignoring it would hand the
        app an empty body. Refused requests close the connection (RFC 9112 6.3)."""
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding") is not None:
            self.send_error(HTTPStatus.LENGTH_REQUIRED)
            return False
        if not lengths:
            return True
        # Each header one plain number (a comma list too is refused: Chalice reads the first
        # header with int()), the same in every header.
        values = {value.strip() for value in lengths}
        if len(values) != 1 or not (value := values.pop()).isdigit() or not value.isascii():
            self.send_error(HTTPStatus.BAD_REQUEST)
            return False
        if int(value) > MAX_PAYLOAD_BYTES:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return False
        return True

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _IncompleteBody:  # answered (400) if the client still listens; never dispatched
            self.close_connection = True

    def _parse_payload(self) -> tuple[dict[str, str], bytes | None]:
        """The headers and the whole body, as Chalice's own (``Content-Length`` checked by
        :meth:`_framing_is_valid`). A body cut short (the client closed or stopped sending) is
        never handed to the app - API Gateway only invokes with a complete request - nor
        answered as if it were: 400, and the connection closed."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else None
        if body is not None and len(body) < length:
            with contextlib.suppress(OSError):
                self.send_error(HTTPStatus.BAD_REQUEST)
            raise _IncompleteBody
        return dict(self.headers), body

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One call per response (from send_response): method, route template, status, ms."""
        if self.request_log is None:
            return
        # A request refused before its request line was parsed (garbage, a bad version, a line
        # over 64 KiB) has no path, and no method ("" or None).
        path = urllib.parse.urlsplit(getattr(self, "path", "")).path
        try:  # the template ("/users/{user_id}"), as API Gateway's metrics name a route
            route = self.local_gateway.event_converter._route_matcher.match_route(path).route
        except Exception:
            route = path
        elapsed_ms = (time.perf_counter() - self._started) * 1000
        try:
            self.request_log(self.command or "-", str(route), int(code), elapsed_ms)
        except Exception:  # a logging hook never breaks a response
            logger.debug("request log hook failed", exc_info=True)

    def log_message(self, format: str, *args: Any) -> None:
        """http.server's own lines (errors, bad requests) go to the log, not the terminal."""
        logger.debug("api: " + format, *args)

    # ---- requests the app never sees: unknown routes and methods (issue 12, items 4 and 5).
    # Chalice's local server answers an unknown route 403 {"message": "Missing Authentication
    # Token"} - quoting the whole Authorization header when there is one - and any method
    # without a do_* handler with http.server's 501 HTML page. Here every such answer is
    # Ripple's {"error": {"code", "message"}} shape, and none repeats anything of the request.

    def __getattr__(self, name: str) -> Any:
        """``do_<METHOD>`` for every method without a handler (QUERY, PURGE, PROPFIND, ``get``,
        garbage): http.server looks it up by name and would otherwise answer 501."""
        if name.startswith("do_"):
            return self._unknown_method
        raise AttributeError(name)

    def _unknown_method(self) -> None:
        """A method no route has: 405 with ``Allow`` on a route, 404 where no route matches."""
        self._discard_request_body()
        allowed = self._allowed_methods()
        if allowed is None:
            self._send_gateway_error(*NO_ROUTE)
            return
        status, code, message = METHOD_NOT_ALLOWED
        self._send_gateway_error(status, code, message, {"Allow": ", ".join(allowed)})

    # OPTIONS and TRACE/CONNECT are no route's methods either (Chalice would answer OPTIONS
    # with a CORS preflight the API does not configure).
    do_OPTIONS = do_TRACE = do_CONNECT = _unknown_method

    def _send_error_response(self, error: LocalGatewayException) -> None:
        """Chalice's local gateway errors as template.yaml's GatewayResponses answer on AWS.
        The app has no authorizers, so its 403 only ever means that no route matched."""
        if isinstance(error, ForbiddenError):
            self._send_gateway_error(*NO_ROUTE)
        elif error.CODE >= 500:
            self._send_gateway_error(error.CODE, *GATEWAY_5XX[1:])
        else:
            self._send_gateway_error(error.CODE or 400, *GATEWAY_4XX[1:])

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, a URI or headers too long) in
        the error shape instead of its HTML page. Its message can quote the request line, so
        only the status phrase is sent. A request line that names a version (three words),
        even one refused (``HTTP/2.0``, ``HTTP/x``), gets a status line and headers: http.server
        would answer it as HTTP/0.9 (the body alone), which no HTTP/1.x client can read. Only a
        two-word line is HTTP/0.9's."""
        _, error_code, _ = GATEWAY_5XX if code >= 500 else GATEWAY_4XX
        names_a_version = len(getattr(self, "requestline", "").split()) >= 3
        if names_a_version and getattr(self, "request_version", "") == "HTTP/0.9":
            self.request_version = "HTTP/1.1"
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase.lower()
        except ValueError:
            phrase = "the request was refused"
        self._send_gateway_error(code, error_code, phrase, {"Connection": "close"})

    def _allowed_methods(self) -> list[str] | None:
        """The methods of the route the request's path matches, None if none matches."""
        gateway = self.local_gateway
        try:
            route = gateway.event_converter._route_matcher.match_route(self.path).route
        except ValueError:
            return None
        return sorted(gateway._app_object.routes[route])

    def _discard_request_body(self) -> None:
        """Read a body the app never sees, so the connection stays in step (keep-alive). Its
        framing is valid by now (:meth:`_framing_is_valid`, from parse_request)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length <= _MAX_DISCARDED_BODY:
            self.rfile.read(length)
        else:  # unreadable or too large: answer, then close
            self.close_connection = True

    def _send_gateway_error(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
        self._send_http_response_with_body(
            status, {"Content-Type": "application/json", **(headers or {})}, body
        )

    def _send_head_response(self, code: int, headers: dict[str, Any], length: int) -> None:
        """A HEAD answer: the headers a GET would get and no body (RFC 9110 9.3.2); a body
        here would be read as the start of the next response on a kept-alive connection."""
        self.send_response(code)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self._send_headers(headers)

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
        if self.command == "HEAD":
            self._send_head_response(code, dict(headers), len(raw))
            return
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
        request_log: RequestLog | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.minimum_compression_size = minimum_compression_size
        self.request_log = request_log
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
            CompressingRequestHandler,
            minimum_compression_size=self.minimum_compression_size,
            request_log=self.request_log,
        )
        server = LocalDevServer(
            self.app, self.config, self.host, self.port, handler_cls=handler, server_cls=_ListeningServer
        )
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
