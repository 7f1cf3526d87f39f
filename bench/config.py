"""The benchmark's parameters (one frozen object, a full and a smoke preset) and its statistics."""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# The ripple layer and the local stack: importable from every bench module and the processes it starts.
SOURCE_PATHS = (REPO_ROOT / "layers" / "ripple", REPO_ROOT / "infra" / "local")
sys.path[:0] = [str(p) for p in (*SOURCE_PATHS, REPO_ROOT) if str(p) not in sys.path]


@dataclass(frozen=True)
class BenchConfig:
    """Everything one run depends on; printed in the report so a run can be repeated."""

    users: int = 500
    mean_following: float = 8.0  # mean out-degree of the follow graph
    max_following: int = 40  # per user; below the 60 writes/min per-user limit
    zipf_s: float = 1.0  # popularity ~ 1 / rank**s, so followers follow a power law
    seed: int = 7
    # Sustained post rates (posts/s), lowest first; escalation stops at the first that degrades.
    rates: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0)
    duration_s: float = 30.0  # length of each sustained step
    posts: int = 300  # posts in the fan-out burst (figure 3)
    reads: int = 4000  # cap on feed reads per HTTP read level (figure 4)
    high_follower_threshold: int | None = None  # None: ``pulled_accounts`` accounts above it
    pulled_accounts: int = 3
    fanout_page_size: int | None = None  # None: threshold // 3
    pulled_share: float = 0.05  # share of posts by high-follower (pulled) authors
    watchers: int = 16  # sampled followers that poll GET /feed
    samples_per_post: int = 2  # watchers checked per post (those who follow its author)
    poll_interval_s: float = 0.1
    max_poll_rate: float = 25.0  # GET /feed per second, all watchers together
    feed_limit: int = 20
    settle_timeout_s: float = 45.0
    closed_loop_s: float = 10.0  # length of each closed-loop write / read level
    write_concurrency: tuple[int, ...] = (1, 4, 16)
    read_concurrency: tuple[int, ...] = (1, 8)
    read_users: int = 120
    client_processes: int = 2
    coldstart_runs: int = 5
    probe_seconds: float = 8.0  # handler reads in process, and as long again for their bare Redis calls
    probe_windows: int = 8  # ... alternating in this many pairs of windows (drift reaches both alike)
    cost_posts: int = 40
    ceiling_seconds: float = 4.0
    idle_quiet_s: float = 1.5  # the pipeline is idle once no runner delivered a record this long
    # Cold-start imports from Lambda-like images of the deployed requirements (with and without
    # bytecode); False measures this virtualenv as it is (fast, for the smoke run).
    coldstart_images: bool = True
    scaling_sizes: tuple[int, ...] = (1000, 10000)  # table sizes of the emulator figure
    compare_emulators: bool = True  # also measure the references on stock moto (or DynamoDB Local)
    accounted_reads: int = 300
    profile: bool = True
    emulator: str = "dynamodb-local"  # ripple_local.emulators: dynamodb-local, moto, localstack
    smoke: bool = False
    out_dir: Path = REPO_ROOT / "bench"

    @classmethod
    def smoke_preset(cls) -> BenchConfig:
        """A tiny run (under a minute) that still produces every figure."""
        return cls(
            users=24, mean_following=4.0, max_following=10, rates=(4.0,), duration_s=3.0, closed_loop_s=1.5,
            posts=16, reads=300, pulled_accounts=1, watchers=8, settle_timeout_s=20.0, write_concurrency=(4,),
            read_concurrency=(4,), read_users=12, client_processes=1, coldstart_runs=2, probe_seconds=0.75,
            probe_windows=2, cost_posts=4, ceiling_seconds=0.5, idle_quiet_s=0.75, scaling_sizes=(100, 1000),
            coldstart_images=False, compare_emulators=False, accounted_reads=20, profile=False, smoke=True,
        )  # fmt: skip


def summary(values: Iterable[float], percentiles: Sequence[int] = (50, 90, 95, 99)) -> dict[str, Any]:
    """Count, min, percentiles (``statistics.quantiles``, inclusive: numpy's default), max and mean
    (NaN when empty)."""
    data = [float(v) for v in values]
    cuts = (
        statistics.quantiles(data, n=100, method="inclusive") if len(data) > 1 else (data or [math.nan]) * 99
    )
    return {
        "n": len(data),
        "min": min(data, default=math.nan),
        **{f"p{q}": cuts[q - 1] for q in percentiles},
        "max": max(data, default=math.nan),
        "mean": statistics.fmean(data) if data else math.nan,
    }


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is zero or either is NaN."""
    return numerator / denominator if denominator else math.nan
