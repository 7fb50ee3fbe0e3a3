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
        if len(row) == 8 and row[0].isdigit() and row[1] in ("incremental", "full")
    ]
    assert [row[1] for row in rows] == ["incremental", "full"]
    incremental, full = rows
    assert int(incremental[2]) <= 3  # steady-state requests per sync
    assert int(full[2]) == 3  # a full rescan reads every page: 3000 runs at 1000 a page
    # 50 runs left running: looking each up would cost 50 requests, re-reading the 3 pages costs 3.
    assert int(incremental[3]) <= int(full[3]) + 3
    assert "ratio full / incremental" in result.stdout


def test_churn_bench_prints_its_table_and_incremental_keeps_up() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "churn",
            "--histories",
            "5000",
            "--churns",
            "2000",
            "--latencies",
            "50",
            "--interval",
            "30",
            "--scale",
            "10",
            "--intervals",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [row for row in (line.split() for line in result.stdout.splitlines()) if row and row[0] == "5000"]
    assert [row[3] for row in rows] == ["incremental", "full"]
    incremental, full = rows
    assert incremental[4] == "100%"  # published every interval
    assert float(incremental[5]) <= 2.0  # never two intervals without a publish
    assert float(incremental[6]) <= float(full[6]) + 3  # requests per sync
    assert "Traceback" not in result.stderr


def test_jobs_bench_prints_its_table_with_exact_request_counts() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "jobs",
            "--sizes",
            "300,1000",
            "--scenarios",
            "50",
            "--agents",
            "2",
            "--latency-ms",
            "1,2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [row for row in (line.split() for line in result.stdout.splitlines()) if row and row[0].isdigit()]
    assert [(row[0], row[1], row[2]) for row in rows] == [("300", "50", "2"), ("1000", "50", "2")]
    # Jobs of some 18 KB: a first page of 10, then pages of RUNLOOP_EXPORTER_JOBS_PAGE_SIZE (100).
    assert [int(row[3]) for row in rows] == [4, 11]
    assert all(row[11] == "1" for row in rows)  # steady, 5 live jobs at the top: one request
    assert all(float(row[8]) > 0 and float(row[9]) >= float(row[10]) > 0 for row in rows)  # cpu/GB, RSS
    assert "Traceback" not in result.stderr


def test_decode_bench_prints_its_table_and_typed_records_hold_less() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "decode", "--scenarios", "40", "--agents", "2", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    tables = result.stdout.split("a page of ")[1:]
    assert [table.split()[1] for table in tables] == ["jobs,", "runs,"]
    for table in tables:
        rows = {line[:32].strip(): line[32:].split() for line in table.splitlines()[2:] if line.strip()}
        assert {"json.loads", "msgspec, typed records", "msgspec, typed, split"} <= set(rows)
        assert all(len(row) == 3 for row in rows.values())
        # Memory, not time: typed records of only the fields used allocate less than json.loads' dicts.
        assert float(rows["msgspec, typed records"][2]) < float(rows["json.loads"][2])
    assert "Traceback" not in result.stderr


def test_status_bench_prints_its_table_with_the_pages_bounds() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "status",
            "--sizes",
            "30",
            "--pairs",
            "12",
            "--jobs",
            "3",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    (row,) = [row for row in (line.split() for line in result.stdout.splitlines()) if row and row[0] == "30"]
    _, outcomes, *_, page_kb, rows, sections, agent_rows, _ = row
    assert int(outcomes) == 30 * 12 * 3
    assert int(page_kb) < 2048
    # Every benchmark has failed runs and agents: 30 rows, the first 25 with a section of 10 agents.
    assert (int(rows), int(sections), int(agent_rows)) == (30, 25, 25 * 10)
    assert "Traceback" not in result.stderr


def test_freshness_bench_prints_its_table() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "freshness",
            *("--runs", "3000", "--jobs", "20", "--scenarios", "20", "--latency-ms", "50", "--watch", "12"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [row for row in (line.split() for line in result.stdout.splitlines()) if row and row[0] == "50"]
    assert len(rows) == 1
    runs_s, jobs_s, _old_runs, _old_jobs, requests_h, gb_h, rss_mb = (float(v) for v in rows[0][1:])
    # Both parts were published. In either order: the parts are read independently, and 20 small jobs can
    # be read before 3,000 runs (seen under load).
    assert runs_s > 0
    assert jobs_s > 0
    assert requests_h >= 60 * 3  # at least the steady run syncs of an hour
    assert gb_h >= 0
    assert rss_mb > 0


def test_restart_bench_prints_its_table() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "restart",
            *(
                "--runs",
                "20000",
                "--jobs",
                "100",
                "--scenarios",
                "5",
                "--latency-ms",
                "50",
                "--changes",
                "0,100",
            ),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [line.split() for line in result.stdout.splitlines()]
    resumed = [row for row in rows if row[:1] == ["checkpoint"] and row[1].isdigit()]
    full = [row for row in rows if row[:2] == ["full", "read"]]
    assert [row[1] for row in resumed] == ["0", "100"]
    assert len(full) == 1
    for row in resumed:
        runs_s, jobs_s, requests = float(row[3]), float(row[4]), int(row[5])
        assert runs_s > 0
        assert jobs_s > 0
        assert requests <= int(full[0][6]) + 3  # at most the full read it replaces and the 3 probes
    assert int(resumed[0][5]) <= 6  # nothing changed: the probes (and a listing of the names)
    assert "Traceback" not in result.stderr
