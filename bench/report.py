"""bench/report.md from a run's results: the plots, a few derived numbers, and the Jinja2 template
bench/templates/report.md.j2 (which holds the report's text)."""

from __future__ import annotations

import importlib.util
import math
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from bench import FIGURES, plots
from bench.config import BenchConfig, ratio, summary
from bench.cost import front_doors

NAMES = {
    "stack": "stack process (API)",
    "runners-FanoutFunction": "fan-out runners",
    "runners-CacheRefresherFunction": "cache refresher runners",
    "dynamodb-local": "DynamoDB Local (JVM)",
    "redis": "redis-server",
}


def _num(value: float | None, digits: int = 0) -> str:
    """Rounded, with thousands separators; '-' for NaN / None."""
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _ms(seconds: float | None, digits: int = 0) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{_num(seconds * 1000.0, digits)} ms"


def _shares(profile: Mapping[str, Any] | None, top: int = 5) -> str:
    if not profile or not profile.get("shares"):
        return "(not profiled)"
    return ", ".join(f"{name} {share:.0%}" for name, share in list(profile["shares"].items())[:top])


def _within(*ratios: float) -> str:
    """Whether every 10x-the-data ratio is within 20 % of 1."""
    return "within 20 %" if all(abs(x - 1.0) <= 0.2 for x in ratios) else "NOT within 20 %"


def _scaling(refs: Mapping[str, Any], call: str) -> dict[str, Any]:
    """The smallest and largest tables' latencies of a call in the emulator figure, and their p50 ratio."""
    sizes = list(refs["scaling"].values())
    small, large = sizes[0][call], sizes[-1][call]
    return {"small": small, "large": large, "x": ratio(large["p50"], small["p50"])}


def view(r: dict[str, Any], config: BenchConfig) -> dict[str, Any]:
    """What the template needs beyond the results: choices and derived numbers."""
    steps, probe, refs = r.get("convergence", []), r.get("probe", {}), r.get("emulator_references")
    e = r["emulator"]
    threshold, page = int(r["parameters"]["HighFollowerThreshold"]), int(r["parameters"]["FanoutPageSize"])
    probed = [p for p in probe.get("posts", []) if p.get("status") == 201]
    small = [p["fanout"] for p in probed if p["followers"] < min(page, threshold)]
    small.sort(key=lambda f: f["duration_s"])
    imports = r.get("imports", {})
    api = imports.get("functions", {}).get("ApiFunction", {})
    others = f" (SQS, Secrets Manager: {e['others']})" if e["dynamodb"] != e["others"] else ""
    v: dict[str, Any] = {
        "emulator": e["dynamodb"] + others,
        "tx_rate": 1.0 / _scaling(refs["this"], "transaction")["small"]["mean"] if refs else math.nan,
        "best_write": max(r.get("write_path", []), key=lambda w: w["posts_per_s"], default=None),
        "best_read": max(r.get("reads_http", []), key=lambda x: x["reads_per_s"], default=None),
        "fanout_median": small[len(small) // 2] if small else None,  # and its DynamoDB calls, as median:
        "fanout_calls": sorted(f["aws_call_count"] for f in small)[len(small) // 2] if small else None,
        "post_calls": probed[0]["api"]["aws_call_count"] if probed else 2,
        "heavy": max((p for p in probed if p["followers"] < threshold),
                     key=lambda p: p["followers"], default=None),
        "import_first": api.get((imports.get("variants") or [""])[0]),
        "import_compiled": api.get("compiled"),
        "runner": steps[-1].get("stream", {}).get("FanoutFunction.PostsStream", {}) if steps else {},
        "doors": front_doors(r["cost"]) if r.get("cost") else None,  # REST and HTTP API in front
    }  # fmt: skip
    if probe:
        v["handler"] = summary(probe["handler_reads"]["latencies"])
        v["bare"] = summary(probe["bare_redis_reads"]["latencies"])
        pairs = sorted(probe.get("handler_to_bare") or [math.nan])  # one ratio per pair of windows
        v["handler_to_bare"] = {
            "median": statistics.median(pairs),
            "low": pairs[0],
            "high": pairs[-1],
            "n": len(pairs),
        }
    if refs:
        emulators = [(e["dynamodb"], refs["this"])]
        if "other" in refs:
            emulators.append((refs["other_emulator"]["dynamodb"], refs["other"]))
        v["sizes"] = [int(size) for size in refs["this"]["scaling"]]
        calls = ("query", "transaction")
        v["scaling"] = [(name, {c: _scaling(m, c) for c in calls}) for name, m in emulators]
    return v


def _plots(r: dict[str, Any], out: Path, subtitle: str) -> dict[str, str | None]:
    """The PNGs the template asks for, next to the report; None if not drawn (none without matplotlib)."""
    pngs: dict[str, str | None] = dict.fromkeys(("cdf", "tput", "fanout", "ccdf"))
    if importlib.util.find_spec("matplotlib") is None:
        return pngs
    steps, threshold = r.get("convergence", []), int(r["parameters"]["HighFollowerThreshold"])
    if steps:
        pngs["cdf"] = plots.convergence_cdf(steps, out / "convergence_cdf.png", subtitle)
        tput = out / "throughput_vs_offered.png"
        pngs["tput"] = plots.throughput_vs_offered(steps, r.get("write_path", []), tput, subtitle)
    if r.get("fanout"):
        ceiling = r["ceiling"]["one_client"]["batch_items_per_s"]
        pngs["fanout"] = plots.fanout_timeline(r["fanout"], ceiling, out / "fanout_timeline.png", subtitle)
    if counts := r.get("follower_counts"):
        pngs["ccdf"] = plots.followers_ccdf(counts, threshold, out / "followers_ccdf.png", subtitle)
    return pngs


def render(results: dict[str, Any], config: BenchConfig) -> Path:
    """Write report.md (and plots) into ``config.out_dir``; returns the report's path."""
    g, params = results["graph"], results["parameters"]
    subtitle = (
        f"{g['users']} users, {g['edges']} follows (power law, alpha {g['powerlaw_alpha']:.2f}), "
        f"threshold {params['HighFollowerThreshold']}, page {params['FanoutPageSize']}, seed {config.seed}"
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
    )  # fmt: skip
    env.filters.update(
        num=_num, ms=_ms, shares=_shares, g=lambda x: f"{x:g}", f=lambda x, d=0: f"{x:.{d}f}",
        pct=lambda x: f"{x:.0%}", mb=lambda n: f"{n / 1e6:.1f} MB",
        lat=lambda s, d=0: f"{_ms(s['p50'], d)} / {_ms(s['p99'], d)}",
        cpu=lambda cores: ", ".join(f"{NAMES.get(k, k)} {v:.2f}" for k, v in cores.items()) if cores else "-",
    )  # fmt: skip
    env.globals.update(ratio=ratio, within=_within, FIGURES=FIGURES, NAMES=NAMES)
    pngs = _plots(results, config.out_dir, subtitle)
    text = env.get_template("report.md.j2").render(r=results, c=config, v=view(results, config), pngs=pngs)
    path = config.out_dir / "report.md"
    path.write_text(text)
    return path
