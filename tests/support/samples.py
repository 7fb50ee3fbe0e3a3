"""Samples of a Prometheus exposition, keyed by name and label set, and how tests compare them."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

Key = tuple[str, frozenset[tuple[str, str]]]
Samples = dict[Key, float]


_VALUE = (
    r'"([^"\\\n]*(?:\\.[^"\\\n]*)*)"'  # a quoted label value, escapes unrolled (no per-character alternation)
)
_SAMPLE_LINE = re.compile(
    rf"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{((?:[a-zA-Z_][a-zA-Z0-9_]*={_VALUE.replace('(', '(?:', 1)},?)*)\}})? ([^ ]+)(?: -?[0-9]+)?"
)
_LABELS = re.compile(rf"([a-zA-Z_][a-zA-Z0-9_]*)={_VALUE},?")
_ESCAPED = re.compile(r"\\(.)")
_ESCAPES = {"\\": "\\", "n": "\n", '"': '"'}


def _unescape(value: str) -> str:
    return _ESCAPED.sub(lambda m: _ESCAPES.get(m[1], m[0]), value) if "\\" in value else value


def parse(text: str) -> Samples:
    """Every sample of a text exposition (format 0.0.4), keyed by name and label set.

    A strict line parser: a line that is neither a comment nor a whole sample is a ValueError. It gives
    what prometheus_client's parser gives (tests/unit/test_support.py), about 4 times faster: that
    parser reads character by character (some 27 us a sample), and the polls of a suite run parse
    thousands of scrapes (in the issue-19 target test it took more than half of the test's CPU).
    """
    samples: Samples = {}
    for line in text.split("\n"):
        if not line or line[0] == "#":
            continue
        found = _SAMPLE_LINE.fullmatch(line)
        if found is None:
            raise ValueError(f"not a sample line: {line[:200]!r}")
        name, labels, value = found.groups()
        key = frozenset((k, _unescape(v)) for k, v in _LABELS.findall(labels)) if labels else frozenset()
        samples[(name, key)] = float(value)
    return samples


def sample(samples: Mapping[Key, float], name: str, **labels: str) -> float | None:
    """One sample's value, None when the series is absent."""
    return samples.get((name, frozenset(labels.items())))


def assert_samples(
    actual: Mapping[Key, float], expected: Mapping[Key, float], abs_tol: float = 1e-12
) -> None:
    """The same series with the same values (floats to pytest.approx), or a short readable diff.

    `abs_tol` admits the exporter's documented precision where a test needs it: score sums are kept
    exact to 1e-9 per run, so a tiny score's sum is off by up to 5e-10 relative to the plain float sum.
    """
    missing = sorted(map(str, set(expected) - set(actual)))
    extra = sorted(map(str, set(actual) - set(expected)))
    assert (missing, extra) == ([], []), {"missing": missing[:5], "extra": extra[:5]}
    wrong = {
        key: (value, actual[key])
        for key, value in expected.items()
        if actual[key] != pytest.approx(value, rel=1e-6, abs=abs_tol)  # both: abs alone drops rel
    }
    assert not wrong, sorted((str(key), values) for key, values in wrong.items())[:5]


def benchmark_part(samples: Mapping[Key, float]) -> Samples:
    """Only the benchmark-run series of a scrape (not the exporter's own, nor the benchmark jobs')."""
    return {
        key: value
        for key, value in samples.items()
        if key[0].startswith("runloop_benchmark_") and key[0] != "runloop_benchmark_jobs"
    }


def job_part(samples: Mapping[Key, float]) -> Samples:
    """Only the benchmark-job series of a scrape."""
    return {
        key: value
        for key, value in samples.items()
        if key[0].startswith("runloop_agent_") or key[0] == "runloop_benchmark_jobs"
    }
