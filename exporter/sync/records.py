"""Invalid records: each one counted and logged once, however many syncs see it again."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from exporter.runloop.models import Invalid

log = structlog.get_logger("exporter.sync")


class InvalidRecords:
    """Counts and logs each invalid record once, however many syncs see it again."""

    def __init__(
        self, count: Callable[[str], None], max_remembered: int = 100_000, *, kind: str = "run"
    ) -> None:
        self._count = count
        self._kind = kind  # what the records are, for the log line: "run" or "benchmark job"
        self._seen: set[tuple[str, str]] = set()
        self._max = max_remembered

    def report(self, invalid: Invalid) -> None:
        """Note one skipped record; logs only our description of the problem, never the record."""
        key = (invalid.reason, invalid.run_id or invalid.detail)
        if key in self._seen:
            return
        if len(self._seen) >= self._max:
            self._seen.clear()
        self._seen.add(key)
        self._count(invalid.reason)
        log.warning(
            f"skipped an invalid {self._kind} record",
            reason=invalid.reason,
            **{"run_id" if self._kind == "run" else "job_id": invalid.run_id},
            detail=invalid.detail,
        )

    def duplicate(self, run_id: str) -> None:
        """The same run id came twice in one listing."""
        self.report(Invalid("duplicate_id", run_id, "the same run id came twice in one listing"))
