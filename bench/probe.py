"""In-process measurements, run as ``python -m bench.probe CONFIG OUT`` in a fresh interpreter.

The three handlers (the Chalice app, fan-out, cache refresher) are imported here exactly as
Lambda would import them, with the running stack's environment (computed by
``ripple_local``'s own ``LocalStack.prepare()`` against the same emulator and Redis), and:

* the API handler is invoked with API Gateway events for GET /feed, single-threaded like
  one Lambda container: handler-only throughput, compared with the bare Redis calls one
  read makes (pipeline EXISTS + ZREVRANGEBYLEX + EXPIRE, then MGET) replayed with redis-py;
* every AWS call (botocore) and Redis command of a read, a post, its fan-out steps and its
  cache refresh is counted, with its request and response, to price them on paper;
* pyinstrument profiles the read handler, to say what bounds it.

Fan-out and cache refresh are invoked with stream records built from the very items the
post wrote (the records Lambda would deliver); the running stack processes the real
records too, and every step is idempotent, so this changes nothing but adds load.
"""

from __future__ import annotations

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


class CallLog:
    """Every botocore call and Redis round trip made while ``enabled``."""

    def __init__(self) -> None:
        self.enabled = False
        self.aws: list[dict[str, Any]] = []
        self.redis: list[list[str]] = []  # one list of command names per round trip

    def mark(self) -> tuple[int, int]:
        return len(self.aws), len(self.redis)

    def since(self, mark: tuple[int, int]) -> tuple[list[dict[str, Any]], list[list[str]]]:
        return self.aws[mark[0] :], self.redis[mark[1] :]


def install_hooks(log: CallLog) -> None:
    """Wrap botocore's one entry point for API calls and redis-py's command paths."""
    import botocore.client
    import redis.client

    make_api_call = botocore.client.BaseClient._make_api_call

    def counted_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if not log.enabled:
            return make_api_call(self, operation_name, api_params)
        started = time.perf_counter()
        response: Any = None
        error = ""
        try:
            response = make_api_call(self, operation_name, api_params)
            return response
        except Exception as exc:
            error = str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))
            raise
        finally:
            log.aws.append(
                {
                    "service": self.meta.service_model.service_name,
                    "operation": operation_name,
                    "params": api_params,
                    "response": response,
                    "error": error,
                    "seconds": time.perf_counter() - started,
                }
            )

    execute_command = redis.client.Redis.execute_command
    immediate = redis.client.Pipeline.immediate_execute_command
    pipeline_execute = redis.client.Pipeline.execute

    def counted_command(self: Any, *args: Any, **options: Any) -> Any:
        if log.enabled:
            log.redis.append([str(args[0]).upper()])
        return execute_command(self, *args, **options)

    def counted_immediate(self: Any, *args: Any, **options: Any) -> Any:
        if log.enabled:
            log.redis.append([str(args[0]).upper()])
        return immediate(self, *args, **options)

    def counted_pipeline(self: Any, raise_on_error: bool = True) -> Any:
        if log.enabled and self.command_stack:
            log.redis.append([str(c[0][0]).upper() for c in self.command_stack])
        return pipeline_execute(self, raise_on_error)

    botocore.client.BaseClient._make_api_call = counted_api_call
    redis.client.Redis.execute_command = counted_command  # type: ignore[method-assign]
    redis.client.Pipeline.immediate_execute_command = counted_immediate  # type: ignore[method-assign]
    redis.client.Pipeline.execute = counted_pipeline  # type: ignore[method-assign]


def api_event(
    method: str, resource: str, path: str, token: str, body: Any = None, query: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy event, shaped like events/api/*.json."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}", "Host": "bench.local"}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/local{path}",
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "accountId": "123456789012",
            "apiId": "bench",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "bench"},
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000),
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


_sequence = iter(range(10**9, 10**10))


def stream_record(arn: str, keys: list[str], image: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB stream INSERT record as Lambda delivers it (see events/fanout/*.json)."""
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": arn.split(":")[3],
        "dynamodb": {
            "ApproximateCreationDateTime": int(time.time()),
            "Keys": {k: image[k] for k in keys},
            "NewImage": dict(image),
            "SequenceNumber": str(next(_sequence)),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": arn,
    }


def summarize_calls(aws: list[dict[str, Any]], redis_trips: list[list[str]], charger: Any) -> dict[str, Any]:
    """Counts of AWS calls (by service.operation@table), request units and Redis commands."""
    calls: Counter[str] = Counter()
    read_units: Counter[str] = Counter()
    write_units: Counter[str] = Counter()
    aws_seconds = 0.0
    for call in aws:
        tables = _table_of(call["params"]).split(",")
        label = "+".join(charger.tables[t].logical_id if t in charger.tables else t for t in tables if t)
        calls[f"{call['service']}.{call['operation']}" + (f"@{label}" if label else "")] += 1
        aws_seconds += call["seconds"]
        if call["service"] == "dynamodb":
            for charge in charger.charge(call["operation"], call["params"], call["response"]):
                (read_units if charge.kind == "read" else write_units)[charge.table] += charge.units
    commands: Counter[str] = Counter(c for trip in redis_trips for c in trip)
    return {
        "aws_calls": dict(calls),
        "aws_call_count": sum(calls.values()),
        "aws_seconds": aws_seconds,
        "rru": dict(read_units),
        "wru": dict(write_units),
        "rru_total": sum(read_units.values()),
        "wru_total": sum(write_units.values()),
        "redis_commands": dict(commands),
        "redis_command_count": sum(commands.values()),
        "redis_round_trips": len(redis_trips),
    }


def _table_of(params: Mapping[str, Any]) -> str:
    if "TableName" in params:
        return str(params["TableName"])
    for key in ("RequestItems", "TransactItems"):
        if key in params:
            value = params[key]
            if isinstance(value, dict):
                return ",".join(sorted(value))
            names = sorted({next(iter(e.values()))["TableName"] for e in value})
            return ",".join(names)
    return ""


def merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up call summaries (for a post's several invocations)."""
    total: dict[str, Any] = {}
    for s in summaries:
        for key, value in s.items():
            if isinstance(value, dict):
                bucket = total.setdefault(key, {})
                for k, v in value.items():
                    bucket[k] = bucket.get(k, 0) + v
            else:
                total[key] = total.get(key, 0) + value
    return total


def scale(summary: Mapping[str, Any], divisor: float) -> dict[str, Any]:
    """Per-operation averages."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        out[key] = {k: v / divisor for k, v in value.items()} if isinstance(value, dict) else value / divisor
    return out


class Probe:
    """The running stack's functions, imported in this process."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from bench.capacity import Charger, tables_from_template
        from ripple_local.aws import Endpoints
        from ripple_local.lambda_context import LambdaContextFactory
        from ripple_local.stack import LocalStack

        self.config = config
        self.stack = LocalStack(
            Path(config["root"]),
            endpoints=Endpoints.of(**config["endpoints"]),
            redis_url=config["redis_url"],
            state_dir=Path(config["state_dir"]),
            with_api=False,
            with_runners=False,
            with_metrics=False,
        )
        self.stack.prepare()  # idempotent on existing resources: sets this process's environment
        self.log = CallLog()
        install_hooks(self.log)
        names = self.stack.resources.table_names()
        self.tables = names
        self.charger = Charger(tables_from_template(self.stack.template, names))
        self.arns = {lid: self.stack.resources[lid].attributes.get("StreamArn", "") for lid in names}
        self.contexts = {
            fid: LambdaContextFactory.from_template(self.stack.template, fid, self.stack.stack_name)
            for fid in ("ApiFunction", "FanoutFunction", "CacheRefresherFunction")
        }
        self.memory_mb = {fid: ctx.memory_mb for fid, ctx in self.contexts.items()}
        started = time.perf_counter()
        self.api = self.stack.handler("ApiFunction")
        self.fanout = self.stack.handler("FanoutFunction")
        self.refresher = self.stack.handler("CacheRefresherFunction")
        self.import_seconds = time.perf_counter() - started
        self.limit = int(config["feed_limit"])

    def invoke(
        self, function_id: str, handler: Callable[..., Any], event: dict[str, Any]
    ) -> tuple[Any, float]:
        context = self.contexts[function_id]()
        started = time.perf_counter()
        result = handler(event, context)
        return result, time.perf_counter() - started

    def feed_event(self, token: str) -> dict[str, Any]:
        return api_event("GET", "/feed", "/feed", token, query={"limit": str(self.limit)})

    # ------------------------------------------------------------------ reads
    def first_read(self, token: str) -> dict[str, Any]:
        """The container's first request: JWT secret, clients and connections are made now."""
        self.log.enabled = True
        mark = self.log.mark()
        response, seconds = self.invoke("ApiFunction", self.api, self.feed_event(token))
        aws, trips = self.log.since(mark)
        self.log.enabled = False
        return {
            "seconds": seconds,
            "status": response.get("statusCode"),
            **summarize_calls(aws, trips, self.charger),
        }

    def handler_reads(self, tokens: list[str], seconds: float) -> dict[str, Any]:
        """GET /feed through the handler, back to back, no hooks: single-container throughput."""
        events = [self.feed_event(t) for t in tokens]
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds
        i = 0
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            response, elapsed = self.invoke("ApiFunction", self.api, events[i % len(events)])
            latencies.append(elapsed)
            errors += response.get("statusCode") != 200
            i += 1
        wall = time.perf_counter() - started
        return {
            "reads": i,
            "seconds": wall,
            "reads_per_s": i / wall,
            "latencies": latencies,
            "errors": errors,
        }

    def accounted_reads(self, tokens: list[str], count: int) -> dict[str, Any]:
        """Reads with every AWS call and Redis command counted; averages per read."""
        self.log.enabled = True
        mark = self.log.mark()
        durations = []
        for i in range(count):
            _, elapsed = self.invoke("ApiFunction", self.api, self.feed_event(tokens[i % len(tokens)]))
            durations.append(elapsed)
        aws, trips = self.log.since(mark)
        self.log.enabled = False
        per_read = scale(summarize_calls(aws, trips, self.charger), count)
        per_read["duration_s"] = sum(durations) / count
        per_read["reads"] = count
        return per_read

    def bare_redis_reads(self, user_ids: list[str], seconds: float) -> dict[str, Any]:
        """The Redis calls one cached read makes, replayed with redis-py, nothing else."""
        import redis

        from ripple.cache.feed_cache import SENTINEL, feed_key
        from ripple.cache.post_cache import post_key
        from ripple.config import get_settings

        ttl = get_settings().feed_cache_ttl_seconds
        client = redis.Redis.from_url(self.config["redis_url"], decode_responses=True)
        keys = [feed_key(u) for u in user_ids]
        latencies: list[float] = []
        items = 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        i = 0
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            key = keys[i % len(keys)]
            pipe = client.pipeline(transaction=False)
            pipe.exists(key)
            pipe.zrevrangebylex(key, "+", "-", start=0, num=self.limit + 1)
            pipe.expire(key, ttl)
            _, members, _ = pipe.execute()
            ids = [m.partition(":")[0] for m in members if m != SENTINEL][: self.limit]
            if ids:
                items += sum(1 for v in client.mget([post_key(p) for p in ids]) if v)
            latencies.append(time.perf_counter() - t)
            i += 1
        wall = time.perf_counter() - started
        client.close()
        return {
            "reads": i,
            "seconds": wall,
            "reads_per_s": i / wall,
            "latencies": latencies,
            "items_per_read": items / max(1, i),
        }

    def profile_reads(self, tokens: list[str], seconds: float, out_path: Path) -> dict[str, Any]:
        """pyinstrument over handler reads; time by what the code was doing."""
        try:
            from pyinstrument import Profiler
        except ImportError:
            return {"available": False}
        events = [self.feed_event(t) for t in tokens]
        profiler = Profiler(interval=0.0005)
        profiler.start()
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline:
            self.invoke("ApiFunction", self.api, events[i % len(events)])
            i += 1
        profiler.stop()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        session = profiler.last_session
        assert session is not None
        categories: dict[str, float] = {}
        _categorize(session.root_frame(), None, categories)
        total = sum(categories.values()) or 1.0
        return {
            "available": True,
            "reads": i,
            "seconds": seconds,
            "shares": {k: v / total for k, v in sorted(categories.items(), key=lambda kv: -kv[1])},
            "path": str(out_path),
        }

    # ------------------------------------------------------------------ posts
    def accounted_post(self, token: str, followers: int) -> dict[str, Any]:
        """One post end to end: API, then fan-out (and its continuation jobs), then cache refresh."""
        self.log.enabled = True
        try:
            return self._accounted_post(token, followers)
        finally:
            self.log.enabled = False

    def _accounted_post(self, token: str, followers: int) -> dict[str, Any]:
        posts, jobs, feed = (
            self.tables["PostsTable"],
            self.tables["FanoutJobsTable"],
            self.tables["FeedTable"],
        )
        mark = self.log.mark()
        response, api_seconds = self.invoke(
            "ApiFunction", self.api, api_event("POST", "/posts", "/posts", token, body={"text": "probe post"})
        )
        aws, trips = self.log.since(mark)
        api = summarize_calls(aws, trips, self.charger)
        if response.get("statusCode") != 201:
            return {"status": response.get("statusCode"), "error": response.get("body")}
        post_item = next(
            entry["Put"]["Item"]
            for call in aws
            if call["operation"] == "TransactWriteItems"
            for entry in call["params"]["TransactItems"]
            if "Put" in entry and entry["Put"]["TableName"] == posts
        )
        feed_items: dict[tuple[str, str], dict[str, Any]] = {}
        self._collect_feed_items(aws, feed, feed_items)

        fanout_summaries, fanout_seconds = [], []
        pending = [stream_record(self.arns["PostsTable"], ["author_id", "post_id"], post_item)]
        while pending:
            record = pending.pop(0)
            mark = self.log.mark()
            _, seconds = self.invoke("FanoutFunction", self.fanout, {"Records": [record]})
            aws, trips = self.log.since(mark)
            fanout_summaries.append(summarize_calls(aws, trips, self.charger))
            fanout_seconds.append(seconds)
            self._collect_feed_items(aws, feed, feed_items)
            for call in aws:
                if call["operation"] == "PutItem" and call["params"]["TableName"] == jobs:
                    pending.append(
                        stream_record(self.arns["FanoutJobsTable"], ["job_id"], call["params"]["Item"])
                    )

        refresher_summaries, refresher_seconds = [], []
        batches = [[stream_record(self.arns["PostsTable"], ["author_id", "post_id"], post_item)]]
        records = [
            stream_record(self.arns["FeedTable"], ["user_id", "post_id"], i) for i in feed_items.values()
        ]
        batches += [records[i : i + 100] for i in range(0, len(records), 100)]
        for batch in batches:
            mark = self.log.mark()
            _, seconds = self.invoke("CacheRefresherFunction", self.refresher, {"Records": batch})
            aws, trips = self.log.since(mark)
            refresher_summaries.append(summarize_calls(aws, trips, self.charger))
            refresher_seconds.append(seconds)
        return {
            "status": 201,
            "followers": followers,
            "feed_items": len(feed_items),
            "api": {**api, "duration_s": api_seconds},
            "fanout": {
                **merge(fanout_summaries),
                "invocations": len(fanout_seconds),
                "duration_s": sum(fanout_seconds),
            },
            "refresher": {
                **merge(refresher_summaries),
                "invocations": len(refresher_seconds),
                "records": len(records) + 1,
                "duration_s": sum(refresher_seconds),
            },
        }

    @staticmethod
    def _collect_feed_items(
        aws: list[dict[str, Any]], feed: str, into: dict[tuple[str, str], dict[str, Any]]
    ) -> None:
        for call in aws:
            if call["operation"] != "BatchWriteItem":
                continue
            for request in call["params"]["RequestItems"].get(feed, []):
                item = request.get("PutRequest", {}).get("Item")
                if item:
                    into[(item["user_id"]["S"], item["post_id"]["S"])] = item


_CATEGORIES: tuple[tuple[str, str], ...] = (
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


def _categorize(frame: Any, inherited: str | None, into: dict[str, float]) -> None:
    """Self time by the innermost library on the stack (a socket read inside botocore is
    a DynamoDB call; JSON inside ripple is ripple's)."""
    path = str(getattr(frame, "file_path", "") or "").replace("\\", "/")
    category = inherited
    for marker, name in _CATEGORIES:
        if f"/{marker}/" in path or path.startswith(f"{marker}/"):
            if marker == "json" and inherited is not None:
                break
            category = name
            break
    key = category or "other (interpreter, stdlib)"
    into[key] = into.get(key, 0.0) + float(frame.total_self_time)
    for child in frame.children:
        _categorize(child, category, into)


def run(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every in-process measurement the config asks for."""
    probe = Probe(config)
    readers = config["readers"]  # [[user_id, token], ...]
    tokens = [t for _, t in readers]
    user_ids = [u for u, _ in readers]
    seconds = float(config["seconds"])
    result: dict[str, Any] = {"import_s": probe.import_seconds, "memory_mb": probe.memory_mb}
    result["first_read"] = probe.first_read(tokens[0])
    for token in tokens:  # every reader's feed warm, the registry loaded: steady state
        probe.invoke("ApiFunction", probe.api, probe.feed_event(token))
    result["handler_reads"] = probe.handler_reads(tokens, seconds)
    result["bare_redis_reads"] = probe.bare_redis_reads(user_ids, seconds)
    result["handler_reads_again"] = probe.handler_reads(tokens, seconds / 2)  # drift check
    result["read_accounting"] = probe.accounted_reads(tokens, int(config["accounted_reads"]))
    if config.get("profile"):
        result["read_profile"] = probe.profile_reads(tokens, seconds / 2, Path(config["profile_path"]))
    result["posts"] = [
        probe.accounted_post(token, int(followers)) for _, token, followers in config["cost_authors"]
    ]
    return result


def main(argv: list[str]) -> int:
    """``python -m bench.probe CONFIG.json OUT.json``; stdout (EMF lines) goes to OUT.log."""
    config = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    log = os.open(str(out.with_suffix(".log")), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    os.dup2(log, 1)  # Powertools prints EMF per invocation, as on AWS; keep it off our stdout
    os.chdir(REPO_ROOT)
    out.write_text(json.dumps(run(config), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
