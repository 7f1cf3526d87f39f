"""Do every user's notifications hold exactly what the follows, likes and reposts say they
should?

The expected notifications of recipient U are a function of the truth tables alone, as
``ripple.services.notifications`` produces them:

* a membership per follower F of U (the Followers table: ``followed`` group of the day of
  the follow's ``created_at``);
* a membership per liker L of each of U's posts, L != U (the Likes table: ``liked`` group of
  the post and of the day of the like's ``created_at``);
* a membership per reposter R of each of U's posts, R != U (the Reposts table: ``reposted``
  group of the post and of the day of the repost's ``created_at``);

and each group's summary (``actor_count``, the newest ``MAX_ACTORS`` actors newest first,
``updated_at``, listed only while it has actors) follows from its memberships. The check
reports memberships missing or extra, and groups whose summary disagrees with their
memberships. Likes and follows made before notifications were deployed were never produced
(the streams did not carry them then): on an older stack they show as missing.

An actor the recipient blocks or mutes, or who blocks the recipient, is not judged (the "may
notify" seam refuses their follows, likes and reposts from the moment of the block or mute,
and what they produced before stays); after an unmute or unblock, an act made during it shows
as missing.

Operator code (``ripple check-notifications``), not deployed. A point-in-time comparison:
while the streams are busy it reports lag as differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ripple.notifications import FOLLOWED, LIKED, MAX_ACTORS, REPOSTED, activity_key, group_key
from ripple.repositories.blocks import BlockRepository
from ripple.repositories.models import FollowerModel, LikeModel, NotificationModel, RepostModel
from ripple_local.feed_scan import FeedScanRepository

Membership = tuple[str, int, str]  # (group key, event time ms, actor id)


@dataclass
class NotificationCheck:
    user_id: str
    missing: list[Membership] = field(default_factory=list)
    extra: list[Membership] = field(default_factory=list)
    bad_groups: list[str] = field(default_factory=list)  # "group key: what is wrong"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.bad_groups)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing (e.g. {self.missing[0][0]} by {self.missing[0][2]})")
        if self.extra:
            parts.append(f"{len(self.extra)} extra (e.g. {self.extra[0][0]} by {self.extra[0][2]})")
        parts += self.bad_groups[:3]
        return f"{self.user_id}: " + ("; ".join(parts) or "ok")

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "ok": self.ok,
            "missing": [list(m) for m in self.missing],
            "extra": [list(m) for m in self.extra],
            "bad_groups": self.bad_groups,
        }


@dataclass
class NotificationReport:
    users: list[NotificationCheck]

    @property
    def ok(self) -> bool:
        return all(u.ok for u in self.users)

    def summary(self) -> str:
        diverged = [u for u in self.users if not u.ok]
        if not diverged:
            return f"converged: {len(self.users)} users' notifications checked, 0 differences"
        lines = [f"NOT converged: {len(diverged)} of {len(self.users)} users' notifications differ"]
        return "\n".join(lines + [f"  {u.describe()}" for u in diverged])

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "users": [u.to_dict() for u in self.users]}


def expected_memberships(user_id: str, scan: FeedScanRepository) -> set[Membership]:
    """What the follows, likes and reposts of ``user_id`` say its notification memberships
    are."""
    expected: set[Membership] = set()
    for row in FollowerModel.query(user_id, consistent_read=True):
        at = int(row.created_at)
        expected.add((group_key(FOLLOWED, None, at), at, row.follower_id))
    for post in scan.post_stamps(user_id):
        for like in LikeModel.query(post.post_id, consistent_read=True):
            if like.user_id != user_id:
                at = int(like.created_at)
                expected.add((group_key(LIKED, post.post_id, at), at, like.user_id))
        for repost in RepostModel.query(post.post_id, consistent_read=True):
            if repost.user_id != user_id:
                at = int(repost.created_at)
                expected.add((group_key(REPOSTED, post.post_id, at), at, repost.user_id))
    return expected


def _rows(user_id: str) -> Iterator[NotificationModel]:
    yield from NotificationModel.query(user_id, consistent_read=True)


def check_user(user_id: str, scan: FeedScanRepository) -> NotificationCheck:
    """One recipient: memberships against the truth, each group's summary against its
    memberships."""
    members: set[Membership] = set()
    groups: dict[str, NotificationModel] = {}
    for row in _rows(user_id):
        if row.sk.startswith("m#"):
            key, at, actor = row.sk[2:].rsplit("#", 2)
            members.add((key, int(at), actor))
        elif row.sk.startswith("g#"):
            groups[row.sk[2:]] = row
    expected = expected_memberships(user_id, scan)
    # An actor the recipient blocks or mutes, or who blocks them, notifies nothing from the
    # moment of the block or mute, and what it notified before stays: neither is judged.
    hidden = BlockRepository().relations(user_id).hidden_authors()
    missing = sorted(m for m in expected - members if m[2] not in hidden)
    extra = sorted(m for m in members - expected if m[2] not in hidden)
    check = NotificationCheck(user_id, missing, extra)
    by_group: dict[str, list[Membership]] = {}
    for member in members:
        by_group.setdefault(member[0], []).append(member)
    for key in sorted(set(groups) | set(by_group)):
        check.bad_groups += _judge_group(key, groups.get(key), by_group.get(key, []))
    return check


def _judge_group(key: str, group: NotificationModel | None, members: list[Membership]) -> list[str]:
    if group is None:
        return [f"{key}: memberships without a group row"]
    newest = sorted(members, key=lambda m: (m[1], m[2]), reverse=True)
    problems = []
    if int(group.member_count or 0) != len(members):
        problems.append(f"{key}: member_count {group.member_count} for {len(members)} memberships")
    if not members:
        if group.activity is not None:
            problems.append(f"{key}: listed without actors")
        return problems
    actors = " ".join(m[2] for m in newest[:MAX_ACTORS])
    if int(group.actor_count or 0) != len(members) or group.actors != actors:
        problems.append(f"{key}: shows {group.actor_count} ({group.actors}), memberships say {len(members)}")
    if group.activity != activity_key(newest[0][1], key):
        problems.append(f"{key}: activity {group.activity}, newest act at {newest[0][1]}")
    return problems


def check_notifications(
    user_ids: Iterable[str] | None = None, scan: FeedScanRepository | None = None
) -> NotificationReport:
    """Check the given recipients (None: every user). The models must be bound."""
    scan = scan or FeedScanRepository()
    ids = list(dict.fromkeys(user_ids)) if user_ids is not None else list(scan.user_ids())
    return NotificationReport([check_user(u, scan) for u in ids])
