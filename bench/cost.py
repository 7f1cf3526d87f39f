"""Cost on AWS, on paper: measured requests per operation times list prices.

Nothing here is billed or measured on AWS. The inputs are what this run measured: request
units per post and per read (every DynamoDB call a post, its fan-out, its cache refresh and
a feed read make, priced by the rules in :mod:`bench.capacity`), Lambda invocations (the
stream runners' batching during the sustained steps) and durations (handlers timed in
process against the emulator), and Redis commands. Prices are list prices, us-east-1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

HOURS_PER_MONTH = 730.0
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600


@dataclass(frozen=True)
class Pricing:
    """List prices (us-east-1, on-demand, checked 2025); edit here to re-price."""

    dynamodb_per_million_wru: float = 0.625
    dynamodb_per_million_rru: float = 0.125
    lambda_arm64_per_gb_s: float = 0.0000133334
    lambda_per_million_requests: float = 0.20
    apigw_rest_per_million_requests: float = 3.50  # first 333 M requests a month
    elasticache_node_hour: float = 0.016  # cache.t4g.micro
    elasticache_nodes: int = 2  # NumCacheClusters in template.yaml
    # Redis is a fixed monthly cost; it is spread over this assumed steady traffic.
    assumed_posts_per_s: float = 10.0
    assumed_reads_per_s: float = 100.0


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return 0.0 if n == 0 else (ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2)


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``y = a + b x`` by Theil-Sen (median of pairwise slopes): one stalled invocation on the
    shared machine must not move a per-follower cost."""
    if not points:
        return 0.0, 0.0
    slopes = [
        (y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 != x1
    ]
    b = _median(slopes) if slopes else 0.0
    return _median([y - b * x for x, y in points]), b


def _post_metrics(
    post: Mapping[str, Any], batching: Mapping[str, float], memory_gb: Mapping[str, float]
) -> dict[str, float]:
    """One probed post as billable quantities."""
    api, fanout, refresher = post["api"], post["fanout"], post["refresher"]
    feed_records = post["feed_items"]  # unchanged re-puts write no stream record on AWS
    jobs = max(0, fanout["invocations"] - 1)
    invocations = (
        1.0
        + batching.get("FanoutFunction.PostsStream", 1.0)
        + jobs * batching.get("FanoutFunction.JobsStream", 1.0)
        + batching.get("CacheRefresherFunction.PostsStream", 1.0)
        + feed_records * batching.get("CacheRefresherFunction.FeedStream", 1.0)
    )
    gb_s = (
        api["duration_s"] * memory_gb["ApiFunction"]
        + fanout["duration_s"] * memory_gb["FanoutFunction"]
        + refresher["duration_s"] * memory_gb["CacheRefresherFunction"]
    )
    return {
        "followers": float(post["followers"]),
        "wru": api["wru_total"] + fanout["wru_total"] + refresher["wru_total"],
        "rru": api["rru_total"] + fanout["rru_total"] + refresher["rru_total"],
        "lambda_requests": invocations,
        "gb_s": gb_s,
        "redis_commands": api["redis_command_count"]
        + fanout["redis_command_count"]
        + refresher["redis_command_count"],
        "apigw_requests": 1.0,
        "aws_calls": api["aws_call_count"] + fanout["aws_call_count"],
    }


def _dollars(q: Mapping[str, float], pricing: Pricing, redis_per_command: float) -> dict[str, float]:
    """Dollars for one operation's quantities, by service."""
    return {
        "API Gateway": q["apigw_requests"] * pricing.apigw_rest_per_million_requests / 1e6,
        "Lambda requests": q["lambda_requests"] * pricing.lambda_per_million_requests / 1e6,
        "Lambda duration": q["gb_s"] * pricing.lambda_arm64_per_gb_s,
        "DynamoDB writes": q["wru"] * pricing.dynamodb_per_million_wru / 1e6,
        "DynamoDB reads": q["rru"] * pricing.dynamodb_per_million_rru / 1e6,
        "ElastiCache (amortised)": q["redis_commands"] * redis_per_command,
    }


def estimate(
    posts: Sequence[Mapping[str, Any]],
    read: Mapping[str, Any],
    read_duration_s: float,
    follower_counts: Sequence[int],
    pulled: set[int],
    batching: Mapping[str, float],
    memory_mb: Mapping[str, int],
    threshold: int,
    pricing: Pricing | None = None,
) -> dict[str, Any]:
    """Cost per million posts and per million feed reads.

    Per-post quantities are fitted as ``a + b * followers`` over the probed posts of pushed
    authors (fan-out is linear in the audience) and averaged over the graph's follower
    distribution with every user equally likely to post; pulled (high-follower) authors use
    their own measured cost.
    """
    pricing = pricing or Pricing()
    memory_gb = {k: v / 1024 for k, v in memory_mb.items()}
    ok = [p for p in posts if p.get("status") == 201]
    measured = [_post_metrics(p, batching, memory_gb) for p in ok]
    pushed = [m for m, p in zip(measured, ok, strict=True) if m["followers"] < threshold]
    pulled_posts = [m for m in measured if m["followers"] >= threshold]
    keys = ("wru", "rru", "lambda_requests", "gb_s", "redis_commands", "apigw_requests", "aws_calls")
    fits = {k: _fit([(m["followers"], m[k]) for m in pushed]) for k in keys}
    pulled_mean = (
        {k: sum(m[k] for m in pulled_posts) / len(pulled_posts) for k in keys} if pulled_posts else None
    )

    def per_post(followers: float, is_pulled: bool) -> dict[str, float]:
        if is_pulled and pulled_mean is not None:
            return dict(pulled_mean)
        return {k: max(0.0, a + b * followers) for k, (a, b) in fits.items()}

    n = len(follower_counts)
    expected = {k: 0.0 for k in keys}
    for user, followers in enumerate(follower_counts):
        for k, v in per_post(followers, user in pulled).items():
            expected[k] += v / n
    per_read = {
        "wru": float(read.get("wru_total", 0.0)),
        "rru": float(read.get("rru_total", 0.0)),
        "lambda_requests": 1.0,
        "gb_s": read_duration_s * memory_gb["ApiFunction"],
        "redis_commands": float(read.get("redis_command_count", 0.0)),
        "apigw_requests": 1.0,
        "aws_calls": float(read.get("aws_call_count", 0.0)),
    }
    redis_month = pricing.elasticache_node_hour * pricing.elasticache_nodes * HOURS_PER_MONTH
    commands_per_s = (
        pricing.assumed_posts_per_s * expected["redis_commands"]
        + pricing.assumed_reads_per_s * per_read["redis_commands"]
    )
    redis_per_command = redis_month / (commands_per_s * SECONDS_PER_MONTH) if commands_per_s else 0.0
    post_dollars = _dollars(expected, pricing, redis_per_command)
    read_dollars = _dollars(per_read, pricing, redis_per_command)
    examples = {
        f: {k: v * 1e6 for k, v in _dollars(per_post(f, False), pricing, redis_per_command).items()}
        for f in (10, 100, 1000, 5000)
    }
    return {
        "pricing": asdict(pricing),
        "redis_month_usd": redis_month,
        "redis_commands_per_s_assumed": commands_per_s,
        "per_post_quantities": expected,
        "per_read_quantities": per_read,
        "per_million_posts": {k: v * 1e6 for k, v in post_dollars.items()},
        "per_million_posts_total": sum(post_dollars.values()) * 1e6,
        "per_million_reads": {k: v * 1e6 for k, v in read_dollars.items()},
        "per_million_reads_total": sum(read_dollars.values()) * 1e6,
        "fits": {k: {"a": a, "b_per_follower": b} for k, (a, b) in fits.items()},
        "pulled_post": pulled_mean,
        "probed_posts": len(ok),
        "probed_pushed": len(pushed),
        "probed_pulled": len(pulled_posts),
        "per_million_posts_by_followers": {str(f): sum(v.values()) for f, v in examples.items()},
        "batching": dict(batching),
    }
