"""Domain objects: plain data, no I/O. Repositories and caches translate to and from these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    created_at: int  # epoch milliseconds
    display_name: str = ""
    roles: tuple[str, ...] = ()

    def to_public(self) -> dict[str, Any]:
        """The shape every API response uses for a user (never the password hash)."""
        return {
            "user_id": self.user_id,
            "username": self.username,
            "display_name": self.display_name,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Credentials:
    """A user together with the stored password hash, for login only."""

    user: User
    password_hash: str


@dataclass(frozen=True)
class Post:
    post_id: str  # a ULID: its order is creation order
    author_id: str
    text: str
    created_at: int  # epoch milliseconds

    def to_public(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "author_id": self.author_id,
            "text": self.text,
            "created_at": self.created_at,
        }

    def to_cache(self) -> dict[str, Any]:
        return self.to_public()

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> Post:
        return cls(
            post_id=str(data["post_id"]),
            author_id=str(data["author_id"]),
            text=str(data["text"]),
            created_at=int(data["created_at"]),
        )


@dataclass(frozen=True, order=True)
class FeedEntry:
    """One post in one reader's home feed. Key (user_id, post_id) is deterministic,
    so writing the same entry twice is a no-op: this is what makes fan-out idempotent."""

    user_id: str
    post_id: str
    author_id: str
    created_at: int


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a newest-first list; ``next_cursor`` is None on the last page."""

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None
