"""``python -m bench.stream_backlog`` end to end on tiny backlogs: the three engines start as
asked (``-inMemory``, a RAM file, the RAM file indexed as ``ripple_local`` starts it) and every
row is measured. (What the numbers are is the bench's to report, not a test's to assert.)"""

from __future__ import annotations

import pytest

from bench import stream_backlog
from ripple_local import dynamodb_local

pytestmark = pytest.mark.e2e


def test_every_engine_is_measured_at_every_backlog(capsys: pytest.CaptureFixture[str]) -> None:
    if not any(ram.is_dir() for ram in dynamodb_local.RAM_DIRS):
        pytest.skip("no RAM-backed directory here for the file engines")

    assert stream_backlog.main(["--backlogs", "0,25", "--warm-up", "5", "--calls", "5"]) == 0

    rows = [
        line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| DynamoDB")
    ]
    labels = [label for label, _ in stream_backlog.ENGINES]
    assert [(row[0].lstrip("| "), row[1]) for row in rows] == [
        (label, held) for label in labels for held in ("0", "25")
    ]
    assert all(float(row[2].replace(",", "")) > 0 for row in rows)
    # both GetRecords columns: the new table's idle stream and the backlog stream's tip
    assert all(len(row) == 5 and row[3].endswith(" ms") and row[4].endswith(" ms |") for row in rows)
