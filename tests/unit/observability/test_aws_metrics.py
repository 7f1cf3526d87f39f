"""Prometheus on AWS (infra/aws-metrics/): the same series as the local stack, from a deployed one.

Ripple's own metrics reach Prometheus on AWS through ``ripple_aws_metrics.py``: the EMF lines
the functions print are read back from CloudWatch Logs and added to the local exporter's own
translator. These tests prove that path yields *exactly* the local series (names, labels,
values) for every metric the layer's code emits, that every series the local rules and
dashboard query is produced on AWS or is one of the local stream runners' (for which
``ripple-aws-rules.yml`` has AWS stand-ins fed by YACE), and they check every configuration
file: YACE's against its documented schema (YACE is a Go binary from GitHub releases, not
installable here), Prometheus' with ``promtool`` (Debian package ``prometheus``; those tests
skip, saying so, where it is not installed), the IAM template with cfn-lint.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from aws_lambda_powertools.metrics import MetricUnit
from botocore.stub import Stubber
from moto import mock_aws
from prometheus_client.parser import text_string_to_metric_families

from ripple.http.instrumentation import REQUEST_COUNT, REQUEST_DURATION, record_request
from ripple_local.cfn import load_template
from ripple_local.metrics_bridge import SINK_ENV, ForwardingEMFProvider
from ripple_local.metrics_exporter import DEFAULT_METRICS_PORT, EmfTranslator, MetricsExporter, snake_case
from tests.unit.observability.test_dashboards import (
    DASHBOARD,
    PROMETHEUS,
    dashboard_expressions,
    emitted_metrics,
    queried_series,
)

ROOT = Path(__file__).resolve().parents[3]
AWS_METRICS = ROOT / "infra" / "aws-metrics"
TEMPLATE = load_template(ROOT / "template.yaml")
REGION = "us-east-1"
# infra/bootstrap.sh extracts promtool from Debian's prometheus package into the venv.
_BOOTSTRAPPED_PROMTOOL = Path(sys.prefix) / "share" / "ripple" / "promtool" / "usr" / "bin" / "promtool"
PROMTOOL = shutil.which("promtool") or (
    str(_BOOTSTRAPPED_PROMTOOL) if _BOOTSTRAPPED_PROMTOOL.is_file() else None
)
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed: infra/bootstrap.sh takes it from Debian's `prometheus` "
    "package (apt-get download), which this machine does not have",
)


def _load_exporter_module() -> Any:
    spec = importlib.util.spec_from_file_location("ripple_aws_metrics", AWS_METRICS / "ripple_aws_metrics.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ram = _load_exporter_module()

# The local stack's stream runners play Lambda's poller (ripple_local.metrics_exporter.
# StreamRunnerMetrics). On AWS that is Lambda itself, whose numbers are CloudWatch metrics
# only: YACE's ripple_aws_lambda_* and ripple_aws_sqs_* series stand in for these.
STREAM_RUNNER_SERIES = frozenset(
    {
        "ripple_stream_invocations_total",
        "ripple_stream_records_delivered_total",
        "ripple_stream_retries_total",
        "ripple_stream_records_retried_total",
        "ripple_stream_bisections_total",
        "ripple_stream_records_sent_to_failure_queue_total",
        "ripple_stream_records_dropped_total",
        "ripple_stream_poll_errors_total",
        "ripple_stream_iterator_age_seconds_bucket",
        "ripple_stream_iterator_age_seconds_count",
        "ripple_stream_iterator_age_seconds_sum",
    }
)
# Local alerts on stream-runner series -> the AWS alert that stands in for each.
AWS_STAND_INS = {
    "RippleStreamRecordsParked": "RippleStreamRecordsParkedAws",
    "RippleStreamFallingBehind": "RippleStreamFallingBehindAws",
}


# ---------------------------------------------------------------------------- helpers


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exported_names(text: str) -> set[str]:
    return {name for name, _ in samples(text)}


@pytest.fixture
def layer_emf_lines(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One EMF line per metric the layer's code emits, printed by the layer's own provider
    exactly as a function prints it into its CloudWatch log group on AWS."""
    monkeypatch.delenv(SINK_ENV, raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ripple-fanout")
    capsys.readouterr()
    dedicated = {REQUEST_COUNT, REQUEST_DURATION, "ColdStart"}  # emitted with their dimensions below
    for name, unit in sorted(emitted_metrics().items()):
        if name in dedicated:
            continue
        provider = ForwardingEMFProvider(namespace="Ripple")
        values = [40.0, 300.0, 1500.0] if unit == "Milliseconds" else [1.0, 4.0, 120.0]
        for value in values:  # several values in one document, as a batch handler adds them
            provider.add_metric(name=name, unit=MetricUnit[unit], value=value)
        provider.flush_metrics()
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ripple-api")
    record_request("/posts/{post_id}", "GET", 200, 12.5)
    record_request("/posts/{post_id}", "GET", 200, 480.0)
    record_request("/feed", "GET", 503, 3.0)

    class Context:
        function_name = "ripple-ApiFunction-1A2B3C"

    ForwardingEMFProvider(namespace="Ripple").add_cold_start_metric(Context())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert len(lines) == len(set(emitted_metrics()) - dedicated) + 4
    return lines


def local_exposition(lines: Sequence[str]) -> str:
    """What `make up`'s exporter serves after the functions forwarded these documents."""
    with MetricsExporter(port=0) as exporter:
        request = urllib.request.Request(exporter.sink_url, data="\n".join(lines).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 204
        with urllib.request.urlopen(exporter.url, timeout=5) as response:
            return response.read().decode()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def aws_exposition(lines: Sequence[str], noise: Sequence[str] = ()) -> str:
    """What ripple_aws_metrics.py serves after the same lines went to a function's log group
    (CloudWatch Logs emulated by moto), among the other lines a Lambda log holds."""
    group = "/aws/lambda/ripple-FanoutFunction-1A2B3C"
    with mock_aws():
        logs = boto3.client("logs", region_name=REGION)
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="2026/01/01/[$LATEST]abc")
        now = int(time.time() * 1000)
        messages = [*noise, *lines]
        logs.put_log_events(
            logGroupName=group,
            logStreamName="2026/01/01/[$LATEST]abc",
            logEvents=[{"timestamp": now - 500 + i, "message": m + "\n"} for i, m in enumerate(messages)],
        )
        translator = EmfTranslator()
        reader = ram.EmfLogReader(logs, [group], translator, start_ms=now - 1000)
        added = reader.poll()
        assert reader.failed_polls == 0
        assert added == len(lines)
        assert reader.poll() == 0  # read again: nothing is added twice
        return translator.exposition().decode()


LAMBDA_NOISE = (
    "START RequestId: 8f5c Version: $LATEST",
    '{"level":"INFO","message":"fan-out done","service":"ripple-fanout","CloudWatchMetrics":"in a log line"}',
    json.dumps(  # another namespace's EMF: not Ripple's, not exported
        {
            "_aws": {
                "Timestamp": 1,
                "CloudWatchMetrics": [{"Namespace": "Other", "Dimensions": [[]], "Metrics": [{"Name": "X"}]}],
            },
            "X": 1,
        }
    ),
    "END RequestId: 8f5c",
    "REPORT RequestId: 8f5c Duration: 12.3 ms Billed Duration: 13 ms",
)


# ---------------------------------------------------------------------------- same series


def test_aws_path_exports_exactly_the_local_series_for_every_metric_the_code_emits(
    layer_emf_lines: list[str], aws_credentials: None
) -> None:
    local = samples(local_exposition(layer_emf_lines))
    aws = samples(aws_exposition(layer_emf_lines, noise=LAMBDA_NOISE))
    own = {key for key in aws if key[0].startswith("ripple_aws_logs_")}  # the reader's health
    assert {key: aws[key] for key in aws.keys() - own} == local  # names, labels and values

    names = {name for name, _ in aws}
    for metric, unit in emitted_metrics().items():  # README's naming rule, metric by metric
        stem = f"ripple_{snake_case(metric)}"
        if unit == "Count":
            assert f"{stem}_total" in names, metric
        else:
            assert {f"{stem}_seconds_bucket", f"{stem}_seconds_sum", f"{stem}_seconds_count"} <= names
    assert "ripple_fanout_items_per_post_bucket" in names  # per-value views survive too
    labels = {dict(key[1]).get("route") for key in aws if key[0] == "ripple_http_requests_total"}
    assert labels == {"/posts/{post_id}", "/feed"}


def aws_produced_series() -> set[str]:
    """Every sample name ripple_aws_metrics.py exposes for the metrics the code emits."""
    translator = EmfTranslator()
    reader = ram.EmfLogReader(FakeLogs({}), ["/aws/lambda/ripple-ApiFunction-1A2B3C"], translator)
    for name, unit in emitted_metrics().items():
        document = {
            "_aws": {
                "Timestamp": 0,
                "CloudWatchMetrics": [
                    {"Namespace": "Ripple", "Dimensions": [[]], "Metrics": [{"Name": name, "Unit": unit}]}
                ],
            },
            name: [1.0],
        }
        assert reader._add("g", json.dumps(document)) == 1
    return exported_names(translator.exposition().decode())


def local_rules() -> dict[str, Any]:
    return yaml.safe_load((PROMETHEUS / "ripple-rules.yml").read_text())


def rule_expressions(rules: Mapping[str, Any]) -> list[str]:
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_series_the_local_rules_and_dashboard_query_exists_on_aws_or_is_a_stream_runners() -> None:
    produced = aws_produced_series()
    dashboard = dashboard_expressions(json.loads(DASHBOARD.read_text()))
    queried = queried_series(rule_expressions(local_rules()) + dashboard)
    assert queried - produced <= STREAM_RUNNER_SERIES
    # ... and the list of stream-runner series is the local exporter's, not a guess.
    from ripple_local.metrics_exporter import StreamRunnerMetrics

    translator = EmfTranslator()
    StreamRunnerMetrics(translator, "FanoutFunction", "PostsStream").delivered(1, [1.0])
    runner = exported_names(translator.exposition().decode()) - exported_names(
        EmfTranslator().exposition().decode()
    )
    assert runner == STREAM_RUNNER_SERIES
    assert not produced & STREAM_RUNNER_SERIES


def test_every_local_alert_on_stream_runner_series_has_an_aws_stand_in() -> None:
    aws_alerts = {
        rule["alert"]
        for group in yaml.safe_load((AWS_METRICS / "ripple-aws-rules.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    for group in local_rules()["groups"]:
        for rule in group["rules"]:
            if queried_series([rule["expr"]]) & STREAM_RUNNER_SERIES:
                assert AWS_STAND_INS.get(rule.get("alert", "")) in aws_alerts, rule


def test_prometheus_on_aws_loads_the_local_rules_unchanged_and_scrapes_both_exporters() -> None:
    config = yaml.safe_load((AWS_METRICS / "prometheus.yml").read_text())
    rule_files = [(AWS_METRICS / f).resolve() for f in config["rule_files"]]
    assert (PROMETHEUS / "ripple-rules.yml").resolve() in rule_files
    assert (AWS_METRICS / "ripple-aws-rules.yml").resolve() in rule_files
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    emf = jobs["ripple-aws-emf"]
    assert emf["static_configs"][0]["targets"] == [f"127.0.0.1:{DEFAULT_METRICS_PORT}"]
    assert "metric_relabel_configs" not in emf  # nothing to rename: the names are the local ones
    assert ram.parse_args(["--stack", "ripple"]).listen == ("127.0.0.1", DEFAULT_METRICS_PORT)
    assert jobs["ripple-aws-cloudwatch"]["static_configs"][0]["targets"] == ["127.0.0.1:5000"]


# ---------------------------------------------------------------------------- the log reader


class FakeLogs:
    """FilterLogEvents over in-memory log groups: time window, pattern term, pages of `page` events."""

    def __init__(self, groups: Mapping[str, list[dict[str, Any]]], page: int = 1000) -> None:
        self.groups = groups
        self.page = page
        self.requests: list[dict[str, Any]] = []
        self.fail: set[str] = set()

    def filter_log_events(self, **request: Any) -> dict[str, Any]:
        self.requests.append(dict(request))
        group = request["logGroupName"]
        if group in self.fail:
            raise RuntimeError("ThrottlingException: Rate exceeded")
        term = request.get("filterPattern", "").strip('"')
        events = sorted(
            (
                e
                for e in self.groups.get(group, [])
                if request["startTime"] <= e["timestamp"] <= request["endTime"] and term in e["message"]
            ),
            key=lambda e: e["timestamp"],
        )
        offset = int(request.get("nextToken") or 0)
        page = events[offset : offset + self.page]
        response: dict[str, Any] = {"events": page}
        if offset + self.page < len(events):
            response["nextToken"] = str(offset + self.page)
        return response


def emf_line(metric: str, value: float = 1.0, namespace: str = "Ripple") -> str:
    return json.dumps(
        {
            "_aws": {
                "Timestamp": 0,
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": [[]],
                        "Metrics": [{"Name": metric, "Unit": "Count"}],
                    }
                ],
            },
            metric: [value],
        }
    )


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now = now_s

    def __call__(self) -> float:
        return self.now


def event(timestamp_ms: int, message: str, stream: str = "s1", event_id: str | None = None) -> dict[str, Any]:
    return {
        "timestamp": timestamp_ms,
        "message": message + "\n",
        "logStreamName": stream,
        "eventId": event_id or f"{stream}-{timestamp_ms}-{len(message)}",
    }


def posts(translator: EmfTranslator) -> float:
    return samples(translator.exposition().decode()).get(("ripple_posts_created_total", ()), 0.0)


G = "/aws/lambda/ripple-ApiFunction-1A2B3C"


def test_reader_adds_each_line_once_and_catches_late_arrivals_within_the_overlap() -> None:
    clock = Clock(1000.0)
    lines: list[dict[str, Any]] = [event(999_000, emf_line("PostsCreated"))]
    logs = FakeLogs({G: lines})
    translator = EmfTranslator()
    reader = ram.EmfLogReader(logs, [G], translator, overlap_s=60, start_ms=990_000, clock=clock)
    assert reader.poll() == 1
    clock.now = 1015.0
    # A line stamped before the last poll reaches CloudWatch only now (Lambda ships logs late).
    lines.append(event(998_500, emf_line("PostsCreated", 2.0), stream="s2"))
    lines.append(event(1_010_000, emf_line("PostsCreated", 4.0)))
    assert reader.poll() == 2
    assert posts(translator) == 7.0
    assert logs.requests[-1]["startTime"] == 990_000  # max(start, last poll - overlap)
    assert logs.requests[-1]["endTime"] == 1_015_000
    clock.now = 1100.0
    assert reader.poll() == 0 and posts(translator) == 7.0
    assert logs.requests[-1]["startTime"] == 990_000  # never before the start
    clock.now = 1200.0
    assert reader.poll() == 0
    assert logs.requests[-1]["startTime"] == 1_100_000 - 60_000
    # Lines older than any future window are forgotten: memory stays bounded.
    assert reader._seen[G] == {}


def test_reader_reads_nothing_from_before_its_start() -> None:
    logs = FakeLogs({G: [event(900_000, emf_line("PostsCreated"))]})
    translator = EmfTranslator()
    reader = ram.EmfLogReader(logs, [G], translator, start_ms=950_000, clock=Clock(1000.0))
    assert reader.poll() == 0 and posts(translator) == 0.0
    assert logs.requests[0]["startTime"] == 950_000 and logs.requests[0]["endTime"] == 1_000_000


def test_reader_follows_pages_and_resumes_a_burst_it_cut_short() -> None:
    lines = [event(999_000 + i, emf_line("PostsCreated")) for i in range(25)]
    logs = FakeLogs({G: lines}, page=4)
    translator = EmfTranslator()
    clock = Clock(1000.0)
    reader = ram.EmfLogReader(logs, [G], translator, start_ms=990_000, clock=clock, max_pages=3)
    assert reader.poll() == 12  # 3 pages of 4, then the rest next time
    clock.now = 1001.0
    assert reader.poll() == 12
    assert logs.requests[3]["nextToken"] == "12" and logs.requests[3]["endTime"] == 1_000_000
    clock.now = 1002.0
    assert reader.poll() == 1  # the query is complete; the next one starts over the overlap
    assert posts(translator) == 25.0
    clock.now = 1003.0
    assert reader.poll() == 0 and posts(translator) == 25.0  # re-read, all seen
    fresh = [r for r in logs.requests if "nextToken" not in r]
    assert [(r["startTime"], r["endTime"]) for r in fresh] == [(990_000, 1_000_000), (990_000, 1_003_000)]


def test_reader_counts_a_failed_group_reads_the_others_and_retries_it() -> None:
    other = "/aws/lambda/ripple-FanoutFunction-4D5E6F"
    logs = FakeLogs(
        {G: [event(999_000, emf_line("PostsCreated"))], other: [event(999_000, emf_line("LikesCreated"))]}
    )
    logs.fail.add(G)
    translator = EmfTranslator()
    clock = Clock(1000.0)
    reader = ram.EmfLogReader(logs, [G, other], translator, start_ms=990_000, clock=clock)
    assert reader.poll() == 1
    text = translator.exposition().decode()
    assert samples(text)[("ripple_aws_logs_poll_errors_total", (("log_group", G),))] == 1.0
    assert (
        samples(text)[("ripple_aws_logs_last_success_timestamp_seconds", (("log_group", other),))] == 1000.0
    )
    logs.fail.clear()
    clock.now = 1200.0  # longer than the overlap: the failed group's window was kept
    assert reader.poll() == 1 and posts(translator) == 1.0


def test_reader_retries_the_page_that_failed_in_the_middle_of_a_query() -> None:
    class Flaky(FakeLogs):
        failures = 1

        def filter_log_events(self, **request: Any) -> dict[str, Any]:
            if request.get("nextToken") == "4" and self.failures:
                self.failures -= 1
                raise RuntimeError("ThrottlingException: Rate exceeded")
            return super().filter_log_events(**request)

    logs = Flaky({G: [event(999_000 + i, emf_line("PostsCreated")) for i in range(10)]}, page=4)
    translator = EmfTranslator()
    clock = Clock(1000.0)
    reader = ram.EmfLogReader(logs, [G], translator, start_ms=990_000, clock=clock)
    assert reader.poll() == 4 and reader.failed_polls == 1
    clock.now = 1001.0
    assert reader.poll() == 6 and posts(translator) == 10.0
    assert logs.requests[1]["nextToken"] == "4" and logs.requests[1]["endTime"] == 1_000_000


def test_reader_keeps_only_the_ripple_namespace_and_counts_broken_documents() -> None:
    mixed = json.loads(emf_line("PostsCreated"))
    mixed["_aws"]["CloudWatchMetrics"].append(
        {"Namespace": "Other", "Dimensions": [[]], "Metrics": [{"Name": "Other", "Unit": "Count"}]}
    )
    mixed["Other"] = [1.0]
    broken = json.loads(emf_line("PostsCreated"))
    broken["PostsCreated"] = ["many"]
    logs = FakeLogs(
        {
            G: [
                event(999_001, json.dumps(mixed)),
                event(999_002, emf_line("Foreign", namespace="Other")),
                event(999_003, json.dumps(broken)),
                event(999_004, '{"_aws": "CloudWatchMetrics", "not": "emf"}'),
                event(999_005, "[ERROR] CloudWatchMetrics {not json"),
            ]
        }
    )
    translator = EmfTranslator()
    reader = ram.EmfLogReader(logs, [G], translator, start_ms=990_000, clock=Clock(1000.0))
    reader.poll()
    names = exported_names(translator.exposition().decode())
    assert "ripple_posts_created_total" in names
    assert not {"ripple_other_total", "other_other_total", "other_foreign_total"} & names
    values = samples(translator.exposition().decode())
    assert values[("ripple_exporter_emf_rejected_total", ())] == 1.0  # the "many"
    assert values[("ripple_aws_logs_emf_events_total", (("log_group", G),))] == 2.0


def test_the_filter_pattern_term_is_in_every_emf_line_the_layer_prints(layer_emf_lines: list[str]) -> None:
    term = ram.DEFAULT_FILTER_PATTERN.strip('"')
    assert f'"{term}"' == ram.DEFAULT_FILTER_PATTERN
    assert all(term in line for line in layer_emf_lines)
    assert not any(term in line for line in ("START RequestId: 1 Version: $LATEST", "REPORT RequestId: 1"))


def test_log_groups_are_the_stacks_functions(aws_credentials: None) -> None:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    summaries = [
        {
            "LogicalResourceId": logical,
            "PhysicalResourceId": physical,
            "ResourceType": kind,
            "LastUpdatedTimestamp": "2026-01-01T00:00:00Z",
            "ResourceStatus": "CREATE_COMPLETE",
        }
        for logical, physical, kind in [
            ("ApiFunction", "ripple-ApiFunction-1A2B3C", "AWS::Lambda::Function"),
            ("FanoutFunction", "ripple-FanoutFunction-4D5E6F", "AWS::Lambda::Function"),
            ("StreamFailureQueue", "https://sqs.us-east-1.amazonaws.com/1/ripple-Q", "AWS::SQS::Queue"),
        ]
    ]
    with Stubber(cloudformation) as stub:  # request and response checked against the API model
        stub.add_response(
            "list_stack_resources",
            {"StackResourceSummaries": summaries[:2], "NextToken": "t"},
            {"StackName": "ripple"},
        )
        stub.add_response(
            "list_stack_resources",
            {"StackResourceSummaries": summaries[2:]},
            {"StackName": "ripple", "NextToken": "t"},
        )
        assert ram.discover_log_groups(cloudformation, "ripple") == [
            "/aws/lambda/ripple-ApiFunction-1A2B3C",
            "/aws/lambda/ripple-FanoutFunction-4D5E6F",
        ]
    with Stubber(cloudformation) as stub:
        stub.add_response(
            "list_stack_resources", {"StackResourceSummaries": summaries[2:]}, {"StackName": "x"}
        )
        with pytest.raises(LookupError):
            ram.discover_log_groups(cloudformation, "x")


def test_command_line_once_prints_the_exposition_and_errors_are_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = int(time.time() * 1000)
    logs = FakeLogs({G: [event(now - 5_000, emf_line("PostsCreated", 3.0))]})
    assert ram.main(["--log-group", G, "--once", "60"], clients=(logs, None)) == 0
    assert "ripple_posts_created_total 3.0" in capsys.readouterr().out

    class NoStack:
        def get_paginator(self, name: str) -> Any:
            raise RuntimeError("An error occurred (ValidationError): Stack with id nope does not exist")

    assert ram.main(["--stack", "nope"], clients=(logs, NoStack())) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Stack with id nope does not exist" in err
    with pytest.raises(SystemExit):
        ram.parse_args(["--stack", "x", "--listen", "9464"])


# ---------------------------------------------------------------------------- YACE


# YACE's configuration schema: docs/configuration.md and pkg/config/scrapeconf.go of
# prometheus-community/yet-another-cloudwatch-exporter (read at 1a0ddb1e). Unknown keys are
# errors here (YACE itself parses them leniently and warns "config file syntax error").
YACE_TOP = {"apiVersion", "sts-region", "discovery", "static", "customNamespace"}
YACE_DISCOVERY = {"exportedTagsOnMetrics", "jobs"}
YACE_METRIC_FIELDS = {
    "statistics",
    "period",
    "length",
    "delay",
    "nilToZero",
    "addCloudwatchTimestamp",
    "exportAllDataPoints",
}
YACE_DISCOVERY_JOB = {
    "regions", "type", "roles", "searchTags", "customTags", "dimensionNameRequirements", "metrics",
    "roundingPeriod", "recentlyActiveOnly", "includeContextOnInfoMetrics", "enhancedMetrics",
} | YACE_METRIC_FIELDS  # fmt: skip
YACE_METRIC = {"name"} | YACE_METRIC_FIELDS
YACE_TAG = {"key", "value"}
# Namespaces Ripple's jobs use (YACE knows many more); aliases are rejected by YACE.
YACE_SERVICES = {"AWS/Lambda": "lambda", "AWS/SQS": "sqs"}
YACE_STATISTICS = {"Maximum", "Minimum", "Sum", "SampleCount", "Average"}
YACE_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{0,2})?|100)$")
YACE_DEFAULT_PERIOD = YACE_DEFAULT_LENGTH = 300


def yace_errors(config: Mapping[str, Any]) -> list[str]:
    """Every reason YACE would refuse (or warn about) this configuration."""
    errors: list[str] = []

    def unknown(where: str, mapping: Any, allowed: set[str]) -> bool:
        if not isinstance(mapping, Mapping):
            errors.append(f"{where}: not a mapping")
            return True
        errors.extend(f"{where}: unknown field {key!r}" for key in set(mapping) - allowed)
        return False

    if unknown("top level", config, YACE_TOP):
        return errors
    if config.get("apiVersion") != "v1alpha1":
        errors.append("apiVersion must be v1alpha1")
    discovery = config.get("discovery") or {}
    if not (discovery.get("jobs") or config.get("static") or config.get("customNamespace")):
        errors.append("at least 1 Discovery job, 1 Static or one CustomNamespace must be defined")
    unknown("discovery", discovery, YACE_DISCOVERY)
    for index, job in enumerate(discovery.get("jobs") or []):
        where = f"discovery job [{index}]"
        if unknown(where, job, YACE_DISCOVERY_JOB):
            continue
        kind = job.get("type")
        if kind not in YACE_SERVICES:
            alias = {a: n for n, a in YACE_SERVICES.items()}.get(kind)
            errors.append(f"{where}: type {kind!r}" + (f": use namespace {alias!r}" if alias else " unknown"))
        if not job.get("regions"):
            errors.append(f"{where}: regions should not be empty")
        if not job.get("metrics") and not job.get("enhancedMetrics"):
            errors.append(f"{where}: metrics should not be empty")
        for tag in job.get("searchTags") or []:
            if not unknown(f"{where} searchTags", tag, YACE_TAG):
                try:
                    re.compile(str(tag.get("value", "")))
                except re.error as error:
                    errors.append(f"{where}: search tag {tag.get('key')} has an invalid regex: {error}")
        for m_index, metric in enumerate(job.get("metrics") or []):
            mwhere = f"{where} metric [{m_index}]"
            if unknown(mwhere, metric, YACE_METRIC):
                continue
            if not metric.get("name"):
                errors.append(f"{mwhere}: name should not be empty")
            statistics = metric.get("statistics") or job.get("statistics") or []
            if not statistics:
                errors.append(f"{mwhere}: statistics should not be empty")
            for statistic in statistics:
                if statistic not in YACE_STATISTICS and not YACE_PERCENTILE.match(str(statistic)):
                    errors.append(f"{mwhere}: invalid statistic {statistic!r}")
            period = metric.get("period") or job.get("period") or YACE_DEFAULT_PERIOD
            length = metric.get("length") or job.get("length") or YACE_DEFAULT_LENGTH
            if not isinstance(period, int) or period < 1:
                errors.append(f"{mwhere}: period should be a positive integer")
            elif length < period:
                errors.append(f"{mwhere}: length({length}) is smaller than period({period})")
            if "delay" in metric:
                errors.append(f"{mwhere}: a metric-level delay is ignored by YACE (set it on the job)")
            export_all = metric.get("exportAllDataPoints", job.get("exportAllDataPoints", False))
            timestamps = metric.get("addCloudwatchTimestamp", job.get("addCloudwatchTimestamp", False))
            if export_all and not timestamps:
                errors.append(f"{mwhere}: exportAllDataPoints needs addCloudwatchTimestamp")
    return errors


def yace_config() -> dict[str, Any]:
    return yaml.safe_load((AWS_METRICS / "yace.yml").read_text())


def test_yace_config_follows_yaces_schema() -> None:
    assert yace_errors(yace_config()) == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda c: c.update(apiVersion="v2"), "apiVersion"),
        (lambda c: c["discovery"]["jobs"][0].update(type="lambda"), "use namespace 'AWS/Lambda'"),
        (lambda c: c["discovery"]["jobs"][0].update(regions=[]), "regions"),
        (lambda c: c["discovery"]["jobs"][0]["metrics"][0].update(statistics=["Max"]), "invalid statistic"),
        (lambda c: c["discovery"]["jobs"][0].update(length=30), "smaller than period"),
        (lambda c: c["discovery"]["jobs"][0]["metrics"][0].update(delay=60), "metric-level delay"),
        (lambda c: c["discovery"]["jobs"][0].update(searchTag=[]), "unknown field 'searchTag'"),
    ],
)
def test_the_yace_schema_check_catches_mistakes(change: Any, error: str) -> None:
    config = yace_config()
    change(config)
    assert any(error in e for e in yace_errors(config)), yace_errors(config)


def yace_prom_string(text: str) -> str:
    """YACE's promutil.PromString: CloudWatch names to Prometheus snake case."""
    out: list[str] = []
    prev = ""
    for c in text:
        if c in " ,\t/\\.-:=@<>()“":
            out.append("_")
        elif c == "%":
            out.append("_percent")
        else:
            if c.isupper() and (prev.islower() or prev.isdigit()):
                out.append("_")
            out.append(c.lower())
        prev = c
    return "".join(out)


def yace_metric_name(namespace: str, metric: str, statistic: str) -> str:
    """YACE's promutil.BuildMetricName."""
    ns = yace_prom_string(namespace.lstrip("/").lower())
    name = "" if ns.startswith("aws") else "aws_"
    name += ns + "_"
    prom = yace_prom_string(metric)
    skip = 0
    for part in ns.split("_"):
        if prom[skip:].startswith(part):
            skip = len(part)
    return name + prom[skip:].removeprefix("_") + "_" + yace_prom_string(statistic)


def relabel(labels: Mapping[str, str], configs: Sequence[Mapping[str, Any]]) -> dict[str, str] | None:
    """Prometheus' relabelling (replace, keep, drop, labeldrop, labelkeep, labelmap); None if dropped."""
    current = dict(labels)
    for config in configs:
        action = config.get("action", "replace")
        regex = re.compile(f"^(?:{config.get('regex', '(.*)')})$")
        value = config.get("separator", ";").join(current.get(s, "") for s in config.get("source_labels", []))
        if action == "keep" and not regex.match(value):
            return None
        if action == "drop" and regex.match(value):
            return None
        if action == "replace":
            found = regex.match(value)
            if found:
                template = re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", config.get("replacement", "$1"))
                result = found.expand(template)
                if result:
                    current[config["target_label"]] = result
                else:
                    current.pop(config["target_label"], None)
        elif action == "labeldrop":
            current = {k: v for k, v in current.items() if not regex.match(k)}
        elif action == "labelkeep":
            current = {k: v for k, v in current.items() if regex.match(k)}
        elif action == "labelmap":
            for key, v in list(current.items()):
                found = regex.match(key)
                if found:
                    current[found.expand(config.get("replacement", r"\1").replace("$1", r"\1"))] = v
    return current


def physical_name(logical_id: str) -> str:
    return f"ripple-{logical_id}-1A2B3C4D5E6F"  # CloudFormation's <stack>-<LogicalId>-<suffix>


def yace_series() -> Iterator[dict[str, str]]:
    """What YACE exposes for yace.yml against this template's resources (its naming and labels)."""
    resources = TEMPLATE["Resources"]
    for job in yace_config()["discovery"]["jobs"]:
        kind = {"AWS/Lambda": "AWS::Serverless::Function", "AWS/SQS": "AWS::SQS::Queue"}[job["type"]]
        dimension = job["dimensionNameRequirements"][0]
        service = job["type"].removeprefix("AWS/").lower()
        for logical_id, resource in resources.items():
            if resource["Type"] != kind:
                continue
            for metric in job["metrics"]:
                for statistic in metric.get("statistics") or job["statistics"]:
                    yield {
                        "__name__": yace_metric_name(job["type"], metric["name"], statistic),
                        f"dimension_{dimension}": physical_name(logical_id),
                        "name": f"arn:aws:{service}:{REGION}:123456789012:{physical_name(logical_id)}",
                        "region": REGION,
                        "account_id": "123456789012",
                    }
        yield {"__name__": yace_metric_name(job["type"], "info", ""), "name": "arn"}  # the *_info series
    yield {"__name__": "yace_cloudwatch_requests_total", "action": "getmetricdata", "namespace": "AWS/Lambda"}


def relabelled_yace_series() -> list[dict[str, str]]:
    config = yaml.safe_load((AWS_METRICS / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "ripple-aws-cloudwatch"]
    kept = [relabel(series, job["metric_relabel_configs"]) for series in yace_series()]
    return [series for series in kept if series is not None]


def test_yace_series_are_renamed_ripple_aws_with_the_templates_names_as_labels() -> None:
    yace_names = {s["__name__"] for s in yace_series()}
    assert "aws_lambda_iterator_age_maximum" in yace_names  # YACE's rule, checked on a known name
    assert "aws_sqs_approximate_number_of_messages_visible_maximum" in yace_names
    series = relabelled_yace_series()
    names = {s["__name__"] for s in series}
    assert names == {
        "ripple_aws_lambda_iterator_age_maximum",
        "ripple_aws_lambda_invocations_sum",
        "ripple_aws_lambda_errors_sum",
        "ripple_aws_lambda_throttles_sum",
        "ripple_aws_sqs_approximate_number_of_messages_visible_maximum",
        "ripple_aws_sqs_approximate_age_of_oldest_message_maximum",
        "ripple_aws_sqs_number_of_messages_sent_sum",
        "yace_cloudwatch_requests_total",
    }
    functions = {s["function"] for s in series if s["__name__"].startswith("ripple_aws_lambda_")}
    stream_functions = {"FanoutFunction", "CacheRefresherFunction"}  # the local `function` label's values
    assert stream_functions <= functions <= set(TEMPLATE["Resources"])
    assert {s["queue"] for s in series if s["__name__"].startswith("ripple_aws_sqs_")} == {
        "StreamFailureQueue"
    }
    # None of them takes a local name: they are per-period statistics, not counters.
    assert not names & (aws_produced_series() | STREAM_RUNNER_SERIES)


def test_every_series_the_aws_rules_and_dashboard_query_is_produced_on_aws() -> None:
    rules = yaml.safe_load((AWS_METRICS / "ripple-aws-rules.yml").read_text())
    dashboard = json.loads((AWS_METRICS / "ripple-aws-dashboard.json").read_text())
    queried = queried_series(rule_expressions(rules) + dashboard_expressions(dashboard))
    translator = EmfTranslator()
    ram.EmfLogReader(FakeLogs({}), [G], translator)
    reader_series = exported_names(translator.exposition().decode()) | {
        "ripple_aws_logs_last_success_timestamp_seconds"  # set after the first complete read
    }
    produced = {s["__name__"] for s in relabelled_yace_series()} | reader_series
    assert queried and queried - produced == set()
    for expr in rule_expressions(rules) + dashboard_expressions(dashboard):  # labels that exist
        for label, value in re.findall(r'(function|queue)="([^"]+)"', expr):
            assert value in TEMPLATE["Resources"], (label, value)
    assert dashboard["uid"] == "ripple-aws" and [v["name"] for v in dashboard["templating"]["list"]] == [
        "datasource"
    ]


# ---------------------------------------------------------------------------- promtool


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=AWS_METRICS, timeout=120)


@needs_promtool
def test_promtool_checks_the_aws_prometheus_config_and_both_rule_files() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ripple-rules.yml" in result.stdout and "ripple-aws-rules.yml" in result.stdout


@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "ripple-aws-rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------- IAM


def reader_template() -> dict[str, Any]:
    return load_template(AWS_METRICS / "metrics-reader.yaml")


def test_metrics_reader_template_passes_cfn_lint() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(AWS_METRICS / "metrics-reader.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_reader_is_read_only_and_logs_are_the_stacks_functions_only() -> None:
    resources = reader_template()["Resources"]
    assert {r["Type"] for r in resources.values()} == {"AWS::IAM::Role"}
    (role,) = resources.values()
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {"Effect": "Allow", "Principal": {"AWS": {"Ref": "TrustedPrincipalArn"}}, "Action": "sts:AssumeRole"}
    ]
    statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    allowed: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources_ = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for action in actions:
            assert "*" not in action
            allowed.setdefault(action, []).extend(resources_)
    # What the two readers call, and nothing else. Only these four have no resource-level
    # permissions in IAM, so only they may have "*".
    assert set(allowed) == {
        "cloudformation:ListStackResources",
        "logs:FilterLogEvents",
        "cloudwatch:GetMetricData",
        "cloudwatch:GetMetricStatistics",
        "cloudwatch:ListMetrics",
        "tag:GetResources",
    }
    for action, targets in allowed.items():
        if targets == ["*"]:
            assert action.startswith(("cloudwatch:", "tag:")), action
    logs = [t["Fn::Sub"] for t in allowed["logs:FilterLogEvents"]]
    assert logs and all(":log-group:/aws/lambda/${RippleStackName}-*" in t for t in logs)
    stack = allowed["cloudformation:ListStackResources"][0]["Fn::Sub"]
    assert stack.endswith(":stack/${RippleStackName}/*")
    # ... and the reader's code calls exactly the two non-YACE actions.
    source = (AWS_METRICS / "ripple_aws_metrics.py").read_text()
    assert ".filter_log_events(" in source and '"list_stack_resources"' in source
    assert set(re.findall(r"\.(\w+_\w+)\(\*\*request\)", source)) == {"filter_log_events"}
