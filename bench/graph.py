"""A seeded social graph whose follower counts follow a power law.

Each user follows ``d`` others, ``d`` drawn from a log-normal (most follow a few, some
many); whom they follow is drawn by popularity ``1 / rank**s`` (Zipf). In-degrees - the
follower counts fan-out cares about - then follow a power law: most users have a handful
of followers and a few accounts have a large share of everyone's.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from bench.stats import percentile


@dataclass(frozen=True)
class SocialGraph:
    """``following[u]`` lists the users ``u`` follows (indexes into the user list)."""

    following: tuple[tuple[int, ...], ...]

    @property
    def users(self) -> int:
        return len(self.following)

    def edges(self) -> list[tuple[int, int]]:
        """(follower, followee) pairs."""
        return [(u, v) for u, targets in enumerate(self.following) for v in targets]

    def followers(self) -> list[list[int]]:
        """``followers()[v]``: who follows ``v``."""
        result: list[list[int]] = [[] for _ in range(self.users)]
        for u, v in self.edges():
            result[v].append(u)
        return result

    def follower_counts(self) -> list[int]:
        return [len(f) for f in self.followers()]

    def describe(self) -> dict[str, Any]:
        """Distribution facts for the report."""
        counts = sorted(self.follower_counts())
        out = [len(t) for t in self.following]
        n = len(counts)
        top = sorted(counts, reverse=True)
        top_share = sum(top[: max(1, n // 100)]) / max(1, sum(counts))
        return {
            "users": n,
            "edges": sum(counts),
            "followers_min": counts[0],
            "followers_p50": percentile(counts, 50),
            "followers_mean": sum(counts) / n,
            "followers_p90": percentile(counts, 90),
            "followers_p99": percentile(counts, 99),
            "followers_max": counts[-1],
            "followers_top5": top[:5],
            "share_under_10_followers": sum(1 for c in counts if c < 10) / n,
            "top1pct_share_of_follows": top_share,
            "following_mean": sum(out) / n,
            "following_max": max(out),
            "powerlaw_alpha": powerlaw_alpha(counts),
        }


def powerlaw_alpha(counts: list[int], xmin: int = 5) -> float:
    """Maximum-likelihood exponent of the tail ``P(k) ~ k**-alpha`` for ``k >= xmin``
    (the discrete approximation of Clauset, Shalizi and Newman)."""
    tail = [c for c in counts if c >= xmin]
    if len(tail) < 5:
        return math.nan
    return 1.0 + len(tail) / sum(math.log(c / (xmin - 0.5)) for c in tail)


def generate(users: int, mean_following: float, max_following: int, zipf_s: float, seed: int) -> SocialGraph:
    """A reproducible graph: the same arguments give the same edges."""
    if users < 3:
        raise ValueError("need at least 3 users")
    rng = random.Random(seed)
    cap = max(1, min(max_following, users // 2))
    sigma = 0.8
    mu = math.log(max(1.0, mean_following)) - sigma * sigma / 2  # log-normal with that mean
    # Popularity ranks are a seeded permutation, so user 0 is not always the star.
    ranks = list(range(users))
    rng.shuffle(ranks)
    weights = [1.0 / (ranks[v] + 1) ** zipf_s for v in range(users)]
    following: list[tuple[int, ...]] = []
    for u in range(users):
        degree = max(1, min(cap, round(rng.lognormvariate(mu, sigma))))
        chosen: set[int] = set()
        while len(chosen) < degree:
            (v,) = rng.choices(range(users), weights=weights)
            if v != u:
                chosen.add(v)
        following.append(tuple(sorted(chosen)))
    return SocialGraph(tuple(following))


def pick_threshold(graph: SocialGraph, pulled_accounts: int) -> int:
    """The smallest threshold that puts exactly the ``pulled_accounts`` most-followed
    accounts at or above it (ties may add one more)."""
    counts = sorted(graph.follower_counts(), reverse=True)
    k = max(1, min(pulled_accounts, len(counts) - 1))
    return max(2, counts[k] + 1 if counts[k] < counts[k - 1] else counts[k - 1])
