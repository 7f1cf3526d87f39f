"""Notifications: produced from the follows, likes and reposts streams (by the fan-out
function), read and marked read through the API.

**Producer** (:class:`NotificationProducer`). A follow notifies the followee, a like or a
repost the post's author; the actor joins the group of its kind, object and day
(``ripple.notifications``), idempotently (``ripple.repositories.notifications``). An
unfollow, unlike or unrepost takes the actor out of that group again - the notification
never keeps claiming what was undone - and a group left without actors is no longer listed
or counted. Nobody is notified of their own act (liking or reposting one's own post).

**The "may notify" seam.** Before an actor is added, ``may_notify(actor_id, recipient_id)``
is asked; False produces nothing. Blocks and mutes answer it (:func:`unless_hidden`: "blocked
and muted accounts produce none"). Removals never ask: taking an actor out is always right.

**Reader** (:class:`NotificationService`): a page newest first by last activity, with the
cursor contract of every list (the next page starts strictly after the last item seen), each
item's ``read`` flag and the unread count; mark-as-read moves the reader's mark to now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ripple.cursor import decode_cursor, encode_cursor
from ripple.notifications import FOLLOWED, LIKED, REPOSTED, Notification, activity_key, is_activity_key
from ripple.observability import count
from ripple.repositories.blocks import BlockRepository
from ripple.repositories.notifications import Event, NotificationRepository

MayNotify = Callable[[str, str], bool]
"""``may_notify(actor_id, recipient_id)``: may this actor's act notify this recipient?"""


def allow_all(actor_id: str, recipient_id: str) -> bool:
    """Every actor may notify (for tests of the producer alone)."""
    return True


def unless_hidden(blocks: BlockRepository) -> MayNotify:
    """The seam as deployed: an actor the recipient blocks or mutes, or who blocks the
    recipient, notifies nothing (the rule that hides their posts, ``Relations.hidden_authors``;
    two consistent Queries of the recipient's relations per notification)."""

    def may_notify(actor_id: str, recipient_id: str) -> bool:
        return actor_id not in blocks.relations(recipient_id).hidden_authors()

    return may_notify


class NotificationProducer:
    """Turns follows, likes and reposts (as the streams deliver them) into notification groups.

    ``author_of(post_id)`` finds a post's author (the recipient of a like) when the like row
    does not carry it (likes made before notifications); None if the post is gone."""

    def __init__(
        self,
        notifications: NotificationRepository,
        author_of: Callable[[str], str | None],
        may_notify: MayNotify = allow_all,
    ) -> None:
        self._notifications = notifications
        self._author_of = author_of
        self._may_notify = may_notify

    def followed(self, follower_id: str, followee_id: str, followed_at: int) -> bool:
        """A follow made at ``followed_at`` (epoch ms). True if it was counted now."""
        return self._add(Event(followee_id, FOLLOWED, None, follower_id, followed_at))

    def unfollowed(self, follower_id: str, followee_id: str, followed_at: int) -> bool:
        """The follow made at ``followed_at`` was removed (the old row's time: a re-follow
        since is another membership and stays)."""
        return self._remove(Event(followee_id, FOLLOWED, None, follower_id, followed_at))

    def liked(self, liker_id: str, post_id: str, author_id: str | None, liked_at: int) -> bool:
        """A like made at ``liked_at``; ``author_id`` from the like row, else looked up."""
        recipient = author_id or self._author_of(post_id)
        if recipient is None:
            return False  # the post is gone: nobody to tell
        return self._add(Event(recipient, LIKED, post_id, liker_id, liked_at))

    def unliked(self, liker_id: str, post_id: str, author_id: str | None, liked_at: int) -> bool:
        recipient = author_id or self._author_of(post_id)
        if recipient is None:
            return False
        return self._remove(Event(recipient, LIKED, post_id, liker_id, liked_at))

    def reposted(self, reposter_id: str, post_id: str, recipient_id: str, reposted_at_ms: int) -> bool:
        """A repost made at ``reposted_at_ms`` (the repost row's ``created_at``) of the post
        ``post_id`` by ``recipient_id`` (the row's ``author_id``). True if counted now."""
        return self._add(Event(recipient_id, REPOSTED, post_id, reposter_id, reposted_at_ms))

    def unreposted(self, reposter_id: str, post_id: str, recipient_id: str, reposted_at_ms: int) -> bool:
        """The repost made at ``reposted_at_ms`` was removed (an undo, its post's deletion or
        the reposter's erasure: the REMOVE image's time names the membership it made)."""
        return self._remove(Event(recipient_id, REPOSTED, post_id, reposter_id, reposted_at_ms))

    def _add(self, event: Event) -> bool:
        if event.actor_id == event.recipient_id:
            return False  # never notify yourself
        if not self._may_notify(event.actor_id, event.recipient_id):
            count("NotificationsRefused")
            return False
        added = self._notifications.add(event)
        if added:
            count("NotificationsProduced")
        return added

    def _remove(self, event: Event) -> bool:
        if event.actor_id == event.recipient_id:
            return False
        removed = self._notifications.remove(event)
        if removed:
            count("NotificationsRetracted")
        return removed


@dataclass(frozen=True)
class NotificationPage:
    items: list[Notification]
    next_cursor: str | None
    unread_count: int


class NotificationService:
    def __init__(self, notifications: NotificationRepository, clock: Callable[[], float] = time.time) -> None:
        self._notifications = notifications
        self._clock = clock

    def page(self, user_id: str, limit: int, cursor: str | None = None) -> NotificationPage:
        """A page of the user's notifications, newest activity first (three consistent
        reads: the page, the read mark, the unread count). ValidationError for a bad cursor."""
        before = decode_cursor(cursor, is_activity_key)
        items = self._notifications.page(user_id, limit, before)
        last_read = self._notifications.last_read_at(user_id)
        unread = self._notifications.unread_count(user_id, last_read)
        items = [replace(n, read=n.updated_at <= last_read) for n in items]
        next_cursor = (
            encode_cursor(activity_key(items[-1].updated_at, items[-1].notification_id))
            if len(items) == limit
            else None
        )
        return NotificationPage(items, next_cursor, unread)

    def mark_read(self, user_id: str) -> int:
        """Mark everything up to now read; returns the unread count afterwards (0 unless
        something newer than now arrived meanwhile)."""
        mark = self._notifications.mark_read(user_id, int(self._clock() * 1000))
        return self._notifications.unread_count(user_id, mark)
