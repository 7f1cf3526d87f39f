"""One typed view of the environment, read once per container (cold start).

Logic never reads ``os.environ``: it receives a :class:`Settings` (or calls
:func:`get_settings`), so tests can build settings explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, get_type_hints


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the environment variable.

    Raised while building :class:`Settings`, i.e. at cold start (the functions build their
    container at import), so a bad deployment fails its first invocation with this message
    in the log instead of answering 500 later on the request that first needs the value.
    """


def _env(name: str, minimum: float | None = None, maximum: float | None = None) -> dict[str, Any]:
    """Field metadata: the environment variable and the bounds a value must lie within."""
    return {"env": name, "minimum": minimum, "maximum": maximum}


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _parse(kind: type, name: str, raw: str) -> Any:
    """One environment value as ``kind`` (str, int, float or bool), or ConfigError."""
    if kind is str:
        return raw
    if kind is bool:
        word = raw.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise ConfigError(f"environment variable {name} must be true or false, got {raw!r}")
    try:
        return kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"environment variable {name} must be {noun}, got {raw!r}") from None


def _endpoint(env: Mapping[str, str], service_variable: str) -> str | None:
    """A service's endpoint: ``AWS_ENDPOINT_URL_<SERVICE>``, else ``AWS_ENDPOINT_URL``, else
    None (AWS's own). The same names and order as the AWS SDKs' service-specific endpoints,
    resolved here once so every client (boto3 or PynamoDB) gets it explicitly: a local stack
    can put DynamoDB on DynamoDB Local and Secrets Manager on moto, or on real AWS."""
    return env.get(f"AWS_ENDPOINT_URL_{service_variable}") or env.get("AWS_ENDPOINT_URL") or None


HOUR, DAY = 3600, 24 * 3600


@dataclass(frozen=True)
class Settings:
    """Everything configurable about Ripple, with the defaults a small deployment wants.

    Each field's metadata names its environment variable (as in template.yaml) and bounds;
    every value is checked when the settings are built (:class:`ConfigError`).
    """

    stage: str = field(default="dev", metadata=_env("STAGE"))
    region: str = "us-east-1"  # AWS_REGION, else AWS_DEFAULT_REGION (from_env)
    # None on AWS; locally the emulators' URLs (see _endpoint).
    dynamodb_endpoint_url: str | None = None
    secretsmanager_endpoint_url: str | None = None
    users_table: str = field(default="ripple-users", metadata=_env("USERS_TABLE"))
    usernames_table: str = field(default="ripple-usernames", metadata=_env("USERNAMES_TABLE"))
    posts_table: str = field(default="ripple-posts", metadata=_env("POSTS_TABLE"))
    post_ids_table: str = field(default="ripple-post-ids", metadata=_env("POST_IDS_TABLE"))
    follows_table: str = field(default="ripple-follows", metadata=_env("FOLLOWS_TABLE"))
    followers_table: str = field(default="ripple-followers", metadata=_env("FOLLOWERS_TABLE"))
    feed_table: str = field(default="ripple-feed", metadata=_env("FEED_TABLE"))
    likes_table: str = field(default="ripple-likes", metadata=_env("LIKES_TABLE"))
    likes_by_user_table: str = field(default="ripple-likes-by-user", metadata=_env("LIKES_BY_USER_TABLE"))
    reposts_table: str = field(default="ripple-reposts", metadata=_env("REPOSTS_TABLE"))
    reposts_by_user_table: str = field(
        default="ripple-reposts-by-user", metadata=_env("REPOSTS_BY_USER_TABLE")
    )
    fanout_jobs_table: str = field(default="ripple-fanout-jobs", metadata=_env("FANOUT_JOBS_TABLE"))
    refresh_tokens_table: str = field(default="ripple-refresh-tokens", metadata=_env("REFRESH_TOKENS_TABLE"))
    blocks_table: str = field(default="ripple-blocks", metadata=_env("BLOCKS_TABLE"))
    blocked_by_table: str = field(default="ripple-blocked-by", metadata=_env("BLOCKED_BY_TABLE"))
    notifications_table: str = field(default="ripple-notifications", metadata=_env("NOTIFICATIONS_TABLE"))
    redis_host: str = field(default="127.0.0.1", metadata=_env("REDIS_HOST"))
    redis_port: int = field(default=6379, metadata=_env("REDIS_PORT", 1, 65535))
    redis_tls: bool = field(default=False, metadata=_env("REDIS_TLS"))
    # Short socket timeouts: a slow Redis must degrade reads to DynamoDB, not stall them.
    redis_timeout_seconds: float = field(default=0.25, metadata=_env("REDIS_TIMEOUT_SECONDS", 0.001, 30))
    jwt_secret: str | None = field(default=None, repr=False, metadata=_env("JWT_SECRET"))  # never logged
    jwt_secret_arn: str | None = field(default=None, metadata=_env("JWT_SECRET_ARN"))
    access_token_ttl_seconds: int = field(default=900, metadata=_env("ACCESS_TOKEN_TTL_SECONDS", 1))
    refresh_token_ttl_seconds: int = field(default=30 * DAY, metadata=_env("REFRESH_TOKEN_TTL_SECONDS", 1))
    # Clock skew tolerated between the container that issued a token and the one verifying
    # it, for iat, nbf and exp (RFC 7519 4.1.4-4.1.6 allow "some small leeway").
    jwt_leeway_seconds: int = field(default=10, metadata=_env("JWT_LEEWAY_SECONDS", 0, 300))
    # Mastodon keeps 800 ids per home feed: enough for days of reading, small in memory.
    feed_cache_max_items: int = field(default=800, metadata=_env("FEED_CACHE_MAX_ITEMS", 1))
    feed_cache_ttl_seconds: int = field(default=7 * DAY, metadata=_env("FEED_CACHE_TTL_SECONDS", 1))
    post_cache_ttl_seconds: int = field(default=DAY, metadata=_env("POST_CACHE_TTL_SECONDS", 1))
    backfill_posts: int = field(default=20, metadata=_env("BACKFILL_POSTS", 0))
    # Above this many followers an author's posts are pulled at read time, not pushed.
    high_follower_threshold: int = field(default=10_000, metadata=_env("HIGH_FOLLOWER_THRESHOLD", 1))
    # Posts made this soon after their author was marked high-follower are still pushed: it
    # covers the readers' reload of the pulled-author registry (10 s, services/feed.py) and
    # the registry index's lag (typically well under a second) several times over.
    high_follower_pull_grace_seconds: int = field(
        default=60, metadata=_env("HIGH_FOLLOWER_PULL_GRACE_SECONDS", 0)
    )
    # Readers not seen (login or token refresh) for this many days get no pushed items, as
    # Twitter skips users away 30 days and Mastodon 7; their feed is rebuilt from the follow
    # graph when they return. 0 pushes to everyone.
    inactive_reader_days: int = field(default=30, metadata=_env("INACTIVE_READER_DAYS", 0, 3650))
    # Feed items expire this many days after they are written (DynamoDB TTL), so the feed
    # table stops growing with history nobody pages back to; 0 keeps them for ever.
    feed_item_ttl_days: int = field(default=90, metadata=_env("FEED_ITEM_TTL_DAYS", 0, 3650))
    # A deleted account's username stays claimed, by nobody, this many days before anyone
    # may sign up with it (Twitter holds a deactivated name 30 days): links and mentions of
    # the departed user cannot be taken over at once. 0 releases it at once.
    username_quarantine_days: int = field(default=30, metadata=_env("USERNAME_QUARANTINE_DAYS", 0, 3650))
    # Notification rows expire this many days after their grouping window ends (DynamoDB TTL);
    # a notifications list is about the recent past. 0 keeps them.
    notification_ttl_days: int = field(default=90, metadata=_env("NOTIFICATION_TTL_DAYS", 0, 3650))
    # Followers written per fan-out step; more continue as a follow-up job record.
    fanout_page_size: int = field(default=1000, metadata=_env("FANOUT_PAGE_SIZE", 1))
    post_max_chars: int = field(default=500, metadata=_env("POST_MAX_CHARS", 1))
    max_body_bytes: int = field(default=16 * 1024, metadata=_env("MAX_BODY_BYTES", 64))
    # scrypt cost; 2**14 is the interactive-login recommendation (RFC 7914). scrypt needs a
    # power of two above 1; above 2**20 a login needs over 1 GB (128 * N * r bytes, r = 8).
    password_scrypt_n: int = field(default=2**14, metadata=_env("PASSWORD_SCRYPT_N", 2, 2**20))
    # Requests accepted in any 60-second span (a moving window in Redis, ripple.cache.rate_limit);
    # 0 disables a limit.
    rate_limit_writes_per_minute: int = field(default=60, metadata=_env("RATE_LIMIT_WRITES_PER_MINUTE", 0))
    rate_limit_ip_writes_per_minute: int = field(
        default=300, metadata=_env("RATE_LIMIT_IP_WRITES_PER_MINUTE", 0)
    )
    rate_limit_auth_per_minute: int = field(default=20, metadata=_env("RATE_LIMIT_AUTH_PER_MINUTE", 0))

    def __post_init__(self) -> None:
        for spec in fields(self):
            name, value = spec.metadata.get("env"), getattr(self, spec.name)
            if name is None or isinstance(value, (str, bool)) or value is None:
                continue
            low, high = spec.metadata["minimum"], spec.metadata["maximum"]
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"at least {low}" if high is None else f"between {low} and {high}"
                raise ConfigError(f"environment variable {name} must be {bounds}, got {value}")
        n = self.password_scrypt_n
        if n & (n - 1):
            raise ConfigError(f"environment variable PASSWORD_SCRYPT_N must be a power of two, got {n}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables (names as in template.yaml); an unset or
        empty variable keeps the default. Raises :class:`ConfigError` naming the variable."""
        e = os.environ if env is None else env
        values: dict[str, Any] = {}
        kinds = get_type_hints(cls)
        for spec in fields(cls):
            name: str | None = spec.metadata.get("env")
            raw = e.get(name) if name else None
            if name is None or raw is None or raw == "":
                continue
            kind = kinds[spec.name]
            values[spec.name] = _parse(str if kind == (str | None) else kind, name, raw)
        return cls(
            region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or cls.region,
            dynamodb_endpoint_url=_endpoint(e, "DYNAMODB"),
            secretsmanager_endpoint_url=_endpoint(e, "SECRETS_MANAGER"),
            **values,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The container's settings, read from the environment on first use only."""
    return Settings.from_env()
