"""Domain objects: plain data, no I/O. Repositories and caches translate to and from these."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    created_at: int  # epoch milliseconds
    display_name: str = ""
    bio: str = ""
    roles: tuple[str, ...] = ()
    follower_count: int = 0
    following_count: int = 0
    post_count: int = 0

    def to_public(self) -> dict[str, Any]:
        """The shape every API response uses for a user (never the password hash or roles)."""
        return {
            "user_id": self.user_id,
            "username": self.username,
            "display_name": self.display_name,
            "bio": self.bio,
            "created_at": self.created_at,
            "follower_count": self.follower_count,
            "following_count": self.following_count,
            "post_count": self.post_count,
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
    like_count: int = 0
    liked_by_me: bool | None = None  # None when the reader is unknown
    repost_count: int = 0
    # In a home feed, when the item is there because an account the reader follows reposted
    # the post: who (the newest such repost) and when (epoch ms).
    reposted_by: str | None = None
    reposted_at: int | None = None

    def to_public(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "post_id": self.post_id,
            "author_id": self.author_id,
            "text": self.text,
            "created_at": self.created_at,
            "like_count": self.like_count,
            "repost_count": self.repost_count,
        }
        if self.liked_by_me is not None:
            body["liked_by_me"] = self.liked_by_me
        if self.reposted_by is not None:
            body["reposted_by"] = self.reposted_by
            body["reposted_at"] = self.reposted_at
        return body

    def to_cache(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "author_id": self.author_id,
            "text": self.text,
            "created_at": self.created_at,
            "like_count": self.like_count,
            "repost_count": self.repost_count,
        }

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> Post:
        return cls(
            post_id=str(data["post_id"]),
            author_id=str(data["author_id"]),
            text=str(data["text"]),
            created_at=int(data["created_at"]),
            like_count=int(data.get("like_count", 0)),
            repost_count=int(data.get("repost_count", 0)),
        )

    def for_reader(self, liked: bool) -> Post:
        return replace(self, liked_by_me=liked)

    def shown(self, reposted_by: str | None, reposted_at: int | None, liked: bool | None) -> Post:
        """The post as a feed shows it to a reader: brought by ``reposted_by``'s repost (epoch ms
        ``reposted_at``), or not (None), and liked by the reader or not (None: reader unknown).
        Built directly, not with ``dataclasses.replace``: a feed page builds one per item."""
        return Post(
            post_id=self.post_id,
            author_id=self.author_id,
            text=self.text,
            created_at=self.created_at,
            like_count=self.like_count,
            liked_by_me=liked,
            repost_count=self.repost_count,
            reposted_by=reposted_by,
            reposted_at=reposted_at if reposted_by else None,
        )


@dataclass(frozen=True, order=True)
class FeedEntry:
    """One post in one reader's home feed. Key (user_id, post_id) is deterministic,
    so writing the same entry twice is a no-op: this is what makes fan-out idempotent, and
    a feed holds a post once however many of the reader's followees repost it.

    ``placed`` is where the item sits in the feed (feeds are read newest ``placed`` first):
    the post's own id, or the id of the repost that brought it (``reposted_by``; a ULID of
    the repost's time), the newest such repost winning (``ripple.services.placement``)."""

    user_id: str
    post_id: str
    author_id: str
    created_at: int  # the post's (epoch ms)
    placed: str = ""  # "" is normalised to post_id
    reposted_by: str | None = None

    def __post_init__(self) -> None:
        if not self.placed:
            object.__setattr__(self, "placed", self.post_id)


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a list; ``next_cursor`` is None on the last page. ``partial``: the list is
    being rebuilt and may lack items it will have (a home feed after a long absence)."""

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None
    partial: bool = False


BLOCK, MUTE = "block", "mute"


@dataclass(frozen=True)
class Relations:
    """A user's blocks and mutes, both ways: ids of the accounts they block (``blocks``) and
    mute (``mutes``), and of those who block (``blocked_by``) and mute (``muted_by``) them."""

    blocks: frozenset[str] = frozenset()
    mutes: frozenset[str] = frozenset()
    blocked_by: frozenset[str] = frozenset()
    muted_by: frozenset[str] = frozenset()

    def hidden_authors(self) -> frozenset[str]:
        """Authors whose posts this user, as a reader, never sees in a feed: those they block,
        mute or are blocked by."""
        return self.blocks | self.mutes | self.blocked_by

    def hidden_readers(self) -> frozenset[str]:
        """Readers who never get this user's posts in their feed (the same rule, from the
        author's side): those who block or mute them, and those they block."""
        return self.blocked_by | self.muted_by | self.blocks

    def blocked_parties(self) -> frozenset[str]:
        """Accounts on either side of a block with this user: hidden from each other in lists."""
        return self.blocks | self.blocked_by
