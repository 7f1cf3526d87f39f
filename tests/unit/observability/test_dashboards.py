"""The Prometheus config and the Grafana dashboard stay in step with the code.

Every ``ripple_*`` series a dashboard panel or a rule queries must be one the exporter
actually produces from a metric the layer actually emits, so renaming a metric in a
service breaks this test rather than silently emptying a panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ripple.http.instrumentation import REQUEST_COUNT, REQUEST_DURATION
from ripple_local.metrics_exporter import DEFAULT_METRICS_PORT, EmfTranslator, StreamRunnerMetrics

ROOT = Path(__file__).resolve().parents[3]
LAYER = ROOT / "layers" / "ripple" / "ripple"
DASHBOARD = ROOT / "infra" / "grafana" / "ripple-dashboard.json"
PROMETHEUS = ROOT / "infra" / "prometheus"
SERIES = re.compile(r"\bripple_[a-z0-9_]+")


def emitted_metrics() -> dict[str, str]:
    """EMF metric name -> unit, for every metric the layer's code emits."""
    found: dict[str, str] = {REQUEST_COUNT: "Count", REQUEST_DURATION: "Milliseconds"}
    for source in LAYER.rglob("*.py"):
        text = source.read_text()
        for name in re.findall(r'\bcount\(\s*"(\w+)"', text):
            found[name] = "Count"
        for name, unit in re.findall(r'add_metric\(\s*name="(\w+)",\s*unit=MetricUnit\.(\w+)', text):
            found[name] = unit
    return found


def exported_series() -> set[str]:
    """Every sample name the exporter produces for those metrics and the stream runners."""
    translator = EmfTranslator()
    StreamRunnerMetrics(translator, "Fn", "Stream").delivered(1, [1.0])
    for name, unit in emitted_metrics().items():
        translator.ingest(
            {
                "_aws": {
                    "Timestamp": 0,
                    "CloudWatchMetrics": [
                        {"Namespace": "Ripple", "Dimensions": [[]], "Metrics": [{"Name": name, "Unit": unit}]}
                    ],
                },
                name: [1.0],
            }
        )
    text = translator.exposition().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def queried_series(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in SERIES.findall(expr)}


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_layer_emits_the_metrics_the_issue_asks_for() -> None:
    emitted = emitted_metrics()
    for name in ("PostsCreated", "FollowsCreated", "FeedReads", "FeedCacheHits", "FeedCacheMisses"):
        assert emitted[name] == "Count"
    assert emitted["FeedLag"] == "Milliseconds"
    assert {"StreamBatches", "StreamRecordsProcessed", "StreamRecordsFailed", "FanoutItemsWritten"} <= set(
        emitted
    )


def test_every_dashboard_query_names_an_exported_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_series()
    assert queried_series(dashboard_expressions(dashboard)) - exported == set()


def test_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "ripple-overview"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]


def test_prometheus_scrapes_the_exporter_and_its_rules_query_exported_series() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{DEFAULT_METRICS_PORT}"]
    rules = yaml.safe_load((PROMETHEUS / config["rule_files"][0]).read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    recorded = {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}
    assert queried_series(expressions) - exported_series() == set()
    assert recorded  # and alerts may use them
