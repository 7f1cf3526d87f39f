"""Render ripple-dashboard.json's panels from a running Prometheus into one PNG.

For READMEs and reviews, where a Grafana screenshot is not at hand: every panel's PromQL is
run against Prometheus' HTTP API (``query_range``; stat panels as instant queries) exactly
as written in the dashboard, with Grafana's ``$__rate_interval`` and ``$__range`` filled in.

    pip install matplotlib   # not a project dependency: only this script uses it
    python infra/grafana/render_dashboard.py --minutes 10 --out infra/grafana/ripple-dashboard.png
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
UNIT_SCALE = {"s": (1000.0, "ms"), "percentunit": (100.0, "%"), "reqps": (1.0, "req/s"), "ops": (1.0, "/s")}


def query(prometheus: str, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"{prometheus.rstrip('/')}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return list(body["data"]["result"])


def legend(template: str, labels: dict[str, str]) -> str:
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text.replace("{{", "").replace("}}", "").strip() or "value"


def expr_for(expr: str, rate_interval: str, range_s: int) -> str:
    return expr.replace("$__rate_interval", rate_interval).replace("$__range", f"{range_s}s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--dashboard", type=Path, default=HERE / "ripple-dashboard.json")
    parser.add_argument("--minutes", type=float, default=10.0, help="time range ending now")
    parser.add_argument("--end", type=float, default=None, help="range end (epoch seconds; default now)")
    parser.add_argument("--rate-interval", default="20s", help="$__rate_interval (4 x the scrape interval)")
    parser.add_argument("--out", type=Path, default=HERE / "ripple-dashboard.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(args.dashboard.read_text())
    end = args.end or time.time()
    start = end - args.minutes * 60
    range_s = int(end - start)
    step = max(5, range_s // 240)
    stats = [p for p in dashboard["panels"] if p["type"] == "stat"]
    series_panels = [p for p in dashboard["panels"] if p["type"] == "timeseries"]

    columns = 3
    rows = 1 + math.ceil(len(series_panels) / columns)
    figure = plt.figure(figsize=(6 * columns, 3.4 * rows), constrained_layout=True)
    grid = figure.add_gridspec(rows, columns)
    figure.suptitle(
        f"{dashboard['title']} - {time.strftime('%Y-%m-%d %H:%M', time.localtime(start))}"
        f" to {time.strftime('%H:%M', time.localtime(end))} (local stack, Prometheus)",
        fontsize=14,
    )

    header = figure.add_subplot(grid[0, :])
    header.axis("off")
    for index, panel in enumerate(stats):
        result = query(
            args.prometheus,
            "query",
            {"query": expr_for(panel["targets"][0]["expr"], args.rate_interval, range_s), "time": end},
        )
        value = float(result[0]["value"][1]) if result else 0.0
        x = (index + 0.5) / len(stats)
        header.text(
            x, 0.62, f"{value:.0f}", ha="center", va="center", fontsize=26, weight="bold", color="#1f77b4"
        )
        header.text(x, 0.18, panel["title"], ha="center", va="center", fontsize=12)

    for index, panel in enumerate(series_panels):
        axes = figure.add_subplot(grid[1 + index // columns, index % columns])
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        scale, label = UNIT_SCALE.get(unit, (1.0, ""))
        plotted = 0
        for target in panel["targets"]:
            expr = expr_for(target["expr"], args.rate_interval, range_s)
            for series in query(
                args.prometheus, "query_range", {"query": expr, "start": start, "end": end, "step": step}
            ):
                points = [
                    (float(t), float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")
                ]
                if not points:
                    continue
                xs = [(t - start) / 60 for t, _ in points]
                ys = [v * scale for _, v in points]
                axes.plot(
                    xs, ys, linewidth=1.2, label=legend(target.get("legendFormat", ""), series["metric"])
                )
                plotted += 1
        axes.set_title(panel["title"], fontsize=10)
        axes.set_xlabel("minutes", fontsize=8)
        axes.set_ylabel(label, fontsize=8)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
        axes.set_ylim(bottom=0)
        if plotted:
            axes.legend(fontsize=6, loc="upper left", ncol=1 if plotted < 6 else 2)
        else:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, color="grey")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
