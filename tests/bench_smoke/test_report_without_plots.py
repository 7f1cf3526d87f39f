"""The report renders without matplotlib (``make test`` installs the dev extra only; plots
need the bench extra): a fresh clone's ``make test`` failed on it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench.config import REPO_ROOT, BenchConfig
from bench.report import render


def test_the_committed_results_render_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    results = json.loads((REPO_ROOT / "bench" / "results.json").read_text())
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in results["config"].items()}
    report = render(results, BenchConfig(**{**config, "out_dir": tmp_path})).read_text()
    assert "## Headline numbers" in report and ".png" not in report
    assert not list(tmp_path.glob("*.png"))
