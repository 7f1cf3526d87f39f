"""Ripple's metrics from a deployed stack, as Prometheus sees them locally.

On AWS every function prints its Powertools metrics as CloudWatch EMF lines into its log
group (``/aws/lambda/<function>``); CloudWatch turns them into metrics under ``Ripple``. This
exporter reads the *same EMF lines* back from CloudWatch Logs (``FilterLogEvents``) and adds
each document to the local stack's own translator, ``ripple_local.metrics_exporter.EmfTranslator``.
So a deployed stack exposes exactly the series ``make up`` does: the same names, labels,
buckets and units, real Prometheus counters and histograms. ``infra/prometheus/ripple-rules.yml``
and ``infra/grafana/ripple-dashboard.json`` work unchanged.

Why not a CloudWatch *metrics* exporter (YACE, cloudwatch_exporter) for Ripple's namespace:
they export CloudWatch statistics of the last period as gauges, so ``rate()`` and
``histogram_quantile()`` over the local names would compute nonsense, and bucket counts and
``FanoutItemsWritten``'s per-post histogram cannot be rebuilt from statistics at all. What is
only in CloudWatch metrics (Lambda's ``IteratorAge``, the failure queue's depth) comes from
YACE (``yace.yml`` beside this file).

    python infra/aws-metrics/ripple_aws_metrics.py --stack ripple --region us-east-1

then scrape ``http://127.0.0.1:9464/metrics`` (``prometheus.yml`` beside this file). AWS
credentials come from the usual chain (``--profile``, environment, instance role); the IAM
policy it needs is ``metrics-reader.yaml``. Run *one* per stack: two would each count every
document, and ``sum()`` over both would double.

Reading: every ``--interval`` seconds, each log group is asked for the events since the last
poll, minus ``--overlap`` seconds (Lambda's logs reach CloudWatch a few seconds late), and
events already seen (by stream and event id) are skipped, so each EMF line is added once.
Counters start at zero when the exporter starts, like any restarted Prometheus target.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    from ripple_local.metrics_exporter import DEFAULT_METRICS_PORT, EmfTranslator
except ImportError:  # run from a checkout without `pip install -e .`: the package is beside us
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
    from ripple_local.metrics_exporter import DEFAULT_METRICS_PORT, EmfTranslator

from prometheus_client import Counter, Gauge

__all__ = [
    "DEFAULT_FILTER_PATTERN",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_OVERLAP_S",
    "NAMESPACE",
    "EmfLogReader",
    "discover_log_groups",
    "main",
]

logger = logging.getLogger("ripple_aws_metrics")

NAMESPACE = "Ripple"  # ripple.observability.NAMESPACE; other namespaces are not Ripple's
# Only events that can be EMF come back from CloudWatch Logs (not START/END/REPORT or the
# Logger's lines); the namespace is checked again here, per document.
DEFAULT_FILTER_PATTERN = '"CloudWatchMetrics"'
DEFAULT_INTERVAL_S = 15.0
# Lambda ships logs asynchronously: seconds normally. An event that reaches CloudWatch later
# than this after its own timestamp is not seen (docs: infra/aws-metrics/README-section.md).
DEFAULT_OVERLAP_S = 60.0
MAX_PAGES_PER_POLL = 50  # per log group; the rest is read on the next poll


def discover_log_groups(cloudformation: Any, stack_name: str) -> list[str]:
    """The log group of every Lambda function in ``stack_name`` (Lambda's default naming)."""
    groups: list[str] = []
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for resource in page.get("StackResourceSummaries", []):
            physical = resource.get("PhysicalResourceId")
            if resource.get("ResourceType") == "AWS::Lambda::Function" and physical:
                groups.append(f"/aws/lambda/{physical}")
    if not groups:
        raise LookupError(f"stack {stack_name!r} has no Lambda functions")
    return sorted(groups)


def _ripple_document(message: str, namespace: str) -> dict[str, Any] | None:
    """The EMF document in one log line, keeping only ``namespace``'s directives; None if none."""
    try:
        document = json.loads(message)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    aws = document.get("_aws")
    if not isinstance(aws, Mapping):
        return None
    directives = aws.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        return None
    ours = [d for d in directives if isinstance(d, Mapping) and d.get("Namespace") == namespace]
    if not ours:
        return None
    if len(ours) != len(directives):
        document = {**document, "_aws": {**dict(aws), "CloudWatchMetrics": ours}}
    return document


class EmfLogReader:
    """Adds the EMF documents in CloudWatch log groups to an :class:`EmfTranslator`, each once.

    ``logs`` is a boto3 CloudWatch Logs client. :meth:`poll` reads every group once; call it
    on a timer (:meth:`run`). Nothing before ``start_ms`` (default: now) is read.
    """

    def __init__(
        self,
        logs: Any,
        log_groups: Sequence[str],
        translator: EmfTranslator,
        *,
        namespace: str = NAMESPACE,
        overlap_s: float = DEFAULT_OVERLAP_S,
        filter_pattern: str = DEFAULT_FILTER_PATTERN,
        start_ms: int | None = None,
        clock: Callable[[], float] = time.time,
        max_pages: int = MAX_PAGES_PER_POLL,
    ) -> None:
        if not log_groups:
            raise ValueError("no log groups to read")
        self.logs = logs
        self.log_groups = list(log_groups)
        self.translator = translator
        self.namespace = namespace
        self.overlap_ms = int(overlap_s * 1000)
        self.filter_pattern = filter_pattern
        self.clock = clock
        self.max_pages = max_pages
        start = int(clock() * 1000) if start_ms is None else start_ms
        self._not_before = start
        self._cursor = dict.fromkeys(self.log_groups, start)  # read completely up to here
        self._pending: dict[str, dict[str, Any]] = {}  # queries cut short, with their nextToken
        self._seen: dict[str, dict[tuple[str, str], int]] = {g: {} for g in self.log_groups}
        self.failed_polls = 0  # since start, all groups
        registry = translator.registry
        self.events = Counter(
            "ripple_aws_logs_emf_events",
            "EMF log events of the namespace read from CloudWatch Logs, by log group.",
            ["log_group"],
            registry=registry,
        )
        self.errors = Counter(
            "ripple_aws_logs_poll_errors",
            "Failed FilterLogEvents polls, by log group (retried on the next poll).",
            ["log_group"],
            registry=registry,
        )
        self.last_success = Gauge(
            "ripple_aws_logs_last_success_timestamp_seconds",
            "When each log group was last read completely (Unix time).",
            ["log_group"],
            registry=registry,
        )
        for group in self.log_groups:  # the series exist (at 0) before the first event
            self.events.labels(group)
            self.errors.labels(group)

    def poll(self) -> int:
        """Read every log group once; returns how many EMF documents were added."""
        return sum(self._poll_group(group) for group in self.log_groups)

    def _poll_group(self, group: str) -> int:
        # A query cut short last time (a burst larger than max_pages) goes on from its token;
        # otherwise a new one: from the end of the last complete query, less the overlap.
        request = self._pending.pop(group, None)
        if request is None:
            request = {
                "logGroupName": group,
                "startTime": max(self._not_before, self._cursor[group] - self.overlap_ms),
                "endTime": int(self.clock() * 1000),
                "filterPattern": self.filter_pattern,
            }
        seen = self._seen[group]
        added = 0
        try:
            for _ in range(self.max_pages):
                page = self.logs.filter_log_events(**request)
                for event in page.get("events", []):
                    key = (str(event.get("logStreamName", "")), str(event.get("eventId", "")))
                    if key in seen:
                        continue
                    seen[key] = int(event.get("timestamp", request["endTime"]))
                    added += self._add(group, str(event.get("message", "")))
                token = page.get("nextToken")
                if not token:
                    break
                request = {**request, "nextToken": token}
            else:
                self._pending[group] = request  # the rest on the next poll
                return added
        except Exception as error:  # boto3's ClientError/BotoCoreError, a network blip
            if "nextToken" in request:
                self._pending[group] = request  # retry the page that failed
            self.errors.labels(group).inc()
            self.failed_polls += 1
            logger.warning("reading %s failed (retried next poll): %s", group, error)
            return added
        # Everything up to endTime was read. Later queries start at most `overlap` earlier,
        # so lines stamped before that can no longer come back: forget them.
        end = int(request["endTime"])
        self._cursor[group] = end
        horizon = end - self.overlap_ms
        for key in [k for k, ts in seen.items() if ts < horizon]:
            del seen[key]
        self.last_success.labels(group).set(end / 1000)
        return added

    def _add(self, group: str, message: str) -> int:
        document = _ripple_document(message.strip(), self.namespace)
        if document is None:
            return 0
        self.events.labels(group).inc()
        try:
            self.translator.ingest(document)
        except ValueError as error:
            self.translator.rejected.inc()
            logger.warning("rejected an EMF document from %s: %s", group, error)
            return 0
        return 1

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Poll every ``interval_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            started = time.monotonic()
            self.poll()
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))


# ---------------------------------------------------------------------------- command line


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ripple_aws_metrics",
        description="Serve a deployed Ripple stack's metrics to Prometheus, named as on the local stack "
        "(EMF read back from the functions' CloudWatch log groups).",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack", help="CloudFormation stack name (its functions' log groups are read)")
    target.add_argument(
        "--log-group", action="append", dest="log_groups", metavar="NAME", help="read this log group (repeat)"
    )
    parser.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")
    parser.add_argument("--profile", help="AWS credentials profile")
    parser.add_argument(
        "--listen",
        type=_listen_address,
        default=("127.0.0.1", DEFAULT_METRICS_PORT),
        metavar="HOST:PORT",
        help=f"where Prometheus scrapes /metrics (default 127.0.0.1:{DEFAULT_METRICS_PORT})",
    )
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S, help="seconds between polls")
    parser.add_argument(
        "--overlap",
        type=float,
        default=DEFAULT_OVERLAP_S,
        help="seconds re-read each poll for late log events",
    )
    parser.add_argument("--namespace", default=NAMESPACE, help="EMF namespace to export (default Ripple)")
    parser.add_argument("--filter-pattern", default=DEFAULT_FILTER_PATTERN, help=argparse.SUPPRESS)
    parser.add_argument(
        "--once",
        type=float,
        metavar="SECONDS",
        help="read the last SECONDS of logs once, print the exposition and exit (a check of access)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.overlap < 0:
        parser.error("--interval must be > 0 and --overlap >= 0")
    return args


def _clients(args: argparse.Namespace) -> tuple[Any, Any]:
    import boto3
    from botocore.config import Config

    session = boto3.Session(profile_name=args.profile, region_name=args.region)
    config = Config(retries={"mode": "adaptive", "max_attempts": 10}, connect_timeout=5, read_timeout=30)
    return session.client("logs", config=config), session.client("cloudformation", config=config)


def main(argv: Sequence[str] | None = None, *, clients: tuple[Any, Any] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    if not args.verbose:
        logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        logs, cloudformation = clients or _clients(args)
        groups: Iterable[str] = args.log_groups or discover_log_groups(cloudformation, args.stack)
        translator = EmfTranslator()
        start_ms = int((time.time() - args.once) * 1000) if args.once is not None else None
        reader = EmfLogReader(
            logs,
            list(groups),
            translator,
            namespace=args.namespace,
            overlap_s=args.overlap,
            filter_pattern=args.filter_pattern,
            start_ms=start_ms,
        )
    except Exception as error:  # no credentials, no such stack, no permission: one line
        print(f"ripple_aws_metrics: {error}", file=sys.stderr)
        return 1
    if args.once is not None:
        reader.poll()
        sys.stdout.write(translator.exposition().decode())
        return 1 if reader.failed_polls else 0

    from prometheus_client import start_http_server

    host, port = args.listen
    try:
        server, _thread = start_http_server(port, host, registry=translator.registry)
    except OSError as error:
        print(f"ripple_aws_metrics: cannot listen on {host}:{port}: {error}", file=sys.stderr)
        return 1
    logger.info("reading %s; metrics on http://%s:%d/metrics", ", ".join(reader.log_groups), host, port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        reader.run(args.interval, stop)
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
