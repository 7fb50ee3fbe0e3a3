"""Which benchmarks are exported: include and exclude by id and by name.

A run is exported when its benchmark passes every filter that is set:

- `include_ids`: the id is one of them (these are also listed one by one with the API's
  `benchmark_id` filter, so other benchmarks cost no request at all);
- `exclude_ids`: the id is none of them (exclude wins over include);
- `include_names`: the benchmark's name matches the regex in full (`re.fullmatch`, anchored like
  Prometheus relabelling: `eval-.*` rather than `eval-`);
- `exclude_names`: the name does not match the regex in full.

Two cases have to be decided without a name or an id, and are decided so that an exporter given a
filter and another given its opposite (include vs exclude of the same list or regex) export every run
exactly once between them:

- a run with no benchmark_id (a benchmark job's run) passes only when no include filter is set;
- a benchmark whose name Runloop cannot give (404, or no name) never matches a name regex: it fails
  `include_names` and passes `exclude_names`. A name lookup that fails for a transient reason fails
  the sync instead (see `BenchmarkNames.name_of`), so a run is never filed by a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

NameOf = Callable[[str], str | None]
"""Looks up a benchmark's name by id; None when it has none."""


@dataclass(frozen=True, slots=True)
class BenchmarkFilter:
    """Include and exclude lists; the empty filter exports everything."""

    include_ids: frozenset[str] = frozenset()
    exclude_ids: frozenset[str] = frozenset()
    include_names: re.Pattern[str] | None = None
    exclude_names: re.Pattern[str] | None = None

    @property
    def needs_names(self) -> bool:
        """True when a decision needs the benchmark's name (a lookup, cached)."""
        return self.include_names is not None or self.exclude_names is not None

    @property
    def is_empty(self) -> bool:
        """True when every run passes."""
        return not (self.include_ids or self.exclude_ids or self.needs_names)

    def listed_ids(self) -> list[str]:
        """The benchmarks to list one by one with the API's filter (sorted, so request order is stable)."""
        return sorted(self.include_ids - self.exclude_ids)

    def admits(self, benchmark_id: str | None, name_of: NameOf) -> bool:
        """Whether runs of this benchmark are exported; looks the name up only when a name filter needs it."""
        if benchmark_id is None:
            return not self.include_ids and self.include_names is None
        if self.include_ids and benchmark_id not in self.include_ids:
            return False
        if benchmark_id in self.exclude_ids:
            return False
        if not self.needs_names:
            return True
        name = name_of(benchmark_id)
        if self.include_names is not None and (name is None or not self.include_names.fullmatch(name)):
            return False
        return not (
            self.exclude_names is not None and name is not None and self.exclude_names.fullmatch(name)
        )


def compile_name_filter(pattern: str | None) -> re.Pattern[str] | None:
    """A name regex from a setting; empty means unset. Raises ValueError with re's own explanation."""
    if pattern is None or pattern == "":
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
