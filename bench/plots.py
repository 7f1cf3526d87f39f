"""PNG plots for the report (matplotlib, when the bench extra is installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import cdf


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def convergence_cdf(steps: list[dict[str, Any]], path: Path, subtitle: str) -> Path:
    """Latency CDF of convergence per post rate (pushed posts), pulled posts dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for step in steps:
        lags = step["pushed_lags"]
        if lags:
            xs, ys = cdf([x * 1000 for x in lags])
            ax.step(xs, ys, where="post", label=f"{step['rate']:g} posts/s offered (n={len(lags)})")
    pulled = [x * 1000 for s in steps for x in s["pulled_lags"]]
    if pulled:
        xs, ys = cdf(pulled)
        ax.step(
            xs,
            ys,
            where="post",
            linestyle="--",
            color="grey",
            label=f"pulled authors, all rates (n={len(pulled)})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("POST /posts 201 -> visible in the follower's GET /feed (ms, log)")
    ax.set_ylabel("fraction of (post, follower) pairs")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Convergence window by sustained post rate\n{subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def throughput_vs_offered(
    steps: list[dict[str, Any]], closed: list[dict[str, Any]], path: Path, subtitle: str
) -> Path:
    """Achieved vs offered posts/s (open loop), with POST p99 on the right axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    offered = [s["offered_posts_per_s"] for s in steps]
    achieved = [s["achieved_posts_per_s"] for s in steps]
    top = max(offered + achieved + [c["posts_per_s"] for c in closed] + [1.0]) * 1.15
    ax.plot([0, top], [0, top], color="lightgrey", linestyle=":", label="achieved = offered")
    ax.plot(offered, achieved, marker="o", label="achieved posts/s (open loop, Poisson arrivals)")
    for level in closed:
        ax.axhline(level["posts_per_s"], color="tab:green", alpha=0.4, linestyle="--")
        ax.annotate(
            f"closed loop c={level['concurrency']}: {level['posts_per_s']:.0f}/s",
            (top * 0.02, level["posts_per_s"]),
            fontsize=7,
            va="bottom",
            color="tab:green",
        )
    ax.set_xlabel("offered posts/s")
    ax.set_ylabel("achieved posts/s (201s)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    right = ax.twinx()
    right.plot(
        offered,
        [s["post_latency"]["p99"] * 1000 for s in steps],
        marker="s",
        color="tab:red",
        label="POST p99 (ms)",
    )
    right.plot(
        offered,
        [s["post_latency"]["p50"] * 1000 for s in steps],
        marker=".",
        color="tab:orange",
        label="POST p50 (ms)",
    )
    right.set_ylabel("POST /posts latency (ms)")
    lines = ax.get_legend_handles_labels()
    rlines = right.get_legend_handles_labels()
    ax.legend(lines[0] + rlines[0], lines[1] + rlines[1], loc="center right", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"Write path: throughput vs offered load\n{subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fanout_timeline(burst: dict[str, Any], ceiling_items_per_s: float, path: Path, subtitle: str) -> Path:
    """Feed items written by fan-out over time during the burst, against the ceiling's slope."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = [t for t, _ in burst["timeline"]]
    ys = [v for _, v in burst["timeline"]]
    ax.plot(xs, ys, label=f"fan-out: {burst['items_per_s']:.0f} items/s over {burst['span_s']:.1f} s")
    if xs:
        end = max(xs)
        ax.plot(
            [0, end], [0, ceiling_items_per_s * end], linestyle="--", color="grey",
            label=f"bare BatchWriteItem ceiling: {ceiling_items_per_s:.0f} items/s",
        )  # fmt: skip
        ax.set_ylim(0, max([*ys, 1]) * 1.3)
    ax.set_xlabel("seconds since the first burst post")
    ax.set_ylabel("feed items written (FanoutItemsWritten)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"Fan-out throughput vs the emulator's own ceiling\n{subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def followers_ccdf(counts: list[int], threshold: int, path: Path, subtitle: str) -> Path:
    """Follower-count CCDF on log-log axes (a straight line is a power law)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    positive = sorted(c for c in counts if c > 0)
    n = len(counts)
    xs = sorted(set(positive))
    ys = [sum(1 for c in counts if c >= x) / n for x in xs]
    ax.loglog(xs, ys, marker=".", linestyle="none")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"high-follower threshold ({threshold})")
    ax.set_xlabel("followers k")
    ax.set_ylabel("P(followers >= k)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Follower distribution of the generated graph\n{subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
