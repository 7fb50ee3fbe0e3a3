"""Samples of a Prometheus exposition, keyed by name and label set, and how tests compare them."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset[tuple[str, str]]]
Samples = dict[Key, float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and label set."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
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
