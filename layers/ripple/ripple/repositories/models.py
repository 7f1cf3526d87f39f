"""PynamoDB models, one per table of template.yaml.

Table names and the endpoint are bound once per container by :func:`bind_models`, from
:class:`ripple.config.Settings` (the tables themselves are created by SAM, or locally
from template.yaml by the local stack, never by these models).
"""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection, LocalSecondaryIndex
from pynamodb.models import Model

from ripple.config import Settings


class HighFollowerIndex(GlobalSecondaryIndex["UserModel"]):
    class Meta:
        index_name = "by_high_follower"
        projection = KeysOnlyProjection()

    high_follower = NumberAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)


class UserModel(Model):
    class Meta:
        table_name = "users"

    user_id = UnicodeAttribute(hash_key=True)
    username = UnicodeAttribute()
    password_hash = UnicodeAttribute()
    display_name = UnicodeAttribute(default="")
    bio = UnicodeAttribute(default="")
    roles = UnicodeSetAttribute(null=True)
    created_at = NumberAttribute()
    # Counters move only through atomic ADDs, in the transaction that changes what they count.
    follower_count = NumberAttribute(default=0)
    following_count = NumberAttribute(default=0)
    post_count = NumberAttribute(default=0)
    # Set (to 1, sticky) once the account passes the high-follower threshold ...
    high_follower = NumberAttribute(null=True)
    # ... at this time (epoch ms): fan-out still pushes posts made shortly after it.
    high_follower_since = NumberAttribute(null=True)
    # When the user was last seen (epoch ms, at sign-up, login and token refresh; recorded at
    # most hourly): fan-out skips readers away longer than ``inactive_reader_days``.
    last_active_at = NumberAttribute(null=True)
    # A returning reader's feed rebuild (epoch ms of its start), present while it runs; and
    # when the last one started, kept afterwards (the convergence check's rule needs it).
    feed_rebuild_started = NumberAttribute(null=True)
    feed_rebuilt_at = NumberAttribute(null=True)
    # Whether a block or mute may hide the account's posts from some reader: 0 from sign-up,
    # set to 1 (sticky) by the transaction of its first block either way or of a mute of it;
    # absent on accounts made before it existed, which counts as 1. Fan-out reads an author's
    # blocks and mutes (Queries, before and after its write) only when it is not 0. It is a
    # fact about the account as an author: a mute does not mark the muter, so a check from
    # the reader's side (whom do I hide) cannot use it.
    may_hide = NumberAttribute(null=True)
    by_high_follower = HighFollowerIndex()


class UsernameModel(Model):
    """Claims a username; written in one transaction with the user."""

    class Meta:
        table_name = "usernames"

    username = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
    # Set when the account is deleted (epoch ms): the name stays claimed, by nobody, until
    # then (``username_quarantine_days``), so nobody can pose as the departed user at once.
    released_at = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)  # TTL (epoch seconds): the released claim is swept


class PostModel(Model):
    class Meta:
        table_name = "posts"

    author_id = UnicodeAttribute(hash_key=True)
    post_id = UnicodeAttribute(range_key=True)
    text = UnicodeAttribute()
    created_at = NumberAttribute()
    like_count = NumberAttribute(default=0)
    repost_count = NumberAttribute(default=0)


class PostIdModel(Model):
    """post id -> author, written in the post's own transaction: finding a post by its id
    alone is one strongly consistent GetItem. (A global secondary index would lag the table,
    so a like right after a post could answer 404.)"""

    class Meta:
        table_name = "post-ids"

    post_id = UnicodeAttribute(hash_key=True)
    author_id = UnicodeAttribute()


class FollowModel(Model):
    class Meta:
        table_name = "follows"

    follower_id = UnicodeAttribute(hash_key=True)
    followee_id = UnicodeAttribute(range_key=True)
    created_at = NumberAttribute()


class FollowerModel(Model):
    """The inverse edge, followee -> follower, written in the same transaction as the
    FollowModel row: a user's followers are a strongly consistent Query. Fan-out reads them
    so that a follower who followed before a post was made always gets it (a global
    secondary index would lag, and such a reader would get neither push nor backfill)."""

    class Meta:
        table_name = "followers"

    followee_id = UnicodeAttribute(hash_key=True)
    follower_id = UnicodeAttribute(range_key=True)
    created_at = NumberAttribute()  # when the follow was made: fan-out skips later followers


class FeedPlacementIndex(LocalSecondaryIndex["FeedItemModel"]):
    """A reader's items by placement, newest first: the order a feed is read in."""

    class Meta:
        index_name = "by_placement"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)
    placed = UnicodeAttribute(range_key=True)


class FeedItemModel(Model):
    """One post in one reader's feed, once, however it came (``ripple.domain.FeedEntry``)."""

    class Meta:
        table_name = "feed"

    user_id = UnicodeAttribute(hash_key=True)
    post_id = UnicodeAttribute(range_key=True)
    author_id = UnicodeAttribute()
    created_at = NumberAttribute()  # the post's creation (epoch ms)
    # Where the item sits, when a repost brought it: the id of the newest such repost (the
    # index's key), by ``reposted_by``. Absent on an item at its post (nearly all of them),
    # which is then in the table only: the index is sparse, and costs those writes nothing.
    placed = UnicodeAttribute(null=True)
    reposted_by = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)  # TTL (epoch seconds); absent: kept for ever
    by_placement = FeedPlacementIndex()


class LikeModel(Model):
    class Meta:
        table_name = "likes"

    post_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    created_at = NumberAttribute()
    # The post's author, the like's notification recipient: the stream record of an unlike
    # (or of a deleted post's likes) names it though the post may be gone. Absent on likes
    # made before notifications; the notifier then asks the post-ids table.
    author_id = UnicodeAttribute(null=True)


class NotificationActivityIndex(LocalSecondaryIndex["NotificationModel"]):
    """A recipient's visible groups by last activity (sparse: only groups with actors carry
    ``activity``). Local, so a read may be strongly consistent."""

    class Meta:
        index_name = "by_activity"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)
    activity = UnicodeAttribute(range_key=True)


class NotificationModel(Model):
    """A recipient's notifications, three kinds of row under one partition (``sk``):

    * ``g#{group key}`` - a group: ``kind``, ``post_id``, ``member_count`` and ``version``
      (moved with every membership change), and the summary readers see, written only over
      the version it was computed from: ``actor_count``, ``actors`` (newest first, at most
      ``ripple.notifications.MAX_ACTORS``), ``updated_at``, ``activity`` (the index key;
      absent while the group has no actor);
    * ``m#{group key}#{event ms:013d}#{actor}`` - one actor's membership (idempotency and
      the exact count; the key's time orders a group's actors newest first);
    * ``state`` - ``last_read_at`` (epoch ms).
    """

    class Meta:
        table_name = "notifications"

    user_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(null=True)
    post_id = UnicodeAttribute(null=True)
    actor_id = UnicodeAttribute(null=True)
    at = NumberAttribute(null=True)  # a membership's event time (epoch ms)
    member_count = NumberAttribute(null=True)
    actor_count = NumberAttribute(null=True)
    actors = UnicodeAttribute(null=True)  # the newest actors' ids, newest first, space-separated
    updated_at = NumberAttribute(null=True)
    activity = UnicodeAttribute(null=True)
    version = NumberAttribute(null=True)
    last_read_at = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)  # TTL (epoch seconds)
    by_activity = NotificationActivityIndex()


class LikeByUserModel(Model):
    """The inverse of a like, user -> post, written in the like's own transaction: a user's
    likes are a strongly consistent Query (account deletion removes every one of them; an
    index would lag, and a like committed just before the deletion could be missed)."""

    class Meta:
        table_name = "likes-by-user"

    user_id = UnicodeAttribute(hash_key=True)
    post_id = UnicodeAttribute(range_key=True)
    author_id = UnicodeAttribute()  # the liked post's author: its like_count lives there


class RepostModel(Model):
    """One repost: ``user_id`` reposts ``post_id`` (by ``author_id``) at ``created_at``;
    ``repost_id`` (a ULID of that time) is where the post is placed in the reposter's
    followers' feeds."""

    class Meta:
        table_name = "reposts"

    post_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    repost_id = UnicodeAttribute()
    author_id = UnicodeAttribute()
    created_at = NumberAttribute()  # epoch ms


class RepostByUserModel(Model):
    """The inverse of a repost, user -> post, written in the repost's own transaction."""

    class Meta:
        table_name = "reposts-by-user"

    user_id = UnicodeAttribute(hash_key=True)
    post_id = UnicodeAttribute(range_key=True)
    repost_id = UnicodeAttribute()
    author_id = UnicodeAttribute()


class FanoutJobModel(Model):
    """One page of followers still to receive (or lose) a post."""

    class Meta:
        table_name = "fanout-jobs"

    job_id = UnicodeAttribute(hash_key=True)  # deterministic: FanoutJob.job_id
    kind = UnicodeAttribute()  # "push" | "retract" | "purge_likes" | "rebuild" | "erase"
    author_id = UnicodeAttribute()
    post_id = UnicodeAttribute()
    created_at = NumberAttribute()
    after = UnicodeAttribute()  # the last follower id already handled
    ref = UnicodeAttribute(null=True)  # a repost's id (repost jobs: which repost they place)
    expires_at = NumberAttribute()  # TTL (epoch seconds)


class RefreshTokensByUserIndex(GlobalSecondaryIndex["RefreshTokenModel"]):
    """A user's sessions (refresh-token rows), for account deletion (which revokes them all).
    Lag is harmless there: a refresh needs the account, which is gone before this is read."""

    class Meta:
        index_name = "by_user"
        projection = KeysOnlyProjection()

    user_id = UnicodeAttribute(hash_key=True)
    token_id = UnicodeAttribute(range_key=True)


class BlockModel(Model):
    """One block or mute: ``user_id`` blocks (or mutes) ``target_id``. The range key
    ``edge`` is ``"block#{target_id}"`` or ``"mute#{target_id}"`` (``ripple.repositories.blocks``),
    so a block and a mute of one account are two independent rows, a user's blocks (or mutes)
    are one Query by prefix in target-id order, and "does A block B" is one key."""

    class Meta:
        table_name = "blocks"

    user_id = UnicodeAttribute(hash_key=True)
    edge = UnicodeAttribute(range_key=True)
    target_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # "block" | "mute"
    created_at = NumberAttribute()  # epoch ms


class BlockedByModel(Model):
    """The inverse row, target -> user, written in the same transaction as the BlockModel
    row: who blocks (or mutes) me is a strongly consistent Query (fan-out and reads must see
    a block the moment it is made; an index would lag). ``edge`` is ``"{kind}#{user_id}"``."""

    class Meta:
        table_name = "blocked-by"

    target_id = UnicodeAttribute(hash_key=True)
    edge = UnicodeAttribute(range_key=True)
    user_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    created_at = NumberAttribute()


class RefreshTokenModel(Model):
    """A login session (refresh-token family): keyed by its first refresh token's id, with
    ``live`` the id of the one refresh token that may be used now. Rows written before
    sessions existed have no ``live``: the token of the row's own id is live."""

    class Meta:
        table_name = "refresh-tokens"

    token_id = UnicodeAttribute(hash_key=True)  # the session id (a refresh token's sid)
    user_id = UnicodeAttribute()
    expires_at = NumberAttribute()  # epoch seconds: the live token's expiry; the table's TTL attribute
    live = UnicodeAttribute(null=True)  # the live refresh token's jti
    by_user = RefreshTokensByUserIndex()


ALL_MODELS: tuple[type[Model], ...] = (
    UserModel,
    UsernameModel,
    PostModel,
    PostIdModel,
    FollowModel,
    FollowerModel,
    FeedItemModel,
    LikeModel,
    LikeByUserModel,
    RepostModel,
    RepostByUserModel,
    FanoutJobModel,
    RefreshTokenModel,
    BlockModel,
    BlockedByModel,
    NotificationModel,
)


def bind_models(settings: Settings) -> None:
    """Point every model at its table and at the configured endpoint (emulator locally)."""
    names = {
        UserModel: settings.users_table,
        UsernameModel: settings.usernames_table,
        PostModel: settings.posts_table,
        PostIdModel: settings.post_ids_table,
        FollowModel: settings.follows_table,
        FollowerModel: settings.followers_table,
        FeedItemModel: settings.feed_table,
        LikeModel: settings.likes_table,
        LikeByUserModel: settings.likes_by_user_table,
        RepostModel: settings.reposts_table,
        RepostByUserModel: settings.reposts_by_user_table,
        FanoutJobModel: settings.fanout_jobs_table,
        RefreshTokenModel: settings.refresh_tokens_table,
        BlockModel: settings.blocks_table,
        BlockedByModel: settings.blocked_by_table,
        NotificationModel: settings.notifications_table,
    }
    for model, table_name in names.items():
        meta = model.Meta
        meta.table_name = table_name
        meta.region = settings.region
        meta.host = settings.dynamodb_endpoint_url
        # Short timeouts and botocore-level retries: a stuck call should fail fast and
        # be retried (by the stream for consumers, by the client for the API).
        meta.connect_timeout_seconds = 2
        meta.read_timeout_seconds = 5
        meta.max_retry_attempts = 3
        model._connection = None
