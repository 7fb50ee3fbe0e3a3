"""Tests of the Runloop API simulator, over real HTTP on 127.0.0.1.

The exporter's own tests trust this fake, so it gets the same scrutiny as production code: shapes, paging
and cursors in every order, filters, validation, every fault switch, bulk loading and demo mode.
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from exporter.simulator import (
    DEFAULT_API_KEY,
    MAX_LIMIT,
    DemoDriver,
    Latency,
    Order,
    RequestRecord,
    Simulator,
    World,
)
from tests.support.jobs_oracle import expected_agent_rows
from tests.support.waiting import wait_until

AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
RUNS = "/v1/benchmark_runs"
ORDERS: tuple[Order, ...] = ("newest_first", "oldest_first", "shuffled")
RUN_KEYS = {
    "id",
    "benchmark_id",
    "name",
    "start_time_ms",
    "duration_ms",
    "state",
    "score",
    "metadata",
    "purpose",
    "environment_variables",
    "secrets_provided",
}
T0 = 1_760_000_000_000


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def sim(world: World) -> Iterator[Simulator]:
    with Simulator(world) as simulator:
        yield simulator
        assert simulator.errors == []


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers=AUTH, timeout=10) as http:
        yield http


def make_runs(world: World, n: int, benchmark_id: str | None = "bmd_a") -> list[str]:
    """n running runs in creation order, one second apart."""
    return [
        world.add_run(benchmark_id=benchmark_id, start_ms=T0 + i * 1000, name=f"run-{i:03d}")
        for i in range(n)
    ]


def ids_of(world: World) -> list[str]:
    """The ids of all runs in the World's list order."""
    return [str(run["id"]) for run in world.runs()]


def read_all(client: httpx.Client, limit: int, **params: str) -> tuple[list[str], int]:
    """Page through the run list like the SDKs do; return the ids read and the number of pages."""
    ids: list[str] = []
    cursor: str | None = None
    for pages in range(1, 10_000):
        query: dict[str, str | int] = {"limit": limit, **params}
        if cursor is not None:
            query["starting_after"] = cursor
        response = client.get(RUNS, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        ids.extend(run["id"] for run in body["runs"])
        if not body["has_more"]:
            return ids, pages
        cursor = body["runs"][-1]["id"]
    raise AssertionError("paging never ended")


# ---------------------------------------------------------------------- auth, routing, server


def test_auth_is_required_on_v1_paths(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.url, timeout=5) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {DEFAULT_API_KEY}"}):
            for path in (RUNS, "/v1/benchmarks", "/v1/benchmark_runs/bmr_x", "/v1/nope"):
                response = anonymous.get(path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert "error" in response.json()
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert anonymous.get(RUNS, headers=AUTH).status_code == 200


def test_custom_api_key(world: World) -> None:
    with Simulator(world, api_key="other") as simulator:
        assert httpx.get(simulator.url + RUNS, headers=AUTH).status_code == 401
        ok = httpx.get(simulator.url + RUNS, headers={"Authorization": "Bearer other"})
        assert ok.status_code == 200
        assert ok.json() == {"runs": [], "has_more": False, "total_count": 0}


def test_unknown_paths_are_404_json_and_other_methods_405(client: httpx.Client) -> None:
    for path in ("/v1/nope", "/metrics", "/v1/benchmark_runs/a/b", "/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"] == "application/json"
        assert "error" in response.json()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = client.request(method, RUNS, content=b'{"x": 1}')
        assert response.status_code == 405, method
        assert response.headers["Allow"] == "GET"
    head = client.head(RUNS)
    assert head.status_code == 405
    assert head.content == b""
    assert client.get(RUNS).status_code == 200  # the connection survived the bodies above


def test_http11_keep_alive_and_content_length(client: httpx.Client, sim: Simulator) -> None:
    first = client.get(RUNS)
    second = client.get(RUNS)
    assert first.http_version == "HTTP/1.1"
    assert int(first.headers["Content-Length"]) == len(first.content)
    assert first.headers.get("Connection", "").lower() != "close"
    assert second.status_code == 200
    assert sim.url.startswith("http://127.0.0.1:")


def test_only_loopback_hosts() -> None:
    for host in ("0.0.0.0", "::1", "localhost", "10.0.0.1"):
        with pytest.raises(ValueError, match="loopback"):
            Simulator(World(), host=host)


def test_url_needs_start_and_stop_closes_everything(world: World) -> None:
    simulator = Simulator(world)
    with pytest.raises(RuntimeError):
        _ = simulator.url
    simulator.start()
    url = simulator.url
    with httpx.Client(base_url=url, headers=AUTH, timeout=2) as http:
        assert http.get(RUNS).status_code == 200  # leaves an idle keep-alive connection open
        started = time.monotonic()
        simulator.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(httpx.TransportError):
            http.get(RUNS)
    simulator.stop()  # idempotent
    simulator.start()  # and restartable
    try:
        assert httpx.get(simulator.url + RUNS, headers=AUTH).status_code == 200
    finally:
        simulator.stop()


def test_every_request_is_recorded_and_can_be_reset(client: httpx.Client, sim: Simulator) -> None:
    before = time.monotonic()
    client.get(RUNS, params={"state": "running", "limit": ""})
    client.post("/v1/benchmarks")
    sim.faults.fail_next(1, 503)
    client.get("/v1/benchmarks/bmd_x")
    assert [(r.method, r.path, r.query) for r in sim.requests] == [
        ("GET", RUNS, {"state": "running", "limit": ""}),
        ("POST", "/v1/benchmarks", {}),
        ("GET", "/v1/benchmarks/bmd_x", {}),
    ]
    assert all(before <= r.at <= time.monotonic() for r in sim.requests)
    assert sim.requests[0] == RequestRecord(
        "GET", RUNS, {"state": "running", "limit": ""}, sim.requests[0].at
    )
    sim.reset_requests()
    assert sim.requests == []


# ---------------------------------------------------------------------- runs: shapes, paging, cursors


def test_run_shape_defaults_and_values(world: World, client: httpx.Client) -> None:
    plain = world.add_run(benchmark_id=None, start_ms=T0)
    full = world.add_run(
        benchmark_id="bmd_a",
        state="completed",
        start_ms=T0 + 5,
        duration_ms=61_000,
        score=0.75,
        name='quote " and \\ backslash',
        metadata={"team": "evals"},
        purpose="regression",
        environment_variables={"LOG_LEVEL": "debug"},
        secrets_provided={"DB_PASS": "DATABASE_PASSWORD"},
    )
    assert re.fullmatch(r"bmr_[0-9a-f]{10}", plain)
    assert client.get(f"{RUNS}/{plain}").json() == {
        "id": plain,
        "benchmark_id": None,
        "name": None,
        "start_time_ms": T0,
        "duration_ms": None,
        "state": "running",
        "score": None,
        "metadata": {},
        "purpose": None,
        "environment_variables": None,
        "secrets_provided": None,
    }
    assert client.get(f"{RUNS}/{full}").json() == {
        "id": full,
        "benchmark_id": "bmd_a",
        "name": 'quote " and \\ backslash',
        "start_time_ms": T0 + 5,
        "duration_ms": 61_000,
        "state": "completed",
        "score": 0.75,
        "metadata": {"team": "evals"},
        "purpose": "regression",
        "environment_variables": {"LOG_LEVEL": "debug"},
        "secrets_provided": {"DB_PASS": "DATABASE_PASSWORD"},
    }
    listed = client.get(RUNS).json()["runs"]
    assert [set(run) for run in listed] == [RUN_KEYS, RUN_KEYS]
    assert world.get_run(full) == client.get(f"{RUNS}/{full}").json()


def test_get_run_404_and_explicit_ids(world: World, client: httpx.Client) -> None:
    run_id = world.add_run(benchmark_id="bmd_a", start_ms=T0, run_id="bmr_custom/1")
    assert run_id == "bmr_custom/1"
    assert client.get(f"{RUNS}/bmr_custom%2F1").json()["id"] == "bmr_custom/1"
    for missing in ("bmr_nope", "bmr_0000000000", "BMR_05DEECE66D"):
        response = client.get(f"{RUNS}/{missing}")
        assert response.status_code == 404
        assert missing in response.json()["error"]
    with pytest.raises(ValueError, match="already exists"):
        world.add_run(benchmark_id=None, start_ms=T0, run_id="bmr_custom/1")


def test_generated_ids_are_unique_and_not_in_creation_order(world: World) -> None:
    ids = make_runs(world, 500)
    assert len(set(ids)) == 500
    assert ids != sorted(ids)
    taken = world.add_run(benchmark_id=None, start_ms=T0, run_id=ids[0][:-1] + "f")  # a plausible id
    assert world.get_run(taken) is not None
    assert len({*ids, taken, *make_runs(world, 500)}) == 1001


@pytest.mark.parametrize("order", ORDERS)
def test_paging_reads_every_run_exactly_once(order: Order, client: httpx.Client, world: World) -> None:
    world.set_order(order)
    ids = make_runs(world, 53)
    read, pages = read_all(client, limit=7)
    assert pages == 8
    assert sorted(read) == sorted(ids)
    assert len(read) == 53
    assert read == ids_of(world)
    if order == "newest_first":
        assert read == ids[::-1]
    elif order == "oldest_first":
        assert read == ids
    else:
        assert read not in (ids, ids[::-1])
        assert read_all(client, limit=10)[0] == read  # stable between requests


@pytest.mark.parametrize("order", ORDERS)
def test_cursor_starts_right_after_the_given_run(order: Order, client: httpx.Client, world: World) -> None:
    world.set_order(order)
    make_runs(world, 30)
    full = ids_of(world)
    for k in (0, 11, 28):
        body = client.get(RUNS, params={"starting_after": full[k], "limit": 5}).json()
        assert [run["id"] for run in body["runs"]] == full[k + 1 : k + 6]
        assert body["has_more"] is (k + 6 < 30)
    last = client.get(RUNS, params={"starting_after": full[-1]}).json()
    assert last == {"runs": [], "has_more": False, "total_count": 30}


def test_unknown_cursor_is_400(client: httpx.Client, world: World) -> None:
    make_runs(world, 3)
    response = client.get(RUNS, params={"starting_after": "bmr_unknown"})
    assert response.status_code == 400
    assert "bmr_unknown" in response.json()["error"]


def test_cursor_on_a_run_outside_the_filter_keeps_its_place(client: httpx.Client, world: World) -> None:
    world.set_order("oldest_first")
    ids = make_runs(world, 10)
    for run_id in ids[::2]:
        world.finish_run(run_id, "completed", 1000, 0.5)
    body = client.get(RUNS, params={"state": "running", "starting_after": ids[4]}).json()
    assert [run["id"] for run in body["runs"]] == [ids[5], ids[7], ids[9]]


@pytest.mark.parametrize("bad", ["0", "-1", str(MAX_LIMIT + 1), "abc", "1.5", "20x"])
def test_limit_validation(bad: str, client: httpx.Client) -> None:
    response = client.get(RUNS, params={"limit": bad})
    assert response.status_code == 400
    assert "limit" in response.json()["error"]
    assert client.get("/v1/benchmarks", params={"limit": bad}).status_code == 400


def test_limit_default_and_maximum(client: httpx.Client, world: World) -> None:
    make_runs(world, 25)
    assert len(client.get(RUNS).json()["runs"]) == 20
    assert len(client.get(RUNS, params={"limit": ""}).json()["runs"]) == 20
    body = client.get(RUNS, params={"limit": MAX_LIMIT}).json()
    assert (len(body["runs"]), body["has_more"]) == (25, False)
    assert len(client.get(RUNS, params={"limit": 1}).json()["runs"]) == 1


# ---------------------------------------------------------------------- filters and counts


def test_filters_state_benchmark_name_search(client: httpx.Client, world: World) -> None:
    a = make_runs(world, 6, "bmd_a")
    b = make_runs(world, 4, "bmd_b")
    world.finish_run(a[0], "completed", 1000, 0.9)
    world.finish_run(a[1], "failed", 2000)
    world.finish_run(b[0], "completed", 1000, 0.1)

    def ids(**params: str) -> tuple[set[str], int]:
        body = client.get(RUNS, params={"limit": 100, **params}).json()
        return {run["id"] for run in body["runs"]}, body["total_count"]

    assert ids(state="completed") == ({a[0], b[0]}, 2)
    assert ids(state="running") == ({*a[2:], *b[1:]}, 7)
    assert ids(benchmark_id="bmd_b") == (set(b), 4)
    assert ids(benchmark_id="bmd_a", state="completed") == ({a[0]}, 1)
    assert ids(name="run-003") == ({a[3], b[3]}, 2)
    assert ids(name="run-003", benchmark_id="bmd_b") == ({b[3]}, 1)
    assert ids(name="run-00") == (set(), 0)  # name is an exact match
    assert ids(search="run-00") == ({*a, *b}, 10)  # search is a substring of the name...
    assert ids(search=a[4]) == ({a[4]}, 1)  # ...or the run id
    assert ids(search="run-005", state="running") == ({a[5]}, 1)
    assert ids(state="paused") == (set(), 0)
    assert ids(benchmark_id="bmd_zzz") == (set(), 0)
    assert ids(state="", benchmark_id="", name="", search="") == ({*a, *b}, 10)  # empty = not given


def test_total_count_counts_all_matches_and_can_be_skipped(client: httpx.Client, world: World) -> None:
    make_runs(world, 12)
    body = client.get(RUNS, params={"limit": 5, "state": "running"}).json()
    assert (len(body["runs"]), body["has_more"], body["total_count"]) == (5, True, 12)
    for value in ("false", "False", "0"):
        body = client.get(RUNS, params={"limit": 5, "include_total_count": value}).json()
        assert body["total_count"] is None
        assert len(body["runs"]) == 5
    assert client.get(RUNS, params={"include_total_count": "true"}).json()["total_count"] == 12
    assert client.get(RUNS, params={"include_total_count": ""}).json()["total_count"] == 12
    assert client.get(RUNS, params={"include_total_count": "maybe"}).status_code == 400


def test_filtered_paging_in_every_order(client: httpx.Client, world: World) -> None:
    ids = make_runs(world, 60)
    completed = set(ids[::3])
    for run_id in completed:
        world.finish_run(run_id, "completed", 5000, 0.5)
    for order in ORDERS:
        world.set_order(order)
        read, _ = read_all(client, limit=4, state="completed", benchmark_id="bmd_a")
        assert len(read) == 20
        assert set(read) == completed


def test_update_run_moves_it_between_filters(client: httpx.Client, world: World) -> None:
    (run_id,) = make_runs(world, 1)
    world.update_run(run_id, state="completed", duration_ms=90_000, score=1, benchmark_id="bmd_b", name="x")
    assert client.get(RUNS, params={"state": "running"}).json()["total_count"] == 0
    assert client.get(RUNS, params={"benchmark_id": "bmd_a"}).json()["total_count"] == 0
    run = client.get(RUNS, params={"state": "completed", "benchmark_id": "bmd_b"}).json()["runs"][0]
    assert (run["id"], run["duration_ms"], run["score"], run["name"]) == (run_id, 90_000, 1.0, "x")
    world.update_run(run_id, metadata={"k": "v"}, score=None)
    assert world.get_run(run_id) == {**run, "metadata": {"k": "v"}, "score": None}
    with pytest.raises(TypeError, match="colour"):
        world.update_run(run_id, colour="red")
    with pytest.raises(TypeError):
        world.update_run(run_id, state="failed", duration_ms="long")
    assert world.get_run(run_id) == {**run, "metadata": {"k": "v"}, "score": None}  # all or nothing
    with pytest.raises(KeyError):
        world.update_run("bmr_missing", state="failed")


def test_fast_running_filter_on_a_big_world(world: World, client: httpx.Client) -> None:
    world.add_many_finished(200_000, ["bmd_a", "bmd_b"], T0)
    running = make_runs(world, 5)
    client.get(RUNS, params={"state": "running"})  # warm the connection
    started = time.perf_counter()
    body = client.get(RUNS, params={"state": "running", "limit": 100}).json()
    elapsed = time.perf_counter() - started
    assert {run["id"] for run in body["runs"]} == set(running)
    assert body["total_count"] == 5
    assert elapsed < 0.5, elapsed  # indexed: milliseconds in practice, loose for slow CI machines


# ---------------------------------------------------------------------- raw runs, deletion, ordering


def test_raw_runs_are_served_verbatim(client: httpx.Client, world: World) -> None:
    world.set_order("oldest_first")
    good = make_runs(world, 1)[0]
    weird = {"id": "bmr_weird", "state": 7, "start_time_ms": "yesterday", "extra": [1, None]}
    assert world.add_raw_run(weird) == "bmr_weird"
    hidden = world.add_raw_run({"state": "running", "name": "no id here"})
    last = make_runs(world, 1)[0]
    weird["state"] = "mutated after adding"  # the World keeps its own copy
    assert client.get(f"{RUNS}/bmr_weird").json() == {
        "id": "bmr_weird",
        "state": 7,
        "start_time_ms": "yesterday",
        "extra": [1, None],
    }
    runs = client.get(RUNS).json()["runs"]
    assert [run.get("id") for run in runs] == [good, "bmr_weird", None, last]
    assert runs[2] == {"state": "running", "name": "no id here"}
    assert [
        run.get("id") for run in client.get(RUNS, params={"starting_after": "bmr_weird"}).json()["runs"]
    ] == [
        None,
        last,
    ]
    assert client.get(RUNS, params={"state": "running"}).json()["total_count"] == 3
    world.update_run(hidden, state="failed")
    assert client.get(RUNS, params={"state": "failed"}).json()["runs"] == [
        {"state": "failed", "name": "no id here"}
    ]


def test_delete_run(client: httpx.Client, world: World) -> None:
    ids = make_runs(world, 5)
    world.delete_run(ids[2])
    assert world.run_count() == 4
    assert client.get(f"{RUNS}/{ids[2]}").status_code == 404
    body = client.get(RUNS).json()
    assert [run["id"] for run in body["runs"]] == [ids[4], ids[3], ids[1], ids[0]]
    assert body["total_count"] == 4
    assert client.get(RUNS, params={"state": "running"}).json()["total_count"] == 4
    assert client.get(RUNS, params={"starting_after": ids[2]}).status_code == 400
    with pytest.raises(KeyError):
        world.delete_run(ids[2])
    assert client.get(RUNS, params={"starting_after": ids[3]}).json()["runs"][0]["id"] == ids[1]


def test_set_order_reorders_the_whole_list(world: World) -> None:
    ids = make_runs(world, 40)
    assert ids_of(world) == ids[::-1]
    world.set_order("oldest_first")
    assert world.order == "oldest_first"
    assert ids_of(world) == ids
    world.set_order("shuffled")
    shuffled = ids_of(world)
    assert sorted(shuffled) == sorted(ids)
    assert shuffled not in (ids, ids[::-1])
    with pytest.raises(ValueError, match="order"):
        world.set_order("random")  # type: ignore[arg-type]


def test_shuffled_new_runs_land_at_random_positions() -> None:
    world = World(order="shuffled", seed=3)
    make_runs(world, 50)
    new = set(make_runs(world, 20))
    positions = [i for i, run in enumerate(world.runs()) if run["id"] in new]
    assert len(positions) == 20
    assert positions != list(range(20))
    assert positions != list(range(50, 70))
    assert min(positions) < 20
    assert max(positions) >= 50
    other = World(order="shuffled", seed=3)
    make_runs(other, 70)
    assert ids_of(other) == ids_of(world)  # seeded: reproducible


# ---------------------------------------------------------------------- bulk load


def test_add_many_finished_pages_correctly(client: httpx.Client, world: World) -> None:
    benchmarks = ["bmd_a", "bmd_b", "bmd_c"]
    started = time.perf_counter()
    world.add_many_finished(100_000, benchmarks, T0, seed=7)
    assert time.perf_counter() - started < 5
    assert world.run_count() == 100_000
    read, pages = read_all(client, limit=MAX_LIMIT)
    assert pages == 20
    assert len(set(read)) == 100_000
    body = client.get(RUNS, params={"limit": MAX_LIMIT, "starting_after": read[41_999]}).json()
    assert [run["id"] for run in body["runs"]] == read[42_000:47_000]
    runs = body["runs"]
    states = {run["state"] for run in runs}
    assert states == {"completed", "failed", "canceled"}
    completed = [run for run in runs if run["state"] == "completed"]
    assert 0.75 < len(completed) / len(runs) < 0.95
    assert all(0.0 <= run["score"] <= 1.0 for run in completed)
    assert all(run["score"] is None for run in runs if run["state"] != "completed")
    assert all(60_000 <= run["duration_ms"] <= 7_200_000 for run in runs)
    assert {run["benchmark_id"] for run in runs} == set(benchmarks)
    assert all(run["name"] and run["metadata"] == {} for run in runs)
    starts = [run["start_time_ms"] for run in runs]
    assert starts == sorted(starts, reverse=True)  # newest first: creation order follows start time
    per_benchmark = sum(
        client.get(RUNS, params={"benchmark_id": b, "limit": 1}).json()["total_count"] for b in benchmarks
    )
    assert per_benchmark == 100_000
    assert client.get(RUNS, params={"state": "running"}).json()["total_count"] == 0


def test_add_many_finished_is_seeded_and_composes_with_add_run() -> None:
    one, two = World(), World()
    for world in (one, two):
        make_runs(world, 2)
        world.add_many_finished(1000, ["bmd_a"], T0, seed=1)
        make_runs(world, 2)
    assert one.runs() == two.runs()
    assert one.run_count() == 1004
    assert len({run["id"] for run in one.runs()}) == 1004
    first_bulk_start = one.runs()[-3]["start_time_ms"]  # newest first: the bulk sits after 2 new runs
    assert isinstance(first_bulk_start, int)
    assert first_bulk_start >= T0


# ---------------------------------------------------------------------- benchmarks


def test_benchmarks_list_leaves_archived_out_but_serves_them_by_id(
    world: World, client: httpx.Client
) -> None:
    world.add_benchmark("bmd_a", "alpha")
    world.add_benchmark("bmd_old", "old one", status="archived")
    world.add_benchmark("bmd_b", "beta")
    body = client.get("/v1/benchmarks").json()
    assert body == {
        "benchmarks": [
            {"id": "bmd_a", "name": "alpha", "metadata": {}, "status": "active"},
            {"id": "bmd_b", "name": "beta", "metadata": {}, "status": "active"},
        ],
        "has_more": False,
        "total_count": 2,
    }
    assert client.get("/v1/benchmarks/bmd_old").json() == {
        "id": "bmd_old",
        "name": "old one",
        "metadata": {},
        "status": "archived",
    }
    assert client.get("/v1/benchmarks/bmd_none").status_code == 404
    world.add_benchmark("bmd_a", "alpha", status="archived")  # archive an existing one
    assert [b["id"] for b in client.get("/v1/benchmarks").json()["benchmarks"]] == ["bmd_b"]
    with pytest.raises(ValueError, match="status"):
        world.add_benchmark("bmd_c", "gamma", status="deleted")


def test_benchmarks_paging(world: World, client: httpx.Client) -> None:
    for i in range(7):
        world.add_benchmark(f"bmd_{i}", f"bench {i}", status="archived" if i == 3 else "active")
    seen: list[str] = []
    cursor = ""
    while True:
        body = client.get("/v1/benchmarks", params={"limit": 2, "starting_after": cursor}).json()
        assert body["total_count"] == 6
        seen += [b["id"] for b in body["benchmarks"]]
        if not body["has_more"]:
            break
        cursor = body["benchmarks"][-1]["id"]
    assert seen == ["bmd_0", "bmd_1", "bmd_2", "bmd_4", "bmd_5", "bmd_6"]
    after_archived = client.get("/v1/benchmarks", params={"starting_after": "bmd_3"}).json()
    assert [b["id"] for b in after_archived["benchmarks"]] == ["bmd_4", "bmd_5", "bmd_6"]
    assert client.get("/v1/benchmarks", params={"starting_after": "bmd_x"}).status_code == 400


# ---------------------------------------------------------------------- faults


def test_fail_next_answers_n_requests_then_recovers(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.fail_next(2, 503)
    assert sim.faults.pending() == 2
    first, second, third = (client.get(RUNS) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.json() == {"error": "boom"}
    assert sim.faults.pending() == 0
    assert len(sim.requests) == 3


def test_fail_next_with_retry_after_and_custom_body(sim: Simulator, client: httpx.Client) -> None:
    date = email.utils.format_datetime(email.utils.localtime(), usegmt=False)
    sim.faults.fail_next(1, 429, headers={"Retry-After": "3"})
    sim.faults.fail_next(1, 429, headers={"Retry-After": date})
    sim.faults.fail_next(1, 401, body=b'{"error":"revoked"}')
    sim.faults.fail_next(1, 500, body=b"<html>oops</html>", headers={"Content-Type": "text/html"})
    seconds, dated, unauthorized, html = (client.get(RUNS) for _ in range(4))
    assert (seconds.status_code, seconds.headers["Retry-After"]) == (429, "3")
    assert (dated.status_code, dated.headers["Retry-After"]) == (429, date)
    assert (unauthorized.status_code, unauthorized.json()) == (401, {"error": "revoked"})
    assert (html.status_code, html.text, html.headers["Content-Type"]) == (
        500,
        "<html>oops</html>",
        "text/html",
    )


def test_fault_path_prefix(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.fail_next(1, 500, path_prefix="/v1/benchmarks")
    assert client.get(RUNS).status_code == 200
    assert sim.faults.pending() == 1
    assert client.get("/v1/benchmarks/bmd_x").status_code == 500
    assert client.get("/v1/benchmarks/bmd_x").status_code == 404


def test_faults_answer_before_auth(sim: Simulator) -> None:
    sim.faults.fail_next(1, 503)
    assert httpx.get(sim.url + RUNS).status_code == 503
    assert httpx.get(sim.url + RUNS).status_code == 401


def test_delay_makes_clients_time_out(sim: Simulator) -> None:
    sim.faults.delay_seconds = 0.5
    with (
        httpx.Client(base_url=sim.url, headers=AUTH, timeout=0.1) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.get(RUNS)
    with httpx.Client(base_url=sim.url, headers=AUTH, timeout=5) as patient:
        started = time.monotonic()
        assert patient.get(RUNS).status_code == 200
        assert time.monotonic() - started >= 0.5
        sim.faults.clear()
        started = time.monotonic()
        assert patient.get(RUNS).status_code == 200
        assert time.monotonic() - started < 0.4


def test_malformed_json(sim: Simulator, client: httpx.Client, world: World) -> None:
    make_runs(world, 3)
    sim.faults.malformed_json_next(1)
    broken = client.get(RUNS)
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.content)
    assert broken.content.startswith(b'{"runs":[')
    assert len(client.get(RUNS).json()["runs"]) == 3


def test_wrong_shape(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.wrong_shape_next(2)
    assert client.get(RUNS).json() == {"items": []}
    assert client.get("/v1/benchmarks").json() == {"items": []}
    assert client.get(RUNS).json() == {"runs": [], "has_more": False, "total_count": 0}


def test_close_mid_body(sim: Simulator, client: httpx.Client, world: World) -> None:
    make_runs(world, 10)
    sim.faults.close_mid_body_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(RUNS)
    assert len(client.get(RUNS).json()["runs"]) == 10
    assert len(sim.requests) == 2


def test_stuck_cursor(sim: Simulator, client: httpx.Client, world: World) -> None:
    ids = make_runs(world, 10)
    world.add_benchmark("bmd_a", "alpha")
    sim.faults.stuck_cursor = True
    for _ in range(3):
        body = client.get(RUNS, params={"limit": 4, "starting_after": ids[5]}).json()
        assert [run["id"] for run in body["runs"]] == ids[:-5:-1]
        assert body["has_more"] is True
    assert client.get(RUNS, params={"starting_after": "bmr_unknown"}).status_code == 200
    assert client.get("/v1/benchmarks", params={"starting_after": "bmd_a"}).json()["has_more"] is True
    sim.faults.clear()
    assert client.get(RUNS, params={"limit": 4, "starting_after": ids[5]}).json()["runs"][0]["id"] == ids[4]


def test_has_more_forever(sim: Simulator, client: httpx.Client, world: World) -> None:
    ids = make_runs(world, 5)
    sim.faults.has_more_forever = True
    last_page = client.get(RUNS, params={"limit": 5}).json()
    assert (len(last_page["runs"]), last_page["has_more"]) == (5, True)
    beyond = client.get(RUNS, params={"starting_after": ids[0]}).json()
    assert beyond == {"runs": [], "has_more": True, "total_count": 5}
    assert client.get("/v1/benchmarks").json()["has_more"] is True
    sim.faults.has_more_forever = False
    assert client.get(RUNS, params={"limit": 5}).json()["has_more"] is False


def test_clear_removes_every_fault(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.fail_next(5, 500)
    sim.faults.malformed_json_next(1)
    sim.faults.delay_seconds = 1.0
    sim.faults.stuck_cursor = sim.faults.has_more_forever = True
    sim.faults.clear()
    assert sim.faults.pending() == 0
    assert client.get(RUNS).json() == {"runs": [], "has_more": False, "total_count": 0}
    with pytest.raises(ValueError, match="n must"):
        sim.faults.fail_next(-1, 500)


def test_concurrent_clients(sim: Simulator, world: World) -> None:
    make_runs(world, 100)
    results: list[int] = []

    def reader() -> None:
        with httpx.Client(base_url=sim.url, headers=AUTH, timeout=10) as http:
            results.append(len(read_all(http, limit=9)[0]))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [100] * 8


# ---------------------------------------------------------------------- demo driver


def _job_run_ids(world: World) -> set[str]:
    """Ids of the runs the World's benchmark jobs created."""
    ids = set()
    for view in world.jobs.views():
        ids |= {o["benchmark_run_id"] for o in view.get("benchmark_outcomes") or []}
        ids |= {r["benchmark_run_id"] for r in view.get("in_progress_runs") or []}
    return ids


def test_demo_seed_history_and_tick_change_states() -> None:
    world = World()
    driver = DemoDriver(world, seed=5)
    now = T0
    driver.seed_history(now)
    job_runs = _job_run_ids(world)
    assert 90 <= len(job_runs) <= 200  # the benchmark jobs' runs (2 to 4 per job) are runs too
    runs = [run for run in world.runs() if run["id"] not in job_runs]
    running = {run["id"] for run in runs if run["state"] == "running"}
    assert 300 <= len(runs) <= 400
    assert 3 <= len(running) <= 10
    assert running == set(driver.running())
    assert all(now - 3 * 86_400_000 <= run["start_time_ms"] <= now for run in runs)  # type: ignore[operator]
    finished = [run for run in runs if run["state"] != "running"]
    assert {run["state"] for run in finished} == {"completed", "failed", "canceled"}
    assert sum(run["state"] == "completed" for run in finished) > 0.7 * len(finished)
    assert all(run["score"] is not None for run in finished if run["state"] == "completed")

    driver.tick(now + 3 * 3_600_000)
    job_runs = _job_run_ids(world)  # once: it reads every job, and there are hundreds of runs
    after = {run["id"]: run for run in world.runs() if run["id"] not in job_runs}
    assert all(after[run_id]["state"] in {"completed", "failed", "canceled"} for run_id in running)
    assert all(after[run_id]["duration_ms"] is not None for run_id in running)
    assert len(after) > len(runs)  # new runs started during the three hours
    assert not running & set(driver.running())


def test_demo_is_deterministic_plain_and_uses_benchmarks() -> None:
    worlds = []
    for _ in range(2):
        world = World()
        driver = DemoDriver(world, seed=9)
        driver.seed_history(T0)
        for step in range(1, 50):
            driver.tick(T0 + step * 2000)
        worlds.append(world)
    assert worlds[0].runs() == worlds[1].runs()
    runs = worlds[0].runs()
    names = {str(run["name"]) for run in runs}
    assert all(re.fullmatch(r"[a-z0-9-]+", name) for name in names)
    benchmark_ids = {run["benchmark_id"] for run in runs}
    assert None in benchmark_ids  # a few runs come from benchmark jobs
    assert len(benchmark_ids - {None}) == 5  # four active benchmarks and the archived one's history
    with Simulator(worlds[0]) as simulator:
        listed = httpx.get(simulator.url + "/v1/benchmarks", headers=AUTH).json()
        assert len(listed["benchmarks"]) == 4
        for benchmark_id in benchmark_ids - {None}:
            view = httpx.get(f"{simulator.url}/v1/benchmarks/{benchmark_id}", headers=AUTH).json()
            assert re.fullmatch(r"[a-z0-9-]+", view["name"])


def test_the_demo_has_an_agent_that_got_worse_for_the_status_page_to_flag() -> None:
    world = World()
    DemoDriver(world, seed=1).seed_history(T0)  # the seed ./dev demo uses
    rows = expected_agent_rows(world.jobs.views(), T0 / 1000)
    flagged = {key for key, row in rows.items() if row["flagged"]}
    assert flagged
    assert {(agent, model) for _, agent, model in flagged} == {("swe-agent", "gpt-4.1")}


def test_demo_thread_ticks_and_stops() -> None:
    world = World()
    driver = DemoDriver(world, seed=1, tick_seconds=0.02)
    driver.seed_history(int(time.time() * 1000) - 3 * 3_600_000)  # every seeded running run is overdue
    seeded = set(driver.running())
    driver.start()
    try:
        wait_until(lambda: not seeded & set(driver.running()), 5, "the overdue runs to end")
    finally:
        driver.stop()
    assert not seeded & set(driver.running())
    assert all(world.get_run(run_id)["state"] != "running" for run_id in seeded)  # type: ignore[index]
    count = world.run_count()
    time.sleep(0.1)
    assert world.run_count() == count  # stopped: nothing changes any more
    with pytest.raises(ValueError, match="tick_seconds"):
        DemoDriver(World(), tick_seconds=0)


# --- latency -----------------------------------------------------------------------------------------


def test_latency_is_a_round_trip_plus_jitter_plus_the_transfer_of_the_body() -> None:
    import random

    rng = random.Random(1)
    latency = Latency(base_s=0.05, jitter_s=0.1, bytes_per_s=1e6)
    delays = [latency.seconds(500_000, rng) for _ in range(200)]
    assert all(0.55 <= d <= 0.65 for d in delays)
    assert max(delays) - min(delays) > 0.05  # spread by the jitter
    assert Latency().seconds(10**9, rng) == 0.0
    realistic = Latency.realistic()
    assert 0.05 <= realistic.seconds(300, rng) <= 0.151


@pytest.mark.parametrize("bad", [{"base_s": -1.0}, {"jitter_s": -0.1}, {"bytes_per_s": 0.0}])
def test_latency_rejects_negative_values(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="latency"):
        Latency(**bad)


def test_answers_arrive_after_the_latency_and_concurrent_ones_overlap(world: World) -> None:
    world.add_many_finished(5000, ["bmd_a"], start_ms=T0)
    with Simulator(world, latency=Latency(base_s=0.2, bytes_per_s=5e6)) as sim:
        with httpx.Client(base_url=sim.url, headers=AUTH) as client:
            started = time.monotonic()
            client.get(RUNS, params={"limit": 1}).raise_for_status()
            small = time.monotonic() - started
            started = time.monotonic()
            body = client.get(RUNS, params={"limit": 5000}).raise_for_status().content
            large = time.monotonic() - started
        assert small >= 0.2
        assert large >= 0.2 + len(body) / 5e6  # a big page takes longer than a small one

        ready = threading.Barrier(4)

        def get() -> None:
            with httpx.Client(base_url=sim.url, headers=AUTH) as client:
                # Clients are slow to build on a busy machine: all four ask at once, or they need not overlap.
                ready.wait(timeout=30)
                client.get(RUNS, params={"limit": 1}).raise_for_status()

        sim.reset_requests()
        threads = [threading.Thread(target=get) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sim.max_in_flight == 4  # answered side by side, each after its own delay
