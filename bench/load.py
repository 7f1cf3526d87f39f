"""The load: keep-alive HTTP clients in threads, in spawned client processes.

Why not Locust (2.47 on PyPI): the convergence steps are an open loop - posts sent at the times
of a seeded Poisson schedule whatever the latency of earlier ones, each 201 announced at once to
the watchers. A Locust user is a closed loop: it sends its next request only after its last one
answered, and ``constant_throughput`` only paces each user (a slow answer lowers the rate:
coordinated omission exactly when the stack falls behind). ``import locust`` also gevent-
monkeypatches the whole process (threads, subprocesses, multiprocessing queues). So a small
thread-pool driver does both loops. Times are ``time.monotonic()``, one clock for all processes.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from typing import Any, NamedTuple, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

SPAWN = get_context("spawn")
PASSWORD = "bench password 1"  # every bench account's
T = TypeVar("T")
# A scheduled post: (offset from t0 in s, author index, token, text, watcher indexes).
Scheduled = tuple[float, int, str, str, list[int]]


class Reply(NamedTuple):
    """One HTTP exchange: status (0: connection error), JSON body, monotonic send/receive times."""

    status: int
    body: Any
    sent: float
    received: float


class ApiClient:
    """Keep-alive client for one thread. Measured calls are never retried (errors are counted);
    ``setup`` clients retry connection errors and 5xx as a real client would (urllib3's Retry:
    the local server's listen backlog is 5, so a burst of new connections is reset, and a write
    still conflicting after Ripple's own retries is a 503 that changed nothing) and wait out 429s
    (``Retry-After``)."""

    def __init__(self, base_url: str, setup: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        retry = Retry(
            total=None, connect=5, read=5, status=30, backoff_factor=0.1, allowed_methods=None,
            status_forcelist=(429, 500, 502, 503, 504), raise_on_status=False,
        )  # fmt: skip
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=retry if setup else 0)
        self.session.mount("http://", adapter)
        self.retries = 0  # connection errors and 5xx retried (setup clients only)

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        sent = time.monotonic()
        try:
            response = self.session.request(
                method, self.base_url + path, headers=headers, timeout=30, **kwargs
            )
        except requests.RequestException:
            return Reply(0, None, sent, time.monotonic())
        received = time.monotonic()
        history = response.raw.retries.history if response.raw.retries else ()
        self.retries += sum(1 for h in history if h.status != 429)
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        return Reply(response.status_code, body, sent, received)

    def connect(self) -> ApiClient:
        """Open the keep-alive connection before a measurement starts."""
        for attempt in range(8):
            if self.call("GET", "/health/live").status == 200:
                return self
            time.sleep(0.05 * 2**attempt)
        raise RuntimeError(f"cannot reach {self.base_url}")

    def feed(self, token: str, limit: int = 20, cursor: str | None = None) -> Reply:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return self.call("GET", "/feed", token, params=params)


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """Round-robin split into ``parts`` non-empty lists (fewer if there are fewer items)."""
    parts = max(1, min(parts, len(items)))
    return [list(items[i::parts]) for i in range(parts)]


def in_processes(target: Callable[..., Any], chunks: Sequence[Any], *args: Any) -> list[Any]:
    """``target(chunk, *args)`` in one spawned process per chunk; the results in chunk order."""
    with ProcessPoolExecutor(len(chunks), mp_context=SPAWN) as pool:
        return [f.result() for f in [pool.submit(target, chunk, *args) for chunk in chunks]]


# ---------------------------------------------------------------------- setup
def setup_worker(chunk: list[Any], base_url: str, action: str) -> tuple[list[Any], int]:
    """8 threads of ``action`` over the chunk: "signup" ``(index, username)`` -> (index, user_id,
    token); "follow" ``(token, user_id)`` -> status; "feed" ``token`` -> status (warms
    the reader's cached feed). Returns the results and how many calls were retried."""
    local, clients = threading.local(), []

    def connect() -> None:
        local.client = ApiClient(base_url, setup=True)
        clients.append(local.client)

    def signup(item: tuple[int, str]) -> tuple[int, str, str]:
        credentials = {"username": item[1], "password": PASSWORD}
        reply = local.client.call("POST", "/auth/signup", json=credentials)
        if reply.status == 409 and local.client.retries:  # a retried sign-up that had gone through
            reply = local.client.call("POST", "/auth/login", json=credentials)
        if reply.status not in (200, 201):
            raise RuntimeError(f"signup {item[1]} failed: {reply.status} {reply.body}")
        return item[0], str(reply.body["user"]["user_id"]), str(reply.body["access_token"])

    def follow(item: tuple[str, str]) -> int:
        return local.client.call("POST", f"/users/{item[1]}/follow", item[0]).status

    work = {"signup": signup, "follow": follow, "feed": lambda token: local.client.feed(token).status}
    with ThreadPoolExecutor(8, initializer=connect) as pool:
        return list(pool.map(work[action], chunk)), sum(c.retries for c in clients)


def all_feed_ids(client: ApiClient, token: str, max_pages: int = 200) -> set[str]:
    """Every post id in a reader's feed, through every page."""
    ids: set[str] = set()
    cursor = None
    for _ in range(max_pages):
        reply = client.feed(token, 100, cursor)
        if reply.status != 200:
            break
        ids.update(str(item["post_id"]) for item in reply.body.get("items") or [])
        if not (cursor := reply.body.get("next_cursor")):
            break
    return ids


def poisson_schedule(rate: float, duration_s: float, rng: random.Random) -> list[float]:
    """Arrival offsets of a Poisson process of ``rate`` per second over ``duration_s``."""
    arrivals = itertools.accumulate(rng.expovariate(rate) for _ in itertools.count())
    return list(itertools.takewhile(lambda t: t < duration_s, arrivals))


# ---------------------------------------------------------------------- load
def open_loop(chunk: list[Scheduled], base_url: str, threads: int, t0: float, notify: Any) -> list[tuple]:
    """Send each post at its scheduled time, whatever the latency of earlier ones (open loop: no
    coordinated omission); a post that finds every thread busy is sent late, and its lateness is
    recorded. Each 201 is announced on ``notify`` at once for the watchers.
    Returns ``(due, sent, received, status, author, post_id)`` per post."""
    rows: list[tuple] = []
    local = threading.local()

    def connect() -> None:
        local.client = ApiClient(base_url).connect()

    def send(item: Scheduled) -> None:
        offset, author, token, text, watchers = item
        reply = local.client.call("POST", "/posts", token, json={"text": text})
        post_id = str(reply.body.get("post_id")) if reply.status == 201 and reply.body else ""
        if post_id and notify is not None:
            notify.put((post_id, reply.received, watchers))
        rows.append((t0 + offset, reply.sent, reply.received, reply.status, author, post_id))

    with ThreadPoolExecutor(threads, initializer=connect) as pool:
        barrier = threading.Barrier(threads)  # start every thread (its initializer connects) first
        list(pool.map(barrier.wait, [60] * threads))
        for item in sorted(chunk, key=lambda s: s[0]):
            if (delay := t0 + item[0] - time.monotonic()) > 0:
                time.sleep(delay)
            pool.submit(send, item)
    return rows


def closed_loop(
    chunk: list[list[str]], base_url: str, t0: float, duration_s: float, budget: int, limit: int
) -> list[tuple[float, float, int]]:
    """One thread per token list, from ``t0`` for ``duration_s``: POST /posts back to back
    (``limit`` 0) or GET /feed?limit= (at most ``budget`` in this process); (sent, received, status)."""
    rows: list[tuple[float, float, int]] = []
    remaining = iter(range(budget))

    def loop(tokens: list[str]) -> None:
        client = ApiClient(base_url).connect()
        time.sleep(max(0.0, t0 - time.monotonic()))
        for i in itertools.count():
            if time.monotonic() >= t0 + duration_s or next(remaining, None) is None:
                break
            token, post = tokens[i % len(tokens)], {"text": f"closed loop {i}"}
            reply = client.feed(token, limit) if limit else client.call("POST", "/posts", token, json=post)
            rows.append((reply.sent, reply.received, reply.status))

    with ThreadPoolExecutor(len(chunk)) as pool:
        list(pool.map(loop, chunk))
    return rows


# ---------------------------------------------------------------------- watching
def watch(
    watchers: list[tuple[int, str]], base_url: str, poll_interval_s: float, max_poll_rate: float,
    limit: int, settle_timeout_s: float, inbox: Any,
) -> dict[str, Any]:  # fmt: skip
    """Sampled followers polling their own GET /feed while they wait for a post.

    ``inbox`` receives ``(post_id, created, [watcher indexes])`` for every 201, then None. A
    watcher polls only while it waits for something, at most every ``poll_interval_s``, all
    watchers together at most ``max_poll_rate`` times a second. A post counts as seen at the
    midpoint of the first poll whose page holds it. After None polling goes on until nothing is
    outstanding or ``settle_timeout_s``; what is still missing is returned, for the caller to
    look for once the pipeline has drained.
    """
    tokens = dict(watchers)
    lock = threading.Condition()
    outstanding: dict[int, dict[str, float]] = {w: {} for w in tokens}  # watcher -> post -> created
    early: dict[int, dict[str, float]] = {w: {} for w in tokens}  # seen before we knew to look
    seen: list[tuple[str, int, float, float]] = []
    gaps: list[float] = []
    latencies: list[float] = []
    counters = {"polls": 0, "errors": 0, "next_poll": time.monotonic()}
    stop, started = threading.Event(), time.monotonic()

    def pace() -> None:
        """All watchers together poll at most ``max_poll_rate`` times a second."""
        with lock:
            wait = counters["next_poll"] - time.monotonic()
            counters["next_poll"] = max(counters["next_poll"], time.monotonic()) + 1.0 / max_poll_rate
        time.sleep(max(0.0, wait))

    def poll(watcher: int, client: ApiClient) -> None:
        pages = [client.feed(tokens[watcher], limit)]
        # An outstanding post older than this page (many arrivals between polls): page on.
        while pages[-1].status == 200 and pages[-1].body.get("next_cursor") and len(pages) < 5:
            items = pages[-1].body.get("items") or []
            with lock:
                older = [p for p in outstanding[watcher] if p < (items[-1]["post_id"] if items else "")]
            if not older:
                break
            pages.append(client.feed(tokens[watcher], limit, pages[-1].body["next_cursor"]))
        at = (pages[0].sent + pages[0].received) / 2
        with lock:
            counters["polls"] += len(pages)
            counters["errors"] += any(p.status != 200 for p in pages)
            latencies.extend(p.received - p.sent for p in pages)
            for page in pages:
                for item in (page.body or {}).get("items") or [] if page.status == 200 else []:
                    post_id = str(item["post_id"])
                    created = outstanding[watcher].pop(post_id, None)
                    if created is not None:
                        seen.append((post_id, watcher, created, at))
                    else:
                        early[watcher].setdefault(post_id, at)

    def run(watcher: int) -> None:
        client = ApiClient(base_url).connect()
        last_start = None
        while not stop.is_set():
            with lock:
                while not outstanding[watcher] and not stop.is_set():
                    lock.wait(0.2)
                    last_start = None  # idle: the next gap is not a polling gap
            if stop.is_set():
                break
            if last_start is not None:
                time.sleep(max(0.0, last_start + poll_interval_s - time.monotonic()))
            pace()
            now = time.monotonic()
            if last_start is not None:
                with lock:
                    gaps.append(now - last_start)
            last_start = now
            poll(watcher, client)

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in tokens]
    for thread in threads:
        thread.start()
    while (message := inbox.get()) is not None:
        post_id, created, targets = message
        with lock:
            for watcher in targets:
                at = early[watcher].pop(post_id, None)
                if at is not None:  # seen by a poll that raced the 201 to us
                    seen.append((post_id, watcher, created, max(created, at)))
                else:
                    outstanding[watcher][post_id] = created
            lock.notify_all()
    deadline = time.monotonic() + settle_timeout_s
    while time.monotonic() < deadline and any(outstanding.values()):
        time.sleep(0.05)
    stop.set()
    with lock:
        lock.notify_all()
    for thread in threads:
        thread.join(5.0)
    with lock:
        missing = [(p, w, created) for w, posts in outstanding.items() for p, created in posts.items()]
    return {
        "seen": seen, "missing": missing, "polls": counters["polls"], "poll_errors": counters["errors"],
        "poll_gaps": gaps, "poll_latencies": latencies, "started": started, "ended": time.monotonic(),
    }  # fmt: skip
