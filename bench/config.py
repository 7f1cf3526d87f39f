"""The benchmark's parameters: one frozen object, with a full and a smoke preset."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# Where the ripple layer and the local stack live (not installed as packages in every venv):
# importable from every bench module, and from the processes it starts (python_path_env).
SOURCE_PATHS = (REPO_ROOT / "layers" / "ripple", REPO_ROOT / "infra" / "local")
sys.path[:0] = [str(p) for p in (*SOURCE_PATHS, REPO_ROOT) if str(p) not in sys.path]
PASSWORD = "bench password 1"


@dataclass(frozen=True)
class BenchConfig:
    """Everything one run depends on; printed in the report so a run can be repeated."""

    users: int = 500
    mean_following: float = 8.0  # mean out-degree of the follow graph
    max_following: int = 40  # per user; below the 60 writes/min per-user limit
    zipf_s: float = 1.0  # popularity ~ 1 / rank**s, so followers follow a power law
    seed: int = 7
    # Sustained post rates (posts/s) for the convergence window, lowest first; the run
    # stops escalating after the first rate at which the pipeline degrades.
    rates: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 30.0)
    duration_s: float = 30.0  # length of each sustained step / closed-loop level
    posts: int = 300  # posts in the fan-out burst (figure 3)
    reads: int = 4000  # cap on feed reads per HTTP read level (figure 4)
    # None: chosen from the generated graph so that ``pulled_accounts`` accounts are above it.
    high_follower_threshold: int | None = None
    pulled_accounts: int = 3
    fanout_page_size: int | None = None  # None: threshold // 3
    pulled_share: float = 0.05  # share of posts by high-follower (pulled) authors
    watchers: int = 16  # sampled followers that poll GET /feed
    samples_per_post: int = 2  # watchers checked per post (those who follow its author)
    poll_interval_s: float = 0.1
    # GET /feed per second, all watchers together: the measurement's own load stays small.
    max_poll_rate: float = 25.0
    feed_limit: int = 20
    settle_timeout_s: float = 45.0
    closed_loop_s: float = 10.0  # length of each closed-loop write / read level
    write_concurrency: tuple[int, ...] = (1, 4, 16)
    read_concurrency: tuple[int, ...] = (1, 8)
    read_users: int = 120
    client_processes: int = 2
    coldstart_runs: int = 5
    probe_seconds: float = 8.0
    cost_posts: int = 40
    ceiling_seconds: float = 4.0
    idle_quiet_s: float = 1.5  # the pipeline is idle once no runner delivered a record this long
    # Cold-start imports from a Lambda-like image of the deployed requirements (both with and
    # without bytecode); False measures this virtualenv as it is (fast, for the smoke run).
    coldstart_images: bool = True
    # Table sizes of the emulator figure: a Query and a post transaction at each.
    scaling_sizes: tuple[int, ...] = (1000, 10000)
    # Also measure the emulator references on stock moto (on DynamoDB Local if the run is moto's).
    compare_emulators: bool = True
    accounted_reads: int = 300
    profile: bool = True
    emulator: str = "dynamodb-local"  # ripple_local.emulators: dynamodb-local, moto, localstack
    smoke: bool = False
    out_dir: Path = field(default=REPO_ROOT / "bench")

    @classmethod
    def smoke_preset(cls, out_dir: Path, seed: int = 7) -> BenchConfig:
        """A tiny run (seconds) that still produces every figure."""
        return cls(
            users=24,
            mean_following=4.0,
            max_following=10,
            seed=seed,
            rates=(4.0,),
            duration_s=3.0,
            closed_loop_s=1.5,
            posts=16,
            reads=300,
            pulled_accounts=1,
            watchers=8,
            samples_per_post=2,
            settle_timeout_s=20.0,
            write_concurrency=(4,),
            read_concurrency=(4,),
            read_users=12,
            client_processes=1,
            coldstart_runs=2,
            probe_seconds=0.75,
            cost_posts=4,
            ceiling_seconds=0.5,
            scaling_sizes=(100, 1000),
            idle_quiet_s=0.75,
            coldstart_images=False,
            compare_emulators=False,
            accounted_reads=20,
            profile=False,
            smoke=True,
            out_dir=out_dir,
        )

    def with_overrides(self, **changes: Any) -> BenchConfig:
        """A copy with the non-None ``changes`` applied."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly parameters."""
        return {**asdict(self), "out_dir": str(self.out_dir)}
