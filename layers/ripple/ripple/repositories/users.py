"""Users, their unique usernames and their counters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.update import Action

from ripple.domain import Credentials, User
from ripple.errors import ConflictError
from ripple.repositories.batch import batch_get
from ripple.repositories.fanout_jobs import FanoutJob, job_row
from ripple.repositories.models import FanoutJobModel, RefreshTokenModel, UserModel, UsernameModel
from ripple.repositories.transactions import ConditionFailed, Transaction


def _to_user(m: UserModel) -> User:
    return User(
        user_id=m.user_id,
        username=m.username,
        display_name=m.display_name or "",
        bio=m.bio or "",
        created_at=int(m.created_at),
        roles=tuple(sorted(m.roles or ())),
        follower_count=int(m.follower_count or 0),
        following_count=int(m.following_count or 0),
        post_count=int(m.post_count or 0),
    )


@dataclass(frozen=True)
class AuthorState:
    """An author as fan-out reads them (:meth:`UserRepository.fanout_states`)."""

    high_follower_since: int | None  # epoch ms of the high-follower mark; None: not marked
    may_hide: bool  # False only when no block or mute ever hid their posts (UserModel.may_hide)


class UserRepository:
    def create(
        self, user: User, password_hash: str, refresh_token: tuple[str, str, int] | None = None
    ) -> None:
        """Store the user, claim the username and (optionally) start the first session, given as
        (session id, live refresh token id, expiry in epoch seconds), atomically; 409 if the
        name is taken."""
        claim = UsernameModel(username=user.username, user_id=user.user_id)
        row = UserModel(
            user_id=user.user_id,
            username=user.username,
            password_hash=password_hash,
            display_name=user.display_name,
            bio=user.bio,
            roles=set(user.roles) or None,
            created_at=user.created_at,
            last_active_at=user.created_at,
            may_hide=0,
        )
        tx = Transaction()
        # A name is free if never claimed, or released by a deleted account whose quarantine
        # has ended (the TTL sweeps such claims, up to days late).
        free = UsernameModel.username.does_not_exist() | (UsernameModel.released_at <= user.created_at)
        tx.save("username", claim, condition=free)
        tx.save("user", row, condition=UserModel.user_id.does_not_exist())
        if refresh_token is not None:
            session_id, token_id, expires_at = refresh_token
            tx.save(
                "refresh_token",
                RefreshTokenModel(
                    token_id=session_id, user_id=user.user_id, expires_at=expires_at, live=token_id
                ),
            )
        try:
            tx.commit()
        except ConditionFailed as exc:
            if self.id_by_username(user.username) == user.user_id:
                return  # our own transaction, committed on an attempt whose response was lost
            raise ConflictError(f"username '{user.username}' is taken", code="username_taken") from exc

    def get(self, user_id: str) -> User | None:
        try:
            return _to_user(UserModel.get(user_id))
        except DoesNotExist:
            return None

    def get_consistent(self, user_id: str) -> User | None:
        """The user as of now (a strongly consistent read): for operators' tools, which
        compare counters with rows and print roles right after changing them."""
        try:
            return _to_user(UserModel.get(user_id, consistent_read=True))
        except DoesNotExist:
            return None

    def get_many(self, user_ids: Iterable[str]) -> dict[str, User]:
        unique = list(dict.fromkeys(user_ids))
        return {m.user_id: _to_user(m) for m in batch_get(UserModel, unique)}

    def exists(self, user_id: str) -> bool:
        return self.get(user_id) is not None

    def id_by_username(self, username: str) -> str | None:
        """The account holding ``username``; None if none does (a deleted account's name is
        held by nobody)."""
        try:
            claim = UsernameModel.get(username)
        except DoesNotExist:
            return None
        return None if claim.released_at is not None else str(claim.user_id)

    def credentials(self, user_id: str) -> Credentials | None:
        """The user and their password hash (strongly consistent), None if the account is gone."""
        try:
            row = UserModel.get(user_id, consistent_read=True)
        except DoesNotExist:
            return None
        return Credentials(user=_to_user(row), password_hash=row.password_hash)

    def delete(self, user: User, released_at_ms: int, erasure: FanoutJob) -> bool:
        """Delete the account, in one transaction: the user row goes (every request of theirs
        fails from here: a follow, post or like requires it), the username claim is marked
        released at ``released_at_ms`` (epoch ms; held by nobody until then, TTL-swept after),
        and ``erasure`` - the job that removes the rest of the account - is enqueued.
        False if the account was already gone."""
        tx = Transaction()
        tx.delete("user", UserModel(user_id=user.user_id), condition=UserModel.user_id.exists())
        tx.update(
            "username",
            UsernameModel(username=user.username),
            actions=[
                UsernameModel.released_at.set(released_at_ms),
                UsernameModel.expires_at.set(released_at_ms // 1000),
            ],
            condition=UsernameModel.user_id == user.user_id,
        )
        tx.save("erasure", job_row(erasure), condition=FanoutJobModel.job_id.does_not_exist())
        try:
            tx.commit()
        except ConditionFailed:  # gone already: a concurrent deletion, or this one's lost answer
            return False
        return True

    def credentials_by_username(self, username: str) -> Credentials | None:
        try:
            claim = UsernameModel.get(username)
            row = UserModel.get(claim.user_id)
        except DoesNotExist:
            return None
        return Credentials(user=_to_user(row), password_hash=row.password_hash)

    def update_profile(self, user_id: str, display_name: str | None, bio: str | None) -> User | None:
        """Set the given fields; None if the user does not exist."""
        actions: list[Action] = []
        if display_name is not None:
            actions.append(UserModel.display_name.set(display_name))
        if bio is not None:
            actions.append(UserModel.bio.set(bio))
        row = UserModel(user_id=user_id)
        try:
            row.update(actions=actions, condition=UserModel.user_id.exists())
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return None
            raise
        return _to_user(row)

    def set_roles(self, user_id: str, roles: Iterable[str]) -> None:
        """Grant roles (an operator's action; there is no API for it)."""
        granted = set(roles)
        action = UserModel.roles.set(granted) if granted else UserModel.roles.remove()
        UserModel(user_id=user_id).update(actions=[action])

    def follower_count(self, user_id: str) -> int:
        try:
            return int(UserModel.get(user_id, consistent_read=True).follower_count or 0)
        except DoesNotExist:
            return 0

    def is_high_follower(self, user_id: str) -> bool:
        return self.high_follower_since(user_id) is not None

    def high_follower_since(self, user_id: str) -> int | None:
        """When the account was marked high-follower (epoch ms; 0 if before that was
        recorded), or None if it is not (strongly consistent: a fresh mark is seen at once)."""
        try:
            row = UserModel.get(
                user_id, attributes_to_get=["high_follower", "high_follower_since"], consistent_read=True
            )
        except DoesNotExist:
            return None
        if not row.high_follower:
            return None
        return int(row.high_follower_since or 0)

    def high_followers_among(self, user_ids: Iterable[str]) -> dict[str, int]:
        """Which of ``user_ids`` are marked high-follower, and since when (epoch ms, as
        :meth:`high_follower_since`); :meth:`fanout_states`' one consistent BatchGetItem per
        100 ids."""
        states = self.fanout_states(user_ids)
        return {u: s.high_follower_since for u, s in states.items() if s.high_follower_since is not None}

    def fanout_states(self, user_ids: Iterable[str]) -> dict[str, AuthorState]:
        """What fan-out needs to know of each existing account of ``user_ids`` (absent ones
        are left out): when it was marked high-follower and whether a block or mute may hide
        its posts from someone (:class:`AuthorState`). One strongly consistent BatchGetItem
        per 100 ids, so a block committed before the call is seen."""
        rows = batch_get(
            UserModel,
            list(user_ids),
            attributes=["high_follower", "high_follower_since", "may_hide"],
            consistent_read=True,
        )
        return {
            row.user_id: AuthorState(
                high_follower_since=int(row.high_follower_since or 0) if row.high_follower else None,
                may_hide=row.may_hide is None or bool(row.may_hide),
            )
            for row in rows
        }

    # ------------------------------------------------------------------ activity
    def touch(self, user_id: str, now_ms: int, resolution_ms: int) -> int | None:
        """Record that the user is active at ``now_ms``, unless that was recorded less than
        ``resolution_ms`` ago (a refresh every few minutes is then no write). Returns the
        activity recorded before (epoch ms): ``now_ms`` if it was recent, None if none was
        ever recorded (accounts older than the record)."""
        try:  # the table connection: Model.update cannot return the old values
            old = UserModel._get_connection().update_item(
                user_id,
                actions=[UserModel.last_active_at.set(now_ms)],
                condition=UserModel.user_id.exists()
                & (
                    UserModel.last_active_at.does_not_exist()
                    | (UserModel.last_active_at < now_ms - resolution_ms)
                ),
                return_values="UPDATED_OLD",
            )
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return now_ms  # recent enough (or the account is gone: nothing to rebuild)
            raise
        previous = (old.get("Attributes") or {}).get("last_active_at", {}).get("N")
        return int(previous) if previous is not None else None

    def inactive_among(self, user_ids: Iterable[str], seen_before_ms: int) -> set[str]:
        """Which of ``user_ids`` were last seen before ``seen_before_ms`` (epoch ms); an
        account with no record counts as active. One BatchGetItem per 100 ids, sent at once."""
        rows = batch_get(UserModel, list(user_ids), attributes=["last_active_at"])
        return {
            row.user_id
            for row in rows
            if row.last_active_at is not None and row.last_active_at < seen_before_ms
        }

    def start_feed_rebuild(self, user_id: str, started_ms: int) -> None:
        """Mark the user's feed as being rebuilt (from ``started_ms``) until
        :meth:`finish_feed_rebuild`; a later start replaces an earlier one."""
        UserModel(user_id=user_id).update(
            actions=[UserModel.feed_rebuild_started.set(started_ms)],
            condition=UserModel.user_id.exists(),
        )

    def finish_feed_rebuild(self, user_id: str, started_ms: int) -> None:
        """End the rebuild that began at ``started_ms`` (a newer one stays marked)."""
        try:
            UserModel(user_id=user_id).update(
                actions=[UserModel.feed_rebuild_started.remove(), UserModel.feed_rebuilt_at.set(started_ms)],
                condition=UserModel.feed_rebuild_started == started_ms,
            )
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
                raise

    def feed_rebuild_started(self, user_id: str) -> int | None:
        """When the user's running feed rebuild started (epoch ms), or None if none runs."""
        try:
            row = UserModel.get(user_id, attributes_to_get=["feed_rebuild_started"], consistent_read=True)
        except DoesNotExist:
            return None
        return int(row.feed_rebuild_started) if row.feed_rebuild_started is not None else None

    def mark_high_follower(self, user_id: str, now_ms: int) -> None:
        """Sticky: an account that once passed the threshold stays pulled, so its posts
        made while pulled never vanish from feeds when its audience shrinks. Marking twice
        keeps the first time."""
        try:
            UserModel(user_id=user_id).update(
                actions=[UserModel.high_follower.set(1), UserModel.high_follower_since.set(now_ms)],
                condition=UserModel.user_id.exists() & UserModel.high_follower.does_not_exist(),
            )
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
                raise

    def high_follower_ids(self) -> list[str]:
        """The registry of pulled authors (a sparse index: small by construction)."""
        return [row.user_id for row in UserModel.by_high_follower.query(1)]
