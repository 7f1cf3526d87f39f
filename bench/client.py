"""A small blocking HTTP client for the Ripple API, one per thread (requests.Session)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter


@dataclass(frozen=True)
class Account:
    """A signed-up bench user."""

    index: int
    user_id: str
    token: str


@dataclass(frozen=True)
class Reply:
    """One HTTP exchange: status, parsed JSON body (or None) and its monotonic send/receive times."""

    status: int
    body: Any
    sent: float
    received: float

    @property
    def latency(self) -> float:
        return self.received - self.sent


class ApiClient:
    """Keep-alive client. Measured calls are never retried (errors are counted); setup calls
    retry rate limits (``retry_429``) and connection errors / 5xx (``retry_errors``)."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=4))
        self.retries = 0  # connection errors and 5xx retried (setup calls only)

    def close(self) -> None:
        self.session.close()

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        retry_429: bool = False,
        retry_errors: int = 0,
        max_wait_s: float = 120.0,
    ) -> Reply:
        """One request; a connection error is status 0 (counted by callers, not raised).

        ``retry_errors`` retries connection errors and 5xx answers that many times with a
        short backoff, as a real client would: the local API server's listen backlog is 5, so
        a burst of new connections is reset, and a write whose transaction still conflicts
        after Ripple's own retries is a 503 that changed nothing."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = time.monotonic() + max_wait_s
        attempt = 0
        while True:
            sent = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    self.base_url + path,
                    headers=headers,
                    json=json,
                    params=params,
                    timeout=self.timeout_s,
                )
            except requests.RequestException:
                if attempt < retry_errors:
                    attempt += 1
                    self.retries += 1
                    time.sleep(0.05 * 2**attempt)
                    continue
                return Reply(0, None, sent, time.monotonic())
            received = time.monotonic()
            if response.status_code == 429 and retry_429 and received < deadline:
                time.sleep(
                    min(float(response.headers.get("Retry-After") or 1), max(0.1, deadline - received))
                )
                continue
            if response.status_code >= 500 and attempt < retry_errors:
                attempt += 1
                self.retries += 1
                time.sleep(0.05 * 2**attempt)
                continue
            try:
                body = response.json() if response.content else None
            except ValueError:
                body = None
            return Reply(response.status_code, body, sent, received)

    def connect(self) -> None:
        """Open the keep-alive connection before a measurement starts."""
        reply = self.call("GET", "/health/live", retry_errors=8)
        if reply.status != 200:
            raise RuntimeError(f"cannot reach {self.base_url}: status {reply.status}")

    def signup(self, index: int, username: str, password: str) -> Account:
        reply = self.call(
            "POST",
            "/auth/signup",
            json={"username": username, "password": password},
            retry_429=True,
            retry_errors=5,
        )
        if reply.status == 409 and self.retries:  # a retried sign-up that had gone through
            reply = self.call(
                "POST", "/auth/login", json={"username": username, "password": password}, retry_429=True
            )
        if reply.status not in (200, 201):
            raise RuntimeError(f"signup {username} failed: {reply.status} {reply.body}")
        return Account(index, str(reply.body["user"]["user_id"]), str(reply.body["access_token"]))

    def follow(self, token: str, user_id: str) -> Reply:
        return self.call("POST", f"/users/{user_id}/follow", token, retry_429=True, retry_errors=5)

    def post(self, token: str, text: str, *, retry_429: bool = False) -> Reply:
        return self.call("POST", "/posts", token, json={"text": text}, retry_429=retry_429)

    def feed(self, token: str, limit: int = 20, cursor: str | None = None, *, retry_errors: int = 0) -> Reply:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self.call("GET", "/feed", token, params=params, retry_errors=retry_errors)
