"""Helpers for integration tests: sample events from events/ with fresh ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ripple.container import Container
from ripple.domain import User
from ripple.ids import new_ulid

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str, **replace: str) -> dict[str, Any]:
    """A sample event from events/, with ids swapped for fresh ones so tests never collide."""
    text = (EVENTS / name).read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    event: dict[str, Any] = json.loads(text)
    return event


SAMPLE_AUTHOR = "01JDQ0000000000000000AAAAA"
SAMPLE_FOLLOWER = "01JDQ0000000000000000BBBBB"
SAMPLE_POST = "01JDQ7Z8M3K2P4R6T8V0W2X4Y6"


def fresh_ids() -> dict[str, str]:
    return {SAMPLE_AUTHOR: new_ulid(), SAMPLE_FOLLOWER: new_ulid(), SAMPLE_POST: new_ulid()}


def ensure_users(container: Container, *user_ids: str) -> None:
    """Create bare users with these ids (follows and posts need their users to exist)."""
    for user_id in user_ids:
        container.users.create(User(user_id=user_id, username=f"u{user_id.lower()}", created_at=1), "x")
