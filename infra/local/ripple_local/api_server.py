"""Serve the Chalice app locally, in a background thread.

moto's API Gateway cannot route requests in server mode, so the local stack serves the API
itself with Chalice's local server, which turns HTTP requests into API Gateway proxy events
exactly as ``chalice local`` does.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from chalice.config import Config
from chalice.local import LocalChalice, LocalDevServer, create_local_server

__all__ = ["ApiServer"]

logger = logging.getLogger(__name__)


class ApiServer:
    """The Chalice ``app`` object on http://host:port, served by a daemon thread.

    ``port=0`` picks a free port (see ``url`` after ``start``). Timeout and memory feed the
    Lambda context Chalice builds for each request.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 3000,
        *,
        timeout_s: int = 30,
        memory_mb: int = 512,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
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
        if isinstance(self.app, LocalChalice):
            # create_local_server rebases the app's class; doing it twice (a second server for
            # the same app in one process) would make the class its own base.
            server = LocalDevServer(self.app, self.config, self.host, self.port)
        else:
            server = create_local_server(self.app, self.config, self.host, self.port)
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
