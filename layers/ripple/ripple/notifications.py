"""Notifications: kinds, grouping and keys (plain data, no I/O).

A notification is a *group*: every actor who did one kind of thing to one object of the
recipient's within one grouping window ("alice and 3 others liked your post"). Its key is
derived from the event alone - kind, object and the window its time falls in - so a stream
record delivered twice, late or out of order always lands in the same group, and an
unlike or unfollow (whose stream record carries the old row, with its time) finds the group
its like or follow joined.

Kinds: ``followed`` (no object), ``liked`` and ``reposted`` (a post; a repost groups exactly
like a like).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

FOLLOWED, LIKED, REPOSTED = "followed", "liked", "reposted"
KINDS = (FOLLOWED, LIKED, REPOSTED)
# Kinds whose object is a post (the group's ``post_id``); the others have no object.
POST_KINDS = frozenset({LIKED, REPOSTED})

# One group per kind and object per UTC day of the event: a day's likes of a post read as one
# line, as aggregated feeds show them, while a post liked again next week is news again. A
# fixed window (not "while unread") keeps the key a function of the event: a redelivered
# record finds its group whatever the reader did meanwhile.
GROUP_WINDOW_MS = 24 * 3600 * 1000
# The newest actors a group shows by id; ``actor_count`` counts them all. Five is what an
# aggregated line names at most ("alice, bob and 3 others"), and it bounds the row's size.
MAX_ACTORS = 5
NO_OBJECT = "-"  # the object part of a key for kinds without one (``followed``)

_KEY = re.compile(r"^(followed|liked|reposted)#[0-9]{1,8}#[0-9A-Z-]{1,26}$")
_ACTIVITY = re.compile(r"^[0-9]{13}#(followed|liked|reposted)#[0-9]{1,8}#[0-9A-Z-]{1,26}$")


def window_of(at_ms: int) -> int:
    """The grouping window (a UTC day number) an event at ``at_ms`` (epoch ms) belongs to."""
    return at_ms // GROUP_WINDOW_MS


def group_key(kind: str, object_id: str | None, at_ms: int) -> str:
    """``kind#window#object``: the group an event joins. ValueError for an unknown kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    return f"{kind}#{window_of(at_ms)}#{object_id or NO_OBJECT}"


def parse_group_key(key: str) -> tuple[str, str | None]:
    """``(kind, object id or None)`` of a group key."""
    kind, _window, obj = key.split("#", 2)
    return kind, None if obj == NO_OBJECT else obj


def activity_key(updated_at: int, key: str) -> str:
    """The sort key of a group's last activity: newest first by time, ties broken by the
    group key, so it is unique and serves as the pagination cursor."""
    return f"{updated_at:013d}#{key}"


def is_group_key(value: str) -> bool:
    return isinstance(value, str) and bool(_KEY.match(value))


def is_activity_key(value: str) -> bool:
    return isinstance(value, str) and bool(_ACTIVITY.match(value))


@dataclass(frozen=True)
class Notification:
    """One group as the reader sees it. ``actors``: user ids, newest first, at most
    ``MAX_ACTORS``; ``actor_count``: all of them; ``updated_at``: the newest actor's event
    time (epoch ms); ``read``: not newer than the reader's last mark-as-read."""

    notification_id: str  # the group key: stable while the group lives
    kind: str
    post_id: str | None
    actors: tuple[str, ...]
    actor_count: int
    updated_at: int
    read: bool = False

    def to_public(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "kind": self.kind,
            "post_id": self.post_id,
            "actors": list(self.actors),
            "actor_count": self.actor_count,
            "updated_at": self.updated_at,
            "read": self.read,
        }
