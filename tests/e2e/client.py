"""A small HTTP client for the Ripple API, and the measurements the e2e run reports."""

from __future__ import annotations

import os
import uuid
from typing import Any

import requests


class _Measurements(list[str]):
    """What the end-to-end tests measured, for the session's terminal summary. Each line is
    also appended to ``$RIPPLE_MEASUREMENTS_FILE`` (set by tests/conftest.py), so lines
    measured in pytest-xdist workers reach the summary the controller prints."""

    def append(self, line: str) -> None:
        super().append(line)
        path = os.environ.get("RIPPLE_MEASUREMENTS_FILE")
        if path:
            with open(path, "a", encoding="utf-8") as sink:
                sink.write(line.replace("\n", " ") + "\n")


MEASUREMENTS = _Measurements()


class Api:
    """A tiny HTTP client for the Ripple API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        # Set by the stack fixture: where the stack's services are, for tools run against it.
        self.endpoints: Any = None
        self.redis_url = ""
        self.state_dir: Any = None

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)

    def signup(self, prefix: str = "user") -> dict[str, Any]:
        username = f"{prefix}_{uuid.uuid4().hex[:10]}"
        response = self.call(
            "POST", "/auth/signup", json={"username": username, "password": "correct horse 1"}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return {"user_id": body["user"]["user_id"], "username": username, "token": body["access_token"]}

    def feed(self, token: str, **params: Any) -> dict[str, Any]:
        response = self.call("GET", "/feed", token, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body
