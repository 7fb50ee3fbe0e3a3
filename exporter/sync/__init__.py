"""What to ask Runloop's API each cycle, and how its answers become a snapshot.

The README's "How a sync works" tells the whole story once. The parts: `ledger` (what is held between
syncs), `fullread` (the backfill, a reconcile, a rescan), `probes` (the cheap "what changed" requests),
`lookups` (concurrent per-run GETs), `planner` (the cheapest of those, from measured latency), `names`
(benchmark names) and `engine` (one sync, start to end).
"""

from exporter.sync.config import Grouping, SyncConfig, by_benchmark
from exporter.sync.engine import CombinedSync, IncrementalSync, Sync, snapshot_of
from exporter.sync.ledger import Ledger
from exporter.sync.names import BenchmarkNames
from exporter.sync.records import InvalidRecords

__all__ = [
    "BenchmarkNames",
    "CombinedSync",
    "Grouping",
    "IncrementalSync",
    "InvalidRecords",
    "Ledger",
    "Sync",
    "SyncConfig",
    "by_benchmark",
    "snapshot_of",
]
