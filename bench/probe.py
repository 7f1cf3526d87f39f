"""In-process measurements, in a fresh (spawned) interpreter: the three handlers imported as Lambda
would import them, with the running stack's environment (``ripple_local``'s own
``LocalStack.prepare()``); GET /feed through the handler alone and the bare Redis calls of a read;
every AWS call and Redis command of a read and of a post (API, fan-out and its continuation jobs,
cache refresh - invoked with the stream records the post's items make) counted to price them; and
pyinstrument over the read handler. The running stack processes the real records too; every
step is idempotent, so this only adds load.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.config import REPO_ROOT

_sequence = itertools.count(10**9)
_CATEGORIES = (  # pyinstrument: (package, category); a socket read inside botocore is a DynamoDB call
    ("botocore", "DynamoDB calls (botocore, HTTP to the emulator)"),
    ("urllib3", "DynamoDB calls (botocore, HTTP to the emulator)"),
    ("pynamodb", "PynamoDB (models, serialization)"),
    ("redis", "Redis calls (redis-py)"),
    ("jwt", "JWT verification"),
    ("aws_lambda_powertools", "Powertools (logger, metrics, tracer)"),
    ("chalice", "Chalice routing"),
    ("ripple", "Ripple code"),
    ("functions/api", "Ripple code"),
    ("json", "JSON"),
)


Command = tuple[tuple[Any, ...], dict[str, Any]]  # one Redis command: arguments, redis-py options


def _is_miss(reply: Any) -> bool:
    from ripple.cache.timeline import MISS  # the page script's answer when the cache lacks a part

    return isinstance(reply, list) and bool(reply) and reply[0] == MISS


class CallLog:
    """Every botocore call and Redis round trip made while ``enabled`` (hooks on botocore's one
    entry point for API calls and on redis-py's command paths)."""

    def __init__(self, charger: Any) -> None:
        import botocore.client
        from redis.client import Pipeline, Redis

        self.enabled, self.charger = False, charger
        self.aws: list[dict[str, Any]] = []
        self.redis: list[list[str]] = []  # one list of command names per round trip
        # The same round trips, each command as (arguments, redis-py options).
        self.sent: list[list[Command]] = []
        make_api_call, log = botocore.client.BaseClient._make_api_call, self

        def api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if not log.enabled:
                return make_api_call(client, operation, params)
            service, started = client.meta.service_model.service_name, time.perf_counter()
            entry = {"service": service, "operation": operation, "params": params, "response": None}
            try:
                entry["response"] = make_api_call(client, operation, params)
                return entry["response"]
            finally:
                log.aws.append({**entry, "seconds": time.perf_counter() - started})

        Sent = Callable[..., list[Command]]  # the commands a call sends: arguments and options

        def counted(original: Callable[..., Any], sent: Sent) -> Callable[..., Any]:
            def call(client: Any, *args: Any, **options: Any) -> Any:
                if log.enabled and (commands := sent(client, *args, **options)):
                    log.redis.append([str(args[0]).upper() for args, _ in commands])
                    log.sent.append(commands)
                return original(client, *args, **options)

            return call

        one = lambda client, *args, **options: [(args, options)]  # noqa: E731
        botocore.client.BaseClient._make_api_call = api_call
        Redis.execute_command = counted(Redis.execute_command, one)  # type: ignore[method-assign]
        Pipeline.immediate_execute_command = counted(Pipeline.immediate_execute_command, one)  # type: ignore[method-assign]
        stack = lambda pipe, *args, **options: [(tuple(a), dict(o)) for a, o in pipe.command_stack]  # noqa: E731
        Pipeline.execute = counted(Pipeline.execute, stack)  # type: ignore[method-assign]

    def count(self, run: Callable[[], Any]) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
        """``run()`` with calls counted: its result, the calls' summary, the AWS calls themselves."""
        self.enabled, aws, trips = True, len(self.aws), len(self.redis)
        try:
            result = run()
        finally:
            self.enabled = False
        return result, summarize(self.aws[aws:], self.redis[trips:], self.charger), self.aws[aws:]

    def round_trips(self, run: Callable[[], Any]) -> tuple[Any, dict[str, Any], list[list[Command]]]:
        """``run()`` counted (its result and the calls' summary) and the Redis round trips it
        made, each a list of commands (arguments, options)."""
        trips = len(self.sent)
        result, summary, _ = self.count(run)
        return result, summary, self.sent[trips:]


def summarize(aws: list[dict[str, Any]], trips: list[list[str]], charger: Any) -> dict[str, Any]:
    """Counts of AWS calls (by service.operation@table), request units and Redis commands."""
    calls: Counter[str] = Counter()
    units: dict[str, Counter[str]] = {"read": Counter(), "write": Counter()}
    for call in aws:
        params = call["params"]
        tables = [params["TableName"]] if "TableName" in params else []
        if isinstance(params.get("RequestItems"), dict):
            tables = sorted(params["RequestItems"])
        elif "TransactItems" in params:
            tables = sorted({next(iter(e.values()))["TableName"] for e in params["TransactItems"]})
        label = "+".join(charger.name(t) for t in tables)
        calls[f"{call['service']}.{call['operation']}" + (f"@{label}" if label else "")] += 1
        if call["service"] == "dynamodb":
            for charge in charger.charge(call["operation"], params, call.get("response")):
                units[charge.kind][charge.table] += charge.units
    commands = Counter(c for trip in trips for c in trip)
    return {
        "aws_calls": dict(calls), "aws_call_count": sum(calls.values()),
        "aws_seconds": sum(c["seconds"] for c in aws), "rru": dict(units["read"]),
        "wru": dict(units["write"]), "rru_total": sum(units["read"].values()),
        "wru_total": sum(units["write"].values()), "redis_commands": dict(commands),
        "redis_command_count": sum(commands.values()), "redis_round_trips": len(trips),
    }  # fmt: skip


def merge(summaries: list[dict[str, Any]], divisor: int = 1) -> dict[str, Any]:
    """Add up call summaries (a post's several invocations); divided by ``divisor``: averages."""
    total: dict[str, Any] = {}
    for s in summaries:
        for key, value in s.items():
            if isinstance(value, dict):
                total.setdefault(key, Counter()).update(value)
            else:
                total[key] = total.get(key, 0) + value
    scale = (lambda x: x / divisor) if divisor != 1 else (lambda x: x)  # sums keep their type
    return {k: {n: scale(x) for n, x in v.items()} if isinstance(v, dict) else scale(v)
            for k, v in total.items()}  # fmt: skip


def _merged(loops: list[dict[str, Any]]) -> dict[str, Any]:
    """Several ``Probe.loop`` results as one (their reads, time, latencies and errors added up)."""
    reads, seconds = sum(x["reads"] for x in loops), sum(x["seconds"] for x in loops)
    latencies = [latency for x in loops for latency in x["latencies"]]
    return dict(reads=reads, seconds=seconds, reads_per_s=reads / seconds, latencies=latencies,
                errors=sum(x.get("errors", 0) for x in loops))  # fmt: skip


def _sample(path: str) -> dict[str, Any]:
    return dict(json.loads((REPO_ROOT / "events" / path).read_text()))


def api_event(sample: str, token: str, body: Any = None) -> dict[str, Any]:
    """An API Gateway REST proxy event: events/api/<sample>.json with this token and body."""
    event = _sample(f"api/{sample}.json")
    event["headers"]["Authorization"] = f"Bearer {token}"
    event["multiValueHeaders"]["Authorization"] = [f"Bearer {token}"]
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    event["body"] = None if body is None else json.dumps(body)
    return event


_RECORD = _sample("fanout/posts_insert.json")["Records"][0]


def stream_record(arn: str, keys: list[str], image: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB stream INSERT record as Lambda delivers it (events/fanout/posts_insert.json)."""
    record = copy.deepcopy(_RECORD)
    record.update(eventID=uuid.uuid4().hex, eventSourceARN=arn, awsRegion=arn.split(":")[3])
    keys_image = {k: image[k] for k in keys}
    record["dynamodb"].update(Keys=keys_image, NewImage=dict(image), SequenceNumber=str(next(_sequence)))
    return record


class Probe:
    """The running stack's functions, imported in this process."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from bench.capacity import Charger
        from ripple_local.aws import Endpoints
        from ripple_local.lambda_context import LambdaContextFactory
        from ripple_local.stack import LocalStack

        self.config = config
        stack = LocalStack(
            Path(config["root"]), endpoints=Endpoints.of(**config["endpoints"]),
            redis_url=config["redis_url"], state_dir=Path(config["state_dir"]),
            with_api=False, with_runners=False, with_metrics=False,
        )  # fmt: skip
        stack.prepare()  # idempotent on existing resources: sets this process's environment
        assert stack.resources is not None
        self.tables = stack.resources.table_names()
        self.log = CallLog(Charger.from_template(stack.template, self.tables))
        self.arns = {lid: stack.resources[lid].attributes.get("StreamArn", "") for lid in self.tables}
        functions = ("ApiFunction", "FanoutFunction", "CacheRefresherFunction")
        context = LambdaContextFactory.from_template
        self.contexts = {f: context(stack.template, f, stack.stack_name) for f in functions}
        self.memory_mb = {f: ctx.memory_mb for f, ctx in self.contexts.items()}
        started = time.perf_counter()
        self.handlers = {f: stack.handler(f) for f in functions}
        self.import_seconds = time.perf_counter() - started
        self.limit = int(config["feed_limit"])

    def invoke(self, function_id: str, event: dict[str, Any]) -> tuple[Any, float]:
        context = self.contexts[function_id]()
        started = time.perf_counter()
        result = self.handlers[function_id](event, context)
        return result, time.perf_counter() - started

    def read(self, token: str) -> tuple[Any, float]:
        event = api_event("home_feed", token)
        event["queryStringParameters"] = {"limit": str(self.limit)}
        event["multiValueQueryStringParameters"] = {"limit": [str(self.limit)]}
        return self.invoke("ApiFunction", event)

    def loop(self, seconds: float, step: Callable[[int], float], start: int = 0) -> dict[str, Any]:
        """``step(i)`` back to back for ``seconds``, ``i`` counting from ``start``: count, rate,
        each step's latency, and ``next`` (the ``start`` that carries on where this stopped)."""
        latencies: list[float] = []
        started = time.perf_counter()
        while time.perf_counter() < started + seconds:
            latencies.append(step(start + len(latencies)))
        n, wall = len(latencies), time.perf_counter() - started
        return dict(reads=n, seconds=wall, reads_per_s=n / wall, latencies=latencies, next=start + n)

    def handler_reads(self, tokens: list[str], seconds: float, start: int = 0) -> dict[str, Any]:
        """GET /feed through the handler, back to back, no hooks: single-container throughput."""
        errors = [0]

        def step(i: int) -> float:
            response, elapsed = self.read(tokens[i % len(tokens)])
            errors[0] += response.get("statusCode") != 200
            return elapsed

        return {**self.loop(seconds, step, start), "errors": errors[0]}

    def recorded_reads(self, tokens: list[str], attempts: int = 3) -> list[list[list[Command]]]:
        """Each reader's cached read as the Redis round trips it made: what the bare loop replays.
        Only a read the cache answered alone is kept (200, no AWS call): one that filled what the
        cache lacked (an expired registry, say) is recorded again, since replaying its writes
        would be neither the steady state nor the handler's work."""
        reads = []
        for token in tokens:
            for _ in range(attempts):
                (response, _), summary, trips = self.log.round_trips(lambda t=token: self.read(t))
                if response.get("statusCode") == 200 and not summary["aws_call_count"]:
                    reads.append(trips)
                    break
            else:
                raise RuntimeError(f"no read answered by the cache alone in {attempts} attempts")
        return reads

    def bare_redis_reads(
        self, tokens: list[str], reads: list[list[list[Command]]], seconds: float, start: int = 0
    ) -> dict[str, Any]:
        """The Redis calls of the handler's reads (``recorded_reads``, reader i's read for
        ``tokens[i]``), replayed with redis-py: the same commands with the same arguments and
        options, in the same round trips (pipelines), replies parsed as the handler's client parses
        them, and nothing else. A replay whose timeline script answers a miss (the pulled-authors
        registry's 10 s TTL lapsed: the handler would have refilled it) is not the recorded read:
        the reader's handler read refills the cache, untimed, and the replay is made again; that
        counts in ``refills``, and one that misses again in ``misses`` (0 when the replay was fair)."""
        import redis

        client = redis.Redis.from_url(self.config["redis_url"], decode_responses=True)
        refills, misses = [0], [0]

        def replay(read: list[list[Command]]) -> tuple[float, bool]:
            started, missed = time.perf_counter(), False
            for trip in read:
                pipe = client.pipeline(transaction=False)
                for args, options in trip:
                    pipe.execute_command(*args, **options)
                missed |= any(_is_miss(reply) for reply in pipe.execute())
            return time.perf_counter() - started, missed

        def step(i: int) -> float:
            elapsed, missed = replay(reads[i % len(reads)])
            if missed:
                refills[0] += 1
                self.read(tokens[i % len(tokens)])
                elapsed, missed = replay(reads[i % len(reads)])
                misses[0] += missed
            return elapsed

        result = self.loop(seconds, step, start)
        client.close()
        return {**result, "refills": refills[0], "misses": misses[0]}

    def handler_and_bare(
        self, tokens: list[str], seconds: float, windows: int
    ) -> tuple[dict[str, Any], dict[str, Any], list[float]]:
        """The handler and the bare Redis calls of its reads, in ``windows`` alternating pairs of
        windows (``seconds`` each in all), so drift on a shared machine reaches both alike:
        (handler, bare, each pair's handler/bare throughput ratio)."""
        reads = self.recorded_reads(tokens)
        handler: list[dict[str, Any]] = []
        bare: list[dict[str, Any]] = []
        window = seconds / windows
        for _ in range(windows):  # each window carries on through the readers where the last stopped
            handler.append(self.handler_reads(tokens, window, handler[-1]["next"] if handler else 0))
            bare.append(self.bare_redis_reads(tokens, reads, window, bare[-1]["next"] if bare else 0))
        pairs = [h["reads_per_s"] / b["reads_per_s"] for h, b in zip(handler, bare, strict=True)]
        trips = [len(read) for read in reads]
        counts = {k: sum(b[k] for b in bare) for k in ("refills", "misses")}
        return _merged(handler), {**_merged(bare), **counts, "round_trips": sum(trips) / len(trips)}, pairs

    def accounted_reads(self, tokens: list[str], count: int) -> dict[str, Any]:
        """Reads with every AWS call and Redis command counted; averages per read."""
        reads = lambda: [self.read(tokens[i % len(tokens)])[1] for i in range(count)]  # noqa: E731
        durations, summary, _ = self.log.count(reads)
        return {**merge([summary], count), "duration_s": sum(durations) / count, "reads": count}

    def profile_reads(self, tokens: list[str], seconds: float, out_path: Path) -> dict[str, Any]:
        """pyinstrument over handler reads; self time by the innermost library on the stack."""
        try:
            from pyinstrument import Profiler
        except ImportError:
            return {"available": False}
        profiler = Profiler(interval=0.0005)
        profiler.start()
        reads = self.loop(seconds, lambda i: self.read(tokens[i % len(tokens)])[1])["reads"]
        profiler.stop()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        categories: Counter[str] = Counter()  # self time (s) by category
        pending: list[tuple[Any, str | None]] = [(profiler.last_session.root_frame(), None)]  # type: ignore[union-attr]
        while pending:
            frame, category = pending.pop()
            path = str(getattr(frame, "file_path", "") or "").replace("\\", "/")
            name = next((n for m, n in _CATEGORIES if f"/{m}/" in path or path.startswith(f"{m}/")), None)
            if name and not (name == "JSON" and category):  # JSON inside ripple is ripple's
                category = name
            categories[category or "other (interpreter, stdlib)"] += frame.total_self_time
            pending += [(child, category) for child in frame.children]
        total = sum(categories.values()) or 1.0
        shares = {k: v / total for k, v in categories.most_common()}
        return dict(available=True, reads=reads, seconds=seconds, shares=shares, path=str(out_path))

    def counted(self, function_id: str, event: dict[str, Any]) -> tuple[Any, float, dict[str, Any], list]:
        """An invocation with its calls counted: response, seconds, the calls' summary, the AWS calls."""
        (response, seconds), summary, aws = self.log.count(lambda: self.invoke(function_id, event))
        return response, seconds, summary, aws

    def accounted_post(self, token: str, followers: int) -> dict[str, Any]:
        """One post end to end: API, then fan-out (and its continuation jobs), then cache refresh."""
        posts, jobs, feed = (self.tables[t] for t in ("PostsTable", "FanoutJobsTable", "FeedTable"))
        event = api_event("create_post", token, {"text": "probe post"})
        response, api_seconds, api, aws = self.counted("ApiFunction", event)
        if response.get("statusCode") != 201:
            return {"status": response.get("statusCode"), "error": response.get("body")}
        transactions = [c["params"]["TransactItems"] for c in aws if c["operation"] == "TransactWriteItems"]
        puts = [entry.get("Put", {}) for entries in transactions for entry in entries]
        post = next(put["Item"] for put in puts if put.get("TableName") == posts)
        feed_items: dict[tuple[str, str], dict[str, Any]] = {}
        fanout: list[dict[str, Any]] = []
        pending = [stream_record(self.arns["PostsTable"], ["author_id", "post_id"], post)]
        while True:
            for c in aws:  # the feed items written so far, and fan-out's continuation jobs
                batch = c["params"]["RequestItems"] if c["operation"] == "BatchWriteItem" else {}
                for item in (w["PutRequest"]["Item"] for w in batch.get(feed, []) if "PutRequest" in w):
                    feed_items[(item["user_id"]["S"], item["post_id"]["S"])] = item
                if c["operation"] == "PutItem" and c["params"]["TableName"] == jobs:
                    job = c["params"]["Item"]
                    pending.append(stream_record(self.arns["FanoutJobsTable"], ["job_id"], job))
            if not pending:
                break
            _, seconds, summary, aws = self.counted("FanoutFunction", {"Records": [pending.pop(0)]})
            fanout.append({**summary, "duration_s": seconds})
        arn = self.arns["FeedTable"]
        records = [stream_record(arn, ["user_id", "post_id"], item) for item in feed_items.values()]
        batches = [[stream_record(self.arns["PostsTable"], ["author_id", "post_id"], post)]]
        refresher = []
        for batch in batches + [records[i : i + 100] for i in range(0, len(records), 100)]:
            _, seconds, summary, _ = self.counted("CacheRefresherFunction", {"Records": batch})
            refresher.append({**summary, "duration_s": seconds})
        return {
            "status": 201, "followers": followers, "feed_items": len(feed_items),
            "api": {**api, "duration_s": api_seconds},
            "fanout": {**merge(fanout), "invocations": len(fanout)},
            "refresher": {**merge(refresher), "invocations": len(refresher), "records": len(records) + 1},
        }  # fmt: skip


def run(config: Mapping[str, Any], log_path: str) -> dict[str, Any]:
    """Every in-process measurement the config asks for, in a fresh (spawned) interpreter. Its
    stdout - Powertools prints EMF per invocation, as on AWS - goes to ``log_path``."""
    sys.stdout.flush()
    os.dup2(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
    os.chdir(REPO_ROOT)
    probe = Probe(config)
    tokens = [token for _, token in config["readers"]]
    seconds = float(config["seconds"])
    result: dict[str, Any] = {"import_s": probe.import_seconds, "memory_mb": probe.memory_mb}
    (response, first), calls, _ = probe.log.count(lambda: probe.read(tokens[0]))
    result["first_read"] = {"seconds": first, "status": response.get("statusCode"), **calls}
    for token in tokens:  # every reader's feed warm, the registry loaded: steady state
        probe.read(token)
    handler, bare, pairs = probe.handler_and_bare(tokens, seconds, int(config["probe_windows"]))
    result.update(handler_reads=handler, bare_redis_reads=bare, handler_to_bare=pairs)
    result["read_accounting"] = probe.accounted_reads(tokens, int(config["accounted_reads"]))
    if config.get("profile"):
        result["read_profile"] = probe.profile_reads(tokens, seconds / 2, Path(config["profile_path"]))
    result["posts"] = [probe.accounted_post(token, int(n)) for _, token, n in config["cost_authors"]]
    return result
