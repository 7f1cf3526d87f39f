"""``python -m bench run [...]``: start a local stack, drive it, write bench/report.md."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench.config import REPO_ROOT, BenchConfig


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def parser() -> argparse.ArgumentParser:
    """The command line."""
    from ripple_local.emulators import EMULATORS

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the benchmark and write the report")
    d = BenchConfig()
    run.add_argument("--smoke", action="store_true", help="a tiny run (seconds) that produces every figure")
    run.add_argument("--users", type=int, help=f"users in the social graph (default {d.users})")
    run.add_argument("--posts", type=int, help=f"posts in the fan-out burst, figure 3 (default {d.posts})")
    run.add_argument(
        "--reads", type=int, help=f"cap on feed reads per HTTP read level, figure 4 (default {d.reads})"
    )
    run.add_argument(
        "--duration",
        type=float,
        dest="duration_s",
        help=f"seconds per sustained post rate; closed-loop levels run half of it (default {d.duration_s:g})",
    )
    run.add_argument("--seed", type=int, help=f"graph, schedule and sampling seed (default {d.seed})")
    run.add_argument(
        "--out", type=Path, dest="out_dir", help="where report.md and the plots go (default bench/)"
    )
    run.add_argument("--rates", type=_floats, help="sustained post rates, e.g. 2,5,10,20,30 (posts/s)")
    run.add_argument(
        "--mean-following",
        type=float,
        dest="mean_following",
        help=f"mean follows per user (default {d.mean_following:g})",
    )
    run.add_argument(
        "--zipf-s", type=float, dest="zipf_s", help=f"popularity exponent (default {d.zipf_s:g})"
    )
    run.add_argument(
        "--high-follower-threshold",
        type=int,
        dest="high_follower_threshold",
        help=f"the stack's HighFollowerThreshold (default: {d.pulled_accounts} accounts above it)",
    )
    run.add_argument(
        "--fanout-page-size",
        type=int,
        dest="fanout_page_size",
        help="the stack's FanoutPageSize (default threshold/3)",
    )
    run.add_argument(
        "--watchers", type=int, help=f"sampled followers polling their feed (default {d.watchers})"
    )
    run.add_argument(
        "--poll-interval", type=float, dest="poll_interval_s", help="seconds between a watcher's polls"
    )
    run.add_argument(
        "--write-concurrency", type=_ints, dest="write_concurrency", help="closed-loop writers, e.g. 1,4,16"
    )
    run.add_argument(
        "--read-concurrency", type=_ints, dest="read_concurrency", help="closed-loop readers, e.g. 1,8"
    )
    run.add_argument(
        "--emulator",
        choices=EMULATORS,
        help="what serves DynamoDB and its streams: DynamoDB Local (default; SQS and Secrets Manager on "
        "moto), moto, or LocalStack",
    )
    run.add_argument("--no-profile", action="store_true", help="skip the py-spy / pyinstrument windows")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints the report's path."""
    args = parser().parse_args(argv)
    from bench.report import render
    from bench.runner import execute

    overrides = {
        k: v for k, v in vars(args).items() if k not in ("command", "smoke", "no_profile") and v is not None
    }
    out_dir = overrides.pop("out_dir", None)
    if args.smoke:
        config = BenchConfig.smoke_preset(out_dir or REPO_ROOT / "bench", seed=overrides.pop("seed", 7))
        config = config.with_overrides(**overrides)
    else:
        config = BenchConfig().with_overrides(out_dir=out_dir, **overrides)
    if args.no_profile:
        config = config.with_overrides(profile=False)
    report = execute(config, render)
    print(report)
    return 0
