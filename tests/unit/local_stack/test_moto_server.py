"""ripple_local.moto_server's middleware: DynamoDB and DynamoDB Streams requests one at a
time, everything else (SQS long polls) as concurrent as moto serves it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ripple_local.moto_server import SerializedDynamoDB


class SlowApp:
    """A WSGI app that takes a while per request and remembers how many ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        start_response("200 OK", [])
        return [b"{}"]


def run_at_once(app: SerializedDynamoDB, target: str, n: int = 4) -> list[list[bytes]]:
    bodies: list[list[bytes]] = []
    environ = {"HTTP_X_AMZ_TARGET": target} if target else {}
    threads = [
        threading.Thread(target=lambda: bodies.append(list(app(dict(environ), lambda *a: None))))
        for _ in range(n)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return bodies


def test_dynamodb_and_streams_requests_run_one_at_a_time() -> None:
    for target in ("DynamoDB_20120810.TransactWriteItems", "DynamoDBStreams_20120810.GetRecords"):
        inner = SlowApp()
        assert run_at_once(SerializedDynamoDB(inner), target) == [[b"{}"]] * 4
        assert inner.most == 1


def test_other_requests_keep_their_concurrency() -> None:
    for target in ("AmazonSQS.ReceiveMessage", ""):
        inner = SlowApp()
        run_at_once(SerializedDynamoDB(inner), target)
        assert inner.most > 1


def test_a_serialized_response_is_closed_and_an_error_releases_the_lock() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Any:
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(True)

    calls = iter([Body(), RuntimeError("moto failed")])

    def inner(environ: dict[str, Any], start_response: Any) -> Any:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        start_response("200 OK", [])
        return outcome

    app = SerializedDynamoDB(inner)
    environ = {"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"}
    assert app(dict(environ), lambda *a: None) == [b"a", b"b"] and closed == [True]
    with pytest.raises(RuntimeError, match="moto failed"):
        app(dict(environ), lambda *a: None)
    assert not app.lock.locked()
