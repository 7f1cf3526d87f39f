"""``python -m bench.stream_backlog`` end to end on tiny backlogs: both engines start as asked
(stock ``-inMemory``, and as ``ripple_local`` starts it) and every row is measured. (What the
numbers are is the bench's to report, not a test's to assert.)"""

from __future__ import annotations

import pytest

from bench import stream_backlog

pytestmark = pytest.mark.e2e


def test_both_engines_are_measured_at_every_backlog(capsys: pytest.CaptureFixture[str]) -> None:
    assert stream_backlog.main(["--backlogs", "0,250"]) == 0

    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| DynamoDB Local")]
    assert [row.split(" | ")[1] for row in rows] == ["0", "250", "0", "250"]
    assert [row.split(" | ")[0] for row in rows] == ["| DynamoDB Local, -inMemory (stock)"] * 2 + [
        "| DynamoDB Local as ripple_local starts it"
    ] * 2
    assert all(float(row.split(" | ")[2].replace(",", "")) > 0 for row in rows)
