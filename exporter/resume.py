"""The checkpoint wired to the settings: which settings shape each part's figures (a checkpoint written
under other values of any of them is not believed), and the keeper serve mode starts from.

Only what changes the figures or how they are grouped counts: buckets, filters, labels and caps. Page
sizes, intervals and timeouts change what a sync costs, not what it finds, so a checkpoint survives
them. Each part has its own file, so turning the jobs off and on leaves the runs' checkpoint good.
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.checkpoint import Checkpoints, Identity, JobsCheckpoint, RunsCheckpoint, Store, digest
from exporter.checkpoint.keeper import Source
from exporter.metrics.telemetry import Telemetry
from exporter.settings import Settings, env_of
from exporter.sync.cycle import JOBS, RUNS

FILTERS = (
    "include_benchmark_ids",
    "exclude_benchmark_ids",
    "include_benchmark_names",
    "exclude_benchmark_names",
)
SHAPING = {
    RUNS: (
        "score_buckets",
        "duration_buckets",
        *FILTERS,
        "metadata_labels",
        "metadata_label_max_values",
        "purpose_label",
    ),
    JOBS: ("score_buckets", *FILTERS, "agent_model_max_values", "exception_type_max_values"),
}
"""The settings that shape each part's figures."""


UNORDERED = frozenset({"include_benchmark_ids", "exclude_benchmark_ids"})
"""Settings whose order means nothing (sets of ids), digested sorted; the metadata labels' order is the
order of the labels in a group's key, so it counts."""


def fingerprints(settings: Settings) -> dict[str, dict[str, str]]:
    """Each part's shaping settings, as digests by environment variable."""

    def value(name: str) -> object:
        found = getattr(settings, name)
        return sorted(found) if name in UNORDERED else found

    return {part: {env_of(name): digest(value(name)) for name in names} for part, names in SHAPING.items()}


def identity(settings: Settings, base_url: str, key: Callable[[], str]) -> Identity:
    """What a checkpoint must have been written for, in this process."""
    return Identity(base_url=base_url, key=key, settings=fingerprints(settings))


def checkpoints(
    settings: Settings,
    base_url: str,
    key: Callable[[], str],
    telemetry: Telemetry,
    *,
    runs: RunsCheckpoint | None,
    jobs: JobsCheckpoint | None,
) -> Checkpoints | None:
    """The keeper of the parts that can be kept, or None without a state directory. The runs are not
    kept in full mode (every sync reads them in full anyway)."""
    if settings.state_dir is None:
        return None
    sources: dict[str, Source] = {}
    if runs is not None and settings.sync_mode == "incremental":
        sources[RUNS] = runs
    if jobs is not None:
        sources[JOBS] = jobs
    return Checkpoints(
        Store(settings.state_dir),
        identity(settings, base_url, key),
        sources,
        telemetry,
        interval_s=settings.checkpoint_interval_seconds,
    )
