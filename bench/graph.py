"""A seeded social graph whose follower counts follow a power law.

Each user follows ``d`` others, ``d`` drawn from a log-normal (most follow a few, some many);
whom they follow is drawn by popularity ``1 / rank**s`` (Zipf). In-degrees - the follower
counts fan-out cares about - then follow a power law: most users have a handful of followers
and a few accounts have a large share of everyone's.
"""

from __future__ import annotations

import math
import random
from typing import Any

from bench.config import summary


def generate(
    users: int, mean_following: float, max_following: int, zipf_s: float, seed: int
) -> list[list[int]]:
    """``following[u]``: whom user ``u`` follows, sorted; the same arguments give the same edges."""
    if users < 3:
        raise ValueError("need at least 3 users")
    rng = random.Random(seed)
    cap = max(1, min(max_following, users // 2))
    sigma = 0.8
    mu = math.log(max(1.0, mean_following)) - sigma * sigma / 2  # log-normal with that mean
    ranks = list(range(users))  # popularity ranks are a seeded permutation: user 0 is not the star
    rng.shuffle(ranks)
    weights = [1.0 / (ranks[v] + 1) ** zipf_s for v in range(users)]
    following = []
    for u in range(users):
        degree = max(1, min(cap, round(rng.lognormvariate(mu, sigma))))
        chosen: set[int] = set()
        while len(chosen) < degree:
            (v,) = rng.choices(range(users), weights=weights)
            if v != u:
                chosen.add(v)
        following.append(sorted(chosen))
    return following


def followers_of(following: list[list[int]]) -> list[list[int]]:
    """``followers[v]``: who follows ``v``."""
    result: list[list[int]] = [[] for _ in following]
    for u, targets in enumerate(following):
        for v in targets:
            result[v].append(u)
    return result


def describe(following: list[list[int]]) -> dict[str, Any]:
    """Distribution facts for the report."""
    counts = sorted(len(f) for f in followers_of(following))
    top, n, out = counts[::-1], len(counts), [len(t) for t in following]
    s = summary(counts)
    # The tail's exponent, P(k) ~ k**-alpha for k >= 5: the discrete maximum-likelihood
    # approximation of Clauset, Shalizi and Newman (xmin - 0.5 = 4.5).
    tail = [c for c in counts if c >= 5]
    alpha = 1.0 + len(tail) / sum(math.log(c / 4.5) for c in tail) if len(tail) >= 5 else math.nan
    return {
        "users": n, "edges": sum(counts), "followers_min": counts[0], "followers_p50": s["p50"],
        "followers_mean": sum(counts) / n, "followers_p90": s["p90"], "followers_p99": s["p99"],
        "followers_max": counts[-1], "followers_top5": top[:5],
        "share_under_10_followers": sum(1 for c in counts if c < 10) / n,
        "top1pct_share_of_follows": sum(top[: max(1, n // 100)]) / max(1, sum(counts)),
        "following_mean": sum(out) / n, "following_max": max(out), "powerlaw_alpha": alpha,
    }  # fmt: skip


def pick_threshold(counts: list[int], pulled_accounts: int) -> int:
    """The smallest threshold that puts exactly the ``pulled_accounts`` most-followed accounts at
    or above it (ties may add one more)."""
    ranked = sorted(counts, reverse=True)
    k = max(1, min(pulled_accounts, len(ranked) - 1))
    return max(2, ranked[k] + 1 if ranked[k] < ranked[k - 1] else ranked[k - 1])
