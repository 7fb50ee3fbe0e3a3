"""The typed decoder (exporter.runloop.decode) against json.loads, the decoder it replaced: any record, of
any shape, validates to the same Run, Job or Invalid either way; a page keeps every record that fits
its type typed; the cases a typed decoder makes new are each decided as json.loads had them; and the
fields the exporter does not use are never decoded."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.runloop.client import JOBS, RUNS, RunloopClient, record_id
from exporter.runloop.decode import plain_page
from exporter.runloop.errors import BadResponseError
from exporter.runloop.jobs import JobRecord, parse_job
from exporter.runloop.models import Invalid, Run, RunRecord, parse_run
from exporter.simulator import World

MISSING = object()
HUGE = [2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, -(10**400)]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN and Infinity: JSON to json.loads, not msgspec
    st.text(max_size=6),
)
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


Spec = tuple[st.SearchStrategy[Any], ...]  # a field's right values first, then wrong ones


def records(dirty: bool) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """(runs, jobs): clean ones, every field of a right type (checks on values still fail some), or
    dirty ones, any field now and then left out, of a wrong value or any JSON at all."""

    def obj(**specs: Spec) -> st.SearchStrategy[dict[str, Any]]:
        def pick(spec: Spec) -> st.SearchStrategy[Any]:
            good, *bad = spec
            return st.one_of(good, st.one_of(*bad, st.just(MISSING), any_json)) if dirty else good

        drawn = st.fixed_dictionaries({key: pick(spec) for key, spec in specs.items()})
        return drawn.map(lambda d: {k: v for k, v in d.items() if v is not MISSING})

    def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(strategy, st.sampled_from([MISSING, None]))  # present half of the time

    ids = (st.sampled_from(["bmr_1", "bmj_1", "bmj_2"]), st.sampled_from(["", "x" * 257]))
    names = st.one_of(
        st.sampled_from(["claude-code", "gpt-5", "\u00e9quipe"]), st.text(min_size=1, max_size=8)
    )
    name: Spec = (opt(names), st.sampled_from(["", "n" * 257]))
    count: Spec = (
        st.one_of(st.just(MISSING), st.integers(0, 20)),
        st.sampled_from([-1, 2.5, 10**7 + 1, *HUGE]),
    )
    score: Spec = (opt(st.floats(0, 1)), st.sampled_from([1 + 1e-12, 1.5, -0.1, *HUGE]))
    time: Spec = (st.integers(0, 2**62), st.sampled_from([1.7e12, 1.5, -1, *HUGE]))
    text_map = st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3)
    runs = obj(
        id=ids,
        state=(st.sampled_from(["running", "completed", "failed", "canceled", "scoring"]), st.just("Done!")),
        start_time_ms=time,
        metadata=(text_map,),
        benchmark_id=name,
        duration_ms=(opt(st.integers(0, 10**9)), st.sampled_from([-1, 1.5, 10**15])),
        score=score,
        purpose=name,
        name=name,
        environment_variables=(text_map,),
    )
    failure = obj(exception_type=name, exception_message=(st.text(max_size=6),))
    scenario = obj(
        state=(st.sampled_from(["COMPLETED", "FAILED", "TIMEOUT", "CANCELED"]),),
        failure_reason=(opt(failure),),
    )
    outcome = obj(
        agent_name=(names, st.sampled_from(["", "n" * 257])),
        model_name=name,
        benchmark_run_id=name,
        n_completed=count,
        n_failed=count,
        n_timeout=count,
        average_score=score,
        scenario_outcomes=(opt(st.lists(scenario, max_size=5)),),
    )
    config = obj(type=(st.sampled_from(["job_agent", "external_api"]),), name=name, model_name=name)
    source = obj(type=(st.sampled_from(["benchmark", "harbor", "scenarios"]),), benchmark_id=name)
    in_progress = obj(state=(st.sampled_from(["running", "completed"]),), agent_config=(opt(config),))
    jobs = obj(
        id=ids,
        state=(st.sampled_from(["queued", "running", "completed", "cancelled", "timeout"]), st.just("Done!")),
        create_time_ms=time,
        job_source=(opt(source),),
        benchmark_outcomes=(opt(st.lists(outcome, max_size=3)),),
        in_progress_runs=(opt(st.lists(in_progress, max_size=3)),),
        name=name,
    )
    return runs, jobs


CLEAN_RUNS, CLEAN_JOBS = records(dirty=False)
DIRTY_RUNS, DIRTY_JOBS = records(dirty=True)
runs = st.one_of(CLEAN_RUNS, DIRTY_RUNS)
jobs = st.one_of(CLEAN_JOBS, DIRTY_JOBS)


def dumped(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode()


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(record=st.one_of(runs, any_json), ascii_only=st.booleans())
def test_any_run_validates_the_same_decoded_typed_or_by_json_loads(record: Any, ascii_only: bool) -> None:
    body = dumped(record, ascii_only)
    typed = RUNS.record(body, "/v1/benchmark_runs/{id}")
    assert parse_run(typed) == parse_run(json.loads(body))
    assert record_id(typed) == record_id(json.loads(body))


@SETTINGS
@given(record=st.one_of(jobs, any_json), ascii_only=st.booleans())
def test_any_job_validates_the_same_decoded_typed_or_by_json_loads(record: Any, ascii_only: bool) -> None:
    body = dumped(record, ascii_only)
    typed = JOBS.record(body, "/v1/benchmark_jobs/{id}")
    assert parse_job(typed) == parse_job(json.loads(body))
    assert record_id(typed) == record_id(json.loads(body))


@SETTINGS
@given(
    records=st.lists(st.one_of(runs, runs, any_json), max_size=5),
    has_more=st.booleans(),
    total=st.one_of(st.integers(-1, 10), st.sampled_from(HUGE), any_json),
    ascii_only=st.booleans(),
)
def test_a_page_of_runs_keeps_each_record_as_json_loads_did(
    records: list[Any], has_more: bool, total: Any, ascii_only: bool
) -> None:
    body = dumped({"runs": records, "has_more": has_more, "total_count": total}, ascii_only)
    typed, more, count = RUNS.page(body, "/v1/benchmark_runs")
    plain, plain_more, plain_count = plain_page(json.loads(body), "runs")
    assert (more, count) == (plain_more, plain_count)
    assert [parse_run(r) for r in typed] == [parse_run(r) for r in plain]
    assert [record_id(r) for r in typed] == [record_id(r) for r in plain]


@SETTINGS
@given(records=st.lists(st.one_of(jobs, jobs, any_json), max_size=4), ascii_only=st.booleans())
def test_a_page_of_jobs_keeps_each_record_as_json_loads_did(records: list[Any], ascii_only: bool) -> None:
    body = dumped({"jobs": records, "has_more": False, "total_count": len(records)}, ascii_only)
    typed, _, count = JOBS.page(body, "/v1/benchmark_jobs")
    assert count == len(records)
    assert [parse_job(r) for r in typed] == [parse_job(r) for r in plain_page(json.loads(body), "jobs")[0]]


def test_the_simulators_pages_decode_typed_whole() -> None:
    """What Runloop sends, well formed, takes the fast path: no record falls back to plain JSON."""
    world = World(seed=3)
    for i in range(30):
        world.jobs.add(
            benchmark_id=None if i % 7 == 0 else f"bmd_{i % 3}",
            agents=[("claude-code", "claude-opus-4"), ("aider", None)],
            levels=[0.4, 0.7],
            create_ms=1_760_000_000_000 + i,
            state=("running", "completed", "failed", "timeout", "cancelled", "queued")[i % 6],
            started=1 if i % 6 == 0 else None,
            n_scenarios=8,
            secrets={"env": "E", "secret": "S", "kwarg": "K", "message": "M"} if i % 2 else None,
        )
    body = world.jobs.list_page(limit=100, starting_after=None, include_total_count=True)
    records, has_more, total = JOBS.page(body, "/v1/benchmark_jobs")
    assert (len(records), has_more, total) == (30, False, 30)
    assert all(isinstance(r, JobRecord) for r in records)
    assert all(not isinstance(parse_job(r), Invalid) for r in records)
    for i in range(20):
        world.add_run(benchmark_id="bmd_1", state="completed", start_ms=1_700_000_000_000 + i, score=0.5)
    page = world.list_runs(limit=100, starting_after=None, include_total_count=False)
    body = b'{"runs":[' + ",".join(page.runs_json).encode() + b'],"has_more":false,"total_count":null}'
    records, _, _ = RUNS.page(body, "/v1/benchmark_runs")
    assert len(records) == len(page.runs_json) > 20  # the jobs' own runs too
    assert all(isinstance(r, RunRecord) for r in records)


GOOD = (
    b'{"id":"r1","state":"completed","start_time_ms":1700000000000,"duration_ms":5,"score":0.5,"metadata":{}}'
)
GOOD_TOO = GOOD.replace(b'"r1"', b'"r3"')


def page_of(*records: bytes, has_more: bytes = b"false") -> bytes:
    return b'{"runs":[' + b",".join(records) + b'],"has_more":' + has_more + b',"total_count":3}'


def client_answering(body: bytes) -> RunloopClient:
    return RunloopClient(
        "http://127.0.0.1:1",
        lambda: "key",
        transport=httpx.MockTransport(lambda request: httpx.Response(200, content=body)),
    )


@pytest.mark.parametrize(
    ("middle", "expected"),
    [
        # A number where a string was: that record alone is plain JSON and invalid, as before.
        (b'{"id":"r2","state":5,"start_time_ms":1,"metadata":{}}', "invalid_state"),
        (
            b'{"id":"r2","state":"completed","start_time_ms":1,"metadata":{},"benchmark_id":7}',
            "invalid_benchmark_id",
        ),
        # A null: where a value may be absent it is absence; where one is required, the field's reason.
        (b'{"id":"r2","state":"running","start_time_ms":1,"metadata":{},"duration_ms":null}', None),
        (b'{"id":"r2","state":null,"start_time_ms":1,"metadata":{}}', "invalid_state"),
        (b'{"id":"r2","state":"running","start_time_ms":1,"metadata":null}', "invalid_metadata"),
        (b'{"id":null,"state":"running","start_time_ms":1,"metadata":{}}', "missing_field"),
        # A huge integer: an int of any size, then bounded by the models.
        (
            b'{"id":"r2","state":"running","start_time_ms":' + b"9" * 400 + b',"metadata":{}}',
            "invalid_start_time",
        ),
        (
            b'{"id":"r2","state":"completed","start_time_ms":1,"metadata":{},"score":' + b"9" * 30 + b"}",
            "invalid_score",
        ),
        # An extra field: ignored, never decoded.
        (
            b'{"id":"r2","state":"running","start_time_ms":1,"metadata":{},"new":{"deep":[1,{"x":null}]}}',
            None,
        ),
        # NaN is no JSON to msgspec: the page is decoded by json.loads as before, the record invalid alone.
        (b'{"id":"r2","state":"completed","start_time_ms":1,"metadata":{},"score":NaN}', "invalid_score"),
    ],
)
def test_a_record_of_a_new_wrong_shape_is_invalid_alone(middle: bytes, expected: str | None) -> None:
    page = client_answering(page_of(GOOD, middle, GOOD_TOO)).list_runs(limit=3)
    parsed = [parse_run(r) for r in page.records]
    assert [r.id for r in parsed if isinstance(r, Run)] == ["r1", *([] if expected else ["r2"]), "r3"]
    assert [r.reason for r in parsed if isinstance(r, Invalid)] == ([expected] if expected else [])
    assert (page.has_more, page.total_count, page.body_bytes) == (
        False,
        3,
        len(page_of(GOOD, middle, GOOD_TOO)),
    )


def test_a_duplicated_key_keeps_the_last_value_as_json_loads_did() -> None:
    twice = b'{"id":"r2","state":"running","start_time_ms":1,"metadata":{"k":"a","k":"b"},"state":"failed"}'
    body = page_of(GOOD, twice, has_more=b'true,"has_more":false')
    page = client_answering(body).list_runs(limit=3)
    run = parse_run(page.records[1])
    assert isinstance(page.records[1], RunRecord)  # typed all the same
    assert isinstance(run, Run)
    assert (run.state, run.metadata, page.has_more) == ("failed", {"k": "b"}, False)
    assert json.loads(body)["has_more"] is False
    assert parse_run(json.loads(body)["runs"][1]) == run


@pytest.mark.parametrize(
    "middle",
    [
        b'{"id":"r2","state":"running","start_time_ms":1,"metadata":{},"name":"caf\xe9"}',  # a field not used
        b'{"id":"r2","state":"runn\xffing","start_time_ms":1,"metadata":{}}',  # a field used
        b'{"id":"r2","state":"running","start_time_ms":1,"metadata":{"\xc3":"x"}}',  # a key
    ],
)
def test_invalid_utf8_anywhere_refuses_the_body_as_json_loads_did(middle: bytes) -> None:
    body = page_of(GOOD, middle, GOOD_TOO)
    with pytest.raises(UnicodeDecodeError):
        json.loads(body)
    with pytest.raises(BadResponseError, match="/v1/benchmark_runs: the body is not valid JSON"):
        client_answering(body).list_runs(limit=3)
    with pytest.raises(BadResponseError, match="not valid JSON"):
        RUNS.record(middle, "/v1/benchmark_runs/{id}")


def test_utf8_that_is_not_ascii_is_read() -> None:
    body = page_of(
        GOOD, b'{"id":"r2","state":"running","start_time_ms":1,"metadata":{"team":"\xc3\xa9quipe"}}'
    )
    run = parse_run(client_answering(body).list_runs(limit=3).records[1])
    assert isinstance(run, Run)
    assert run.metadata == {"team": "\u00e9quipe"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"runs": [{"id": ', "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"runs": null, "has_more": false}', "'runs'"),
        (b'{"runs": [], "has_more": null}', "has_more"),
        (b'\xef\xbb\xbf{"runs": [], "has_more": 1}', "has_more"),  # a BOM: msgspec refuses, json.loads reads
    ],
)
def test_a_body_that_is_no_listing_is_refused_with_the_words_it_had(body: bytes, message: str) -> None:
    with pytest.raises(BadResponseError, match=message):
        client_answering(body).list_runs(limit=1)


def test_a_record_by_id_is_typed_or_plain_json_as_it_fits() -> None:
    assert isinstance(RUNS.record(GOOD, "e"), RunRecord)
    plain = RUNS.record(b'{"id":"r1","state":1}', "e")
    assert plain == {"id": "r1", "state": 1}
    nan = RUNS.record(b'{"id":"r1","score":NaN}', "e")  # NaN: no JSON to msgspec, read by json.loads
    assert isinstance(nan, dict)
    assert math.isnan(nan["score"])
    assert RUNS.record(b'"text"', "e") == "text"
    with pytest.raises(BadResponseError, match="e: the body is not valid JSON"):
        RUNS.record(b'{"id": ', "e")


def test_fields_not_used_are_never_decoded() -> None:
    """A well-formed record's secrets never exist as objects: not in the typed record, so not anywhere."""
    run = RUNS.record(
        b'{"id":"r1","state":"completed","start_time_ms":1,"metadata":{},"name":"SECRET-NAME",'
        b'"environment_variables":{"TOKEN":"SECRET-ENV"},"secrets_provided":{"DB":"SECRET-DB"}}',
        "e",
    )
    assert isinstance(run, RunRecord)
    assert "SECRET" not in repr(run)
    world = World()
    planted = {"env": "PLANTED-ENV", "secret": "PLANTED-SECRET", "kwarg": "PLANTED-KWARG"}
    job_id = world.jobs.add(
        benchmark_id=None,
        agents=[("claude-code", "claude-opus-4")],
        create_ms=1,
        state="failed",
        n_scenarios=20,
        secrets={**planted, "message": "PLANTED-MSG", "yaml": "PLANTED-YAML"},
    )
    body = world.jobs.get(job_id)
    assert body is not None
    assert b"PLANTED-YAML" in body
    assert b"PLANTED-MSG" in body
    job = JOBS.record(body, "e")
    assert isinstance(job, JobRecord)
    assert "PLANTED" not in repr(job)
    assert "PLANTED" not in repr(msgspec.to_builtins(job))
