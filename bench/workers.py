"""Client processes: each runs threads with their own keep-alive connections.

Everything here is a top-level function so that it can run in a ``spawn``-ed process.
Times are ``time.monotonic()``, which on Linux is one clock for every process, so send
and receive times from different client processes can be compared directly.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.context import SpawnContext
from multiprocessing.queues import Queue as MpQueue
from typing import Any, TypeVar

from bench.client import Account, ApiClient
from bench.config import PASSWORD

T = TypeVar("T")
R = TypeVar("R")


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """Round-robin split into ``parts`` non-empty lists (fewer if there are fewer items)."""
    parts = max(1, min(parts, len(items)))
    return [list(items[i::parts]) for i in range(parts)]


def run_processes(
    ctx: SpawnContext,
    target: Callable[..., None],
    chunks: Sequence[Any],
    *args: Any,
    timeout_s: float = 3600.0,
) -> list[Any]:
    """Run ``target(chunk, *args, results_queue)`` in one process per chunk; return their results
    (in completion order). A process that dies without answering fails the call."""
    results: MpQueue[Any] = ctx.Queue()
    processes = [ctx.Process(target=target, args=(chunk, *args, results), daemon=True) for chunk in chunks]
    for process in processes:
        process.start()
    collected: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(collected) < len(processes):
            try:
                collected.append(results.get(timeout=1.0))
                continue
            except queue.Empty:
                pass
            dead = [p for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"client process exited with {dead[0].exitcode} before answering")
            if time.monotonic() > deadline:
                raise TimeoutError(f"client processes still running after {timeout_s:.0f}s")
    finally:
        for process in processes:
            process.join(5.0)
            if process.is_alive():
                process.terminate()
    for item in collected:
        if isinstance(item, BaseException):
            raise RuntimeError(f"client process failed: {item!r}") from item
    return collected


def _threaded(
    items: Sequence[T], threads: int, work: Callable[[ApiClient, T], R], base_url: str
) -> tuple[list[R], int]:
    """Apply ``work`` to every item from ``threads`` threads, one connected ApiClient per
    thread; returns the results and how many calls were retried."""
    local = threading.local()
    clients: list[ApiClient] = []
    lock = threading.Lock()

    def run(item: T) -> R:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = ApiClient(base_url)
            client.connect()
            with lock:
                clients.append(client)
        return work(client, item)

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(run, items)), sum(c.retries for c in clients)
    finally:
        for client in clients:
            client.close()


def _connected_pool(
    pool: ThreadPoolExecutor, threads: int, base_url: str, local: threading.local
) -> list[ApiClient]:
    """Start every thread of ``pool`` and connect its client now, before a measurement."""
    barrier = threading.Barrier(threads)
    clients: list[ApiClient] = []
    lock = threading.Lock()

    def start() -> None:
        client = local.client = ApiClient(base_url)
        client.connect()
        with lock:
            clients.append(client)
        barrier.wait(timeout=60)  # hold the thread, so that each task gets its own

    for future in [pool.submit(start) for _ in range(threads)]:
        future.result()
    return clients


# ---------------------------------------------------------------------- setup
def signup_worker(chunk: list[tuple[int, str]], base_url: str, threads: int, out: MpQueue[Any]) -> None:
    """Sign up ``(index, username)`` pairs; puts ``(accounts, retries)``."""
    try:
        out.put(_threaded(chunk, threads, lambda c, item: c.signup(item[0], item[1], PASSWORD), base_url))
    except BaseException as error:
        out.put(RuntimeError(repr(error)))


def follow_worker(chunk: list[tuple[str, str]], base_url: str, threads: int, out: MpQueue[Any]) -> None:
    """Follow ``(token, followee_id)`` pairs; puts ``(statuses, latencies, retries)``."""
    try:
        replies, retries = _threaded(chunk, threads, lambda c, item: c.follow(item[0], item[1]), base_url)
        out.put(([r.status for r in replies], [r.latency for r in replies], retries))
    except BaseException as error:
        out.put(RuntimeError(repr(error)))


def feed_once_worker(chunk: list[str], base_url: str, threads: int, out: MpQueue[Any]) -> None:
    """One GET /feed per token (warms the reader's cached feed); puts ``(statuses, retries)``."""
    try:
        out.put(_threaded(chunk, threads, lambda c, token: c.feed(token, retry_errors=5).status, base_url))
    except BaseException as error:
        out.put(RuntimeError(repr(error)))


# ---------------------------------------------------------------------- posting
# A scheduled post: (offset from t0 in s, author index, token, text, watcher indexes).
Scheduled = tuple[float, int, str, str, list[int]]


def open_loop_poster(
    chunk: list[Scheduled],
    base_url: str,
    threads: int,
    t0: float,
    notify: MpQueue[Any] | None,
    out: MpQueue[Any],
) -> None:
    """Send each post at its scheduled time, whatever the latency of earlier ones (open loop:
    no coordinated omission). A post that finds every thread busy is sent late, and its
    lateness is recorded. Each 201 is announced on ``notify`` at once for the watchers.

    Puts a list of ``(due, sent, received, status, author, post_id)``.
    """
    try:
        results: list[tuple[float, float, float, int, int, str]] = []
        lock = threading.Lock()
        local = threading.local()
        clients: list[ApiClient] = []

        def send(item: Scheduled) -> None:
            offset, author, token, text, watchers = item
            client: ApiClient = local.client
            reply = client.post(token, text)
            post_id = str(reply.body.get("post_id")) if reply.status == 201 and reply.body else ""
            if post_id and notify is not None:
                notify.put(("post", post_id, author, reply.received, watchers))
            with lock:
                results.append((t0 + offset, reply.sent, reply.received, reply.status, author, post_id))

        with ThreadPoolExecutor(max_workers=threads) as pool:
            clients.extend(_connected_pool(pool, threads, base_url, local))
            for item in sorted(chunk, key=lambda s: s[0]):
                delay = t0 + item[0] - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(send, item)
        for client in clients:
            client.close()
        out.put(results)
    except BaseException as error:
        out.put(RuntimeError(repr(error)))


def closed_loop_poster(
    chunk: list[list[tuple[int, str]]], base_url: str, duration_s: float, t0: float, out: MpQueue[Any]
) -> None:
    """One thread per author list: post back-to-back for ``duration_s`` from ``t0``, cycling
    through the thread's authors. Puts a list of ``(sent, received, status)``."""
    try:
        results: list[tuple[float, float, int]] = []
        lock = threading.Lock()

        def loop(authors: list[tuple[int, str]]) -> None:
            client = ApiClient(base_url)
            client.connect()
            i = 0
            while time.monotonic() < t0:
                time.sleep(0.005)
            while time.monotonic() < t0 + duration_s:
                _, token = authors[i % len(authors)]
                reply = client.post(token, f"closed loop {i}")
                with lock:
                    results.append((reply.sent, reply.received, reply.status))
                i += 1
            client.close()

        workers = [threading.Thread(target=loop, args=(authors,)) for authors in chunk]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        out.put(results)
    except BaseException as error:
        out.put(RuntimeError(repr(error)))


def closed_loop_reader(
    chunk: list[list[str]],
    base_url: str,
    duration_s: float,
    max_reads: int,
    t0: float,
    limit: int,
    out: MpQueue[Any],
) -> None:
    """One thread per token list: GET /feed back-to-back until ``duration_s`` or this
    process's share of ``max_reads``. Puts a list of ``(sent, received, status)``."""
    try:
        results: list[tuple[float, float, int]] = []
        lock = threading.Lock()
        remaining = [max_reads]

        def loop(tokens: list[str]) -> None:
            client = ApiClient(base_url)
            client.connect()
            i = 0
            while time.monotonic() < t0:
                time.sleep(0.005)
            while time.monotonic() < t0 + duration_s:
                with lock:
                    if remaining[0] <= 0:
                        break
                    remaining[0] -= 1
                reply = client.feed(tokens[i % len(tokens)], limit)
                with lock:
                    results.append((reply.sent, reply.received, reply.status))
                i += 1
            client.close()

        workers = [threading.Thread(target=loop, args=(tokens,)) for tokens in chunk]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        out.put(results)
    except BaseException as error:
        out.put(RuntimeError(repr(error)))


# ---------------------------------------------------------------------- watching
class _Bucket:
    """A token bucket shared by the watcher threads: bounds the measurement's own load."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = 1.0
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(2.0, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                wait = (1.0 - self.tokens) / self.rate
            time.sleep(wait)


def watcher_process(
    watchers: list[tuple[int, str]],
    base_url: str,
    poll_interval_s: float,
    max_poll_rate: float,
    limit: int,
    settle_timeout_s: float,
    inbox: MpQueue[Any],
    out: MpQueue[Any],
) -> None:
    """Sampled followers polling their own GET /feed while they wait for a post.

    ``inbox`` receives ``("post", post_id, author, created, [watcher indexes])`` for every
    201 and finally ``("end",)``. A watcher polls only while it waits for something, at most
    every ``poll_interval_s``, and all watchers together at most ``max_poll_rate`` times a
    second. A post counts as seen at the midpoint of the first poll whose page holds it.
    After "end" polling goes on until nothing is outstanding or ``settle_timeout_s``; what is
    still missing is returned, for the caller to look for once the pipeline has drained.

    Puts ``{"seen": [(post_id, watcher, created, seen_at)], "missing": [...], "polls": n,
    "poll_gaps": [...], "poll_latencies": [...], "poll_errors": n, "started": t, "ended": t}``.
    """
    try:
        _watch(watchers, base_url, poll_interval_s, max_poll_rate, limit, settle_timeout_s, inbox, out)
    except BaseException as error:
        out.put(RuntimeError(repr(error)))


def _watch(
    watchers: list[tuple[int, str]],
    base_url: str,
    poll_interval_s: float,
    max_poll_rate: float,
    limit: int,
    settle_timeout_s: float,
    inbox: MpQueue[Any],
    out: MpQueue[Any],
) -> None:
    tokens = dict(watchers)
    lock = threading.Condition()
    outstanding: dict[int, dict[str, float]] = {w: {} for w in tokens}  # watcher -> post -> created
    recently_seen: dict[int, dict[str, float]] = {w: {} for w in tokens}  # before we knew to look
    seen: list[tuple[str, int, float, float]] = []
    gaps: list[float] = []
    latencies: list[float] = []
    counters = {"polls": 0, "errors": 0}
    bucket = _Bucket(max_poll_rate)
    stop = threading.Event()
    started = time.monotonic()

    def poll(watcher: int, client: ApiClient) -> None:
        reply = client.feed(tokens[watcher], limit)
        pages = [reply]
        # An outstanding post older than this page (many arrivals between polls): page on.
        while reply.status == 200 and reply.body.get("next_cursor") and len(pages) < 5:
            items = reply.body.get("items") or []
            oldest = items[-1]["post_id"] if items else ""
            with lock:
                older = [p for p in outstanding[watcher] if p < oldest]
            if not older:
                break
            reply = client.feed(tokens[watcher], limit, reply.body["next_cursor"])
            pages.append(reply)
        at = (pages[0].sent + pages[0].received) / 2
        with lock:
            counters["polls"] += len(pages)
            latencies.extend(p.latency for p in pages)
            if any(p.status != 200 for p in pages):
                counters["errors"] += 1
            for page in pages:
                items = (page.body or {}).get("items") or [] if page.status == 200 else []
                for item in items:
                    post_id = str(item["post_id"])
                    created = outstanding[watcher].pop(post_id, None)
                    if created is not None:
                        seen.append((post_id, watcher, created, at))
                    elif post_id not in recently_seen[watcher]:
                        recently_seen[watcher][post_id] = at

    def watch(watcher: int) -> None:
        client = ApiClient(base_url)
        client.connect()
        last_start = None
        while not stop.is_set():
            with lock:
                while not outstanding[watcher] and not stop.is_set():
                    lock.wait(0.2)
                    last_start = None  # idle: the next gap is not a polling gap
            if stop.is_set():
                break
            if last_start is not None:
                wait = last_start + poll_interval_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            bucket.take()
            now = time.monotonic()
            if last_start is not None:
                with lock:
                    gaps.append(now - last_start)
            last_start = now
            poll(watcher, client)
        client.close()

    threads = [threading.Thread(target=watch, args=(w,), daemon=True) for w in tokens]
    for thread in threads:
        thread.start()
    while True:
        message = inbox.get()
        if message[0] == "end":
            break
        _, post_id, _author, created, targets = message
        with lock:
            for watcher in targets:
                early = recently_seen[watcher].pop(post_id, None)
                if early is not None:  # seen by a poll that raced the 201 to us
                    seen.append((post_id, watcher, created, max(created, early)))
                else:
                    outstanding[watcher][post_id] = created
            lock.notify_all()
    deadline = time.monotonic() + settle_timeout_s
    while time.monotonic() < deadline:
        with lock:
            if not any(outstanding.values()):
                break
        time.sleep(0.05)
    stop.set()
    with lock:
        lock.notify_all()
    for thread in threads:
        thread.join(5.0)
    ended = time.monotonic()
    missing = [
        (post_id, watcher, created)
        for watcher, posts in outstanding.items()
        for post_id, created in posts.items()
    ]
    out.put(
        {
            "seen": seen,
            "missing": missing,
            "polls": counters["polls"],
            "poll_errors": counters["errors"],
            "poll_gaps": gaps,
            "poll_latencies": latencies,
            "started": started,
            "ended": ended,
        }
    )


def all_feed_ids(client: ApiClient, token: str, max_pages: int = 200) -> set[str]:
    """Every post id in a reader's feed, through every page."""
    ids: set[str] = set()
    cursor = None
    for _ in range(max_pages):
        reply = client.feed(token, 100, cursor, retry_errors=3)
        if reply.status != 200:
            break
        ids.update(str(item["post_id"]) for item in reply.body.get("items") or [])
        cursor = reply.body.get("next_cursor")
        if not cursor:
            break
    return ids


def poisson_schedule(rate: float, duration_s: float, rng: random.Random) -> list[float]:
    """Arrival offsets of a Poisson process of ``rate`` per second over ``duration_s``."""
    times: list[float] = []
    t = rng.expovariate(rate)
    while t < duration_s:
        times.append(t)
        t += rng.expovariate(rate)
    return times


__all__ = [
    "Account",
    "closed_loop_poster",
    "closed_loop_reader",
    "feed_once_worker",
    "follow_worker",
    "open_loop_poster",
    "poisson_schedule",
    "run_processes",
    "signup_worker",
    "split",
    "watcher_process",
]
