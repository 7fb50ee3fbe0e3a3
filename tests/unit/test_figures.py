"""Raw run records to /metrics text, in process, against the independent oracle in tests/support.

The whole path the figures take (parse_run, the add-only totals and the runs that can still change,
build_snapshot, the collector, the pre-rendered exposition) runs here in milliseconds, so a wrong
figure fails a unit test instead of waiting for the subprocess tests. The records are chosen where
bugs hide: durations in whole and fractional seconds, values exactly on a bucket bound and just past
it, every state including `running` and one new to us, benchmarks with no run in some state.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.metrics.aggregate import (
    DEFAULT_DURATION_BUCKETS,
    DEFAULT_SCORE_BUCKETS,
    GroupKey,
    RunningRun,
    Snapshot,
    Totals,
    build_snapshot,
)
from exporter.metrics.exposition import Rendered
from exporter.runloop.models import Invalid, parse_run
from tests.support.runs_oracle import expected_samples
from tests.support.samples import Samples, assert_samples, benchmark_part, parse, sample

T0 = 1_760_000_000_000
NAMES = {"bmd_a": "Alpha", "bmd_b": "Beta", "bmd_c": "Gamma", "bmd_unlisted": "never has a run"}
DURATION = "runloop_benchmark_run_duration_seconds"
SCORE = "runloop_benchmark_run_score"


def record(
    rid: str,
    state: str,
    *,
    bid: str | None = "bmd_a",
    start: int = T0,
    duration_ms: float | None = None,
    score: float | None = None,
) -> dict[str, Any]:
    """A BenchmarkRunView as the API lists it (only the fields the exporter reads, plus noise)."""
    raw: dict[str, Any] = {
        "id": rid,
        "state": state,
        "start_time_ms": start,
        "metadata": {},
        "environment_variables": {"NOT": "exported"},
    }
    if bid is not None:
        raw["benchmark_id"] = bid
    if duration_ms is not None:
        raw["duration_ms"] = duration_ms
    if score is not None:
        raw["score"] = score
    return raw


# Durations in ms: exactly on the 60 s and 120 s bounds, a millisecond either side, fractional seconds
# (1.5 s, 0.999 s, 60.001 s) that an integer division would floor, and past the last bound.
RECORDS = [
    record("r01", "completed", duration_ms=60_000, score=0.5),  # on a duration bound and a score bound
    record("r02", "completed", duration_ms=60_001, score=0.5000001),  # just past both
    record("r03", "completed", duration_ms=59_999, score=1.0, start=T0 + 5),
    record("r04", "completed", duration_ms=1_500, score=0.0),
    record("r05", "completed", duration_ms=999, score=0.1),
    record("r06", "completed", duration_ms=120_000),  # completed without a score
    record("r07", "completed", score=0.7),  # completed without a duration
    record("r08", "failed", duration_ms=86_400_000),  # on the last bound
    record("r09", "failed", duration_ms=86_400_001),  # past the last bound: only +Inf
    record("r10", "canceled", duration_ms=2_500, score=0.9),  # a canceled run's score is not a score
    record("r11", "running", start=T0 + 1_234),
    record("r12", "running", start=T0 + 567),  # the oldest running run (fractional seconds)
    record("r13", "paused", start=T0 + 1),  # a state new to us: counted, never the oldest running
    record("r14", "completed", bid="bmd_b", duration_ms=300_000, score=0.3),
    record("r15", "running", bid="bmd_c", start=T0 + 42),  # a benchmark with only a running run
    record("r16", "completed", bid=None, duration_ms=7_200_000, score=0.8),  # no benchmark
    record("r17", "failed", bid=None, duration_ms=1),
    record("r18", "completed", start=T0 + 4, duration_ms=60_000, score=0.2),  # ends with r03: a tie
    record("r19", "failed", bid="bmd_b", duration_ms=2_500.0),  # an integral float, as JSON may give
]


def file_runs(records: Iterable[Mapping[str, Any]]) -> tuple[Totals, list[RunningRun]]:
    """What a full read files: finished runs into add-only totals, the others kept one record each."""
    totals = Totals(DEFAULT_SCORE_BUCKETS, DEFAULT_DURATION_BUCKETS)
    running: list[RunningRun] = []
    for raw in records:
        run = parse_run(dict(raw))
        assert not isinstance(run, Invalid), run
        key = GroupKey(run.benchmark_id)
        if run.is_terminal:
            totals.add(run, key)
        else:
            running.append(RunningRun(run.id, key, run.start_ms, run.state))
    return totals, running


def snapshot_of(records: Iterable[Mapping[str, Any]], names: Mapping[str, str] = NAMES) -> Snapshot:
    totals, running = file_runs(records)
    return build_snapshot(totals, running, names)


def exported(records: Iterable[Mapping[str, Any]], names: Mapping[str, str] = NAMES) -> Samples:
    """The benchmark-run samples /metrics shows for these records."""
    text = Rendered.of(snapshot_of(records, names)).body(b"", gzip=False).decode()
    return benchmark_part(parse(text))


def test_every_sample_matches_the_oracle() -> None:
    assert_samples(exported(RECORDS), expected_samples(RECORDS, NAMES))


def test_durations_keep_their_milliseconds() -> None:
    shown = exported(RECORDS)
    completed = {"benchmark_id": "bmd_a", "state": "completed"}
    # 60 + 60.001 + 59.999 + 1.5 + 0.999 + 120 + 60 seconds: floored seconds would give 360.
    assert sample(shown, f"{DURATION}_sum", **completed) == 362.499
    assert sample(shown, f"{DURATION}_bucket", **completed, le="60.0") == 5  # 60 on the bound is in
    assert sample(shown, f"{DURATION}_bucket", **completed, le="120.0") == 7
    assert sample(shown, f"{DURATION}_count", **completed) == 7
    failed = {"benchmark_id": "bmd_a", "state": "failed"}
    assert sample(shown, f"{DURATION}_bucket", **failed, le="86400.0") == 1
    assert sample(shown, f"{DURATION}_bucket", **failed, le="+Inf") == 2
    assert sample(shown, f"{DURATION}_sum", **failed) == 172800.001


def test_scores_on_a_bound_fall_in_that_bucket() -> None:
    shown = exported(RECORDS)
    assert sample(shown, f"{SCORE}_bucket", benchmark_id="bmd_a", le="0.1") == 2  # 0.0 and 0.1
    assert sample(shown, f"{SCORE}_bucket", benchmark_id="bmd_a", le="0.5") == 4  # 0.2 and 0.5
    assert sample(shown, f"{SCORE}_bucket", benchmark_id="bmd_a", le="0.6") == 5  # and 0.5000001
    assert sample(shown, f"{SCORE}_count", benchmark_id="bmd_a") == 7  # r06 has none, r10 is canceled
    assert sample(shown, f"{SCORE}_sum", benchmark_id="bmd_a") == 3.0000001  # exact: summed in 1e-9 units


def test_every_state_has_a_series_even_at_zero() -> None:
    shown = exported(RECORDS)
    for bid in ("bmd_b", "bmd_c"):
        for state in ("running", "completed", "failed", "canceled"):
            assert ("runloop_benchmark_runs", frozenset({("benchmark_id", bid), ("state", state)})) in shown
    assert sample(shown, "runloop_benchmark_runs", benchmark_id="bmd_b", state="running") == 0
    assert sample(shown, "runloop_benchmark_runs", benchmark_id="bmd_c", state="completed") == 0
    assert sample(shown, "runloop_benchmark_runs", benchmark_id="bmd_a", state="paused") == 1
    assert sample(shown, "runloop_benchmark_runs", benchmark_id="bmd_b", state="paused") is None
    # A benchmark with only a running run still has an (empty) duration histogram for each end state.
    for state in ("completed", "failed", "canceled"):
        assert sample(shown, f"{DURATION}_bucket", benchmark_id="bmd_c", state=state, le="+Inf") == 0


def test_runs_without_a_benchmark_have_no_benchmark_label() -> None:
    shown = exported(RECORDS)
    assert sample(shown, "runloop_benchmark_runs", state="failed") == 1
    assert sample(shown, "runloop_benchmark_runs", benchmark_id="", state="failed") is None
    assert (
        sample(shown, "runloop_benchmark_info", benchmark_id="bmd_unlisted", benchmark_name="never has a run")
        is None
    )
    assert sample(shown, "runloop_benchmark_info", benchmark_id="bmd_c", benchmark_name="Gamma") == 1


def test_last_completed_and_oldest_running() -> None:
    shown = exported(RECORDS)
    # r03 and r18 end last, at the same millisecond (start + duration): the higher score wins, not the
    # run that started last (r03) nor the one listed last (r18).
    assert sample(shown, "runloop_benchmark_last_completed_run_score", benchmark_id="bmd_a") == 1.0
    assert sample(shown, "runloop_benchmark_last_completed_run_timestamp_seconds", benchmark_id="bmd_a") == (
        (T0 + 60_004) / 1000
    )
    assert sample(
        shown, "runloop_benchmark_oldest_running_run_start_timestamp_seconds", benchmark_id="bmd_a"
    ) == ((T0 + 567) / 1000)
    assert (
        sample(shown, "runloop_benchmark_oldest_running_run_start_timestamp_seconds", benchmark_id="bmd_b")
        is None
    )


def test_snapshot_counts_every_run_once() -> None:
    snapshot = snapshot_of(RECORDS)
    assert snapshot.runs == len(RECORDS)
    assert snapshot.benchmark_ids == {"bmd_a", "bmd_b", "bmd_c"}
    assert dict(snapshot.benchmark_names) == {"bmd_a": "Alpha", "bmd_b": "Beta", "bmd_c": "Gamma"}


def test_gzip_body_is_the_text_body_compressed() -> None:
    rendered = Rendered.of(snapshot_of(RECORDS))
    tail = b"# self-metrics\nrunloop_up 1.0\n"
    plain = rendered.body(tail, gzip=False)
    assert plain == rendered.text + tail
    assert gzip.decompress(rendered.body(tail, gzip=True)) == plain
    # Each scrape compresses its own tail from the shared state: a second scrape is not corrupted.
    assert (
        gzip.decompress(rendered.body(b"runloop_up 0.0\n", gzip=True)) == rendered.text + b"runloop_up 0.0\n"
    )
    head, _ = rendered.parts(tail, gzip=True)
    assert head is rendered.gzip_head


# --- any records: the oracle and the exporter agree -------------------------------------------------

_BOUND_MS = [int(b * 1000) for b in DEFAULT_DURATION_BUCKETS]
_DURATIONS = st.one_of(
    st.none(),
    st.sampled_from([ms + d for ms in _BOUND_MS for d in (-1, 0, 1)]),
    st.integers(min_value=0, max_value=100 * 86_400_000),
)
_SCORES = st.one_of(
    st.none(), st.sampled_from(DEFAULT_SCORE_BUCKETS), st.floats(min_value=0.0, max_value=1.0)
)
_RECORD = st.fixed_dictionaries(
    {
        "state": st.sampled_from(["running", "completed", "failed", "canceled", "queued"]),
        "bid": st.sampled_from([None, "bmd_a", "bmd_b", "bmd_c"]),
        "start": st.integers(min_value=0, max_value=10**13),
        "duration_ms": _DURATIONS,
        "score": _SCORES,
    }
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_RECORD, max_size=30))
def test_any_records_match_the_oracle(drawn: list[dict[str, Any]]) -> None:
    records = [record(f"r{i}", d.pop("state"), **d) for i, d in enumerate(drawn)]
    # Score sums are exact to 1e-9 per run (SCORE_SCALE), so tiny scores may differ by that much.
    assert_samples(exported(records), expected_samples(records, NAMES), abs_tol=1e-9 * max(len(records), 1))
