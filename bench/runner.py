"""One benchmark run, phase by phase, against one local stack; returns every result."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from multiprocessing import get_context
from multiprocessing.context import SpawnContext
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client.samples import Sample

from bench import ceiling, coldstart, profiling, workers
from bench.client import Account, ApiClient
from bench.config import REPO_ROOT, BenchConfig
from bench.cost import estimate
from bench.graph import SocialGraph, generate, pick_threshold
from bench.stack import StackProcess, machine_cpu, metric_sum, python_path_env
from bench.stats import summary
from ripple_local.emulators import DYNAMODB_LOCAL, MOTO, start_emulators
from ripple_local.tools import DYNAMODB_LOCAL_VERSION

POSTER_THREADS = 24
FANOUT_METRIC = "ripple_fanout_items_written_total"


def log(message: str) -> None:
    """Progress on stderr (the report path alone goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Run:
    """State shared by the phases of one run."""

    def __init__(self, config: BenchConfig, state_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.ctx: SpawnContext = get_context("spawn")
        self.rng = random.Random(config.seed)
        self.graph: SocialGraph = generate(
            config.users, config.mean_following, config.max_following, config.zipf_s, config.seed
        )
        self.followers = self.graph.followers()
        self.counts = self.graph.follower_counts()
        self.threshold = config.high_follower_threshold or pick_threshold(self.graph, config.pulled_accounts)
        self.page_size = config.fanout_page_size or max(5, self.threshold // 3)
        self.pulled = {u for u, c in enumerate(self.counts) if c >= self.threshold}
        self.parameters = {
            "HighFollowerThreshold": str(self.threshold),
            "FanoutPageSize": str(self.page_size),
            # Tokens must outlive the run (the default 15 min is about a full run).
            "AccessTokenTtlSeconds": "7200",
        }
        self.stack = StackProcess(state_dir, self.parameters, config.emulator)
        self.accounts: list[Account] = []
        self.results: dict[str, Any] = {"phases": {}}
        self.profile_dir = config.out_dir / "profiles"
        out_degree = sorted(range(self.graph.users), key=lambda u: -len(self.graph.following[u]))
        self.watchers = out_degree[: config.watchers]
        self.recent_posts: dict[int, list[float]] = {}  # author -> scheduled times (rate limit guard)

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Time a phase and account the CPU every process used during it."""
        log(f"{name} ...")
        record: dict[str, Any] = {}
        cpu0, machine0, times0, started = self.stack.cpu(), machine_cpu(), os.times(), time.monotonic()
        try:
            yield record
        finally:
            elapsed = time.monotonic() - started
            cpu1, machine1, times1 = self.stack.cpu(), machine_cpu(), os.times()
            ncpu = os.cpu_count() or 1
            usage = {k: (cpu1.get(k, 0.0) - v) / elapsed for k, v in cpu0.items()}
            clients = (
                times1.user + times1.system + times1.children_user + times1.children_system
                - (times0.user + times0.system + times0.children_user + times0.children_system)
            )  # fmt: skip
            usage["bench clients"] = clients / elapsed
            busy = (machine1[0] - machine0[0]) / max(1.0, machine1[1] - machine0[1]) * ncpu
            usage["other (not this run)"] = max(0.0, busy - sum(usage.values()))
            self.results["phases"][name] = {
                "seconds": elapsed,
                "cpu_cores": usage,
                "machine_busy_cores": busy,
            }
            record["cpu_cores"] = usage
            log(f"{name} done in {elapsed:.1f}s")

    def tokens(self, users: Sequence[int]) -> list[str]:
        return [self.accounts[u].token for u in users]

    def pick_author(self, at: float, pushed: Sequence[int], pulled: Sequence[int]) -> int:
        """A random author (a share of them high-follower) under 50 posts a minute (limit 60)."""
        for _ in range(100):
            pool = pulled if pulled and self.rng.random() < self.config.pulled_share else pushed
            author = self.rng.choice(pool)
            recent = [t for t in self.recent_posts.get(author, []) if t > at - 60.0]
            if len(recent) < 50:
                self.recent_posts[author] = [*recent, at]
                return author
        raise RuntimeError("no author below the per-user write limit; lower the rate or add users")

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.config
        with self.phase("signups") as record:
            items = [(i, f"bench_{i:05d}") for i in range(cfg.users)]
            chunks = workers.split(items, cfg.client_processes)
            done = workers.run_processes(self.ctx, workers.signup_worker, chunks, self.stack.api_url, 8)
            self.accounts = sorted((a for chunk, _ in done for a in chunk), key=lambda a: a.index)
            record["users"] = len(self.accounts)
            signup_retries = sum(r for _, r in done)
        with self.phase("follows") as record:
            edges = self.graph.edges()
            self.rng.shuffle(edges)
            pairs = [(self.accounts[u].token, self.accounts[v].user_id) for u, v in edges]
            done = workers.run_processes(
                self.ctx,
                workers.follow_worker,
                workers.split(pairs, cfg.client_processes),
                self.stack.api_url,
                8,
            )
            statuses = [s for chunk, _, _ in done for s in chunk]
            latencies = [x for _, chunk, _ in done for x in chunk]
            follow_retries = sum(r for _, _, r in done)
            record.update(follows=len(statuses), ok=statuses.count(200), latency=summary(latencies))
            record["backfill_drain_s"] = self.stack.wait_idle(self.config.idle_quiet_s, timeout_s=300)
        self.results["graph"] = self.graph.describe()
        self.results["follower_counts"] = self.counts
        follow_s = self.results["phases"]["follows"]["seconds"]
        self.results["setup"] = {
            "signups_per_s": len(self.accounts) / self.results["phases"]["signups"]["seconds"],
            "follows_per_s": len(statuses) / follow_s,
            "follow_latency": summary(latencies),
            "follow_errors": len(statuses) - statuses.count(200),
            "signup_retries": signup_retries,
            "follow_retries": follow_retries,
        }
        self.results["pulled"] = self.check_pulled()
        with self.phase("warm feeds"):
            readers = self.read_users()
            users = sorted(set(self.watchers) | set(readers))
            done = workers.run_processes(
                self.ctx,
                workers.feed_once_worker,
                workers.split(self.tokens(users), cfg.client_processes),
                self.stack.api_url,
                8,
            )
            bad = [s for chunk, _ in done for s in chunk if s != 200]
            if bad:
                raise RuntimeError(f"warming feeds failed: {bad[:5]}")

    def check_pulled(self) -> dict[str, Any]:
        """Which accounts the stack marked high-follower (read from the Users table's index)."""
        client = ceiling.dynamodb_client(self.stack.endpoints.dynamodb)
        marked: set[str] = set()
        kwargs: dict[str, Any] = {
            "TableName": "ripple-local-UsersTable",
            "IndexName": "by_high_follower",
            "KeyConditionExpression": "high_follower = :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
        while True:
            page = client.query(**kwargs)
            marked.update(item["user_id"]["S"] for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        expected = {self.accounts[u].user_id for u in self.pulled}
        return {
            "threshold": self.threshold,
            "expected": len(expected),
            "marked": len(marked),
            "match": marked == expected,
            "followers": sorted((self.counts[u] for u in self.pulled), reverse=True),
        }

    def read_users(self) -> list[int]:
        rng = random.Random(self.config.seed + 1)
        return rng.sample(range(self.graph.users), min(self.config.read_users, self.graph.users))

    # ------------------------------------------------------------------ figure 1 (and 2)
    def convergence(self) -> None:
        cfg = self.config
        steps: list[dict[str, Any]] = []
        baseline_p99 = math.nan
        for rate in cfg.rates:
            with self.phase(f"convergence {rate:g}/s") as cpu:
                step = self.convergence_step(rate)
            step["cpu_cores"] = cpu["cpu_cores"]
            steps.append(step)
            pushed_p99 = step["pushed"]["p99"]
            if math.isnan(baseline_p99):
                baseline_p99 = pushed_p99
            reasons = []
            if step["achieved_posts_per_s"] < 0.9 * step["offered_posts_per_s"]:
                reasons.append("achieved post rate below 90% of offered")
            if step["never_seen"] > 0:
                reasons.append("posts never seen")
            if step["late"] > 0:
                reasons.append(
                    f"{step['late']} pairs converged only after the {cfg.settle_timeout_s:g} s settle window"
                )
            if pushed_p99 > max(5.0, 5 * baseline_p99):
                reasons.append("convergence p99 over 5x the lowest rate's (and over 5 s)")
            step["degraded"] = reasons
            log(
                f"rate {rate:g}/s: achieved {step['achieved_posts_per_s']:.1f}/s, convergence p50 "
                f"{step['pushed']['p50'] * 1000:.0f} ms p99 {pushed_p99 * 1000:.0f} ms, "
                f"never seen {step['never_seen']}"
            )
            if reasons:
                break
        self.results["convergence"] = steps

    def convergence_step(self, rate: float) -> dict[str, Any]:
        cfg = self.config
        offsets = workers.poisson_schedule(rate, cfg.duration_s, self.rng)
        pushed = [u for u in range(self.graph.users) if u not in self.pulled]
        pulled = sorted(self.pulled)
        watcher_set = set(self.watchers)
        now = time.monotonic()
        schedule: list[workers.Scheduled] = []
        for i, offset in enumerate(offsets):
            author = self.pick_author(now + offset, pushed, pulled)
            candidates = [f for f in self.followers[author] if f in watcher_set]
            sampled = self.rng.sample(candidates, min(cfg.samples_per_post, len(candidates)))
            schedule.append(
                (offset, author, self.accounts[author].token, f"bench post at {rate:g}/s #{i}", sampled)
            )
        inbox = self.ctx.Queue()
        out = self.ctx.Queue()
        watcher = self.ctx.Process(
            target=workers.watcher_process,
            args=(
                [(w, self.accounts[w].token) for w in self.watchers],
                self.stack.api_url,
                cfg.poll_interval_s,
                cfg.max_poll_rate,
                cfg.feed_limit,
                cfg.settle_timeout_s,
                inbox,
                out,
            ),
            daemon=True,
        )
        watcher.start()
        before = self.stack.metrics()
        t0 = time.monotonic() + 1.5
        chunks = workers.split(schedule, cfg.client_processes)
        posted = workers.run_processes(
            self.ctx, workers.open_loop_poster, chunks, self.stack.api_url, POSTER_THREADS, t0, inbox,
            timeout_s=cfg.duration_s + 120,
        )  # fmt: skip
        rows = sorted(r for chunk in posted for r in chunk)
        posting_s = max(cfg.duration_s, max((r[2] for r in rows), default=t0) - t0)
        inbox.put(("end",))
        watched = out.get(timeout=cfg.settle_timeout_s + 300)
        watcher.join(10)
        if isinstance(watched, BaseException):
            raise RuntimeError(f"watcher failed: {watched!r}")
        drain_s = self.stack.wait_idle(self.config.idle_quiet_s, timeout_s=600)
        after = self.stack.metrics()
        ok = [r for r in rows if r[3] == 201]
        author_of = {r[5]: r[4] for r in ok}
        lag_pushed: list[float] = []
        lag_pulled: list[float] = []
        for post_id, _w, created, seen_at in watched["seen"]:
            lag = max(0.0, seen_at - created)
            (lag_pulled if author_of.get(post_id) in self.pulled else lag_pushed).append(lag)
        # Not seen within the settle window: once the pipeline has drained, is it there (late) or not (lost)?
        late: list[float] = []
        lost: list[tuple[str, int]] = []
        feeds: dict[int, set[str]] = {}
        client = ApiClient(self.stack.api_url)
        try:
            for post_id, reader, created in watched["missing"]:
                if reader not in feeds:
                    feeds[reader] = workers.all_feed_ids(client, self.accounts[reader].token)
                if post_id in feeds[reader]:
                    late.append(watched["ended"] - created)  # a lower bound of its convergence
                else:
                    lost.append((post_id, reader))
        finally:
            client.close()
        sampled_posts = {p for p, *_ in watched["seen"]} | {m[0] for m in watched["missing"]}
        return {
            "rate": rate,
            "duration_s": cfg.duration_s,
            "offered_posts": len(schedule),
            "offered_posts_per_s": len(schedule) / cfg.duration_s,
            "created": len(ok),
            "errors": {
                str(s): sum(1 for r in rows if r[3] == s) for s in sorted({r[3] for r in rows if r[3] != 201})
            },
            "achieved_posts_per_s": len(ok) / posting_s,
            "post_latency": summary(r[2] - r[1] for r in ok),
            "post_lateness": summary(max(0.0, r[1] - r[0]) for r in rows),
            "pushed": summary(lag_pushed),
            "pulled": summary(lag_pulled),
            "pushed_lags": lag_pushed,
            "pulled_lags": lag_pulled,
            "sampled_posts": len(sampled_posts),
            "pairs": len(watched["seen"]) + len(watched["missing"]),
            "never_seen": len(lost),
            "lost": lost,
            "late": len(late),
            "late_min_lag_s": min(late) if late else math.nan,
            "settle_timeout_s": cfg.settle_timeout_s,
            "polls": watched["polls"],
            "poll_rate": watched["polls"] / max(1e-9, watched["ended"] - watched["started"]),
            "poll_gap": summary(watched["poll_gaps"]),
            "poll_latency": summary(watched["poll_latencies"]),
            "poll_errors": watched["poll_errors"],
            "drain_s": drain_s,
            "fanout_items": metric_sum(after, FANOUT_METRIC) - metric_sum(before, FANOUT_METRIC),
            "stream": self.stream_deltas(before, after),
        }

    @staticmethod
    def stream_deltas(before: list[Sample], after: list[Sample]) -> dict[str, dict[str, float]]:
        """Invocations, records and retries per runner between two scrapes."""
        fields = {
            "ripple_stream_invocations_total": "invocations",
            "ripple_stream_records_delivered_total": "records",
            "ripple_stream_retries_total": "retries",
        }
        out: dict[str, dict[str, float]] = {}
        for sign, samples in ((-1.0, before), (1.0, after)):
            for sample in samples:
                if sample.name in fields:
                    runner = out.setdefault(
                        f"{sample.labels['function']}.{sample.labels['event_source']}", {}
                    )
                    field = fields[sample.name]
                    runner[field] = runner.get(field, 0.0) + sign * sample.value
        return out

    # ------------------------------------------------------------------ figure 2
    def write_path(self) -> None:
        cfg = self.config
        with self.phase("emulator references"):
            self.results["emulator_references"] = self.emulator_references()
        levels = []
        pushed = [u for u in range(self.graph.users) if u not in self.pulled]
        for concurrency in cfg.write_concurrency:
            with self.phase(f"write path c={concurrency}") as cpu:
                level = self.closed_loop_posts(concurrency, cfg.closed_loop_s, pushed)
                level["drain_s"] = self.stack.wait_idle(self.config.idle_quiet_s, timeout_s=300)
            level["cpu_cores"] = cpu["cpu_cores"]
            levels.append(level)
            log(
                f"write c={concurrency}: {level['posts_per_s']:.1f} posts/s, "
                f"p99 {level['latency']['p99'] * 1000:.0f} ms"
            )
        self.results["write_path"] = levels
        if self.profiling_enabled():
            with self.phase("write path (profiled)"):
                recordings = profiling.profile_pids(self.profiled_pids(), 6, self.profile_dir, "writes")
                self.closed_loop_posts(max(cfg.write_concurrency), 6.0, pushed)
                self.results["write_profile"] = profiling.finish(recordings, list(self.profiled_pids()))
                self.stack.wait_idle(self.config.idle_quiet_s, timeout_s=300)

    def emulator_references(self) -> dict[str, Any]:
        """Bare calls of a post and its fan-out on this run's emulator - fan-out's follower page
        on a table as large as Ripple's, and a feed-page Query and the post transaction at each
        of ``scaling_sizes`` - and, unless disabled, the same on stock moto (or DynamoDB Local)."""
        cfg = self.config

        def measure(url: str) -> dict[str, Any]:
            follows = len(self.graph.edges())
            return {
                "follower_query": ceiling.measure_follower_queries(
                    url, cfg.ceiling_seconds / 2, follows, self.graph.users, self.page_size
                ),
                "scaling": ceiling.measure_scaling(url, cfg.scaling_sizes, cfg.ceiling_seconds),
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
        for name, refs in (("this", result["this"]), ("other", result.get("other"))):
            for size, calls in (refs or {}).get("scaling", {}).items():
                log(
                    f"{name} emulator at {size} items: Query p50 {calls['query']['p50'] * 1000:.1f} ms, "
                    f"post transaction p50 {calls['transaction']['p50'] * 1000:.1f} ms"
                )
        return result

    def closed_loop_posts(self, concurrency: int, duration_s: float, authors: list[int]) -> dict[str, Any]:
        rng = random.Random(self.config.seed + concurrency)
        order = authors[:]
        rng.shuffle(order)
        lists = [[(u, self.accounts[u].token) for u in order[i::concurrency]] for i in range(concurrency)]
        per_process = workers.split(lists, self.config.client_processes)
        t0 = time.monotonic() + 1.0
        done = workers.run_processes(
            self.ctx, workers.closed_loop_poster, per_process, self.stack.api_url, duration_s, t0,
            timeout_s=duration_s + 120,
        )  # fmt: skip
        rows = [r for chunk in done for r in chunk]
        ok = [r for r in rows if r[2] == 201]
        return {
            "concurrency": concurrency,
            "duration_s": duration_s,
            "posts": len(ok),
            "errors": len(rows) - len(ok),
            "posts_per_s": len(ok) / duration_s,
            "latency": summary(r[1] - r[0] for r in ok),
        }

    # ------------------------------------------------------------------ figure 3
    def fanout(self) -> None:
        cfg = self.config
        with self.phase("emulator ceiling") as record:
            single = ceiling.measure_ceiling(self.stack.endpoints.dynamodb, cfg.ceiling_seconds, threads=1)
            double = ceiling.measure_ceiling(self.stack.endpoints.dynamodb, cfg.ceiling_seconds, threads=2)
            record["done"] = True
        with self.phase("fan-out burst") as cpu:
            burst = self.burst(cfg.posts)
        burst["cpu_cores"] = cpu["cpu_cores"]
        best = max(single["batch_items_per_s"], double["batch_items_per_s"])
        burst["ratio_to_ceiling_1_client"] = burst["items_per_s"] / single["batch_items_per_s"]
        burst["ratio_to_ceiling_best"] = burst["items_per_s"] / best
        self.results["ceiling"] = {"one_client": single, "two_clients": double}
        self.results["fanout"] = burst
        log(
            f"fan-out {burst['items_per_s']:.0f} items/s vs ceiling {single['batch_items_per_s']:.0f} "
            f"(1 client) / {double['batch_items_per_s']:.0f} (2) items/s"
        )
        if self.profiling_enabled():
            with self.phase("fan-out burst (profiled)"):
                recordings = profiling.profile_pids(self.profiled_pids(), 8, self.profile_dir, "fanout")
                self.burst(max(10, cfg.posts // 3))
                self.results["fanout"]["profile"] = profiling.finish(recordings, list(self.profiled_pids()))

    def burst(self, posts: int) -> dict[str, Any]:
        """``posts`` posts by the most-followed pushed authors, as fast as 16 clients can,
        with the fan-out counter sampled until every follower's item is written."""
        ranked = sorted(
            (u for u in range(self.graph.users) if u not in self.pulled), key=lambda u: -self.counts[u]
        )
        authors = ranked[: max(1, min(len(ranked), math.ceil(posts / 10)))]
        schedule: list[workers.Scheduled] = []
        for i in range(posts):
            author = authors[i % len(authors)]
            schedule.append((0.0, author, self.accounts[author].token, f"burst #{i}", []))
        expected = sum(self.counts[a] for _, a, *_ in schedule)
        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        start_value = metric_sum(self.stack.metrics(), FANOUT_METRIC)

        def sample() -> None:
            while not stop.is_set():
                samples.append(
                    (time.monotonic(), metric_sum(self.stack.metrics(), FANOUT_METRIC) - start_value)
                )
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        t0 = time.monotonic() + 1.0
        sampler.start()
        done = workers.run_processes(
            self.ctx, workers.open_loop_poster, workers.split(schedule, self.config.client_processes),
            self.stack.api_url, 8, t0, None, timeout_s=600,
        )  # fmt: skip
        rows = [r for chunk in done for r in chunk]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (not samples or samples[-1][1] < expected):
            time.sleep(0.25)
        drain = self.stack.wait_idle(self.config.idle_quiet_s, timeout_s=120)
        stop.set()
        sampler.join(5)
        first_sent = min(r[1] for r in rows)
        written = samples[-1][1] if samples else 0.0
        finished = next((t for t, v in samples if v >= written), samples[-1][0] if samples else first_sent)
        span = max(1e-9, finished - first_sent)
        window = [(t - first_sent, v) for t, v in samples if t >= first_sent]
        peak = math.nan  # the best 1 s window, when the burst lasts long enough to have one
        if span >= 2.0:
            peak = 0.0
            for i, (t, v) in enumerate(window):
                later = next(((t2, v2) for t2, v2 in window[i + 1 :] if t2 - t >= 1.0), None)
                if later is None:
                    break
                peak = max(peak, (later[1] - v) / (later[0] - t))
        posted = [r for r in rows if r[3] == 201]
        return {
            "posts": len(posted),
            "authors": len(authors),
            "mean_followers": expected / max(1, len(schedule)),
            "expected_items": expected,
            "items_written": written,
            "span_s": span,
            "items_per_s": written / span,
            "peak_1s_items_per_s": peak,
            "clients": 8 * len(workers.split(schedule, self.config.client_processes)),
            "posting_s": max(r[2] for r in rows) - first_sent,
            "post_latency": summary(r[2] - r[1] for r in posted),
            "timeline": window,
            "drain_after_s": drain,
        }

    # ------------------------------------------------------------------ figure 4
    def reads(self) -> None:
        cfg = self.config
        readers = self.read_users()
        self.results["read_users"] = readers
        levels = []
        for concurrency in cfg.read_concurrency:
            with self.phase(f"reads c={concurrency}") as cpu:
                level = self.closed_loop_reads(readers, concurrency, cfg.closed_loop_s, cfg.reads)
            level["cpu_cores"] = cpu["cpu_cores"]
            levels.append(level)
            log(
                f"reads c={concurrency}: {level['reads_per_s']:.1f}/s, "
                f"p99 {level['latency']['p99'] * 1000:.0f} ms"
            )
        self.results["reads_http"] = levels
        if self.profiling_enabled():
            with self.phase("reads (profiled)"):
                recordings = profiling.profile_pids(self.profiled_pids(), 6, self.profile_dir, "reads")
                self.closed_loop_reads(readers, max(cfg.read_concurrency), 6.0, 10**9)
                self.results["reads_profile"] = profiling.finish(recordings, list(self.profiled_pids()))

    def closed_loop_reads(
        self, readers: list[int], concurrency: int, duration_s: float, max_reads: int
    ) -> dict[str, Any]:
        tokens = self.tokens(readers)
        lists = [tokens[i::concurrency] or tokens for i in range(concurrency)]
        per_process = workers.split(lists, self.config.client_processes)
        t0 = time.monotonic() + 1.0
        share = math.ceil(max_reads / len(per_process))
        done = workers.run_processes(
            self.ctx, workers.closed_loop_reader, per_process, self.stack.api_url, duration_s, share, t0,
            self.config.feed_limit, timeout_s=duration_s + 120,
        )  # fmt: skip
        rows = [r for chunk in done for r in chunk]
        ok = [r for r in rows if r[2] == 200]
        span = (max(r[1] for r in rows) - t0) if rows else duration_s
        return {
            "concurrency": concurrency,
            "reads": len(ok),
            "errors": len(rows) - len(ok),
            "seconds": span,
            "reads_per_s": len(ok) / max(1e-9, span),
            "latency": summary(r[1] - r[0] for r in ok),
        }

    # ------------------------------------------------------------------ figure 4 (in process) + 6
    def probe(self) -> None:
        cfg = self.config
        readers = self.read_users()
        authors = self.cost_authors()
        config = {
            "root": str(self.stack.root),
            "state_dir": str(self.state_dir / "probe"),
            "endpoints": {"default": self.stack.endpoints.default, "dynamodb": self.stack.endpoints.dynamodb},
            "redis_url": self.stack.redis_url,
            "readers": [[self.accounts[u].user_id, self.accounts[u].token] for u in readers],
            "cost_authors": [
                [self.accounts[u].user_id, self.accounts[u].token, self.counts[u]] for u in authors
            ],
            "seconds": cfg.probe_seconds,
            "accounted_reads": cfg.accounted_reads,
            "feed_limit": cfg.feed_limit,
            "profile": self.profiling_enabled(),
            "profile_path": str(self.profile_dir / "feed-handler-pyinstrument.txt"),
        }
        path = self.state_dir / "probe-config.json"
        out = self.state_dir / "probe-result.json"
        path.write_text(json.dumps(config))
        with self.phase("in-process probe") as cpu:
            done = subprocess.run(
                [sys.executable, "-m", "bench.probe", str(path), str(out)],
                cwd=REPO_ROOT,
                env=python_path_env(),
                capture_output=True,
                text=True,
                timeout=900,
            )
            if done.returncode != 0:
                raise RuntimeError(f"probe failed:\n{done.stderr[-4000:]}")
        result = json.loads(out.read_text())
        result["cpu_cores"] = cpu["cpu_cores"]
        self.results["probe"] = result

    def cost_authors(self) -> list[int]:
        """Pushed authors spread over the follower distribution, plus pulled ones."""
        cfg = self.config
        rng = random.Random(cfg.seed + 2)
        pushed = sorted(
            (u for u in range(self.graph.users) if u not in self.pulled), key=lambda u: self.counts[u]
        )
        count = max(2, cfg.cost_posts - min(2, len(self.pulled)))
        spread = [pushed[round(i * (len(pushed) - 1) / max(1, count // 2 - 1))] for i in range(count // 2)]
        uniform = rng.sample(pushed, min(len(pushed), count - len(spread)))
        return spread + uniform + sorted(self.pulled)[:2]

    def profiling_enabled(self) -> bool:
        return self.config.profile and not self.config.smoke

    def profiled_pids(self) -> dict[str, int]:
        """The Python processes doing the work: the stack, and moto when it serves DynamoDB
        (py-spy cannot sample DynamoDB Local's JVM)."""
        python = ("stack", "moto") if self.config.emulator == MOTO else ("stack",)
        return {k: v for k, v in self.stack.pids.items() if k in python}

    # ------------------------------------------------------------------ figure 5
    def cold_start(self) -> None:
        cfg = self.config
        cache = REPO_ROOT / "bench" / ".cache" / "packages"
        with self.phase("cold start: import times"):
            self.results["imports"] = coldstart.import_times(
                cfg.coldstart_runs, cache, allow_download=not cfg.smoke, workdir=self.state_dir / "images",
                use_images=cfg.coldstart_images, breakdown=not cfg.smoke,
            )  # fmt: skip
        with self.phase("cold start: package sizes"):
            self.results["packages"] = coldstart.package_sizes(cache, allow_download=not cfg.smoke)

    # ------------------------------------------------------------------ figure 6
    def cost(self) -> None:
        probe = self.results["probe"]
        batching = self.batching()
        self.results["cost"] = estimate(
            posts=probe["posts"],
            read=probe["read_accounting"],
            read_duration_s=sum(probe["handler_reads"]["latencies"])
            / max(1, len(probe["handler_reads"]["latencies"])),
            follower_counts=self.counts,
            pulled=self.pulled,
            batching=batching,
            memory_mb=probe["memory_mb"],
            threshold=self.threshold,
        )

    def batching(self) -> dict[str, float]:
        """Invocations per record of each stream runner, from the busiest non-degraded step."""
        steps = [s for s in self.results.get("convergence", []) if not s.get("degraded")]
        steps = steps or self.results.get("convergence", [])
        if not steps:
            return {}
        step = max(steps, key=lambda s: s["rate"])
        self.results["batching_step_rate"] = step["rate"]
        return {
            runner: d["invocations"] / d["records"]
            for runner, d in step["stream"].items()
            if d.get("records")
        }


def describe_emulator(kind: str) -> dict[str, str]:
    """What serves DynamoDB (and its streams) and what serves the other services, with versions."""
    moto = f"moto {metadata.version('moto')}"
    if kind == DYNAMODB_LOCAL:
        return {"kind": kind, "dynamodb": f"DynamoDB Local {DYNAMODB_LOCAL_VERSION}", "others": moto}
    if kind == MOTO:
        return {"kind": kind, "dynamodb": moto, "others": moto}
    return {"kind": kind, "dynamodb": "LocalStack (DynamoDB Local inside)", "others": "LocalStack"}


def _git_state() -> dict[str, Any]:
    """The commit measured, and which tracked files differed from it (work in progress)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "modified": git("diff", "--name-only").splitlines(),
    }


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def execute(config: BenchConfig, render: Callable[[dict[str, Any], BenchConfig], Path]) -> Path:
    """Run every phase, write results.json and the report; returns the report path."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="bench-state-"))
    run = Run(config, state)
    run.results["config"] = config.as_dict()
    run.results["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    run.results["parameters"] = dict(run.parameters)
    run.results["machine"] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_avg_at_start": os.getloadavg(),
    }
    run.results["code"] = _git_state()
    run.results["emulator"] = describe_emulator(config.emulator)
    log(
        f"graph: {config.users} users, threshold {run.threshold}, page size {run.page_size}, "
        f"pulled {len(run.pulled)}; DynamoDB on {run.results['emulator']['dynamodb']}"
    )
    try:
        try:
            with run.phase("stack start"):
                run.stack.start()
            run.results["stack_parameters"] = run.stack.effective_parameters
            with run.phase("emulator ceiling (empty emulator)"):
                run.results["ceiling_at_start"] = ceiling.measure_ceiling(
                    run.stack.endpoints.dynamodb, config.ceiling_seconds, threads=1
                )
            run.setup()
            run.convergence()
            run.write_path()
            run.fanout()
            run.reads()
            run.probe()
        finally:
            with run.phase("stack stop"):
                run.stack.stop()
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


__all__ = ["Run", "execute", "log"]
