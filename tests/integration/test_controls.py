"""Operator controls against the simulator: filters, metadata labels and their cap, buckets, --once, check.

Expected figures come from tests.support.runs_oracle (computed straight from the runs); the labels
a run should get are worked out here from the simulator's listing order, independently of the
exporter's code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from exporter.settings import SettingsError, load_invocation
from exporter.simulator import DEFAULT_API_KEY, Simulator, World
from tests.support.exporter_process import Exporter, run_cli
from tests.support.ports import free_port
from tests.support.runs_oracle import expected_samples
from tests.support.samples import Samples, assert_samples, benchmark_part, parse, sample

NOW_MS = 1_760_000_000_000
OTHER = "__other__"

# --- helpers --------------------------------------------------------------------------------------


def expected_labelled(
    runs: Iterable[Mapping[str, Any]],
    names: Mapping[str, str],
    labels_of: Callable[[Mapping[str, Any]], dict[str, str]],
    **buckets: tuple[float, ...],
) -> Samples:
    """expected_samples per label set, with that set added to every benchmark-run series but the info."""
    groups: dict[frozenset[tuple[str, str]], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault(frozenset(labels_of(run).items()), []).append(run)
    out: Samples = {}
    for extra, members in groups.items():
        for (name, labels), value in expected_samples(members, names, **buckets).items():
            out[(name, labels if name == "runloop_benchmark_info" else labels | extra)] = value
    return out


# --- filters --------------------------------------------------------------------------------------

FILTER_NAMES = {
    "bmd_alpha": "eval-alpha",
    "bmd_beta": "eval-beta",
    "bmd_gamma": "smoke-gamma",
    "bmd_delta": "eval-alpha-canary",
}
ALL_BIDS: tuple[str | None, ...] = (*FILTER_NAMES, "bmd_nameless", None)


def seed_filters(world: World) -> list[dict[str, Any]]:
    """Three runs for each benchmark (one has no name to look up) and for runs with no benchmark."""
    for known, name in FILTER_NAMES.items():
        world.add_benchmark(known, name)
    for i, bid in enumerate(ALL_BIDS):
        start = NOW_MS - 10_000_000 + i * 1000
        world.add_run(
            benchmark_id=bid, state="completed", start_ms=start, duration_ms=90_000 + i, score=0.1 * i
        )
        world.add_run(benchmark_id=bid, state="failed", start_ms=start + 1, duration_ms=4_000_000)
        world.add_run(benchmark_id=bid, state="running", start_ms=start + 2)
    return world.runs()


def only(runs: list[dict[str, Any]], bids: Iterable[str | None]) -> list[dict[str, Any]]:
    keep = set(bids)
    return [r for r in runs if r.get("benchmark_id") in keep]


@pytest.mark.parametrize(
    ("env", "kept"),
    [
        ({"RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_IDS": "bmd_alpha, bmd_beta"}, {"bmd_alpha", "bmd_beta"}),
        (
            {
                "RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_IDS": "bmd_alpha,bmd_beta",
                "RUNLOOP_EXPORTER_EXCLUDE_BENCHMARK_IDS": "bmd_beta",
            },
            {"bmd_alpha"},
        ),
        # fullmatch: eval-alpha-canary is not eval-alpha; no name, no benchmark: not included
        ({"RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_NAMES": "eval-alpha|eval-beta"}, {"bmd_alpha", "bmd_beta"}),
        (
            {
                "RUNLOOP_EXPORTER_EXCLUDE_BENCHMARK_IDS": "bmd_beta",
                "RUNLOOP_EXPORTER_EXCLUDE_BENCHMARK_NAMES": "smoke-.*",
            },
            {"bmd_alpha", "bmd_delta", "bmd_nameless", None},
        ),
    ],
    ids=["include-ids", "include-minus-exclude-ids", "include-names", "exclude-ids-and-names"],
)
def test_filters_remove_every_series_of_other_benchmarks(
    world: World,
    simulator: Simulator,
    start_exporter: Callable[..., Exporter],
    env: dict[str, str],
    kept: set[str | None],
) -> None:
    runs = seed_filters(world)
    exporter = start_exporter(env=env)
    scraped = exporter.wait_for_sync()
    names = {bid: name for bid, name in FILTER_NAMES.items() if bid in kept}
    assert_samples(benchmark_part(scraped), expected_samples(only(runs, kept), names))

    # the world changes: new runs everywhere; still only the kept benchmarks show
    for bid in ALL_BIDS:
        world.add_run(benchmark_id=bid, state="canceled", start_ms=NOW_MS, duration_ms=1_000)
    scraped = exporter.wait_for_sync()
    assert_samples(benchmark_part(scraped), expected_samples(only(world.runs(), kept), names))

    if "RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_IDS" in env:  # excluded benchmarks cost no request at all
        listed = {r.query.get("benchmark_id") for r in simulator.requests if r.path == "/v1/benchmark_runs"}
        assert listed == kept
        asked_by_id = {
            r.path.rsplit("/", 1)[1] for r in simulator.requests if r.path.startswith("/v1/benchmarks/")
        }
        assert asked_by_id <= kept


def test_a_filter_and_its_opposite_split_the_account_exactly(
    world: World, start_exporter: Callable[..., Exporter]
) -> None:
    runs = seed_filters(world)
    left = start_exporter(env={"RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_NAMES": "eval-.*"})
    right = start_exporter(env={"RUNLOOP_EXPORTER_EXCLUDE_BENCHMARK_NAMES": "eval-.*"})
    a, b = benchmark_part(left.wait_for_sync()), benchmark_part(right.wait_for_sync())
    assert set(a) & set(b) == set()
    assert_samples({**a, **b}, expected_samples(runs, FILTER_NAMES))
    assert_samples(a, expected_samples(only(runs, ["bmd_alpha", "bmd_beta", "bmd_delta"]), FILTER_NAMES))


# --- metadata labels and the cap -------------------------------------------------------------------

LABEL_NAMES = {"bmd_alpha": "Alpha", "bmd_beta": "Beta"}
# (benchmark, state, metadata, purpose, score, duration s), created in this order
LABEL_RUNS: list[tuple[str | None, str, dict[str, str], str | None, float | None, int | None]] = [
    ("bmd_alpha", "completed", {"team": "red", "model.name": "gpt-x", "note": "hush-1"}, "ci", 0.4, 100),
    ("bmd_alpha", "failed", {"team": "blue", "model.name": "gpt-x"}, "ci", None, 2000),
    ("bmd_alpha", "completed", {"team": "green", "model.name": "claude"}, "nightly", 0.9, 500),
    ("bmd_alpha", "running", {"team": "red", "model.name": "claude/v2"}, "experiment", None, None),
    ("bmd_beta", "completed", {"team": "yellow"}, None, 0.1, 70),
    ("bmd_beta", "canceled", {"team": "", "model.name": "gpt-x"}, "ci", None, 30),
    ("bmd_beta", "running", {}, None, None, None),
    (None, "completed", {"team": "blue"}, None, 0.6, 4000),
    ("bmd_alpha", "completed", {"team": "purple", "model.name": "m3"}, "ad-hoc", 0.77, 1000),
]
CAP = 2
# metadata key -> label; "model.name" has a character that must be sanitised
KEYS = {"team": "metadata_team", "model.name": "metadata_model_name"}


def value_of(run: Mapping[str, Any], label: str) -> str | None:
    if label == "purpose":
        value = run.get("purpose")
    else:
        key = next(k for k, v in KEYS.items() if v == label)
        value = run["metadata"].get(key)
    return value or None


def first_come(runs: list[dict[str, Any]], cap: int) -> dict[str, set[str]]:
    """The values each label admits: the first `cap` distinct ones in listing order."""
    admitted: dict[str, set[str]] = {label: set() for label in [*KEYS.values(), "purpose"]}
    for run in runs:
        for label, values in admitted.items():
            value = value_of(run, label)
            if value is not None and len(values) < cap:
                values.add(value)
    return admitted


def labeller(admitted: dict[str, set[str]]) -> Callable[[Mapping[str, Any]], dict[str, str]]:
    def labels_of(run: Mapping[str, Any]) -> dict[str, str]:
        out = {}
        for label, values in admitted.items():
            value = value_of(run, label)
            if value is not None:
                out[label] = value if value in values else OTHER
        return out

    return labels_of


def folded(runs: list[dict[str, Any]], admitted: dict[str, set[str]]) -> dict[str, int]:
    return {
        label: sum(1 for r in runs if (v := value_of(r, label)) is not None and v not in values)
        for label, values in admitted.items()
    }


@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_metadata_and_purpose_labels_with_the_cap_and_the_folded_counter(
    world: World, start_exporter: Callable[..., Exporter], mode: str
) -> None:
    for known, name in LABEL_NAMES.items():
        world.add_benchmark(known, name)
    for i, (bid, state, metadata, purpose, score, duration_s) in enumerate(LABEL_RUNS):
        world.add_run(
            benchmark_id=bid,
            state=state,
            start_ms=NOW_MS - 100_000_000 + i * 1_000_000,
            duration_ms=None if duration_s is None else duration_s * 1000,
            score=score,
            metadata=metadata,
            purpose=purpose,
        )
    backfill = world.runs()  # the listing order the exporter reads at start-up
    admitted = first_come(backfill, CAP)
    assert all(len(values) == CAP for values in admitted.values())  # every label is full: later values fold

    exporter = start_exporter(
        env={
            "RUNLOOP_EXPORTER_METADATA_LABELS": "team, model.name",
            "RUNLOOP_EXPORTER_METADATA_LABEL_MAX_VALUES": str(CAP),
            "RUNLOOP_EXPORTER_PURPOSE_LABEL": "true",
            "RUNLOOP_EXPORTER_SYNC_MODE": mode,
            "RUNLOOP_EXPORTER_PAGE_SIZE": "3",
        }
    )
    scraped = exporter.wait_for_sync()
    assert_samples(benchmark_part(scraped), expected_labelled(backfill, LABEL_NAMES, labeller(admitted)))
    want = folded(backfill, admitted)
    assert want == {"metadata_team": 4, "metadata_model_name": 2, "purpose": 2}
    for label, count in want.items():
        assert sample(scraped, "runloop_exporter_label_values_folded_total", label=label) == count
    text = exporter.get("/metrics").text
    assert "hush-1" not in text  # a key that is not allowlisted never shows
    assert 'metadata_model_name="gpt-x"' in text

    # more syncs regroup the same runs (every run, in full mode): the counter does not move
    scraped = exporter.wait_for_sync()
    for label, count in want.items():
        assert sample(scraped, "runloop_exporter_label_values_folded_total", label=label) == count

    # a folded running run finishes (counted already), a new value folds, an admitted one stays
    running = next(
        r for r in world.runs() if r["state"] == "running" and value_of(r, "metadata_team") == "red"
    )
    world.finish_run(str(running["id"]), "completed", duration_ms=3_000_000, score=0.5)
    admitted_team = sorted(admitted["metadata_team"])[0]
    world.add_run(
        benchmark_id="bmd_beta", state="failed", start_ms=NOW_MS, duration_ms=10, metadata={"team": "orange"}
    )
    world.add_run(
        benchmark_id="bmd_beta",
        state="completed",
        start_ms=NOW_MS,
        duration_ms=10,
        score=1.0,
        metadata={"team": admitted_team},
    )
    scraped = exporter.wait_for_sync()
    now = world.runs()
    assert_samples(benchmark_part(scraped), expected_labelled(now, LABEL_NAMES, labeller(admitted)))
    assert folded(now, admitted)["metadata_team"] == 5
    assert sample(scraped, "runloop_exporter_label_values_folded_total", label="metadata_team") == 5
    assert sample(scraped, "runloop_exporter_label_values_folded_total", label="purpose") == 2


def test_no_metadata_label_and_no_folded_counter_by_default(
    world: World, start_exporter: Callable[..., Exporter]
) -> None:
    world.add_run(
        benchmark_id="bmd_a",
        state="completed",
        start_ms=NOW_MS,
        duration_ms=1,
        metadata={"team": "red"},
        purpose="ci",
    )
    scraped = start_exporter().wait_for_sync()
    assert all(not k.startswith(("metadata_", "purpose")) for _, labels in scraped for k, _ in labels)
    folded = {
        dict(labels)["label"]
        for name, labels in scraped
        if name == "runloop_exporter_label_values_folded_total"
    }
    # Only the capped labels of benchmark jobs (on by default) can fold; no run label is exported.
    assert not any(label.startswith(("metadata_", "purpose")) for label in folded)


# --- buckets ----------------------------------------------------------------------------------------


def test_custom_buckets_change_the_exposition(world: World, start_exporter: Callable[..., Exporter]) -> None:
    runs = seed_filters(world)
    score_buckets, duration_buckets = (0.25, 0.5, 1.0), (100.0, 1000.0, 10000.0)
    exporter = start_exporter(
        env={
            "RUNLOOP_EXPORTER_SCORE_BUCKETS": "0.25,0.5,1",
            "RUNLOOP_EXPORTER_DURATION_BUCKETS": "100, 1000,10000",
        }
    )
    scraped = benchmark_part(exporter.wait_for_sync())
    expected = expected_samples(
        runs, FILTER_NAMES, score_buckets=score_buckets, duration_buckets=duration_buckets
    )
    assert_samples(scraped, expected)
    les = {dict(labels).get("le") for name, labels in scraped if name == "runloop_benchmark_run_score_bucket"}
    assert les == {"0.25", "0.5", "1.0", "+Inf"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RUNLOOP_EXPORTER_SCORE_BUCKETS", "0,0.5,1"),
        ("RUNLOOP_EXPORTER_SCORE_BUCKETS", "-1,1"),
        ("RUNLOOP_EXPORTER_SCORE_BUCKETS", "0.5,0.5"),
        ("RUNLOOP_EXPORTER_SCORE_BUCKETS", "nan,1"),
        ("RUNLOOP_EXPORTER_DURATION_BUCKETS", ""),
        ("RUNLOOP_EXPORTER_DURATION_BUCKETS", "60,1e400"),
        ("RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_NAMES", "eval-(alpha"),
        ("RUNLOOP_EXPORTER_EXCLUDE_BENCHMARK_NAMES", "*"),
        ("RUNLOOP_EXPORTER_METADATA_LABELS", "model.name,model-name"),
        ("RUNLOOP_EXPORTER_METADATA_LABEL_MAX_VALUES", "0"),
        ("RUNLOOP_EXPORTER_METADATA_LABEL_MAX_VALUES", "many"),
        ("RUNLOOP_EXPORTER_PURPOSE_LABEL", "maybe"),
    ],
)
def test_invalid_control_settings_exit_2_naming_the_setting(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in [v for v in os.environ if v.startswith("RUNLOOP")]:
        monkeypatch.delenv(var)
    result = run_cli([], {"RUNLOOP_API_KEY": "k3y-value", name: value})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"runloop-exporter: {name} (")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    # the flag says the same (in-process: the process-level behaviour is the same as above)
    flag = "--" + name.removeprefix("RUNLOOP_EXPORTER_").lower().replace("_", "-")
    with pytest.raises(SettingsError) as caught:
        load_invocation([f"{flag}={value}", "--api-key", "k3y-value"])
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{name} ({flag})")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            [],
            {
                "RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_IDS": "bmd_a",
                "RUNLOOP_EXPORTER_EXCLUDE_BENCHMARK_IDS": "bmd_a",
            },
            "RUNLOOP_EXPORTER_EXCLUDE_BENCHMARK_IDS (--exclude-benchmark-ids): removes every id of "
            "RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_IDS (--include-benchmark-ids), so nothing would be exported",
        ),
        (["check", "--once"], {}, "give --once or check, not both"),
        (["chekc"], {}, "unknown command 'chekc' (choose from 'check')"),
    ],
)
def test_contradictory_controls_exit_2_with_one_line(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = run_cli(args, {"RUNLOOP_API_KEY": "k3y-value", **env})
    assert result.returncode == 2
    assert result.stderr == f"runloop-exporter: {message}\n"
    assert result.stdout == ""


# --- --once -----------------------------------------------------------------------------------------


def test_once_prints_the_exposition_and_exits_0(world: World, simulator: Simulator) -> None:
    runs = seed_filters(world)
    result = run_cli(["--once"], {"RUNLOOP_API_KEY": DEFAULT_API_KEY, "RUNLOOP_BASE_URL": simulator.url})
    assert result.returncode == 0, result.stderr
    scraped = parse(result.stdout)
    assert_samples(benchmark_part(scraped), expected_samples(runs, FILTER_NAMES))
    assert sample(scraped, "runloop_up") == 1
    assert sample(scraped, "runloop_exporter_syncs_total", result="success") == 1
    assert sample(scraped, "runloop_exporter_syncs_total", result="failure") == 0
    # logs and metrics do not mix: stderr holds only log lines, warnings and worse unless a level is set
    logged = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["level"], line["event"]) for line in logged] == [
        ("warning", "benchmark has no usable name")
    ]


def test_once_says_why_the_sync_failed_and_exits_1(world: World, simulator: Simulator) -> None:
    seed_filters(world)
    result = run_cli(["--once"], {"RUNLOOP_API_KEY": "wrong-k3y", "RUNLOOP_BASE_URL": simulator.url})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "runloop-exporter: sync failed: the API key was refused (401 from /v1/benchmark_runs): "
        "check RUNLOOP_API_KEY / RUNLOOP_API_KEY_FILE"
    )
    assert "Traceback" not in result.stderr
    assert "wrong-k3y" not in result.stderr


# --- check ------------------------------------------------------------------------------------------


def test_check_reports_what_it_found(world: World, simulator: Simulator) -> None:
    runs = seed_filters(world)
    result = run_cli(
        ["check", "--include-benchmark-ids", "bmd_alpha,bmd_nope"],
        {"RUNLOOP_API_KEY": DEFAULT_API_KEY, "RUNLOOP_BASE_URL": simulator.url},
    )
    assert result.returncode == 0, result.stderr
    states: dict[str, int] = {}
    for run in runs:
        states[run["state"]] = states.get(run["state"], 0) + 1
    benchmarks = {r["benchmark_id"] for r in runs if r.get("benchmark_id")}
    without = sum(1 for r in runs if not r.get("benchmark_id"))
    assert result.stdout.splitlines() == [
        "settings: valid",
        f"api: {simulator.url}",
        "requests: at most 4 at once and 20 per second",
        "http: read-header timeout 10 s, idle timeout 120 s, at most 512 connections",
        "checkpoint: none (RUNLOOP_EXPORTER_STATE_DIR is not set): a start reads in full",
        "key: accepted",
        f"runs: {len(runs)}",
        f"running: {states['running']}",
        f"first page: {len(runs)} runs of {len(benchmarks)} benchmarks ({without} without a benchmark); states: "
        + ", ".join(f"{s}={n}" for s, n in sorted(states.items())),
        f"benchmarks listed: {len(FILTER_NAMES)} (archived ones are not listed)",
        "benchmark jobs: 0",
        f"included bmd_alpha: {len(only(runs, ['bmd_alpha']))} runs; named 'eval-alpha'",
        "included bmd_nope: 0 runs; Runloop knows no benchmark by this id (check it)",
        f"filters: {len(only(runs, ['bmd_alpha']))} of the {len(runs)} valid runs of the first page pass",
        "ok",
    ]
    assert DEFAULT_API_KEY not in result.stdout + result.stderr


def test_check_names_metadata_keys_but_never_their_values(world: World, simulator: Simulator) -> None:
    world.add_run(
        benchmark_id="bmd_a", state="completed", start_ms=NOW_MS, metadata={"team": "red", "model": "m"}
    )
    world.add_run(benchmark_id="bmd_a", state="completed", start_ms=NOW_MS, metadata={"team": "blue"})
    result = run_cli(
        ["check", "--max-connections", "64"],
        {
            "RUNLOOP_API_KEY": DEFAULT_API_KEY,
            "RUNLOOP_BASE_URL": simulator.url,
            "RUNLOOP_EXPORTER_READ_HEADER_TIMEOUT_SECONDS": "2.5",
            "RUNLOOP_EXPORTER_IDLE_TIMEOUT_SECONDS": "30",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "http: read-header timeout 2.5 s, idle timeout 30 s, at most 64 connections" in result.stdout
    assert "metadata keys in the first page: model (1 values), team (2 values)" in result.stdout.splitlines()
    assert "red" not in result.stdout
    assert "filters: none (every benchmark is exported)" in result.stdout.splitlines()


def bad_urls(simulator: Simulator) -> list[tuple[str, str]]:
    return [
        (
            simulator.url + "/not-the-api",
            "did not answer like Runloop's API (/v1/benchmark_runs: unexpected HTTP 404)",
        ),
        (f"http://127.0.0.1:{free_port()}", "cannot reach http://127.0.0.1:"),
    ]


def test_check_says_exactly_what_is_wrong(world: World, simulator: Simulator) -> None:
    seed_filters(world)
    result = run_cli(["check"], {"RUNLOOP_API_KEY": "wrong-k3y", "RUNLOOP_BASE_URL": simulator.url})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "runloop-exporter: check failed: the API key was refused (401 from /v1/benchmark_runs): "
        "check RUNLOOP_API_KEY / RUNLOOP_API_KEY_FILE"
    )
    assert "ok" not in result.stdout.splitlines()
    assert "wrong-k3y" not in result.stdout + result.stderr

    for url, message in bad_urls(simulator):
        result = run_cli(["check"], {"RUNLOOP_API_KEY": DEFAULT_API_KEY, "RUNLOOP_BASE_URL": url})
        assert result.returncode == 1
        last = result.stderr.splitlines()[-1]
        assert last.startswith("runloop-exporter: check failed: ")
        assert message in last

    simulator.faults.malformed_json_next(1)
    result = run_cli(["check"], {"RUNLOOP_API_KEY": DEFAULT_API_KEY, "RUNLOOP_BASE_URL": simulator.url})
    assert result.returncode == 1
    assert (
        "did not answer like Runloop's API (/v1/benchmark_runs: the body is not valid JSON)" in result.stderr
    )
