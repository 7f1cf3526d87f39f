"""bench/report.md from a run's results (and the PNG plots next to it)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import FIGURES, plots
from bench.config import BenchConfig
from bench.stats import fmt, fmt_ms, ratio, summary


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _cpu(cores: Mapping[str, float] | None) -> str:
    if not cores:
        return "-"
    names = {"stack": "stack process", "dynamodb-local": "DynamoDB Local (JVM)", "redis": "redis-server"}
    return ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in cores.items())  # as Run.phase orders them


def _emulator(r: Mapping[str, Any]) -> str:
    """``DynamoDB Local 3.3.0 (SQS, Secrets Manager: moto 5.2.5)``."""
    e = r["emulator"]
    return (
        e["dynamodb"]
        if e["dynamodb"] == e["others"]
        else f"{e['dynamodb']} (SQS, Secrets Manager: {e['others']})"
    )


def _scaling(refs: Mapping[str, Any], call: str) -> tuple[Mapping[str, float], Mapping[str, float], float]:
    """(smallest, largest, p50 ratio largest / smallest) of a call in the emulator figure."""
    sizes = list(refs["scaling"].values())
    small, large = sizes[0][call], sizes[-1][call]
    return small, large, ratio(large["p50"], small["p50"])


def _emulator_profile(prof: Mapping[str, Any]) -> str:
    """The emulator's py-spy shares, or where its time shows when it is not a Python process."""
    if "moto" in prof:
        return f"emulator (moto): {_shares(prof['moto'])}."
    return (
        "the emulator is not sampled (py-spy reads Python stacks; DynamoDB Local is a JVM): the time it "
        'takes to answer is the stack\'s "waiting on the emulator" share, and its CPU the DynamoDB Local '
        "column."
    )


def _within(*ratios: float) -> str:
    """Whether every 10x-the-data ratio is within 20 % of 1 (issue 10's bar)."""
    return "within 20 %" if all(abs(x - 1.0) <= 0.2 for x in ratios) else "NOT within 20 %"


def _tx_rate(r: Mapping[str, Any]) -> float:
    """Bare post transactions/s on the smallest tables of the emulator figure (1 / mean latency)."""
    refs = r.get("emulator_references")
    return 1.0 / _scaling(refs["this"], "transaction")[0]["mean"] if refs else math.nan


def _shares(profile: Mapping[str, Any] | None, top: int = 5) -> str:
    if not profile or not profile.get("shares"):
        return "(not profiled)"
    return ", ".join(f"{name} {share:.0%}" for name, share in list(profile["shares"].items())[:top])


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _lat(s: Mapping[str, float], digits: int = 0) -> str:
    return f"{fmt_ms(s['p50'], digits)} / {fmt_ms(s['p99'], digits)}"


def render(results: dict[str, Any], config: BenchConfig) -> Path:
    """Write report.md (and plots) into ``config.out_dir``; returns the report's path."""
    out = config.out_dir
    lines: list[str] = []
    add = lines.append
    graph = results["graph"]
    results["pulled"]
    params = results["parameters"]
    steps: list[dict[str, Any]] = results.get("convergence", [])
    subtitle = (
        f"{graph['users']} users, {graph['edges']} follows (power law, alpha {graph['powerlaw_alpha']:.2f}), "
        f"threshold {params['HighFollowerThreshold']}, page {params['FanoutPageSize']}, seed {config.seed}"
    )
    pngs: dict[str, str] = {}
    if plots.available():
        if steps:
            pngs["cdf"] = plots.convergence_cdf(steps, out / "convergence_cdf.png", subtitle).name
            pngs["tput"] = plots.throughput_vs_offered(
                steps, results.get("write_path", []), out / "throughput_vs_offered.png", subtitle
            ).name
        if results.get("fanout"):
            pngs["fanout"] = plots.fanout_timeline(
                results["fanout"],
                results["ceiling"]["one_client"]["batch_items_per_s"],
                out / "fanout_timeline.png",
                subtitle,
            ).name
        counts = results.get("follower_counts") or []
        if counts:
            pngs["ccdf"] = plots.followers_ccdf(
                counts, int(params["HighFollowerThreshold"]), out / "followers_ccdf.png", subtitle
            ).name

    command = "python -m bench run --smoke" if config.smoke else _command(config)
    add("# Ripple benchmark report")
    add("")
    add(
        f"Generated {results['started_at']} by `{command}` in {results['total_seconds'] / 60:.1f} min on "
        f"{results['machine']['cpus']} cores (load average {_load(results['machine'])}); Python "
        f"{results['machine']['python']}. Everything ran on this machine against one local stack "
        f"(`python -m ripple_local up` on free ports; DynamoDB and its streams on {_emulator(results)}; "
        "redis-server, the Chalice API and the stream runners), all load to 127.0.0.1. The machine is "
        "shared and noisy: read the ratios, which are measured in the same run, before the absolute numbers."
    )
    code = results.get("code")
    if code:
        modified = code.get("modified") or []
        state = ", clean working tree"
        if modified:
            shown = ", ".join(f"`{m}`" for m in modified[:12]) + ("..." if len(modified) > 12 else "")
            state = f" plus uncommitted changes to {len(modified)} tracked files (work in progress): {shown}"
        add("")
        add(f"Code measured: commit `{code.get('commit')}`{state}.")
    if config.smoke:
        add("")
        add(
            "**Smoke run**: tiny parameters to check that every figure is produced; the numbers mean nothing."
        )
    add("")
    _headline(add, results)
    _parameters(add, results, config, pngs)
    _figure1(add, results, pngs)
    _figure2(add, results, pngs)
    _figure3(add, results, pngs)
    _figure4(add, results)
    _figure5(add, results)
    _figure6(add, results)
    _figure7(add, results)
    _method(add, results, config)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _load(machine: Mapping[str, Any]) -> str:
    start = machine.get("load_avg_at_start") or [math.nan]
    end = machine.get("load_avg_at_end") or [math.nan]
    return f"{float(start[0]):.2f} at start, {float(end[0]):.2f} at end"


def _command(config: BenchConfig) -> str:
    defaults = BenchConfig()
    parts = ["python -m bench run"]
    for flag, value, default in (
        ("--users", config.users, defaults.users),
        ("--posts", config.posts, defaults.posts),
        ("--reads", config.reads, defaults.reads),
        ("--duration", config.duration_s, defaults.duration_s),
        ("--seed", config.seed, defaults.seed),
        ("--emulator", config.emulator, defaults.emulator),
    ):
        if value != default:
            parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    if config.rates != defaults.rates:
        parts.append("--rates " + ",".join(f"{r:g}" for r in config.rates))
    return " ".join(parts)


# ---------------------------------------------------------------------- sections
def _headline(add: Any, r: dict[str, Any]) -> None:
    steps = r.get("convergence", [])
    never = sum(s["never_seen"] for s in steps)
    late = sum(s.get("late", 0) for s in steps)
    pairs = sum(s["pairs"] for s in steps)
    add("## Headline numbers")
    add("")
    rows: list[list[Any]] = []
    ok_steps = [s for s in steps if not s["degraded"]] or steps
    if steps:
        low, high = steps[0], ok_steps[-1]
        measured = (
            f"p50 {fmt_ms(low['pushed']['p50'])}, p99 {fmt_ms(low['pushed']['p99'])} "
            f"at {low['rate']:g} posts/s"
        )
        change = "-"
        if high is not low:
            measured += (
                f"; p50 {fmt_ms(high['pushed']['p50'])}, p99 {fmt_ms(high['pushed']['p99'])} "
                f"at {high['rate']:g} posts/s"
            )
            change = (
                f"p99 x{ratio(high['pushed']['p99'], low['pushed']['p99']):.1f} from {low['rate']:g} "
                f"to {high['rate']:g} posts/s"
            )
        rows.append(["Convergence (post 201 -> follower's feed), pushed posts", measured, change])
        if steps[-1]["degraded"]:
            s = steps[-1]
            rows.append(
                [
                    f"Degrades at {s['rate']:g} posts/s",
                    f"achieved {s['achieved_posts_per_s']:.1f}/s; convergence p99 "
                    f"{fmt_ms(s['pushed']['p99'])}",
                    "; ".join(s["degraded"]),
                ]
            )
        rows.append(
            [
                "Posts never seen by a sampled follower",
                f"**{never}** of {pairs} (post, follower) pairs"
                + (f"; {late} arrived after the settle window (late, not lost)" if late else ""),
                "must be 0",
            ]
        )
    wp = r.get("write_path", [])
    refs = r.get("emulator_references")
    if wp and refs:
        best = max(wp, key=lambda w: w["posts_per_s"])
        rate = _tx_rate(r)
        rows.append(
            [
                "Write path, POST /posts",
                f"{best['posts_per_s']:.1f} posts/s at {best['concurrency']} clients, p50/p99 "
                f"{_lat(best['latency'])}",
                f"{ratio(best['posts_per_s'], rate):.2f} x the bare post transaction ({rate:.0f}/s)",
            ]
        )
    fo = r.get("fanout")
    if fo:
        ceil = r["ceiling"]["one_client"]["batch_items_per_s"]
        rows.append(
            [
                "Fan-out, feed items written",
                f"{fo['items_per_s']:.0f} items/s (burst of {fo['posts']} posts, {fo['items_written']:.0f} "
                "items)",
                f"{fo['ratio_to_ceiling_1_client']:.2f} x bare BatchWriteItem ({ceil:.0f} items/s, 1 client)",
            ]
        )
    reads = r.get("reads_http", [])
    probe = r.get("probe", {})
    if reads and probe:
        best = max(reads, key=lambda x: x["reads_per_s"])
        handler = probe["handler_reads"]["reads_per_s"]
        bare = probe["bare_redis_reads"]["reads_per_s"]
        rows.append(
            [
                "Cached feed read, GET /feed over HTTP",
                f"{best['reads_per_s']:.0f} reads/s at {best['concurrency']} clients, p50/p99 "
                f"{_lat(best['latency'])}",
                f"{ratio(best['reads_per_s'], handler):.2f} x the handler alone",
            ]
        )
        rows.append(
            [
                "Feed read handler in process (one container)",
                f"{handler:.0f} reads/s; bare Redis calls of a read: {bare:.0f}/s",
                f"handler = {ratio(handler, bare):.3f} x bare Redis",
            ]
        )
    imports = r.get("imports", {}).get("functions", {})
    if imports:
        api = imports.get("ApiFunction", {})
        first = next(iter(v for k, v in api.items() if isinstance(v, dict) and "import_p50_s" in v), None)
        compiled = api.get("compiled")
        if first:
            rows.append(
                [
                    "Cold import of the API handler",
                    f"{fmt_ms(first['import_p50_s'])} as built (no .pyc)"
                    + (f", {fmt_ms(compiled['import_p50_s'])} precompiled" if compiled else ""),
                    f"x{ratio(first['import_p50_s'], compiled['import_p50_s']):.1f}" if compiled else "",
                ]
            )
    cost = r.get("cost")
    if cost:
        rows.append(
            [
                "Cost on paper (us-east-1 list prices)",
                f"${cost['per_million_posts_total']:.2f} per million posts; "
                f"${cost['per_million_reads_total']:.2f} "
                "per million feed reads",
                "API Gateway is "
                f"{cost['per_million_reads']['API Gateway'] / cost['per_million_reads_total']:.0%} "
                "of a read",
            ]
        )
    if refs:
        sizes = list(refs["this"]["scaling"])
        (q1, q2, qx), (t1, t2, tx) = (_scaling(refs["this"], c) for c in ("query", "transaction"))
        other = refs.get("other")
        rows.append(
            [
                f"Emulator: {r['emulator']['dynamodb']}, a Query and a post transaction at "
                f"{int(sizes[0]):,} and {int(sizes[-1]):,} items",
                f"Query p50 {fmt_ms(q1['p50'], 1)} -> {fmt_ms(q2['p50'], 1)}, transaction "
                f"{fmt_ms(t1['p50'], 1)} -> {fmt_ms(t2['p50'], 1)}",
                f"x{qx:.2f} / x{tx:.2f}: {_within(qx, tx)}"
                + (
                    f"; {r['emulator_references']['other_emulator']['dynamodb']}: x"
                    + " / x".join(f"{_scaling(other, c)[2]:.1f}" for c in ("query", "transaction"))
                    if other
                    else ""
                ),
            ]
        )
    add("\n".join(_table(["figure", "measured (median / p99)", "ratio in the same run"], rows)))
    add("")


def _parameters(add: Any, r: dict[str, Any], config: BenchConfig, pngs: Mapping[str, str]) -> None:
    g, pulled = r["graph"], r["pulled"]
    add("## Run parameters")
    add("")
    rows = [
        [
            "users / follows",
            f"{g['users']} / {g['edges']} (mean following {g['following_mean']:.1f}, max "
            f"{g['following_max']})",
        ],
        [
            "followers per user",
            f"p50 {g['followers_p50']:.0f}, mean {g['followers_mean']:.1f}, p90 {g['followers_p90']:.0f}, "
            f"p99 {g['followers_p99']:.0f}, max {g['followers_max']}; top 5: {g['followers_top5']}",
        ],
        [
            "power law",
            f"popularity 1/rank^{config.zipf_s:g}; tail exponent alpha = {g['powerlaw_alpha']:.2f} (k >= 5); "
            f"{g['share_under_10_followers']:.0%} of users have < 10 followers; the top 1% hold "
            f"{g['top1pct_share_of_follows']:.0%} of all follows",
        ],
        [
            "high-follower threshold",
            f"{pulled['threshold']} -> {pulled['expected']} pulled accounts (followers "
            f"{pulled['followers']}); "
            f"marked by the stack: {pulled['marked']} ({'matches' if pulled['match'] else 'DOES NOT match'} "
            "the graph)",
        ],
        ["fan-out page size", f"{r['parameters']['FanoutPageSize']} followers per step (threshold / 3)"],
        [
            "sustained post rates",
            ", ".join(f"{x:g}" for x in config.rates)
            + f" posts/s, {config.duration_s:g} s each (Poisson arrivals)",
        ],
        [
            "authors",
            f"uniform over users, {config.pulled_share:.0%} of posts by pulled accounts; <= 50 posts/min per "
            "user (the API allows 60)",
        ],
        [
            "convergence sampling",
            f"{config.watchers} watchers (the users following most accounts); up to "
            f"{config.samples_per_post} "
            f"per post; each polls GET /feed?limit={config.feed_limit} every "
            f"{config.poll_interval_s * 1000:.0f} ms "
            f"while waiting, all together <= {config.max_poll_rate:g}/s",
        ],
        [
            "closed-loop levels",
            f"writes {list(config.write_concurrency)}, reads {list(config.read_concurrency)} clients, "
            f"{config.closed_loop_s:g} s each",
        ],
        ["client processes", f"{config.client_processes} (spawned), threads inside each, keep-alive HTTP"],
        ["seed", str(config.seed)],
        ["emulator", f"`--emulator {config.emulator}`: {_emulator(r)}"],
        [
            "stack parameters",
            "samconfig [local] plus: "
            + ", ".join(f"{k}={v}" for k, v in r["parameters"].items())
            + " (via a bench-owned --root-dir overlay, see Method)",
        ],
    ]
    add("\n".join(_table(["parameter", "value"], rows)))
    if "ccdf" in pngs:
        add("")
        add(f"![follower distribution]({pngs['ccdf']})")
    add("")


def _figure1(add: Any, r: dict[str, Any], pngs: Mapping[str, str]) -> None:
    steps = r.get("convergence", [])
    add(f"## {FIGURES[0]}")
    add("")
    add(
        "Time from `POST /posts` returning 201 to the post being on the first page of a sampled follower's "
        "`GET /feed` (the midpoint of the first poll that shows it). Pushed posts go through the posts "
        "stream, fan-out, the feed table, the feed stream and the cache refresher; pulled posts (authors "
        "above the threshold) are merged in at read time, so they are reported separately."
    )
    add("")
    rows = []
    for s in steps:
        rows.append(
            [
                f"{s['rate']:g} ({s['offered_posts']} sent)",
                f"{s['achieved_posts_per_s']:.1f}",
                s["created"],
                s["pairs"],
                f"{fmt_ms(s['pushed']['p50'])} / {fmt_ms(s['pushed']['p95'])} / "
                f"{fmt_ms(s['pushed']['p99'])} / {fmt_ms(s['pushed']['max'])}",
                f"{fmt_ms(s['pulled']['p50'])} / {fmt_ms(s['pulled']['p99'])} (n={s['pulled']['n']})",
                f"**{s['never_seen']}**",
                _late(s),
                f"{s['poll_rate']:.0f}/s, gap p50 {fmt_ms(s['poll_gap']['p50'])}",
                f"{s['fanout_items'] / s['duration_s']:.0f}",
                _cpu(s.get("cpu_cores")),
                "; ".join(s["degraded"]) or "no",
            ]
        )
    add(
        "\n".join(
            _table(
                [
                    "offered posts/s (Poisson)",
                    "achieved",
                    "posts",
                    "sampled pairs",
                    "pushed p50 / p95 / p99 / max",
                    "pulled p50 / p99",
                    "never seen",
                    "late",
                    "polling",
                    "fan-out items/s",
                    "CPU cores used",
                    "degraded",
                ],
                rows,
            )
        )
    )
    add("")
    never = sum(s["never_seen"] for s in steps)
    pairs = sum(s["pairs"] for s in steps)
    late = sum(s.get("late", 0) for s in steps)
    verdict = (
        " - every sampled post reached every sampled follower"
        if never == 0
        else " - NOT ZERO, see results.json"
    )
    if late:
        verdict += (
            f" ({late} pairs only after the {steps[0]['settle_timeout_s']:g} s settle window that follows "
            "each "
            "step: they were in the feed once the pipeline had drained, so they are late, not lost; the "
            '"late" column gives their lower bound)'
        )
    add(f"**Posts never seen: {never}** of {pairs} sampled (post, follower) pairs{verdict}.")
    if len(steps) > 1:
        base = steps[0]["pushed"]
        add("")
        add(
            "Ratios to the lowest rate (same run): "
            + ", ".join(
                f"{s['rate']:g}/s p50 x{ratio(s['pushed']['p50'], base['p50']):.2f}, "
                f"p99 x{ratio(s['pushed']['p99'], base['p99']):.2f}"
                for s in steps[1:]
            )
            + "."
        )
    if "cdf" in pngs:
        add("")
        add(f"![convergence CDF]({pngs['cdf']})")
    add("")
    add("**What bounds it.** " + _bounds_convergence(r))
    add("")


def _late(step: Mapping[str, Any]) -> str:
    """Pairs seen only after the settle window (present after the drain), with their lower bound."""
    if not step.get("late"):
        return "0"
    return f"{step['late']} (> {step['late_min_lag_s']:.0f} s)"


def _bounds_convergence(r: dict[str, Any]) -> str:
    steps = r.get("convergence", [])
    if not steps:
        return "-"
    low = steps[0]
    text = (
        f"At {low['rate']:g} posts/s the pipeline is idle between posts, so the median "
        f"({fmt_ms(low['pushed']['p50'])}) is latency, not throughput: two stream hops (posts stream -> "
        "fan-out, feed stream -> cache refresher), each waiting for the local runner's next GetRecords (it "
        "sleeps 50 ms, doubling to 250 ms while a stream is idle; Lambda polls a shard about 4 times a "
        "second too), fan-out's own DynamoDB calls, and the watcher's polling "
        f"(poll gap p50 {fmt_ms(low['poll_gap']['p50'])}, GET /feed p50 "
        f"{fmt_ms(low['poll_latency']['p50'])}; "
        "a post is timestamped at the midpoint of the first poll that shows it). "
    )
    threshold = int(r["parameters"]["HighFollowerThreshold"])
    page = int(r["parameters"]["FanoutPageSize"])
    probe_posts = [
        p
        for p in r.get("probe", {}).get("posts", [])
        if p.get("status") == 201 and p["followers"] < min(page, threshold)
    ]
    durations = sorted(p["fanout"]["duration_s"] for p in probe_posts)
    if durations:
        median = durations[len(durations) // 2]
        calls = sorted(p["fanout"]["aws_call_count"] for p in probe_posts)[len(probe_posts) // 2]
        text += (
            "Throughput is bounded by fan-out being sequential: a stream shard is delivered to one "
            "invocation at "
            f"a time, in order, and the fan-out of one post is {calls} DynamoDB calls in a row (author's "
            "own item, "
            "high-follower check, a page of followers, their feed items, the post re-read) - "
            f"{fmt_ms(median)} per post at the median in process here, so one shard fans out at most about "
            f"{1 / median:.0f} posts/s, and less when the emulator is shared with the API and the watchers. "
        )
    worst = steps[-1]
    runner = worst.get("stream", {}).get("FanoutFunction.PostsStream", {})
    if worst["degraded"] and runner.get("invocations"):
        text += (
            f"At {worst['rate']:g} posts/s it fell behind: the posts stream arrived in batches of "
            f"{runner['records'] / runner['invocations']:.0f} records per invocation (a backlog), and the "
            "CPU split "
            f"was {_cpu(worst.get('cpu_cores'))} cores of {r['machine']['cpus']} - the stack (one Python "
            "process: API threads and every stream runner under one GIL) and the emulator share the machine "
            "with the watchers' reads. "
        )
    text += (
        "On AWS the same shape holds per shard (DynamoDB latency replaces the emulator's); "
        "`ParallelizationFactor` on the posts-stream mapping, or writing the feed items of all posts of a "
        "batch together, would raise the ceiling."
    )
    return text


def _figure2(add: Any, r: dict[str, Any], pngs: Mapping[str, str]) -> None:
    add(f"## {FIGURES[1]}")
    add("")
    steps = r.get("convergence", [])
    closed = r.get("write_path", [])
    ceil = r["ceiling"]["one_client"]
    refs = r.get("emulator_references")
    tx_rate = _tx_rate(r)
    add(
        "`POST /posts` over HTTP. Open loop: posts sent on a Poisson schedule whatever the latency of "
        "earlier ones (the convergence steps). Closed loop: N clients posting back to back. The emulator "
        "reference is the bare post transaction of figure 7 (put the post, put its post-id row, ADD to the "
        "author's post_count; one boto3 client) on its smallest tables, in the same run: 1 / its mean "
        "latency."
    )
    add("")
    rows = []
    for s in steps:
        rows.append(
            [
                f"open, {s['rate']:g}/s offered ({s['offered_posts_per_s']:.1f} scheduled)",
                f"{s['achieved_posts_per_s']:.1f}",
                _lat(s["post_latency"]),
                fmt_ms(s["post_latency"]["max"]),
                sum(int(v) for v in s["errors"].values()),
                fmt(ratio(s["achieved_posts_per_s"], tx_rate), 2),
            ]
        )
    for c in closed:
        rows.append(
            [
                f"closed, {c['concurrency']} clients",
                f"{c['posts_per_s']:.1f}",
                _lat(c["latency"]),
                fmt_ms(c["latency"]["max"]),
                c["errors"],
                fmt(ratio(c["posts_per_s"], tx_rate), 2),
            ]
        )
    add("\n".join(_table(["load", "posts/s", "p50 / p99", "max", "errors", "x bare transactions/s"], rows)))
    add("")
    if refs:
        small, large, _ = _scaling(refs["this"], "transaction")
        sizes = list(refs["this"]["scaling"])
        add(
            f"Bare references in the same run ({r['emulator']['dynamodb']}, one boto3 client): the post "
            f"transaction p50/p99 {_lat(small, 1)} on tables of {int(sizes[0]):,} posts, {_lat(large, 1)} on "
            f"{int(sizes[-1]):,} (figure 7, which also has stock moto's); bare PutItem "
            f"{ceil['put_items_per_s']:.0f}/s."
        )
        add("")
    add(
        "A post is one TransactWriteItems (the post, its post-id row, the author's post_count) and one "
        "BatchWriteItem (the author's own feed item), plus Redis (two rate-limit counters, the post body, "
        "the author's cached feed)."
    )
    if "tput" in pngs:
        add("")
        add(f"![throughput vs offered load]({pngs['tput']})")
    add("")
    if closed:
        best = max(closed, key=lambda c: c["posts_per_s"])
        probe_post = next((p for p in r.get("probe", {}).get("posts", []) if p.get("status") == 201), None)
        calls = probe_post["api"]["aws_call_count"] if probe_post else 2
        text = (
            f"**What bounds it.** At {best['concurrency']} clients ({best['posts_per_s']:.1f} posts/s, "
            f"{ratio(best['posts_per_s'], tx_rate):.2f} x the bare transaction rate) the CPU split was "
            f"{_cpu(best.get('cpu_cores'))} cores. Each post makes {calls} synchronous DynamoDB calls and "
            "the "
            "emulator is meanwhile serving the fan-out each post triggers (stream reads, follower queries, "
            "feed "
            "writes); the stack is one Python process, so the local HTTP server, JWT, Redis and botocore of "
            "every request, and every stream runner, share one GIL. "
        )
        prof = r.get("write_profile") or {}
        if prof:
            text += f"Profile under write load - stack process: {_shares(prof.get('stack'))}; "
            text += _emulator_profile(prof)
        add(text)
        add("")


def _figure3(add: Any, r: dict[str, Any], pngs: Mapping[str, str]) -> None:
    add(f"## {FIGURES[2]}")
    add("")
    fo = r.get("fanout")
    if not fo:
        add("(not measured)")
        return
    one, two, start = r["ceiling"]["one_client"], r["ceiling"]["two_clients"], r["ceiling_at_start"]
    add(
        f"A burst of {fo['posts']} posts by the {fo['authors']} most-followed pushed authors "
        f"({fo['mean_followers']:.0f} followers on average, so {fo['expected_items']:.0f} follower feed "
        "items), "
        f"sent by {fo['clients']} clients; items counted by the stack's `FanoutItemsWritten` counter "
        "(Prometheus exporter) until "
        "every one was written. The ceiling is a bare boto3 loop of 25-item BatchWriteItem into a scratch "
        f"table with the feed table's keys (and no stream, see Method) on the run's DynamoDB "
        f"({r['emulator']['dynamodb']}), just before the burst."
    )
    add("")
    rows = [
        [
            "Ripple fan-out (sustained over the burst)",
            f"{fo['items_per_s']:.0f}",
            f"{fo['span_s']:.1f} s",
            "1.00",
        ],
        [
            "Ripple fan-out (best 1 s window)",
            fmt(fo["peak_1s_items_per_s"]),
            "",
            fmt(ratio(fo["peak_1s_items_per_s"], fo["items_per_s"]), 2),
        ],
        [
            "bare BatchWriteItem, 1 client",
            f"{one['batch_items_per_s']:.0f}",
            f"call p50 {fmt_ms(one['batch_call_latency']['p50'], 1)}",
            f"{ratio(one['batch_items_per_s'], fo['items_per_s']):.2f}",
        ],
        [
            "bare BatchWriteItem, 2 clients",
            f"{two['batch_items_per_s']:.0f}",
            f"call p50 {fmt_ms(two['batch_call_latency']['p50'], 1)}",
            f"{ratio(two['batch_items_per_s'], fo['items_per_s']):.2f}",
        ],
        [
            "bare BatchWriteItem, 1 client, empty emulator",
            f"{start['batch_items_per_s']:.0f}",
            "at the start of the run"
            + (", JVM still warming up" if "Local" in r["emulator"]["dynamodb"] else ""),
            f"{ratio(start['batch_items_per_s'], fo['items_per_s']):.2f}",
        ],
    ]
    add("\n".join(_table(["writer", "feed items/s", "", "x Ripple"], rows)))
    add("")
    refs = r.get("emulator_references")
    if refs:
        q = refs["this"]["follower_query"]
        text = (
            f"Fan-out also pages followers with a strongly consistent Query of the Followers table "
            f"({q['page']} per page): that Query alone takes p50/p99 {_lat(q['latency'], 1)} on a scratch "
            f"table of {q['follows']} follows on {r['emulator']['dynamodb']}"
        )
        if "other" in refs:
            other = refs["other_emulator"]["dynamodb"]
            text += f", {_lat(refs['other']['follower_query']['latency'], 1)} on {other}"
        add(text + ".")
        add("")
    add(
        f"**Ripple's fan-out runs at {fo['ratio_to_ceiling_1_client']:.2f} x the emulator's single-client "
        f"BatchWriteItem ceiling ({fo['ratio_to_ceiling_best']:.2f} x the best of 1 and 2 clients).** "
        f"POST p50/p99 during the burst: {_lat(fo['post_latency'])}."
    )
    if "fanout" in pngs:
        add("")
        add(f"![fan-out timeline]({pngs['fanout']})")
    add("")
    prof = fo.get("profile") or {}
    probe_posts = [p for p in r.get("probe", {}).get("posts", []) if p.get("status") == 201]
    threshold = int(r["parameters"]["HighFollowerThreshold"])
    pushed_posts = [p for p in probe_posts if p["followers"] < threshold]
    heavy = max(pushed_posts, key=lambda p: p["followers"], default=None)
    text = f"**What bounds it.** CPU during the burst: {_cpu(fo.get('cpu_cores'))} cores. "
    if heavy:
        calls = heavy["fanout"]["aws_call_count"]
        text += (
            f"Per post, fan-out is not only BatchWriteItem: for an author with {heavy['followers']} "
            "followers it made "
            f"{calls} DynamoDB calls "
            f"({', '.join(f'{k} x{v}' for k, v in heavy['fanout']['aws_calls'].items())}) in "
            f"{heavy['fanout']['invocations']} invocation(s), and every feed item is then read back from "
            "the feed "
            "stream by the cache refresher (GetRecords on the same emulator). "
        )
    if prof:
        text += (
            f"Stack process profile (busy samples): {_shares(prof.get('stack'))}; {_emulator_profile(prof)}"
        )
    add(text)
    add("")


def _figure4(add: Any, r: dict[str, Any]) -> None:
    add(f"## {FIGURES[3]}")
    add("")
    reads = r.get("reads_http", [])
    probe = r.get("probe")
    if not probe:
        add("(not measured)")
        return
    handler, bare = probe["handler_reads"], probe["bare_redis_reads"]
    again = probe.get("handler_reads_again", {})
    h, b = summary(handler["latencies"]), summary(bare["latencies"])
    add(
        f"Warm feeds of {len(r.get('read_users', [])) or r['config']['read_users']} readers, `limit="
        f"{r['config']['feed_limit']}`. Over HTTP from client processes; then the handler alone - the "
        "Chalice "
        "`app` object invoked in one process with API Gateway proxy events, single-threaded like one Lambda "
        "container, against the same emulator and Redis; then only the Redis calls one read makes, replayed "
        "with redis-py (pipeline of EXISTS + ZREVRANGEBYLEX + EXPIRE, then MGET of the post bodies)."
    )
    add("")
    rows = []
    for level in reads:
        rows.append(
            [
                f"HTTP, {level['concurrency']} clients",
                f"{level['reads_per_s']:.0f}",
                _lat(level["latency"]),
                level["errors"],
            ]
        )
    rows.append(
        [
            "handler in process, 1 thread",
            f"{handler['reads_per_s']:.0f}",
            f"{fmt_ms(h['p50'], 1)} / {fmt_ms(h['p99'], 1)}",
            handler["errors"],
        ]
    )
    if again:
        rows.append(
            ["  same, repeated after the Redis loop", f"{again['reads_per_s']:.0f}", "", again["errors"]]
        )
    rows.append(
        [
            "bare Redis calls of one read",
            f"{bare['reads_per_s']:.0f}",
            f"{fmt_ms(b['p50'], 2)} / {fmt_ms(b['p99'], 2)}",
            0,
        ]
    )
    add("\n".join(_table(["path", "reads/s", "p50 / p99", "errors"], rows)))
    add("")
    if reads:
        best = max(reads, key=lambda x: x["reads_per_s"])
        add(
            f"Ratios: HTTP (best, {best['concurrency']} clients) = "
            f"{ratio(best['reads_per_s'], handler['reads_per_s']):.2f} x "
            f"the handler alone; handler = **{ratio(handler['reads_per_s'], bare['reads_per_s']):.3f} x** "
            "the bare Redis "
            f"calls (1 / {ratio(bare['reads_per_s'], handler['reads_per_s']):.0f}). HTTP with several "
            "clients can "
            "beat one handler thread because their waits on the emulator overlap; one client over HTTP "
            f"({reads[0]['reads_per_s']:.0f}/s at {reads[0]['concurrency']}) shows the local server's own "
            "cost."
        )
        add("")
    acc = probe["read_accounting"]
    likes = acc.get("rru", {}).get("LikesTable", 0.0)
    if acc.get("rru_total"):
        add(
            f"Of the {acc['rru_total']:.1f} read units a read costs, {likes:.1f} are the `liked_by_me` "
            "BatchGetItem: "
            "DynamoDB charges a read of a missing item like a found one, so a 20-post page costs 10 units "
            "even "
            "when the reader liked nothing."
        )
        add("")
    add(
        f"One read, counted in process ({acc['reads']} reads): {acc['aws_call_count']:.2f} AWS calls "
        f"({', '.join(f'{k} {v:.2f}' for k, v in acc['aws_calls'].items()) or 'none'}), "
        f"{acc['redis_round_trips']:.2f} Redis round trips ({acc['redis_command_count']:.2f} commands: "
        f"{', '.join(f'{k} {v:.2f}' for k, v in acc['redis_commands'].items())}); mean handler time "
        f"{fmt_ms(acc['duration_s'], 1)} of which {fmt_ms(acc['aws_seconds'], 1)} in AWS calls."
    )
    add("")
    prof = probe.get("read_profile") or {}
    text = "**What bounds it.** "
    if prof.get("available"):
        name = Path(prof["path"]).name
        text += f"pyinstrument over the handler: {_shares(prof, 6)} (full profile: bench/profiles/{name}). "
    text += (
        "A cached read is not Redis-only: every read also makes DynamoDB calls - a BatchGetItem for "
        "`liked_by_me` "
        "on the page's posts, a BatchGetItem for which high-follower accounts the reader follows, and a "
        "consistent Query per followed high-follower account (the pull merge) - each a round trip to the "
        "emulator that costs more than the whole Redis part. "
    )
    http_prof = r.get("reads_profile") or {}
    if http_prof:
        text += (
            "Over HTTP the stack process adds the local HTTP server and threads: "
            f"{_shares(http_prof.get('stack'))}."
        )
    add(text)
    add("")


def _figure5(add: Any, r: dict[str, Any]) -> None:
    add(f"## {FIGURES[4]}")
    add("")
    imports = r.get("imports")
    packages = r.get("packages")
    probe = r.get("probe", {})
    if imports:
        variants = imports["variants"]
        add(
            f"Import of each handler module in a fresh interpreter ({imports['runs']} runs each, median; "
            f"{imports['mode']}; CPython {imports['python']} here, Lambda runs 3.12 on arm64). "
            '"as built": no bytecode, as `sam build` leaves a package (it unpacks wheels and copies '
            "sources) - Lambda's read-only file system then compiles every module at every cold start; "
            '"precompiled": the same files after `python -m compileall`.'
        )
        add("")
        header = ["function"] + [f"import p50 ({'as built' if v == 'source' else v})" for v in variants]
        header += ["process wall p50", "where import time goes (self time)"]
        rows = []
        for fid, entry in imports["functions"].items():
            row = [fid] + [fmt_ms(entry[v]["import_p50_s"]) for v in variants]
            row.append(fmt_ms(entry[variants[0]]["process_p50_s"]))
            row.append(
                ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in entry.get("top_imports", [])[:5]) or "-"
            )
            rows.append(row)
        add("\n".join(_table(header, rows)))
        add("")
        add(f"Interpreter start alone: {fmt_ms(imports['interpreter_start_s'])}.")
        add("")
    first = probe.get("first_read")
    if first:
        add(
            f"First invocation after import (in process, GET /feed): {fmt_ms(first['seconds'])} - it "
            "fetches the JWT "
            f"secret ({', '.join(k for k in first['aws_calls'] if 'secrets' in k) or 'no secret call'}), "
            "opens the "
            "DynamoDB and Redis connections and loads the Lua scripts; a warm read takes "
            f"{fmt_ms(probe['read_accounting']['duration_s'], 1)}."
        )
        add("")
    if packages:
        add(f"Deployment packages ({packages['mode']}; {packages['platform']}):")
        add("")
        layer = packages["layer"]
        rows = [
            [
                "RippleLayer (layers/ripple + requirements.txt)",
                _mb(layer["unzipped"]),
                _mb(layer["zipped"]),
                ", ".join(f"{k} {_mb(v)}" for k, v in layer["largest"][:5]),
                _mb(layer["runtime_provided_unzipped"]),
            ]
        ]
        for fid, f in packages["functions"].items():
            rows.append(
                [
                    f"{fid} ({f['code_dir']}"
                    + (f" + {', '.join(f['requirements'])}" if f["requirements"] else "")
                    + ")",
                    _mb(f["unzipped"]),
                    _mb(f["zipped"]),
                    ", ".join(f"{k} {_mb(v)}" for k, v in f["largest"][:4]),
                    _mb(f["runtime_provided_unzipped"]),
                ]
            )
        for fid, f in packages["functions"].items():
            rows.append(
                [
                    f"**{fid} + layer**",
                    f"**{_mb(f['total_unzipped'])}**",
                    f"**{_mb(f['total_zipped'])}**",
                    "limit: 250 MB unzipped",
                    "",
                ]
            )
        add(
            "\n".join(
                _table(
                    [
                        "package",
                        "unzipped",
                        "zipped",
                        "largest parts",
                        "of which Lambda's runtime already has",
                    ],
                    rows,
                )
            )
        )
        add("")
    add(
        "**What bounds it.** Import time is module execution and, as built, bytecode compilation of the "
        "dependencies (the largest ones above); package size is dominated by botocore, which the layer "
        "vendors "
        "because pynamodb and aws-xray-sdk require it although the runtime ships it, and - for the API - by "
        "`chalice` in functions/api/requirements.txt, which installs the whole Chalice CLI (pip, inquirer, "
        "PyYAML, another botocore) while the handler needs only `chalice.app`."
    )
    add("")


def _figure6(add: Any, r: dict[str, Any]) -> None:
    add(f"## {FIGURES[5]}")
    add("")
    cost = r.get("cost")
    if not cost:
        add("(not computed)")
        return
    p = cost["pricing"]
    add(
        "**On paper, not measured on AWS.** Quantities are measured in this run; prices are us-east-1 list "
        "prices. DynamoDB request units are computed from the request and response of every call the code "
        "paths made (botocore instrumented in process; rules in bench/capacity.py); Lambda invocations use "
        "the "
        f"stream runners' measured batching (at {r.get('batching_step_rate', '-')} posts/s) and durations "
        "are "
        "the handlers' in-process times against the emulator (it answers a call in about the time DynamoDB "
        "does in-region, so these are the right order, not exact)."
    )
    add("")
    add(
        "\n".join(
            _table(
                ["assumption", "value"],
                [
                    [
                        "DynamoDB on-demand",
                        f"${p['dynamodb_per_million_wru']}/M write units, "
                        f"${p['dynamodb_per_million_rru']}/M read units; stream reads by Lambda free",
                    ],
                    [
                        "Lambda arm64",
                        f"${p['lambda_arm64_per_gb_s']}/GB-s, ${p['lambda_per_million_requests']}/M "
                        "requests; 512 MB (template)",
                    ],
                    ["API Gateway REST", f"${p['apigw_rest_per_million_requests']}/M requests"],
                    [
                        "ElastiCache",
                        f"{p['elasticache_nodes']} x cache.t4g.micro at ${p['elasticache_node_hour']}/h = "
                        f"${cost['redis_month_usd']:.2f}/month, "
                        f"spread over an assumed {p['assumed_posts_per_s']:g} posts/s + "
                        f"{p['assumed_reads_per_s']:g} reads/s "
                        f"({cost['redis_commands_per_s_assumed']:.0f} Redis commands/s) by command count",
                    ],
                    [
                        "authors",
                        "every user equally likely to post, follower counts as generated (figure 1's graph)",
                    ],
                    [
                        "not included",
                        "CloudWatch Logs (EMF + logs per invocation), X-Ray traces, VPC endpoint hours, "
                        "data transfer, storage",
                    ],
                ],
            )
        )
    )
    add("")
    q, rq = cost["per_post_quantities"], cost["per_read_quantities"]
    rows = [
        ["write request units", f"{q['wru']:.2f}", f"{rq['wru']:.2f}"],
        ["read request units", f"{q['rru']:.2f}", f"{rq['rru']:.2f}"],
        ["DynamoDB calls", f"{q['aws_calls']:.1f}", f"{rq['aws_calls']:.2f}"],
        ["Lambda invocations", f"{q['lambda_requests']:.2f}", f"{rq['lambda_requests']:.2f}"],
        ["Lambda GB-s", f"{q['gb_s']:.4f}", f"{rq['gb_s']:.4f}"],
        ["Redis commands", f"{q['redis_commands']:.1f}", f"{rq['redis_commands']:.1f}"],
        ["API Gateway requests", f"{q['apigw_requests']:.0f}", f"{rq['apigw_requests']:.0f}"],
    ]
    add("\n".join(_table(["per operation", "per post (expected over authors)", "per feed read"], rows)))
    add("")
    rows = []
    for service in cost["per_million_posts"]:
        rows.append(
            [
                service,
                f"${cost['per_million_posts'][service]:.2f}",
                f"${cost['per_million_reads'][service]:.2f}",
            ]
        )
    rows.append(
        [
            "**total**",
            f"**${cost['per_million_posts_total']:.2f}**",
            f"**${cost['per_million_reads_total']:.2f}**",
        ]
    )
    add("\n".join(_table(["service", "per million posts", "per million feed reads"], rows)))
    add("")
    fits = cost["fits"]
    add(
        f"Per post, fitted over {cost['probed_pushed']} probed pushed posts: write units = "
        f"{fits['wru']['a']:.1f} + "
        f"{abs(fits['wru']['b_per_follower']):.2f} x followers, read units = {fits['rru']['a']:.1f} + "
        f"{abs(fits['rru']['b_per_follower']):.3f} x followers (Theil-Sen fits). "
        "Cost per million posts by an author with "
        + ", ".join(f"{k} followers: ${v:.0f}" for k, v in cost["per_million_posts_by_followers"].items())
        + " (pushed; above the threshold an author is pulled instead"
        + (
            f", measured at {cost['pulled_post']['wru']:.1f} write units per post"
            if cost.get("pulled_post")
            else ""
        )
        + "). Each pulled author a reader follows adds a consistent Query to every one of that reader's "
        "feed reads."
    )
    add("")


def _figure7(add: Any, r: dict[str, Any]) -> None:
    add(f"## {FIGURES[6]}")
    add("")
    refs = r.get("emulator_references")
    if not refs:
        add("(not measured)")
        return
    sizes = [int(size) for size in refs["this"]["scaling"]]
    add(
        "Does a call cost the same on a bigger table, as on DynamoDB? Bare boto3 loops, one client, on "
        "scratch tables with template.yaml's key schemas seeded by BatchWriteItem with "
        + " and ".join(f"{n:,}" for n in sizes)
        + " posts (50 per author, a post-id row each, a Users row per author): a feed-page Query (one "
        "partition, newest first, `Limit 20`, consistent) and the post transaction (put the post, put its "
        "post-id row, ADD to the author's post_count). The sizes are interleaved call by call after a short "
        "discarded warm-up, so drift on the shared machine hits both alike."
    )
    add("")
    rows = []
    verdicts = []
    emulators = [(r["emulator"]["dynamodb"], refs["this"])]
    if "other" in refs:
        emulators.append((refs["other_emulator"]["dynamodb"], refs["other"]))
    for name, measured in emulators:
        ratios = []
        for call, label in (("query", "Query, feed page"), ("transaction", "post transaction (3 items)")):
            small, large, x = _scaling(measured, call)
            ratios.append(x)
            rows.append([name, label, _lat(small, 1), _lat(large, 1), f"x{x:.2f}", _within(x)])
        verdicts.append(f"{name}: Query x{ratios[0]:.2f}, transaction x{ratios[1]:.2f} - {_within(*ratios)}")
    header = [
        "DynamoDB",
        "call",
        f"p50 / p99 at {sizes[0]:,}",
        f"p50 / p99 at {sizes[-1]:,}",
        "p50 ratio",
        "",
    ]
    add("\n".join(_table(header, rows)))
    add("")
    add(f"**From {sizes[0]:,} to {sizes[-1]:,} items: " + "; ".join(verdicts) + ".**")
    add("")
    add(
        "**What bounds it.** DynamoDB Local is AWS's own engine on SQLite: a Query reads one partition "
        "through the key index and a transaction touches its three items, whatever the table holds. Stock "
        "moto lists every item of the table for each Query and deep-copies every table a transaction names "
        "(items and stream records) so that it can roll back, so both grow with the data - which is why "
        "moto is not the bench's default."
    )
    add("")


def _method(add: Any, r: dict[str, Any], config: BenchConfig) -> None:
    add("## Method and caveats")
    add("")
    setup = r.get("setup", {})
    e = r["emulator"]
    items = [
        f"**Emulator (`--emulator {config.emulator}`): DynamoDB and DynamoDB Streams on {e['dynamodb']}; "
        f"SQS, Secrets Manager and STS on {e['others']}.** The bench starts them with "
        "`ripple_local.emulators.start_emulators` on free ports, and a redis-server, then runs "
        "`python -m ripple_local up --root-dir <overlay> --emulator-url <moto> --dynamodb-url <DynamoDB> "
        "--redis-url <redis>` as a subprocess with its own state directory; all are stopped by pid at the "
        "end. `--emulator moto` puts everything on stock moto (its Query and transactions slow down as the "
        "tables grow, figure 7, and concurrent transactions on one item can lose writes), `--emulator "
        "localstack` on LocalStack in host mode.",
        "The bench's scratch tables (ceilings, references, figure 7) have the template's keys and indexes "
        "but no stream: DynamoDB Local charges every item written to a streamed table for the records held "
        "by the streams of the tables created before it, so a streamed scratch table made mid-run would "
        "time Ripple's accumulated stream records rather than the call. The same charge applies inside "
        "Ripple: the feed table is created after the posts and follows tables, so each feed item written "
        "also pays for their stream records, which the bare ceiling does not.",
        "A process environment variable cannot change a function's setting: the local stack writes each "
        "function's template environment over os.environ, so `HIGH_FOLLOWER_THRESHOLD=...` in the "
        "environment is replaced before any function reads it. So `--root-dir` points at a directory of the "
        "bench's own: symlinks to template.yaml, functions/ and layers/ and a generated samconfig.toml "
        "holding the repository's `[local]` overrides plus HighFollowerThreshold, FanoutPageSize and "
        "AccessTokenTtlSeconds (7200, so tokens outlive the run).",
        "Users, follows, posts and reads all go through the HTTP API from spawned client processes (threads "
        "with keep-alive connections, opened before each measurement: the local API server keeps "
        "socketserver's listen backlog of 5, so a burst of new connections is reset). Setup calls retry "
        "connection errors and 5xx as a real client would "
        f"({setup.get('signup_retries', 0)} sign-up and {setup.get('follow_retries', 0)} follow retries in "
        "this run); measured calls are never retried and their errors are counted in the tables. Sign-ups "
        "respect the auth limit of samconfig [local]; every user stays under the 60 writes/min per-user "
        "limit.",
        "Percentiles are over all samples of a phase; p99 of small samples (fewer than ~100) is close to the "
        f"max. Phases run one after another, each waiting until no stream runner has delivered a record for "
        f"{config.idle_quiet_s:g} s.",
        "CPU columns are cores used during the phase (from /proc): the stack process, DynamoDB Local (its "
        "JVM, all threads), moto, redis-server, the bench's own client processes, and the rest of the "
        "machine (other tenants; the machine is shared).",
        "In-process measurements (figure 4's handler, figure 6's accounting) import the three handlers in a "
        "fresh interpreter with the stack's environment (`ripple_local`'s own `LocalStack.prepare()`, "
        "idempotent on the existing resources); fan-out and cache refresh are invoked with the stream "
        "records "
        "their post produced, so the running stack processes those records twice (harmless: every step is "
        "idempotent).",
        "Profiles (py-spy on the stack process, and on moto when it serves DynamoDB; pyinstrument in "
        "process) are taken in separate, shorter windows after the measured ones, so they do not slow the "
        "reported numbers; raw files are in bench/profiles. py-spy reads Python stacks only, so DynamoDB "
        "Local (a JVM) is not profiled: time spent inside it shows up in the stack's profiles as "
        '"waiting on the emulator" (botocore blocked reading the answer from its socket), as wall time '
        'under "DynamoDB calls" in the handler\'s pyinstrument profile (figure 4), and as its CPU column. '
        "A thread of the local HTTP server waiting for a keep-alive connection's next request counts as "
        "idle.",
    ]
    for item in items:
        add(f"- {item}")
    add("")
    add("Raw results, including every latency sample, are in `results.json` next to this report.")
