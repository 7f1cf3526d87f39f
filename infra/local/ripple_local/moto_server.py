"""moto's own server, with DynamoDB and DynamoDB Streams requests served one at a time.

``python -m ripple_local.moto_server -H HOST -p PORT`` runs what ``python -m moto.server``
runs (moto's WSGI app on werkzeug, one thread per connection) with two differences: requests
whose ``X-Amz-Target`` names DynamoDB or DynamoDB Streams wait for each other, and a cancelled
transaction leaves the stream as it found it.

Why: moto's DynamoDB is not thread-safe. A transaction deep-copies every table it touches and,
when a condition fails, puts the copy back, stream shard included; a write committed by another
thread meanwhile is lost, and the shard hands out its sequence numbers again. A deep copy taken
while another thread writes fails with "dictionary changed size during iteration" (a 500).
Real DynamoDB isolates transactions (a conflicting one is cancelled with
TransactionConflict), so serving moto's DynamoDB requests in turn is closer to AWS than
serving them at once, and the stream runners, the API and the tests all write concurrently.
SQS and Secrets Manager keep moto's concurrency (an SQS long poll must not hold the others up).

Serving in turn is not enough for the streams: moto writes a transaction's items one by one
and, when a later condition fails, swaps the table for its copy. The live stream shard keeps
records of writes that never happened (iterators opened before still point at it and deliver
them), and the copy's shard numbers the next records from where the copy stopped, so a real
record gets a number a reader has already passed. :func:`keep_streams_through_rollbacks`
makes the rollback give the restored table its original shard back, without the records the
cancelled transaction wrote: numbers stay unique and every iterator stays valid.

Differences from ``python -m moto.server``: no ``--reload`` or TLS options, and ``MOTO_PORT``
is not set (moto reads it for Lambda, CloudFormation, Step Functions and Batch, which the
stack does not use on moto).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

SERIALIZED_TARGETS = ("DynamoDB_", "DynamoDBStreams_")  # X-Amz-Target prefixes of the two APIs

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SerializedDynamoDB:
    """WSGI middleware: DynamoDB and DynamoDB Streams requests run one at a time (the whole
    response is produced under the lock); every other request passes straight through."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The response of ``app``: for a serialized request, produced whole (a list of byte
        chunks) under the lock, ``app``'s iterable closed before the lock is released."""
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(SERIALIZED_TARGETS):
            return self.app(environ, start_response)
        with self.lock:
            response = self.app(environ, start_response)
            try:
                return list(response)
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()


def keep_streams_through_rollbacks() -> None:
    """Patch moto's ``DynamoDBBackend.transact_write_items`` (see the module docstring): when
    the transaction raises and a table was swapped for its copy, the copy gets the original
    stream shard back, cut to its length before the transaction. Only sound with the
    backend's requests served one at a time (:class:`SerializedDynamoDB`): nobody can have
    read the records cut. Idempotent."""
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items
    if getattr(original, "keeps_streams", False):
        return

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        names = {op.get("TableName") for item in transact_items for op in item.values()}
        before = {
            name: (table, table.stream_shard, len(table.stream_shard.items))
            for name in names
            if (table := self.tables.get(name)) is not None and table.stream_shard is not None
        }
        try:
            original(self, transact_items)
        except BaseException:
            for name, (table, shard, length) in before.items():
                restored = self.tables.get(name)
                if restored is not None and restored is not table:
                    del shard.items[length:]
                    shard.table, restored.stream_shard = restored, shard
            raise

    transact_write_items.keeps_streams = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """Serve moto on ``--host``/``--port`` (as ``python -m moto.server -H -p`` does) until
    SIGINT or SIGTERM."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(prog="python -m ripple_local.moto_server", description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sys.exit(0))
    keep_streams_through_rollbacks()
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto.server sets it
    run_simple(
        args.host,
        args.port,
        SerializedDynamoDB(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
