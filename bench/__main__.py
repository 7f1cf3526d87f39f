"""``python -m bench run [...]``: start a local stack, drive it, write bench/report.md."""

import argparse
import shlex
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.config import BenchConfig


def _numbers(kind: type) -> Callable[[str], tuple]:
    return lambda text: tuple(kind(x) for x in text.split(",") if x.strip())


# flag: (BenchConfig field, parser, help); the help shows the field's default.
OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--users": ("users", int, "users in the social graph"),
    "--posts": ("posts", int, "posts in the fan-out burst, figure 3"),
    "--reads": ("reads", int, "cap on feed reads per HTTP read level, figure 4"),
    "--duration": ("duration_s", float, "seconds per sustained post rate"),
    "--seed": ("seed", int, "graph, schedule and sampling seed"),
    "--out": ("out_dir", Path, "where report.md and the plots go"),
    "--rates": ("rates", _numbers(float), "sustained post rates (posts/s), comma-separated"),
    "--mean-following": ("mean_following", float, "mean follows per user"),
    "--zipf-s": ("zipf_s", float, "popularity exponent"),
    "--high-follower-threshold": ("high_follower_threshold", int, "the stack's HighFollowerThreshold"),
    "--fanout-page-size": ("fanout_page_size", int, "the stack's FanoutPageSize (None: threshold/3)"),
    "--watchers": ("watchers", int, "sampled followers polling their feed"),
    "--poll-interval": ("poll_interval_s", float, "seconds between a watcher's polls"),
    "--write-concurrency": ("write_concurrency", _numbers(int), "closed-loop writers, comma-separated"),
    "--read-concurrency": ("read_concurrency", _numbers(int), "closed-loop readers, comma-separated"),
}


def main(argv: list[str] | None = None) -> int:
    """Run, then print the report's path (the only line on stdout)."""
    from ripple_local.emulators import EMULATORS

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    run = parser.add_subparsers(dest="command", required=True).add_parser("run", help="run the benchmark")
    run.add_argument("--smoke", action="store_true", help="a tiny run that produces every figure")
    for flag, (name, parse, text) in OPTIONS.items():
        run.add_argument(flag, dest=name, type=parse, help=f"{text} (default {getattr(BenchConfig, name)})")
    run.add_argument("--emulator", choices=EMULATORS, help="what serves DynamoDB and its streams")
    run.add_argument("--no-profile", action="store_true", help="skip the py-spy / pyinstrument windows")
    args = vars(parser.parse_args(argv))
    preset = BenchConfig.smoke_preset() if args.pop("smoke") else BenchConfig()
    if args.pop("no_profile"):
        args["profile"] = False
    config = replace(preset, **{k: v for k, v in args.items() if k != "command" and v is not None})
    from bench.report import render
    from bench.runner import execute

    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    print(execute(config, render, command))
    return 0


if __name__ == "__main__":  # client processes are spawned: they re-import this module
    sys.exit(main())
