"""``python -m bench run [...]``: start a local stack, drive it, write bench/report.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.config import REPO_ROOT, BenchConfig


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


# flag: (BenchConfig field, parser, help); the help shows the field's default.
OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--users": ("users", int, "users in the social graph"),
    "--posts": ("posts", int, "posts in the fan-out burst, figure 3"),
    "--reads": ("reads", int, "cap on feed reads per HTTP read level, figure 4"),
    "--duration": ("duration_s", float, "seconds per sustained post rate"),
    "--seed": ("seed", int, "graph, schedule and sampling seed"),
    "--out": ("out_dir", Path, "where report.md and the plots go"),
    "--rates": ("rates", _floats, "sustained post rates (posts/s), comma-separated"),
    "--mean-following": ("mean_following", float, "mean follows per user"),
    "--zipf-s": ("zipf_s", float, "popularity exponent"),
    "--high-follower-threshold": ("high_follower_threshold", int, "the stack's HighFollowerThreshold"),
    "--fanout-page-size": ("fanout_page_size", int, "the stack's FanoutPageSize (None: threshold/3)"),
    "--watchers": ("watchers", int, "sampled followers polling their feed"),
    "--poll-interval": ("poll_interval_s", float, "seconds between a watcher's polls"),
    "--write-concurrency": ("write_concurrency", _ints, "closed-loop writers, comma-separated"),
    "--read-concurrency": ("read_concurrency", _ints, "closed-loop readers, comma-separated"),
}


def parser() -> argparse.ArgumentParser:
    from ripple_local.emulators import EMULATORS

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    run = p.add_subparsers(dest="command", required=True).add_parser("run", help="run the benchmark")
    run.add_argument("--smoke", action="store_true", help="a tiny run that produces every figure")
    defaults = BenchConfig()
    for flag, (name, parse, text) in OPTIONS.items():
        run.add_argument(flag, dest=name, type=parse, help=f"{text} (default {getattr(defaults, name)})")
    run.add_argument("--emulator", choices=EMULATORS, help="what serves DynamoDB and its streams")
    run.add_argument("--no-profile", action="store_true", help="skip the py-spy / pyinstrument windows")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run, then print the report's path (the only line on stdout)."""
    args = parser().parse_args(argv)
    from bench.report import render
    from bench.runner import execute

    skip = ("command", "smoke", "no_profile")
    overrides = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    if args.smoke:
        out = overrides.pop("out_dir", REPO_ROOT / "bench")
        config = BenchConfig.smoke_preset(out, seed=overrides.pop("seed", 7)).with_overrides(**overrides)
    else:
        config = BenchConfig().with_overrides(**overrides)
    if args.no_profile:
        config = config.with_overrides(profile=False)
    print(execute(config, render))
    return 0


if __name__ == "__main__":  # client processes are spawned: they re-import this module
    sys.exit(main())
