"""One benchmark run, phase by phase, against one local stack; returns every result."""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import ceiling, coldstart, graph, load, probe
from bench.config import REPO_ROOT, BenchConfig, ratio, summary
from bench.cost import estimate
from bench.load import SPAWN, in_processes, setup_worker, split
from bench.profiling import Profiles
from bench.stack import StackProcess, machine_cpu, metric_sum
from ripple_local.emulators import DYNAMODB_LOCAL, MOTO, start_emulators
from ripple_local.tools import DYNAMODB_LOCAL_VERSION

POSTER_THREADS = 24
FANOUT_METRIC = "ripple_fanout_items_written_total"
STREAM_METRICS = {  # ripple_local's stream runner counters, labelled by function and event source
    "ripple_stream_invocations_total": "invocations",
    "ripple_stream_records_delivered_total": "records",
    "ripple_stream_retries_total": "retries",
}


def log(message: str) -> None:
    """Progress on stderr (the report path alone goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def describe_emulator(kind: str) -> dict[str, str]:
    """What serves DynamoDB (and its streams) and what serves the other services, with versions."""
    moto = f"moto {metadata.version('moto')}"
    dynamodb = {DYNAMODB_LOCAL: f"DynamoDB Local {DYNAMODB_LOCAL_VERSION}", MOTO: moto}
    name = dynamodb.get(kind, "LocalStack (DynamoDB Local inside)")
    return {"kind": kind, "dynamodb": name, "others": moto if kind in dynamodb else "LocalStack"}


class Run:
    """State shared by the phases of one run."""

    def __init__(self, config: BenchConfig, state_dir: Path) -> None:
        self.config, self.state_dir, self.rng = config, state_dir, random.Random(config.seed)
        c = config
        self.following = graph.generate(c.users, c.mean_following, c.max_following, c.zipf_s, c.seed)
        self.users = range(c.users)
        self.followers = graph.followers_of(self.following)
        self.counts = [len(f) for f in self.followers]
        self.threshold = c.high_follower_threshold or graph.pick_threshold(self.counts, c.pulled_accounts)
        self.page_size = c.fanout_page_size or max(5, self.threshold // 3)
        self.pulled = {u for u in self.users if self.counts[u] >= self.threshold}
        self.pushed = [u for u in self.users if u not in self.pulled]
        self.parameters = {
            "HighFollowerThreshold": str(self.threshold),
            "FanoutPageSize": str(self.page_size),
            "AccessTokenTtlSeconds": "7200",  # tokens must outlive the run (the default 15 min is about one)
        }
        self.stack = StackProcess(state_dir, self.parameters, c.emulator)
        self.user_ids: list[str] = []
        self.tokens: list[str] = []
        self.results: dict[str, Any] = {"phases": {}}
        self.profile_dir = c.out_dir / "profiles"
        self.watchers = sorted(self.users, key=lambda u: -len(self.following[u]))[: c.watchers]
        self.readers = random.Random(c.seed + 1).sample(self.users, min(c.read_users, c.users))
        self.recent_posts: dict[int, list[float]] = {}  # author -> scheduled times (rate limit guard)

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Time a phase and account the cores every process used during it."""
        log(f"{name} ...")
        record: dict[str, Any] = {}
        cpu0, machine0, times0, started = self.stack.cpu(), machine_cpu(), os.times(), time.monotonic()
        try:
            yield record
        finally:
            elapsed = time.monotonic() - started
            cpu1, machine1, times1 = self.stack.cpu(), machine_cpu(), os.times()
            usage = {k: (v - cpu0.get(k, 0.0)) / elapsed for k, v in cpu1.items()}  # runners may start late
            usage["bench clients"] = (sum(times1[:4]) - sum(times0[:4])) / elapsed  # with reaped children
            busy = (machine1[0] - machine0[0]) / max(1e-9, machine1[1] - machine0[1]) * (os.cpu_count() or 1)
            usage["other (not this run)"] = max(0.0, busy - sum(usage.values()))
            self.results["phases"][name] = dict(seconds=elapsed, cpu_cores=usage, machine_busy_cores=busy)
            record["cpu_cores"] = usage
            log(f"{name} done in {elapsed:.1f}s")

    def profiled(self, label: str, seconds: float, work: Callable[[], Any]) -> dict[str, Any] | None:
        """py-spy on the stack (and on moto when it serves DynamoDB; py-spy cannot sample DynamoDB
        Local's JVM) while ``work`` runs, in a window apart from the measured ones."""
        if not self.config.profile or self.config.smoke:
            return None
        names = ("stack", "moto") if self.config.emulator == MOTO else ("stack",)
        with self.phase(f"{label} (profiled)"):
            pids = {k: v for k, v in self.stack.pids.items() if k in names} | self.stack.runner_pids()
            profiles = Profiles(pids, seconds, self.profile_dir, label)
            work()
            return profiles.finish()

    def pick_author(self, at: float) -> int:
        """A random author (a share of them high-follower) under 50 posts a minute (limit 60)."""
        pulled = sorted(self.pulled)
        for _ in range(100):
            pool = pulled if pulled and self.rng.random() < self.config.pulled_share else self.pushed
            author = self.rng.choice(pool)
            recent = [t for t in self.recent_posts.get(author, []) if t > at - 60.0]
            if len(recent) < 50:
                self.recent_posts[author] = [*recent, at]
                return author
        raise RuntimeError("no author below the per-user write limit; lower the rate or add users")

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        processes, url = self.config.client_processes, self.stack.url
        with self.phase("signups"):
            names = [(i, f"bench_{i:05d}") for i in self.users]
            done = in_processes(setup_worker, split(names, processes), url, "signup")
            accounts = sorted(a for chunk, _ in done for a in chunk)
            self.user_ids, self.tokens = [a[1] for a in accounts], [a[2] for a in accounts]
            signup_retries = sum(r for _, r in done)
        with self.phase("follows"):
            edges = [(u, v) for u in self.users for v in self.following[u]]
            self.rng.shuffle(edges)
            pairs = [(self.tokens[u], self.user_ids[v]) for u, v in edges]
            done = in_processes(setup_worker, split(pairs, processes), url, "follow")
            statuses = [status for chunk, _ in done for status in chunk]
            ok = sum(s == 200 for s in statuses)  # each a Follows INSERT: backfill and notification
            self.stack.wait_delivered("FanoutFunction", "FollowsStream", ok, timeout_s=600)
            self.stack.wait_idle(self.config.idle_quiet_s, timeout_s=300)
        setup = {"signup_retries": signup_retries, "follow_retries": sum(r for _, r in done),
                 "follow_errors": sum(s != 200 for s in statuses)}  # fmt: skip
        self.results.update(graph=graph.describe(self.following), follower_counts=self.counts, setup=setup)
        self.results["pulled"] = self.check_pulled()
        with self.phase("warm feeds"):
            tokens = [self.tokens[u] for u in sorted(set(self.watchers) | set(self.readers))]
            done = in_processes(setup_worker, split(tokens, processes), url, "feed")
            if bad := [s for chunk, _ in done for s in chunk if s != 200]:
                raise RuntimeError(f"warming feeds failed: {bad[:5]}")

    def check_pulled(self) -> dict[str, Any]:
        """Which accounts the stack marked high-follower (read from the Users table's index)."""
        paginator = ceiling.dynamodb_client(self.stack.endpoints).get_paginator("query")
        pages = paginator.paginate(
            TableName="ripple-local-UsersTable", IndexName="by_high_follower",
            KeyConditionExpression="high_follower = :one", ExpressionAttributeValues={":one": {"N": "1"}},
        )  # fmt: skip
        marked = {item["user_id"]["S"] for page in pages for item in page.get("Items", [])}
        expected = {self.user_ids[u] for u in self.pulled}
        followers = sorted((self.counts[u] for u in self.pulled), reverse=True)
        return {"threshold": self.threshold, "expected": len(expected), "marked": len(marked),
                "match": marked == expected, "followers": followers}  # fmt: skip

    # ------------------------------------------------------------------ figure 1 (and 2's open loop)
    def convergence(self) -> None:
        cfg, steps = self.config, []
        for rate in cfg.rates:
            with self.phase(f"convergence {rate:g}/s") as cpu:
                step = self.convergence_step(rate)
            steps.append({**step, "cpu_cores": cpu["cpu_cores"]})
            p50, p99 = step["pushed"]["p50"], step["pushed"]["p99"]
            late = f"{step['late']} pairs converged only after the {cfg.settle_timeout_s:g} s settle window"
            slow = step["achieved_posts_per_s"] < 0.9 * step["offered_posts_per_s"]
            baseline = steps[0]["pushed"]["p99"]
            degraded = {
                "achieved post rate below 90% of offered": slow,
                "posts never seen": step["never_seen"] > 0,
                late: step["late"] > 0,
                "convergence p99 over 5x the lowest rate's (and over 5 s)": p99 > max(5, 5 * baseline),
            }
            steps[-1]["degraded"] = [reason for reason, found in degraded.items() if found]
            log(f"rate {rate:g}/s: achieved {step['achieved_posts_per_s']:.1f}/s, convergence p50 {p50:.3f}s"
                f" p99 {p99:.3f}s, never seen {step['never_seen']}")  # fmt: skip
            if steps[-1]["degraded"]:
                break
        self.results["convergence"] = steps

    def convergence_step(self, rate: float) -> dict[str, Any]:
        cfg, url = self.config, self.stack.url
        watcher_set, now, schedule = set(self.watchers), time.monotonic(), []
        for i, offset in enumerate(load.poisson_schedule(rate, cfg.duration_s, self.rng)):
            author = self.pick_author(now + offset)
            candidates = [f for f in self.followers[author] if f in watcher_set]
            sampled = self.rng.sample(candidates, min(cfg.samples_per_post, len(candidates)))
            schedule.append((offset, author, self.tokens[author], f"bench post at {rate:g}/s #{i}", sampled))
        chunks = split(schedule, cfg.client_processes)
        with SPAWN.Manager() as manager, ProcessPoolExecutor(len(chunks) + 1, mp_context=SPAWN) as pool:
            inbox = manager.Queue()
            watchers = [(w, self.tokens[w]) for w in self.watchers]
            limits = (cfg.poll_interval_s, cfg.max_poll_rate, cfg.feed_limit, cfg.settle_timeout_s)
            watching = pool.submit(load.watch, watchers, url, *limits, inbox)
            before, t0 = self.stack.metrics(), time.monotonic() + 1.5
            posting = [pool.submit(load.open_loop, chunk, url, POSTER_THREADS, t0, inbox) for chunk in chunks]
            rows = sorted(r for future in posting for r in future.result())
            inbox.put(None)
            watched = watching.result()
        drain_s = self.stack.wait_idle(cfg.idle_quiet_s, timeout_s=600)
        after = self.stack.metrics()
        ok = [r for r in rows if r[3] == 201]
        author_of = {r[5]: r[4] for r in ok}
        lags: dict[bool, list[float]] = {True: [], False: []}  # by: is the author pulled?
        for post_id, _watcher, created, seen_at in watched["seen"]:
            lags[author_of.get(post_id) in self.pulled].append(max(0.0, seen_at - created))
        # Not seen in the settle window: once the pipeline has drained, is it there (late) or not (lost)?
        late, lost, feeds, client = [], [], {}, load.ApiClient(url, setup=True)
        for post_id, reader, created in watched["missing"]:
            if reader not in feeds:
                feeds[reader] = load.all_feed_ids(client, self.tokens[reader])
            if post_id in feeds[reader]:
                late.append(watched["ended"] - created)  # a lower bound of its convergence
            else:
                lost.append((post_id, reader))
        posting_s = max(cfg.duration_s, max((r[2] for r in rows), default=t0) - t0)
        stream: dict[str, dict[str, float]] = {}  # invocations and records per runner, between the scrapes
        for sign, samples in ((-1.0, before), (1.0, after)):
            for s in (s for s in samples if s.name in STREAM_METRICS):
                runner = stream.setdefault(f"{s.labels['function']}.{s.labels['event_source']}", {})
                runner[STREAM_METRICS[s.name]] = runner.get(STREAM_METRICS[s.name], 0.0) + sign * s.value
        errors = {str(s): sum(r[3] == s for r in rows) for s in sorted({r[3] for r in rows} - {201})}
        return {
            "rate": rate, "duration_s": cfg.duration_s, "offered_posts": len(schedule),
            "offered_posts_per_s": len(schedule) / cfg.duration_s, "created": len(ok), "errors": errors,
            "achieved_posts_per_s": len(ok) / posting_s, "post_latency": summary(r[2] - r[1] for r in ok),
            "post_lateness": summary(max(0.0, r[1] - r[0]) for r in rows),
            "pushed": summary(lags[False]), "pulled": summary(lags[True]),
            "pushed_lags": lags[False], "pulled_lags": lags[True],
            "pairs": len(watched["seen"]) + len(watched["missing"]), "never_seen": len(lost), "lost": lost,
            "late": len(late), "late_min_lag_s": min(late, default=math.nan),
            "settle_timeout_s": cfg.settle_timeout_s, "polls": watched["polls"],
            "poll_rate": watched["polls"] / (watched["ended"] - watched["started"]),
            "poll_gap": summary(watched["poll_gaps"]), "poll_latency": summary(watched["poll_latencies"]),
            "poll_errors": watched["poll_errors"], "drain_s": drain_s, "stream": stream,
            "fanout_items": metric_sum(after, FANOUT_METRIC) - metric_sum(before, FANOUT_METRIC),
        }  # fmt: skip

    # ------------------------------------------------------------------ figure 2 (closed loop) and 7
    def write_path(self) -> None:
        with self.phase("emulator references"):
            self.results["emulator_references"] = self.emulator_references()
        self.levels("writes", self.config.write_concurrency, 10**9, "write_path", "write_profile")

    def levels(self, kind: str, clients: Sequence[int], budget: int, key: str, profile_key: str) -> None:
        """Closed-loop "writes" or "reads" at each concurrency, then a profiled window at the highest."""
        cfg, levels = self.config, []
        for concurrency in clients:
            with self.phase(f"{kind} c={concurrency}") as cpu:
                level = self.closed_loop(kind, concurrency, cfg.closed_loop_s, budget)
                level["drain_s"] = self.stack.wait_idle(cfg.idle_quiet_s, timeout_s=300)
            levels.append({**level, "cpu_cores": cpu["cpu_cores"]})
            rate = level.get("posts_per_s", level.get("reads_per_s"))
            log(f"{kind} c={concurrency}: {rate:.1f}/s, p99 {level['latency']['p99']:.3f}s")
        self.results[key] = levels
        concurrency = max(clients)
        if profile := self.profiled(kind, 6, lambda: self.closed_loop(kind, concurrency, 6.0, 10**9)):
            self.results[profile_key] = profile
        self.stack.wait_idle(cfg.idle_quiet_s, timeout_s=300)

    def emulator_references(self) -> dict[str, Any]:
        """Bare calls of a post and its fan-out on this run's emulator - fan-out's follower page on a
        table as large as Ripple's, and a feed-page Query and the post transaction at each of
        ``scaling_sizes`` - and, unless disabled, the same on stock moto (or DynamoDB Local)."""
        cfg = self.config

        def measure(url: str) -> dict[str, Any]:
            seconds, follows = cfg.ceiling_seconds, (sum(self.counts), cfg.users, self.page_size)
            return {
                "follower_query": ceiling.measure_follower_queries(url, seconds / 2, *follows),
                "scaling": ceiling.measure_scaling(url, cfg.scaling_sizes, seconds),
            }

        result: dict[str, Any] = {"this": measure(self.stack.endpoints.dynamodb)}
        if cfg.compare_emulators:
            other = MOTO if cfg.emulator != MOTO else DYNAMODB_LOCAL
            running = start_emulators(other, self.state_dir / "other-emulator")
            try:
                result["other"] = measure(running.endpoints.dynamodb)
            finally:
                running.stop()
            result["other_emulator"] = describe_emulator(other)
        return result

    def closed_loop(self, kind: str, concurrency: int, duration_s: float, budget: int) -> dict[str, Any]:
        """``concurrency`` clients back to back: "writes" (posts by pushed authors, a seeded shuffle)
        or "reads" of the readers' feeds (at most ``budget`` reads)."""
        posts = kind == "writes"
        order = self.pushed[:] if posts else self.readers
        if posts:
            random.Random(self.config.seed + concurrency).shuffle(order)
        tokens = [self.tokens[u] for u in order]
        lists = [tokens[i::concurrency] or tokens for i in range(concurrency)]
        chunks = split(lists, self.config.client_processes)
        limit, share = (0, budget) if posts else (self.config.feed_limit, math.ceil(budget / len(chunks)))
        t0 = time.monotonic() + 1.0
        done = in_processes(load.closed_loop, chunks, self.stack.url, t0, duration_s, share, limit)
        rows = [r for chunk in done for r in chunk]
        ok = [r for r in rows if r[2] == (201 if posts else 200)]
        latency = summary(r[1] - r[0] for r in ok)
        result = {"concurrency": concurrency, "errors": len(rows) - len(ok), "latency": latency}
        if posts:
            return {**result, "duration_s": duration_s, "posts": len(ok), "posts_per_s": len(ok) / duration_s}
        span = (max(r[1] for r in rows) - t0) if rows else duration_s
        return {**result, "reads": len(ok), "seconds": span, "reads_per_s": len(ok) / max(1e-9, span)}

    # ------------------------------------------------------------------ figure 3
    def fanout(self) -> None:
        cfg, dynamodb = self.config, self.stack.endpoints.dynamodb
        with self.phase("emulator ceiling"):
            one, two = (ceiling.measure_ceiling(dynamodb, cfg.ceiling_seconds, threads=n) for n in (1, 2))
            streamed = ceiling.measure_ceiling(dynamodb, cfg.ceiling_seconds, threads=1, stream=True)
        with self.phase("fan-out burst") as cpu:
            burst = self.burst(cfg.posts)
        rate, best = burst["items_per_s"], max(one["batch_items_per_s"], two["batch_items_per_s"])
        # ratio(): NaN, not a ZeroDivisionError, if a loaded machine let a ceiling write nothing
        burst.update(cpu_cores=cpu["cpu_cores"], ratio_to_ceiling_best=ratio(rate, best),
                     ratio_to_ceiling_1_client=ratio(rate, one["batch_items_per_s"]),
                     ratio_to_ceiling_streamed=ratio(rate, streamed["batch_items_per_s"]))  # fmt: skip
        ceilings = {"one_client": one, "two_clients": two, "streamed": streamed}
        self.results.update(ceiling=ceilings, fanout=burst)
        if profile := self.profiled("fanout", 8, lambda: self.burst(max(10, cfg.posts // 3))):
            burst["profile"] = profile

    def burst(self, posts: int) -> dict[str, Any]:
        """``posts`` posts by the most-followed pushed authors, as fast as 16 clients can, with the
        fan-out counter sampled until every follower's item is written."""
        ranked = sorted(self.pushed, key=lambda u: -self.counts[u])
        authors = ranked[: max(1, math.ceil(posts / 10))]
        cycle = (authors[i % len(authors)] for i in range(posts))
        schedule: list[load.Scheduled] = [
            (0, a, self.tokens[a], f"burst #{i}", []) for i, a in enumerate(cycle)
        ]
        expected = sum(self.counts[s[1]] for s in schedule)
        start_value, samples = metric_sum(self.stack.metrics(), FANOUT_METRIC), list[tuple[float, float]]()
        chunks, t0 = split(schedule, self.config.client_processes), time.monotonic() + 1.0
        with ProcessPoolExecutor(len(chunks), mp_context=SPAWN) as pool:
            posting = [pool.submit(load.open_loop, chunk, self.stack.url, 8, t0, None) for chunk in chunks]
            deadline = time.monotonic() + 300  # the counter, every 0.25 s until every item is written
            while time.monotonic() < deadline and not (
                samples and samples[-1][1] >= expected and all(f.done() for f in posting)
            ):
                written = metric_sum(self.stack.metrics(), FANOUT_METRIC) - start_value
                samples.append((time.monotonic(), written))
                time.sleep(0.25)
            rows = [r for future in posting for r in future.result()]
        drain = self.stack.wait_idle(self.config.idle_quiet_s, timeout_s=120)
        first_sent = min(r[1] for r in rows)
        written = samples[-1][1] if samples else 0.0
        finished = next((t for t, v in samples if v >= written), samples[-1][0] if samples else first_sent)
        span = max(1e-9, finished - first_sent)
        window = [(t - first_sent, v) for t, v in samples if t >= first_sent]
        peak = math.nan  # the best 1 s window, when the burst lasts long enough to have one
        if span >= 2.0:
            pairs = [
                (a, next((b for b in window[i + 1 :] if b[0] - a[0] >= 1.0), None))
                for i, a in enumerate(window)
            ]
            peak = max(((b[1] - a[1]) / (b[0] - a[0]) for a, b in pairs if b), default=0.0)
        posted = [r for r in rows if r[3] == 201]
        return {
            "posts": len(posted), "authors": len(authors), "mean_followers": expected / max(1, len(schedule)),
            "expected_items": expected, "items_written": written, "span_s": span,
            "items_per_s": written / span, "peak_1s_items_per_s": peak, "clients": 8 * len(chunks),
            "timeline": window, "drain_after_s": drain, "posting_s": max(r[2] for r in rows) - first_sent,
            "post_latency": summary(r[2] - r[1] for r in posted),
        }  # fmt: skip

    # ------------------------------------------------------------------ figure 4 (HTTP)
    def reads(self) -> None:
        self.results["read_users"] = self.readers
        self.levels("reads", self.config.read_concurrency, self.config.reads, "reads_http", "reads_profile")

    # ------------------------------------------------------------------ figure 4 (in process) and 6
    def probe(self) -> None:
        """Figure 4's handler alone, figure 6's accounting: bench.probe in a fresh interpreter."""
        cfg = self.config
        # Cost authors: pushed ones spread over the follower counts, uniform ones, and pulled ones.
        pushed = sorted(self.pushed, key=lambda u: self.counts[u])
        count = max(2, cfg.cost_posts - min(2, len(self.pulled)))
        spread = [pushed[round(i * (len(pushed) - 1) / max(1, count // 2 - 1))] for i in range(count // 2)]
        uniform = random.Random(cfg.seed + 2).sample(pushed, min(len(pushed), count - len(spread)))
        config = {
            "root": str(self.stack.root), "state_dir": str(self.state_dir / "probe"),
            "endpoints": {"default": self.stack.endpoints.default, "dynamodb": self.stack.endpoints.dynamodb},
            "redis_url": self.stack.redis.url if self.stack.redis else "",
            "readers": [[self.user_ids[u], self.tokens[u]] for u in self.readers],
            "cost_authors": [[self.user_ids[u], self.tokens[u], self.counts[u]]
                             for u in spread + uniform + sorted(self.pulled)[:2]],
            "seconds": cfg.probe_seconds, "probe_windows": cfg.probe_windows,
            "accounted_reads": cfg.accounted_reads,
            "feed_limit": cfg.feed_limit, "profile": cfg.profile and not cfg.smoke,
            "profile_path": str(self.profile_dir / "feed-handler-pyinstrument.txt"),
        }  # fmt: skip
        with self.phase("in-process probe") as cpu:  # in a fresh, spawned interpreter
            result = in_processes(probe.run, [config], str(self.state_dir / "probe.log"))[0]
        self.results["probe"] = {**result, "cpu_cores": cpu["cpu_cores"]}

    # ------------------------------------------------------------------ figures 5 and 6
    def cold_start(self) -> None:
        cfg, cache = self.config, REPO_ROOT / "bench" / ".cache" / "packages"
        with self.phase("cold start: import times"):
            args = (cfg.coldstart_runs, cache, not cfg.smoke, self.state_dir / "images", cfg.coldstart_images)
            self.results["imports"] = coldstart.import_times(*args, breakdown=not cfg.smoke)
        with self.phase("cold start: package sizes"):
            self.results["packages"] = coldstart.package_sizes(cache, allow_download=not cfg.smoke)

    def cost(self) -> None:
        probe, steps = self.results["probe"], self.results.get("convergence", [])
        # Invocations per record of each stream runner, from the busiest non-degraded step.
        step = max([s for s in steps if not s["degraded"]] or steps, key=lambda s: s["rate"], default=None)
        batching = {}
        if step:
            self.results["batching_step_rate"] = step["rate"]
            stream = step["stream"].items()
            batching = {k: d["invocations"] / d["records"] for k, d in stream if d.get("records")}
        latencies = probe["handler_reads"]["latencies"]
        self.results["cost"] = estimate(
            probe["posts"], probe["read_accounting"], sum(latencies) / max(1, len(latencies)), self.counts,
            self.pulled, batching, probe["memory_mb"], self.threshold,
        )  # fmt: skip


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()


def execute(config: BenchConfig, render: Callable[[dict[str, Any], BenchConfig], Path], command: str) -> Path:
    """Run every phase, write results.json and the report; returns the report path."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C: the stack is shut down
    config.out_dir.mkdir(parents=True, exist_ok=True)
    started, state = time.monotonic(), Path(tempfile.mkdtemp(prefix="bench-state-"))
    run = Run(config, state)
    run.results.update(
        config=asdict(config), command=command, started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        parameters=dict(run.parameters), emulator=describe_emulator(config.emulator),
        machine={"cpus": os.cpu_count(), "python": platform.python_version()},
        code={"commit": _git("rev-parse", "--short", "HEAD"),
              "modified": _git("diff", "--name-only").split()},
    )  # fmt: skip
    run.results["machine"]["load_avg_at_start"] = os.getloadavg()
    log(f"graph: {config.users} users, threshold {run.threshold}, page size {run.page_size}, "
        f"pulled {len(run.pulled)}; DynamoDB on {run.results['emulator']['dynamodb']}")  # fmt: skip
    try:
        try:
            with run.phase("stack start"):
                run.stack.launch()
            run.results["stack_parameters"] = run.stack.effective_parameters
            with run.phase("emulator ceiling (empty emulator)"):
                dynamodb = run.stack.endpoints.dynamodb
                run.results["ceiling_at_start"] = ceiling.measure_ceiling(dynamodb, config.ceiling_seconds)
            for phase in (run.setup, run.convergence, run.write_path, run.fanout, run.reads, run.probe):
                phase()
            with run.phase("check-convergence"):  # issue 11: every feed matches the truth after the run
                run.results["convergence_check"] = run.stack.check_convergence()
        finally:
            with run.phase("stack stop"):
                run.stack.shutdown()
        run.cold_start()
        run.cost()
    except BaseException:
        log(f"failed; the stack's state and logs are kept in {state}")
        raise
    run.results["total_seconds"] = time.monotonic() - started
    run.results["machine"]["load_avg_at_end"] = os.getloadavg()
    (config.out_dir / "results.json").write_text(json.dumps(run.results, default=str))
    report = render(run.results, config)
    shutil.rmtree(state, ignore_errors=True)
    return report
