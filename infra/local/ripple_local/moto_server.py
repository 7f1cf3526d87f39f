"""moto's own server, with DynamoDB and DynamoDB Streams requests served one at a time.

``python -m ripple_local.moto_server -H HOST -p PORT`` runs what ``python -m moto.server``
runs (moto's WSGI app on werkzeug, one thread per connection) with one difference: requests
whose ``X-Amz-Target`` names DynamoDB or DynamoDB Streams wait for each other.

Why: moto's DynamoDB is not thread-safe. A transaction deep-copies every table it touches and,
when a condition fails, puts the copy back, stream shard included; a write committed by another
thread meanwhile is lost, and the shard hands out its sequence numbers again. A deep copy taken
while another thread writes fails with "dictionary changed size during iteration" (a 500).
Real DynamoDB isolates transactions (a conflicting one is cancelled with
TransactionConflict), so serving moto's DynamoDB requests in turn is closer to AWS than
serving them at once, and the stream runners, the API and the tests all write concurrently.
SQS and Secrets Manager keep moto's concurrency (an SQS long poll must not hold the others up).
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


def main(argv: list[str] | None = None) -> None:
    """Serve moto on ``--host``/``--port`` (as ``python -m moto.server -H -p`` does)."""
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
