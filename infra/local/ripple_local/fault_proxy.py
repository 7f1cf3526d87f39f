"""A fault-injecting HTTP reverse proxy in front of the AWS emulator.

Point a client's DynamoDB endpoint (``AWS_ENDPOINT_URL_DYNAMODB``,
``Settings.dynamodb_endpoint_url``) at the proxy instead of DynamoDB Local and, with a
configurable probability or a fixed pattern, DynamoDB requests are answered the way DynamoDB
answers under stress and contention instead of being forwarded:

* ``throttle`` - HTTP 400 ``ProvisionedThroughputExceededException`` (the request is not
  forwarded: nothing is written). botocore retries it with backoff.
* ``server_error`` - HTTP 500 ``InternalServerError`` (not forwarded either).
* ``error_after_commit`` - the request *is* forwarded (and so applied), then a 500 is
  answered anyway: the ambiguous "did my write happen?" case of a lost response. A
  botocore retry sends the same request again.
* ``transaction_conflict`` - a TransactWriteItems is cancelled (HTTP 400
  ``TransactionCanceledException``, one item's reason ``TransactionConflict``, the others
  ``None``) without being forwarded: what DynamoDB answers when another transaction or write
  touches one of its items at that moment. No emulator produces it.
* ``unprocessed`` - a BatchWriteItem or BatchGetItem has only the first half of its requests
  forwarded (none of a single one); the rest comes back as ``UnprocessedItems`` /
  ``UnprocessedKeys``, as DynamoDB answers under load.

And, independent of the plan's draws, ``gsi_lag_s``: an item put or updated through the
proxy stays invisible to Query and Scan of the table's global secondary indexes for that
many seconds, as on DynamoDB, whose indexes are updated asynchronously ("typically under a
second", unbounded in theory). (A deleted item's stale index entry is not simulated.)

Only DynamoDB's data-plane API (``X-Amz-Target: DynamoDB_20120810.*``) is affected, and
optionally only some of its operations; DynamoDB Streams, SQS and Secrets Manager always
pass through. Every request is recorded (operation, tables, outcome, timing, a digest of
the body), so tests can count retries, measure backoff and list which tables and indexes
a code path really touches (:meth:`ProxiedCall.permissions`).

Run it by hand in front of ``make up``'s DynamoDB Local, e.g. 30 % throttling::

    python -m ripple_local.fault_proxy --upstream http://127.0.0.1:8000 --port 8001 --throttle 0.3

then start a second stack whose DynamoDB is the proxy (its own tables, Redis, ports and state)::

    python -m ripple_local up --emulator-url http://127.0.0.1:4566 --dynamodb-url http://127.0.0.1:8001 \
        --stack-name faulty --state-dir .local-faulty --api-port 3001 --redis-port 6380 --metrics-port 0
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import random
import signal
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple, Self

__all__ = [
    "ERROR_AFTER_COMMIT",
    "FORWARD",
    "SERVER_ERROR",
    "THROTTLE",
    "TRANSACTION_CONFLICT",
    "UNPROCESSED",
    "FaultPlan",
    "FaultProxy",
    "ProxiedCall",
    "main",
]

logger = logging.getLogger(__name__)

DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
FORWARD, THROTTLE, SERVER_ERROR, ERROR_AFTER_COMMIT = (
    "forward",
    "throttle",
    "server_error",
    "error_after_commit",
)
TRANSACTION_CONFLICT, UNPROCESSED = "transaction_conflict", "unprocessed"
# Pattern characters, one per affected request: "." forward, "T" throttle, "E" 500, "C" commit
# then 500, "X" transaction conflict, "U" half the batch unprocessed.
_PATTERN_CODES = {
    ".": FORWARD,
    "T": THROTTLE,
    "E": SERVER_ERROR,
    "C": ERROR_AFTER_COMMIT,
    "X": TRANSACTION_CONFLICT,
    "U": UNPROCESSED,
}
# Which operations each fault can apply to (others are forwarded when it is drawn).
_APPLIES_TO = {
    TRANSACTION_CONFLICT: frozenset({"TransactWriteItems"}),
    UNPROCESSED: frozenset({"BatchWriteItem", "BatchGetItem"}),
}
_WRITES_WITH_ITEMS = frozenset({"PutItem", "UpdateItem", "BatchWriteItem", "TransactWriteItems"})
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
)
# Headers this server writes itself (send_response adds Server and Date).
_SET_BY_US = _HOP_BY_HOP | {"content-length", "server", "date"}
_AMZ_JSON = "application/x-amz-json-1.0"
_FAULT_RESPONSES: dict[str, tuple[int, str, str]] = {
    THROTTLE: (
        400,
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded "
        "(injected by ripple_local.fault_proxy)",
    ),
    SERVER_ERROR: (
        500,
        "InternalServerError",
        "Internal server error (injected by ripple_local.fault_proxy)",
    ),
    ERROR_AFTER_COMMIT: (
        500,
        "InternalServerError",
        "Internal server error after the request was applied (injected by ripple_local.fault_proxy)",
    ),
    TRANSACTION_CONFLICT: (
        400,
        "TransactionCanceledException",
        "Transaction cancelled, please refer cancellation reasons for specific reasons "
        "[TransactionConflict] (injected by ripple_local.fault_proxy)",
    ),
}


def _conflict_reasons(document: dict[str, Any]) -> list[dict[str, str]]:
    """DynamoDB's reasons for a conflict: the first item conflicted, the others untouched."""
    items = document.get("TransactItems") or [{}]
    reasons = [{"Code": "None"} for _ in items]
    reasons[0] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item."}
    return reasons


def _split_batch(operation: str, document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(requests to forward, requests to answer as unprocessed), per table: the first half
    (rounded down) of each table's writes or keys is forwarded."""
    forwarded: dict[str, Any] = {}
    held: dict[str, Any] = {}
    for table, requests in (document.get("RequestItems") or {}).items():
        if operation == "BatchGetItem":
            keys = list(requests.get("Keys") or [])
            half = len(keys) // 2
            if half:
                forwarded[table] = {**requests, "Keys": keys[:half]}
            held[table] = {**requests, "Keys": keys[half:]}
        else:
            writes = list(requests or [])
            half = len(writes) // 2
            if half:
                forwarded[table] = writes[:half]
            held[table] = writes[half:]
    return forwarded, held


class _IndexLag:
    """Global secondary index propagation lag: items written through the proxy are hidden
    from index Queries and Scans for ``lag_s`` seconds. Table key schemas come from the
    upstream's DescribeTable, once per table."""

    def __init__(self, describe: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.lag_s = 0.0
        self._describe = describe
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[str, ...]] = {}
        self._written: dict[tuple[str, str], float] = {}  # (table, key digest) -> when

    def _key_names(self, table: str) -> tuple[str, ...]:
        names = self._keys.get(table)
        if names is None:
            schema = self._describe(table).get("KeySchema") or []
            names = tuple(str(k["AttributeName"]) for k in schema)
            self._keys[table] = names
        return names

    def _digest(self, table: str, item: dict[str, Any]) -> str:
        return json.dumps({name: item.get(name) for name in self._key_names(table)}, sort_keys=True)

    def _items_written(self, operation: str, document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if operation == "PutItem":
            return [(str(document.get("TableName")), document.get("Item") or {})]
        if operation == "UpdateItem":
            return [(str(document.get("TableName")), document.get("Key") or {})]
        written: list[tuple[str, dict[str, Any]]] = []
        if operation == "BatchWriteItem":
            for table, requests in (document.get("RequestItems") or {}).items():
                written += [(str(table), r["PutRequest"]["Item"]) for r in requests if "PutRequest" in r]
        elif operation == "TransactWriteItems":
            for entry in document.get("TransactItems") or []:
                if "Put" in entry:
                    written.append((str(entry["Put"].get("TableName")), entry["Put"].get("Item") or {}))
                elif "Update" in entry:
                    written.append((str(entry["Update"].get("TableName")), entry["Update"].get("Key") or {}))
        return written

    def after(self, operation: str, document: dict[str, Any], payload: bytes) -> bytes:
        """Record what a forwarded write wrote; filter what a forwarded index read returns."""
        if self.lag_s <= 0:
            return payload
        now = self._clock()
        if operation in _WRITES_WITH_ITEMS:
            try:
                written = [(t, self._digest(t, item)) for t, item in self._items_written(operation, document)]
            except Exception:  # a table the upstream cannot describe: nothing to hide
                logger.debug("fault proxy: cannot record index lag for %s", operation, exc_info=True)
                return payload
            with self._lock:
                for entry in written:
                    self._written[entry] = now
            return payload
        if operation not in ("Query", "Scan") or not document.get("IndexName"):
            return payload
        table = str(document.get("TableName"))
        answer = _json_object(payload)
        items = answer.get("Items") or []
        with self._lock:
            fresh = {key for key, at in self._written.items() if now - at < self.lag_s}
        kept = [item for item in items if (table, self._digest(table, item)) not in fresh]
        if len(kept) == len(items):
            return payload
        answer["Items"] = kept
        answer["Count"] = len(kept)
        return json.dumps(answer).encode()


@dataclass(frozen=True)
class FaultPlan:
    """Which DynamoDB requests fail, and how.

    With ``pattern`` set, the probabilities are ignored and each affected request takes the
    next character of the pattern (cycled): ``"."`` forward, ``"T"`` throttle, ``"E"`` 500,
    ``"C"`` forward then 500. ``"TTT."`` therefore throttles three attempts and lets the fourth
    through. Otherwise each affected request is throttled with probability ``throttle``, else
    failed with ``server_error``, else committed-then-failed with ``error_after_commit``.
    ``operations`` limits the plan to those DynamoDB operations (``{"TransactWriteItems"}``);
    ``tables`` to requests naming one of those tables. ``"X"`` and ``transaction_conflict``
    apply to TransactWriteItems only, ``"U"`` and ``unprocessed`` to BatchWriteItem and
    BatchGetItem only; drawn for another operation, they forward it. ``gsi_lag_s`` hides new
    and changed items from index reads for that long (module docstring). The default plan
    forwards everything.
    """

    throttle: float = 0.0
    server_error: float = 0.0
    error_after_commit: float = 0.0
    transaction_conflict: float = 0.0
    unprocessed: float = 0.0
    gsi_lag_s: float = 0.0
    operations: frozenset[str] | None = None
    tables: frozenset[str] | None = None
    pattern: str | None = None
    seed: int | None = None

    def _probabilities(self) -> list[tuple[str, float]]:
        return [
            (THROTTLE, self.throttle),
            (SERVER_ERROR, self.server_error),
            (ERROR_AFTER_COMMIT, self.error_after_commit),
            (TRANSACTION_CONFLICT, self.transaction_conflict),
            (UNPROCESSED, self.unprocessed),
        ]

    def __post_init__(self) -> None:
        probabilities = [p for _, p in self._probabilities()]
        if min(probabilities) < 0 or sum(probabilities) > 1:
            raise ValueError("fault probabilities must be >= 0 and add up to at most 1")
        if self.gsi_lag_s < 0:
            raise ValueError("gsi_lag_s must be >= 0")
        if self.pattern is not None and (not self.pattern or set(self.pattern) - set(_PATTERN_CODES)):
            raise ValueError(f"a pattern is a non-empty string of {''.join(_PATTERN_CODES)!r}")

    @classmethod
    def only(
        cls,
        operations: Collection[str] | None = None,
        tables: Collection[str] | None = None,
        **kwargs: Any,
    ) -> FaultPlan:
        """A plan limited to some operations and/or tables (given as any collection)."""
        return cls(
            operations=frozenset(operations) if operations is not None else None,
            tables=frozenset(tables) if tables is not None else None,
            **kwargs,
        )

    def affects(self, operation: str, tables: Collection[str]) -> bool:
        """True when a DynamoDB request with this operation and these tables is subject to the plan."""
        if self.operations is not None and operation not in self.operations:
            return False
        return self.tables is None or any(t in self.tables for t in tables)

    def draw(self, value: float) -> str:
        """The outcome a uniform draw in [0, 1) picks from the probabilities."""
        threshold = 0.0
        for outcome, probability in self._probabilities():
            threshold += probability
            if value < threshold:
                return outcome
        return FORWARD


@dataclass(frozen=True)
class ProxiedCall:
    """One request that went through the proxy, and what became of it."""

    target: str  # X-Amz-Target ("DynamoDB_20120810.PutItem"), or "METHOD /path" for other APIs
    operation: str  # "PutItem"; "" when not a DynamoDB request
    tables: tuple[str, ...]  # every table the request names
    outcome: (
        str  # FORWARD | THROTTLE | SERVER_ERROR | ERROR_AFTER_COMMIT | TRANSACTION_CONFLICT | UNPROCESSED
    )
    status: int  # what the client was answered
    started: float  # time.monotonic() when the request arrived
    duration_s: float
    digest: str  # sha256 of the body: a botocore retry sends the same bytes again
    body: bytes = field(repr=False, default=b"")

    @property
    def is_dynamodb(self) -> bool:
        """A DynamoDB data-plane request (the only kind faults are injected into)."""
        return bool(self.operation)

    @property
    def faulted(self) -> bool:
        """True when the client saw an injected error."""
        return self.outcome != FORWARD

    @property
    def applied(self) -> bool:
        """True when the emulator received the request, or part of it (it may still have
        refused it)."""
        return self.outcome in (FORWARD, ERROR_AFTER_COMMIT, UNPROCESSED)

    def document(self) -> dict[str, Any]:
        """The JSON request body ({} if it is not JSON)."""
        return _json_object(self.body)

    def permissions(self) -> set[tuple[str, str, str | None]]:
        """The IAM permissions this DynamoDB request needs: ``(action, table, index or None)``.

        Transactions have no IAM action of their own: each item needs the permission of its
        kind (Put -> PutItem, Update -> UpdateItem, Delete -> DeleteItem, ConditionCheck ->
        ConditionCheckItem) on its table. Batch operations need their batch action on every
        table they name. A Query or Scan of an index needs the action on ``table/index/name``.
        """
        if not self.is_dynamodb:
            return set()
        doc = self.document()
        action = f"dynamodb:{self.operation}"
        if self.operation in ("TransactWriteItems", "TransactGetItems"):
            needed: set[tuple[str, str, str | None]] = set()
            kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
            kinds |= {"ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
            for item in doc.get("TransactItems") or []:
                for kind, body in item.items():
                    needed.add((f"dynamodb:{kinds.get(kind, kind)}", str(body.get("TableName")), None))
            return needed
        if self.operation in ("BatchWriteItem", "BatchGetItem"):
            return {(action, str(table), None) for table in doc.get("RequestItems") or {}}
        index = doc.get("IndexName")
        return {(action, str(table), str(index) if index else None) for table in self.tables}


class _Upstream(NamedTuple):
    status: int
    reason: str
    headers: list[tuple[str, str]]
    payload: bytes


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tables_of(operation: str, doc: dict[str, Any]) -> tuple[str, ...]:
    if "TableName" in doc:
        return (str(doc["TableName"]),)
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return tuple(sorted(str(t) for t in doc.get("RequestItems") or {}))
    if operation in ("TransactWriteItems", "TransactGetItems"):
        names = {
            str(body.get("TableName"))
            for item in doc.get("TransactItems") or []
            for body in item.values()
            if isinstance(body, dict)
        }
        return tuple(sorted(names))
    return ()


def _fault_response(outcome: str, document: dict[str, Any] | None = None) -> _Upstream:
    """The error DynamoDB answers for an injected fault (``_FAULT_RESPONSES``)."""
    status, code, message = _FAULT_RESPONSES[outcome]
    error: dict[str, Any] = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}
    if outcome == TRANSACTION_CONFLICT:
        error["CancellationReasons"] = _conflict_reasons(document or {})
    headers = [("Content-Type", _AMZ_JSON), ("x-amzn-RequestId", uuid.uuid4().hex)]
    return _Upstream(status, http.client.responses.get(status, ""), headers, json.dumps(error).encode())


class _Handler(BaseHTTPRequestHandler):
    """Forwards one request (keep-alive HTTP/1.1, so botocore's connection pool works)."""

    protocol_version = "HTTP/1.1"
    # Headers and body go in two sends: with Nagle's algorithm on, a keep-alive client waits
    # up to 40 ms (its delayed ACK) for every body (ripple_local.api_server, the same knob).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fault proxy: " + format, *args)

    def do_GET(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def do_PATCH(self) -> None:
        self._proxy()

    def do_HEAD(self) -> None:
        self._proxy()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _proxy(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        target = self.headers.get("X-Amz-Target") or ""
        operation = target[len(DYNAMODB_TARGET_PREFIX) :] if target.startswith(DYNAMODB_TARGET_PREFIX) else ""
        document = _json_object(body) if operation else {}
        tables = _tables_of(operation, document) if operation else ()
        proxy = self.server.proxy
        outcome = proxy._decide(operation, tables) if operation else FORWARD
        if outcome in (THROTTLE, SERVER_ERROR, TRANSACTION_CONFLICT):
            response = _fault_response(outcome, document)
        elif outcome == UNPROCESSED:
            response = self._partial_batch_response(operation, document)
        else:
            response = self._forward(body)
            if outcome == ERROR_AFTER_COMMIT and response.status < 300:
                response = _fault_response(outcome)  # applied, but the client is told it failed
            elif response.status < 300 and operation:  # else the emulator refused it: nothing applied
                response = response._replace(
                    payload=proxy._index_lag.after(operation, document, response.payload)
                )
        # Recorded before the answer is written: a caller that has its answer can rely on
        # calls() holding the request (and on clear() not missing a late record).
        proxy._record(
            ProxiedCall(
                target=target or f"{self.command} {urllib.parse.urlsplit(self.path).path}",
                operation=operation,
                tables=tables,
                outcome=outcome,
                status=response.status,
                started=started,
                duration_s=time.monotonic() - started,
                digest=hashlib.sha256(body).hexdigest(),
                body=body if proxy.record_bodies else b"",
            )
        )
        self._send(*response)

    def _partial_batch_response(self, operation: str, document: dict[str, Any]) -> _Upstream:
        """Forward the first half of each table's requests; answer the rest as unprocessed."""
        forwarded, held = _split_batch(operation, document)
        if forwarded:
            upstream = self._forward(json.dumps({**document, "RequestItems": forwarded}).encode())
            if upstream.status >= 300:
                return upstream
            answer = _json_object(upstream.payload)
            if operation == "BatchGetItem":
                answer["Responses"] = answer.get("Responses") or {}
            else:
                self.server.proxy._index_lag.after(operation, {"RequestItems": forwarded}, b"")
        else:
            answer = {"Responses": {t: [] for t in held}} if operation == "BatchGetItem" else {}
        answer["UnprocessedKeys" if operation == "BatchGetItem" else "UnprocessedItems"] = held
        headers = [("Content-Type", _AMZ_JSON), ("x-amzn-RequestId", uuid.uuid4().hex)]
        return _Upstream(200, "OK", headers, json.dumps(answer).encode())

    def _forward(self, body: bytes) -> _Upstream:
        """Send the request to the emulator and read its whole answer (not yet relayed)."""
        proxy = self.server.proxy
        connection = http.client.HTTPConnection(
            proxy.upstream.hostname or "127.0.0.1",
            proxy.upstream.port or 80,
            timeout=proxy.upstream_timeout_s,
        )
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            return _Upstream(response.status, response.reason, response.getheaders(), response.read())
        except OSError as error:
            logger.warning("fault proxy: upstream %s failed: %s", proxy.upstream.geturl(), error)
            message = json.dumps({"message": f"fault proxy: upstream unreachable: {error}"}).encode()
            return _Upstream(502, "Bad Gateway", [("Content-Type", "application/json")], message)
        finally:
            connection.close()

    def _send(self, status: int, reason: str, headers: Sequence[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _SET_BY_US:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        super().__init__(address, _Handler)
        self.proxy = proxy


class FaultProxy:
    """The proxy: ``start()`` it, hand ``url`` to clients, change ``plan`` at any time.

    Thread-safe: requests are served concurrently, the plan may be replaced while they are,
    and the record of calls is kept under a lock (``calls()``, ``clear()``); ``max_calls``
    bounds it (oldest dropped) for a long-running proxy.
    """

    def __init__(
        self,
        upstream_url: str,
        host: str = "127.0.0.1",
        port: int = 0,
        plan: FaultPlan | None = None,
        *,
        upstream_timeout_s: float = 30.0,
        record_bodies: bool = True,
        max_calls: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (seconds, monotonic) times index lag; a test may pass its own."""
        self.upstream = urllib.parse.urlsplit(upstream_url)
        if self.upstream.scheme != "http" or not self.upstream.hostname:
            raise ValueError(f"the upstream must be an http:// URL, got {upstream_url!r}")
        self.host = host
        self.port = port
        self.upstream_timeout_s = upstream_timeout_s
        self.record_bodies = record_bodies
        self._lock = threading.Lock()
        self._plan = plan or FaultPlan()
        self._random = random.Random(self._plan.seed)
        self._pattern_index = 0
        self._calls: deque[ProxiedCall] = deque(maxlen=max_calls)
        self._index_lag = _IndexLag(self._describe_upstream, clock)
        self._index_lag.lag_s = self._plan.gsi_lag_s
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        """Listen (on a free port when ``port`` is 0) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="fault-proxy", daemon=True
        )
        self._thread.start()
        logger.info("fault proxy on %s -> %s", self.url, self.upstream.geturl())
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The endpoint URL to give clients instead of the emulator's."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ plan
    @property
    def plan(self) -> FaultPlan:
        """The plan in force."""
        return self._plan

    @plan.setter
    def plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan
            self._random = random.Random(plan.seed)
            self._pattern_index = 0
            self._index_lag.lag_s = plan.gsi_lag_s

    def _describe_upstream(self, table: str) -> dict[str, Any]:
        """DescribeTable on the upstream itself (never through the plan)."""
        connection = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port or 80, timeout=self.upstream_timeout_s
        )
        try:
            connection.request(
                "POST",
                "/",
                body=json.dumps({"TableName": table}),
                headers={
                    "X-Amz-Target": f"{DYNAMODB_TARGET_PREFIX}DescribeTable",
                    "Content-Type": _AMZ_JSON,
                    # DynamoDB Local wants a SigV4-shaped header; any credentials will do.
                    "Authorization": "AWS4-HMAC-SHA256 "
                    "Credential=testing/20260101/us-east-1/dynamodb/aws4_request, "
                    "SignedHeaders=host;x-amz-target, Signature=0",
                },
            )
            response = connection.getresponse()
            description = _json_object(response.read()).get("Table") or {}
        finally:
            connection.close()
        return description

    def _decide(self, operation: str, tables: Collection[str]) -> str:
        with self._lock:
            plan = self._plan
            if not plan.affects(operation, tables):
                return FORWARD
            if plan.pattern is not None:
                code = plan.pattern[self._pattern_index % len(plan.pattern)]
                self._pattern_index += 1
                outcome = _PATTERN_CODES[code]
            else:
                outcome = plan.draw(self._random.random())
        if operation not in _APPLIES_TO.get(outcome, frozenset({operation})):
            return FORWARD
        return outcome

    # ------------------------------------------------------------------ record
    def _record(self, call: ProxiedCall) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(self, *, dynamodb_only: bool = False) -> list[ProxiedCall]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            calls = list(self._calls)
        return [c for c in calls if c.is_dynamodb] if dynamodb_only else calls

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._calls.clear()

    def stats(self) -> dict[str, int]:
        """How many DynamoDB requests had each outcome."""
        counts = dict.fromkeys(
            (FORWARD, THROTTLE, SERVER_ERROR, ERROR_AFTER_COMMIT, TRANSACTION_CONFLICT, UNPROCESSED), 0
        )
        for call in self.calls(dynamodb_only=True):
            counts[call.outcome] += 1
        return counts


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ripple_local.fault_proxy``: serve until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m ripple_local.fault_proxy", description=__doc__)
    parser.add_argument("--upstream", required=True, help="DynamoDB's URL (make up: http://127.0.0.1:8000)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4567)
    parser.add_argument("--throttle", type=float, default=0.0, help="probability of a throttling 400")
    parser.add_argument("--server-error", type=float, default=0.0, help="probability of a 500")
    parser.add_argument("--error-after-commit", type=float, default=0.0, help="forward, then answer 500")
    parser.add_argument(
        "--transaction-conflict", type=float, default=0.0, help="probability of a TransactionConflict cancel"
    )
    parser.add_argument(
        "--unprocessed", type=float, default=0.0, help="probability that half a batch comes back unprocessed"
    )
    parser.add_argument(
        "--gsi-lag", type=float, default=0.0, help="seconds new items stay out of index reads"
    )
    parser.add_argument("--operations", default="", help="comma-separated DynamoDB operations (default: all)")
    parser.add_argument("--pattern", default=None, help="cycled per request: . forward, T, E, C, X, U")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    operations = [op.strip() for op in args.operations.split(",") if op.strip()] or None
    plan = FaultPlan.only(
        operations,
        throttle=args.throttle,
        server_error=args.server_error,
        error_after_commit=args.error_after_commit,
        transaction_conflict=args.transaction_conflict,
        unprocessed=args.unprocessed,
        gsi_lag_s=args.gsi_lag,
        pattern=args.pattern,
        seed=args.seed,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    with FaultProxy(
        args.upstream, args.host, args.port, plan, record_bodies=False, max_calls=10_000
    ) as proxy:
        print(f"fault proxy on {proxy.url} -> {args.upstream} ({plan})", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
