"""The scale benchmark still runs and still shows the steady-state request bound (figures, not times)."""

from __future__ import annotations

import subprocess
import sys


def test_scale_bench_prints_its_table() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "scale",
            "--sizes",
            "3000",
            "--benchmarks",
            "20",
            "--page-size",
            "1000",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [
        row
        for row in (line.split() for line in result.stdout.splitlines())
        if len(row) == 7 and row[0].isdigit() and row[1] in ("incremental", "full")
    ]
    assert [row[1] for row in rows] == ["incremental", "full"]
    incremental, full = rows
    assert int(incremental[2]) <= 3  # steady-state requests per sync
    assert int(full[2]) == 3  # a full rescan reads every page: 3000 runs at 1000 a page
    assert int(incremental[3]) >= 50  # 50 runs left running: one GET each
    assert "ratio full / incremental" in result.stdout
