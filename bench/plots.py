"""PNG plots for the report (matplotlib, when the bench extra is installed); each returns its file name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _figure(path: Path, title: str, size: tuple[float, float], draw: Callable[[Any], None]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    draw(ax)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def convergence_cdf(steps: list[dict[str, Any]], path: Path, subtitle: str) -> str:
    """Latency CDF of convergence per post rate (pushed posts), pulled posts dashed."""

    def draw(ax: Any) -> None:
        for step in (s for s in steps if s["pushed_lags"]):
            lags = [x * 1000 for x in step["pushed_lags"]]
            ax.ecdf(lags, label=f"{step['rate']:g} posts/s offered (n={len(lags)})")
        if pulled := [x * 1000 for s in steps for x in s["pulled_lags"]]:
            label = f"pulled authors, all rates (n={len(pulled)})"
            ax.ecdf(pulled, linestyle="--", color="grey", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("POST /posts 201 -> visible in the follower's GET /feed (ms, log)")
        ax.set_ylabel("fraction of (post, follower) pairs")
        ax.set_ylim(0, 1.01)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)

    return _figure(path, f"Convergence window by sustained post rate\n{subtitle}", (8, 5), draw)


def throughput_vs_offered(
    steps: list[dict[str, Any]], closed: list[dict[str, Any]], path: Path, subtitle: str
) -> str:
    """Achieved vs offered posts/s (open loop), with POST p50/p99 on the right axis."""

    def draw(ax: Any) -> None:
        offered = [s["offered_posts_per_s"] for s in steps]
        achieved = [s["achieved_posts_per_s"] for s in steps]
        top = max(offered + achieved + [c["posts_per_s"] for c in closed] + [1.0]) * 1.15
        ax.plot([0, top], [0, top], color="lightgrey", linestyle=":", label="achieved = offered")
        ax.plot(offered, achieved, marker="o", label="achieved posts/s (open loop, Poisson arrivals)")
        for level in closed:
            ax.axhline(level["posts_per_s"], color="tab:green", alpha=0.4, linestyle="--")
            text = f"closed loop c={level['concurrency']}: {level['posts_per_s']:.0f}/s"
            ax.annotate(text, (top * 0.02, level["posts_per_s"]), fontsize=7, va="bottom", color="tab:green")
        ax.set_xlabel("offered posts/s")
        ax.set_ylabel("achieved posts/s (201s)")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        right = ax.twinx()
        for q, marker, color in (("p99", "s", "tab:red"), ("p50", ".", "tab:orange")):
            latency = [s["post_latency"][q] * 1000 for s in steps]
            right.plot(offered, latency, marker=marker, color=color, label=f"POST {q} (ms)")
        right.set_ylabel("POST /posts latency (ms)")
        (lines, labels), (rlines, rlabels) = ax.get_legend_handles_labels(), right.get_legend_handles_labels()
        ax.legend(lines + rlines, labels + rlabels, loc="center right", fontsize=8)
        ax.grid(True, alpha=0.3)

    return _figure(path, f"Write path: throughput vs offered load\n{subtitle}", (8, 5), draw)


def fanout_timeline(burst: dict[str, Any], ceiling_items_per_s: float, path: Path, subtitle: str) -> str:
    """Feed items written by fan-out over time during the burst, against the ceiling's slope."""

    def draw(ax: Any) -> None:
        xs, ys = [t for t, _ in burst["timeline"]], [v for _, v in burst["timeline"]]
        ax.plot(xs, ys, label=f"fan-out: {burst['items_per_s']:.0f} items/s over {burst['span_s']:.1f} s")
        if xs:
            label = f"bare BatchWriteItem ceiling: {ceiling_items_per_s:.0f} items/s"
            end = max(xs)
            ax.plot([0, end], [0, ceiling_items_per_s * end], linestyle="--", color="grey", label=label)
            ax.set_ylim(0, max([*ys, 1]) * 1.3)
        ax.set_xlabel("seconds since the first burst post")
        ax.set_ylabel("feed items written (FanoutItemsWritten)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")

    return _figure(path, f"Fan-out throughput vs the emulator's own ceiling\n{subtitle}", (8, 4.5), draw)


def followers_ccdf(counts: list[int], threshold: int, path: Path, subtitle: str) -> str:
    """Follower-count CCDF on log-log axes (a straight line is a power law)."""

    def draw(ax: Any) -> None:
        xs = sorted({c for c in counts if c > 0})
        ys = [sum(1 for c in counts if c >= x) / len(counts) for x in xs]
        ax.loglog(xs, ys, marker=".", linestyle="none")
        ax.axvline(threshold, color="tab:red", linestyle="--", label=f"high-follower threshold ({threshold})")
        ax.set_xlabel("followers k")
        ax.set_ylabel("P(followers >= k)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)

    return _figure(path, f"Follower distribution of the generated graph\n{subtitle}", (6.5, 4.5), draw)
