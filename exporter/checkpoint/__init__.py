"""The checkpoint: what the runs and the jobs parts hold, kept on disk so that a restart resumes with the
usual probes instead of reading the whole history again (README, "Restarts and the checkpoint").

`store` (files, atomic writes, the writer's lock), `header` (what a checkpoint must match: format,
API, account, settings), `shape` (strict reading), `runs` and `jobs` (each part as JSON values and back),
`keeper` (when they are read and written).
"""

from exporter.checkpoint.header import Identity, digest
from exporter.checkpoint.jobs import JobsCheckpoint
from exporter.checkpoint.keeper import Checkpoints
from exporter.checkpoint.runs import RunsCheckpoint
from exporter.checkpoint.store import Store

__all__ = ["Checkpoints", "Identity", "JobsCheckpoint", "RunsCheckpoint", "Store", "digest"]
