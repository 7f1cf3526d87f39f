"""Cost on AWS, on paper: measured requests per operation times list prices.

Nothing here is billed or measured on AWS. The inputs are what this run measured: request
units per post and per read (every DynamoDB call a post, its fan-out, its cache refresh and a
feed read make, priced by the rules in :mod:`bench.capacity`), Lambda invocations (the stream
runners' batching during the sustained steps) and durations (handlers timed in process against
the emulator), and Redis commands. Prices are list prices, us-east-1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

HOURS_PER_MONTH = 730.0
EXAMPLES = (10, 100, 1000, 5000)  # follower counts of the per-author examples
KEYS = ("wru", "rru", "lambda_requests", "gb_s", "redis_commands", "apigw_requests", "aws_calls")
AWAY_SHARE = 0.5  # assumed share of an audience not seen for InactiveReaderDays (not measured)
FEED_ITEM_BYTES = 250  # three ULIDs, two numbers, attribute names, DynamoDB's 100-byte item overhead
TTL_DAYS = 90  # template.yaml FeedItemTtlDays


@dataclass(frozen=True)
class Pricing:
    """List prices (us-east-1, on-demand, checked 2025); edit here to re-price."""

    dynamodb_per_million_wru: float = 0.625
    dynamodb_per_million_rru: float = 0.125
    lambda_arm64_per_gb_s: float = 0.0000133334
    lambda_per_million_requests: float = 0.20
    apigw_rest_per_million_requests: float = 3.50  # REST API (ApiType=REST), first 333 M requests a month
    apigw_http_per_million_requests: float = 1.00  # HTTP API (ApiType=HTTP), first 300 M requests a month
    elasticache_node_hour: float = 0.016  # cache.t4g.micro
    elasticache_nodes: int = 2  # NumCacheClusters in template.yaml
    dynamodb_storage_per_gb_month: float = 0.25
    # Redis is a fixed monthly cost; it is spread over this assumed steady traffic.
    assumed_posts_per_s: float = 10.0
    assumed_reads_per_s: float = 100.0


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``y = a + b x`` by Theil-Sen (median of pairwise slopes): one stalled invocation on the
    shared machine must not move a per-follower cost."""
    pairs = [(p, q) for i, p in enumerate(points) for q in points[i + 1 :] if q[0] != p[0]]
    slopes = [(y2 - y1) / (x2 - x1) for (x1, y1), (x2, y2) in pairs]
    b = median(slopes) if slopes else 0.0
    return (median([y - b * x for x, y in points]) if points else 0.0), b


def _post_quantities(
    post: Mapping[str, Any], batching: Mapping[str, float], gb: Mapping[str, float]
) -> dict[str, float]:
    """One probed post as billable quantities."""
    api, fanout, refresher = post["api"], post["fanout"], post["refresher"]
    parts = (api, fanout, refresher)
    invocations = (  # unchanged re-puts write no stream record on AWS: one per feed item
        1.0 + batching.get("FanoutFunction.PostsStream", 1.0)
        + max(0, fanout["invocations"] - 1) * batching.get("FanoutFunction.JobsStream", 1.0)
        + batching.get("CacheRefresherFunction.PostsStream", 1.0)
        + post["feed_items"] * batching.get("CacheRefresherFunction.FeedStream", 1.0)
    )  # fmt: skip
    functions = ("ApiFunction", "FanoutFunction", "CacheRefresherFunction")
    return {
        "followers": float(post["followers"]), "wru": sum(p["wru_total"] for p in parts),
        "rru": sum(p["rru_total"] for p in parts), "lambda_requests": invocations,
        "gb_s": sum(p["duration_s"] * gb[f] for p, f in zip(parts, functions, strict=True)),
        "redis_commands": sum(p["redis_command_count"] for p in parts), "apigw_requests": 1.0,
        "aws_calls": api["aws_call_count"] + fanout["aws_call_count"],
    }  # fmt: skip


def _dollars(q: Mapping[str, float], p: Pricing, redis_per_command: float) -> dict[str, float]:
    """Dollars for one operation's quantities, by service."""
    return {
        "API Gateway": q["apigw_requests"] * p.apigw_rest_per_million_requests / 1e6,
        "Lambda requests": q["lambda_requests"] * p.lambda_per_million_requests / 1e6,
        "Lambda duration": q["gb_s"] * p.lambda_arm64_per_gb_s,
        "DynamoDB writes": q["wru"] * p.dynamodb_per_million_wru / 1e6,
        "DynamoDB reads": q["rru"] * p.dynamodb_per_million_rru / 1e6,
        "ElastiCache (amortised)": q["redis_commands"] * redis_per_command,
    }


def estimate(
    posts: Sequence[Mapping[str, Any]], read: Mapping[str, Any], read_duration_s: float,
    follower_counts: Sequence[int], pulled: set[int], batching: Mapping[str, float],
    memory_mb: Mapping[str, int], threshold: int, pricing: Pricing | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Cost per million posts and per million feed reads.

    Per-post quantities are fitted as ``a + b * followers`` over the probed posts of pushed
    authors (fan-out is linear in the audience) and averaged over the graph's follower
    distribution with every user equally likely to post; pulled (high-follower) authors use
    their own measured cost."""
    p = pricing or Pricing()
    gb = {k: v / 1024 for k, v in memory_mb.items()}
    measured = [_post_quantities(post, batching, gb) for post in posts if post.get("status") == 201]
    pushed = [m for m in measured if m["followers"] < threshold]
    pulled_posts = [m for m in measured if m["followers"] >= threshold]
    fits = {k: _fit([(m["followers"], m[k]) for m in pushed]) for k in KEYS}
    n_pulled = len(pulled_posts)
    pulled_mean = {k: sum(m[k] for m in pulled_posts) / n_pulled for k in KEYS} if pulled_posts else None

    def per_post(followers: float, is_pulled: bool) -> dict[str, float]:
        if is_pulled and pulled_mean is not None:
            return dict(pulled_mean)
        return {k: max(0.0, a + b * followers) for k, (a, b) in fits.items()}

    n = len(follower_counts)
    expected = {k: sum(per_post(f, u in pulled)[k] for u, f in enumerate(follower_counts)) / n for k in KEYS}
    per_read = {
        "wru": float(read.get("wru_total", 0.0)), "rru": float(read.get("rru_total", 0.0)),
        "lambda_requests": 1.0, "gb_s": read_duration_s * gb["ApiFunction"],
        "redis_commands": float(read.get("redis_command_count", 0.0)), "apigw_requests": 1.0,
        "aws_calls": float(read.get("aws_call_count", 0.0)),
    }  # fmt: skip
    redis_month = p.elasticache_node_hour * p.elasticache_nodes * HOURS_PER_MONTH
    commands_per_s = p.assumed_posts_per_s * expected["redis_commands"]
    commands_per_s += p.assumed_reads_per_s * per_read["redis_commands"]
    redis_per_command = redis_month / (commands_per_s * HOURS_PER_MONTH * 3600) if commands_per_s else 0.0
    post_dollars = _dollars(expected, p, redis_per_command)
    read_dollars = _dollars(per_read, p, redis_per_command)
    by_followers = {
        str(f): sum(_dollars(per_post(f, False), p, redis_per_command).values()) * 1e6 for f in EXAMPLES
    }
    return {
        "pricing": asdict(p), "redis_month_usd": redis_month, "redis_commands_per_s_assumed": commands_per_s,
        "per_post_quantities": expected, "per_read_quantities": per_read,
        "per_million_posts": {k: v * 1e6 for k, v in post_dollars.items()},
        "per_million_posts_total": sum(post_dollars.values()) * 1e6,
        "per_million_reads": {k: v * 1e6 for k, v in read_dollars.items()},
        "per_million_reads_total": sum(read_dollars.values()) * 1e6,
        "fits": {k: {"a": a, "b_per_follower": b} for k, (a, b) in fits.items()}, "pulled_post": pulled_mean,
        "probed_posts": len(measured), "probed_pushed": len(pushed), "probed_pulled": len(pulled_posts),
        "per_million_posts_by_followers": by_followers, "batching": dict(batching),
        "away": away_and_ttl(fits, p, redis_per_command, follower_counts, threshold),
    }  # fmt: skip


def away_and_ttl(
    fits: Mapping[str, tuple[float, float]], p: Pricing, redis_per_command: float, followers: Sequence[int],
    threshold: int,
) -> dict[str, float]:  # fmt: skip
    """What skipping readers who are away saves per million posts (every per-follower cost but
    the activity read, for AWAY_SHARE of a pushed audience), and the feed table's size after a
    year at the assumed posts/s without the items' TTL, and for ever with it."""
    pushed = [f for f in followers if f < threshold]
    mean = sum(pushed) / len(pushed) if pushed else 0.0
    slopes = {k: (b if k != "rru" else 0.0) for k, (_, b) in fits.items()}
    saved = AWAY_SHARE * mean * sum(_dollars(slopes, p, redis_per_command).values()) * 1e6
    gb_per_day = p.assumed_posts_per_s * 86400 * mean * (1 - AWAY_SHARE) * FEED_ITEM_BYTES / 1e9
    out = {"share": AWAY_SHARE, "mean_followers": mean, "saved_per_million_posts": saved}
    out["ttl_days"] = TTL_DAYS
    for label, days in (("without_ttl", 365), ("with_ttl", TTL_DAYS)):
        out[f"gb_{label}"] = gb_per_day * days
        out[f"usd_month_{label}"] = gb_per_day * days * p.dynamodb_storage_per_gb_month
    return out


def front_doors(cost: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{"REST" | "HTTP": {"price", "posts", "reads"}}: dollars per million posts and feed reads with
    each of template.yaml's ApiType in front - the totals, API Gateway re-priced (older results:
    Pricing's HTTP price)."""
    prices, kinds = {**asdict(Pricing()), **cost["pricing"]}, ("post", "read")
    other = {k: cost[f"per_million_{k}s_total"] - cost[f"per_million_{k}s"]["API Gateway"] for k in kinds}
    requests = {k: cost[f"per_{k}_quantities"]["apigw_requests"] for k in kinds}
    doors = {door: prices[f"apigw_{door.lower()}_per_million_requests"] for door in ("REST", "HTTP")}
    return {d: {"price": p, **{f"{k}s": other[k] + requests[k] * p for k in kinds}} for d, p in doors.items()}
