"""Notifications in DynamoDB: grouped, idempotent, newest first (``NotificationModel``).

A change to a group is two steps, each idempotent, so a stream record may be applied any
number of times, and two records of one group (two likers at once) may run concurrently:

1. **Membership** (one transaction): the actor's membership row is put (condition: absent)
   or deleted (condition: present), and the group's ``member_count`` and ``version`` move by
   ``ADD`` with it. A repeat fails the condition and changes nothing: a redelivered like is
   counted once, a redelivered unlike uncounted once.
2. **Summary**: the group's count, newest actors and last activity - what readers see,
   always from one version, so a count never runs ahead of the names - are recomputed from
   its membership rows (one consistent Query of at most ``MAX_ACTORS`` rows) and written only if
   ``version`` is still the one read before the Query. If a concurrent change moved it, that
   change's own step 2 (which runs after its step 1) writes a summary that includes both; if
   that one fails, its record is retried and step 2 runs again. A group whose count falls
   to 0 loses its ``activity`` (leaves the index: it is no longer listed or counted) and
   stays as a small row until its TTL, so a version never starts again from 0.

The unread count is a ``Select=COUNT`` Query of the index above the reader's
``last_read_at``, stopped at ``UNREAD_COUNT_CAP`` (a badge shows "99+" beyond that): one
call whatever the history, and nothing to keep in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from ripple.notifications import (
    GROUP_WINDOW_MS,
    MAX_ACTORS,
    Notification,
    activity_key,
    group_key,
    parse_group_key,
    window_of,
)
from ripple.repositories.batch import batch_write
from ripple.repositories.conditions import condition_failed
from ripple.repositories.models import NotificationModel
from ripple.repositories.transactions import ConditionFailed, Transaction

STATE = "state"
UNREAD_COUNT_CAP = 100  # counting stops here: one Query page, and no badge shows more than "99+"


def _group_sk(key: str) -> str:
    return f"g#{key}"


def _member_prefix(key: str) -> str:
    return f"m#{key}#"


def _member_sk(key: str, at_ms: int, actor_id: str) -> str:
    return f"{_member_prefix(key)}{at_ms:013d}#{actor_id}"


@dataclass(frozen=True)
class Event:
    """One actor's part in a group: ``actor_id`` did ``kind`` to ``object_id`` (a post, or
    None) of ``recipient_id`` at ``at_ms`` (epoch ms, the source row's ``created_at``)."""

    recipient_id: str
    kind: str
    object_id: str | None
    actor_id: str
    at_ms: int

    @property
    def group(self) -> str:
        return group_key(self.kind, self.object_id, self.at_ms)


class NotificationRepository:
    def __init__(self, ttl_seconds: int = 0) -> None:
        self._ttl_seconds = ttl_seconds  # 0: rows never expire

    # ------------------------------------------------------------------ producer
    def add(self, event: Event) -> bool:
        """Count the actor into the event's group and refresh the group's summary. True if
        this call counted it, False if it was already counted (a redelivery). Raises
        TransactionConflictError past the retries (the record is then retried)."""
        key = event.group
        tx = Transaction()
        tx.save(
            "member",
            NotificationModel(
                user_id=event.recipient_id,
                sk=_member_sk(key, event.at_ms, event.actor_id),
                actor_id=event.actor_id,
                at=event.at_ms,
                expires_at=self._expires_at(event.at_ms),
            ),
            condition=NotificationModel.sk.does_not_exist(),
        )
        actions = [
            NotificationModel.member_count.add(1),
            NotificationModel.version.add(1),
            NotificationModel.kind.set(event.kind),
        ]
        expires_at = self._expires_at(event.at_ms)
        if expires_at is not None:
            actions.append(NotificationModel.expires_at.set(expires_at))
        if event.object_id is not None:
            actions.append(NotificationModel.post_id.set(event.object_id))
        tx.update("group", NotificationModel(user_id=event.recipient_id, sk=_group_sk(key)), actions=actions)
        changed = self._commit(tx)
        self.refresh(event.recipient_id, key)
        return changed

    def remove(self, event: Event) -> bool:
        """Take the actor out of the event's group (an unlike, an unfollow) and refresh it;
        the group leaves the list when no actor is left. False if the actor was not in it."""
        key = event.group
        tx = Transaction()
        tx.delete(
            "member",
            NotificationModel(user_id=event.recipient_id, sk=_member_sk(key, event.at_ms, event.actor_id)),
            condition=NotificationModel.sk.exists(),
        )
        tx.update(
            "group",
            NotificationModel(user_id=event.recipient_id, sk=_group_sk(key)),
            actions=[NotificationModel.member_count.add(-1), NotificationModel.version.add(1)],
            condition=NotificationModel.sk.exists(),
        )
        changed = self._commit(tx)
        self.refresh(event.recipient_id, key)
        return changed

    @staticmethod
    def _commit(tx: Transaction) -> bool:
        try:
            tx.commit()
        except ConditionFailed:
            return False  # already applied: the membership row is (or is not) there
        return True

    def refresh(self, recipient_id: str, key: str) -> None:
        """Step 2 (module docstring): write the group's summary over the version it was
        computed from; a newer version's own refresh supersedes a lost race."""
        try:
            group = NotificationModel.get(recipient_id, _group_sk(key), consistent_read=True)
        except NotificationModel.DoesNotExist:
            return  # never had a member (a removal that found nothing)
        version = int(group.version or 0)
        condition = NotificationModel.version == version
        members = int(group.member_count or 0)
        if members <= 0:
            if group.activity is None:
                return
            actions: list[Action] = [
                NotificationModel.activity.remove(),
                NotificationModel.actors.remove(),
                NotificationModel.actor_count.set(0),
            ]
        else:
            newest = list(
                NotificationModel.query(
                    recipient_id,
                    NotificationModel.sk.startswith(_member_prefix(key)),
                    scan_index_forward=False,
                    limit=MAX_ACTORS,
                    consistent_read=True,
                )
            )
            if not newest:
                return  # cannot be while member_count > 0; a later change will refresh
            updated_at = int(newest[0].at or 0)
            actors = " ".join(str(m.actor_id) for m in newest)
            if (
                group.activity == activity_key(updated_at, key)
                and group.actors == actors
                and group.actor_count == members
            ):
                return  # a redelivery: the summary is already this
            actions = [
                NotificationModel.actor_count.set(members),
                NotificationModel.actors.set(actors),
                NotificationModel.updated_at.set(updated_at),
                NotificationModel.activity.set(activity_key(updated_at, key)),
            ]
        try:
            group.update(actions=actions, condition=condition)
        except UpdateError as exc:
            if condition_failed(exc):
                return
            raise

    def _expires_at(self, at_ms: int) -> int | None:
        if not self._ttl_seconds:
            return None
        window_end_s = (window_of(at_ms) + 1) * GROUP_WINDOW_MS // 1000
        return window_end_s + self._ttl_seconds

    # ------------------------------------------------------------------ reader
    def page(self, recipient_id: str, limit: int, before: str | None = None) -> list[Notification]:
        """Up to ``limit`` groups with actors, newest activity first, strictly older than the
        activity key ``before`` (strongly consistent). ``read`` is left False."""
        condition = NotificationModel.activity < before if before else None
        rows = NotificationModel.by_activity.query(
            recipient_id,
            range_key_condition=condition,
            scan_index_forward=False,
            limit=limit,
            consistent_read=True,
        )
        return [self._notification(row) for row in rows]

    @staticmethod
    def _notification(row: NotificationModel) -> Notification:
        key = row.sk[2:]
        kind, object_id = parse_group_key(key)
        return Notification(
            notification_id=key,
            kind=kind,
            post_id=object_id,
            actors=tuple((row.actors or "").split()),
            actor_count=int(row.actor_count or 0),
            updated_at=int(row.updated_at or 0),
        )

    def last_read_at(self, recipient_id: str) -> int:
        """When the recipient last marked everything read (epoch ms; 0 if never)."""
        try:
            state = NotificationModel.get(recipient_id, STATE, consistent_read=True)
        except NotificationModel.DoesNotExist:
            return 0
        return int(state.last_read_at or 0)

    def mark_read(self, recipient_id: str, at_ms: int) -> int:
        """Everything with activity up to ``at_ms`` is read; never moves the mark backwards.
        Returns the mark in force afterwards."""
        try:
            NotificationModel(user_id=recipient_id, sk=STATE).update(
                actions=[NotificationModel.last_read_at.set(at_ms)],
                condition=NotificationModel.last_read_at.does_not_exist()
                | (NotificationModel.last_read_at < at_ms),
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            return self.last_read_at(recipient_id)
        return at_ms

    def unread_count(self, recipient_id: str, last_read_at: int) -> int:
        """Groups with activity after ``last_read_at``, at most ``UNREAD_COUNT_CAP``: one
        Query of the index with ``Select=COUNT`` and that limit. (PynamoDB's ``count`` pages on
        past the limit when it selects no items: the fresh-clone review saw 101 counted.)"""
        condition = NotificationModel.activity >= f"{last_read_at + 1:013d}"
        answer = NotificationModel._get_connection().query(
            recipient_id,
            range_key_condition=condition,
            index_name=NotificationModel.by_activity.Meta.index_name,
            select="COUNT",
            limit=UNREAD_COUNT_CAP,
            consistent_read=True,
        )
        return min(int(answer.get("Count", 0)), UNREAD_COUNT_CAP)

    # ------------------------------------------------------------------ erasure
    def erase_user(self, user_id: str) -> int:
        """Delete every notification row of ``user_id`` as recipient (groups, memberships,
        the read mark); returns how many rows were deleted. Their part as an *actor* in
        others' groups leaves with their likes, reposts and follows (the streams remove them).
        Account deletion's erasure calls it (``ripple.services.erasure``)."""
        total = 0
        while True:
            keys = [
                {"user_id": {"S": user_id}, "sk": {"S": row.sk}}
                for row in NotificationModel.query(
                    user_id, consistent_read=True, limit=1000, attributes_to_get=["user_id", "sk"]
                )
            ]
            if not keys:
                return total
            total += batch_write(NotificationModel, delete_keys=keys)
            if len(keys) < 1000:
                return total
