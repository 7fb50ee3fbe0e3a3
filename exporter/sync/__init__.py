"""What to ask Runloop's API each cycle, and how its answers become a snapshot.

The README's "How a sync works" tells the whole story once. The parts: `ledger` (what is held between
syncs), `fullread` (the backfill, a reconcile, a rescan), `probes` (the cheap "what changed" requests),
`lookups` (concurrent per-run GETs), `planner` (the cheapest of those, from measured latency), `names`
(benchmark names), `idset` (duplicates in a full read), `engine` (one sync of the runs, start to end),
`config` (a sync's settings), `records` (invalid records, counted once), `jobpages` and `jobs` (the
benchmark-jobs sync beside it), `withjobs` (the two together, jobs isolated) and `job` (one scheduled
cycle and its `Outcome`).
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
