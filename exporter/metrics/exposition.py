"""Pre-rendered /metrics bodies.

Rendering thousands of series is the expensive part of a scrape, and a snapshot changes once per sync
while it is scraped many times. So each snapshot is rendered once, and also compressed once: the gzip
stream is flushed after the snapshot's text and its compressor state kept, so that a scrape only
copies that state and compresses the few self-metric lines after it. The result is one valid gzip
stream, whatever the number of benchmarks.

The same bytes serve both formats a scrape may ask for: the snapshot holds only gauges and histograms,
which the Prometheus text format (0.0.4) and OpenMetrics 1.0 spell alike, line for line
(tests/unit/test_exposition.py holds the renderers to that). Only the self-metrics after them, rendered
per scrape, differ (counters' `_total`, and OpenMetrics' closing `# EOF`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics import exposition as openmetrics

from exporter.metrics.agents import JobsSnapshot
from exporter.metrics.aggregate import Snapshot
from exporter.metrics.collector import jobs_registry, snapshot_registry

_GZIP_WBITS = 16 + zlib.MAX_WBITS
TEXT_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_render_openmetrics: Callable[[CollectorRegistry], bytes] = openmetrics.generate_latest  # untyped upstream


@dataclass(frozen=True)
class Rendered:
    """A snapshot's text, and the start of its gzip stream with the compressor state after it."""

    text: bytes
    gzip_head: bytes
    _compressor: zlib._Compress

    @classmethod
    def of(cls, snapshot: Snapshot) -> Rendered:
        """Render and compress a snapshot once."""
        return cls.of_text(generate_latest(snapshot_registry(snapshot)))

    @classmethod
    def of_text(cls, text: bytes) -> Rendered:
        """Compress an already rendered exposition once (the parts' texts joined)."""
        compressor = zlib.compressobj(6, zlib.DEFLATED, _GZIP_WBITS)
        head = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return cls(text, head, compressor)

    def body(self, tail: bytes, *, gzip: bool) -> bytes:
        """The full /metrics body: the snapshot's text followed by `tail`, compressed when asked."""
        return b"".join(self.parts(tail, gzip=gzip))

    def parts(self, tail: bytes, *, gzip: bool) -> tuple[bytes, bytes]:
        """The body in two pieces: the snapshot's part, shared by every scrape (not copied), and the
        small part after it. A slow client then holds a reference, not a copy of megabytes."""
        if not gzip:
            return self.text, tail
        compressor = self._compressor.copy()
        return self.gzip_head, compressor.compress(tail) + compressor.flush()


def exposition(snapshot: Snapshot) -> bytes:
    """The text of a whole snapshot: the runs, then the jobs beside them."""
    return render_runs(snapshot) + (b"" if snapshot.jobs is None else render_jobs(snapshot.jobs))


def render_runs(snapshot: Snapshot) -> bytes:
    """The text of the runs part alone (its jobs, if any, left out)."""
    return generate_latest(snapshot_registry(replace(snapshot, jobs=None)))


def render_jobs(jobs: JobsSnapshot) -> bytes:
    """The text of the jobs part alone."""
    return generate_latest(jobs_registry(jobs))


def render_registry(registry: CollectorRegistry, *, open_metrics: bool = False) -> bytes:
    """A small registry (the self-metrics) in the text format, or in OpenMetrics with its `# EOF`."""
    if open_metrics:
        return _render_openmetrics(registry)
    return generate_latest(registry)
