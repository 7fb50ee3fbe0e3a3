"""Helpers shared by the unit, integration and deploy tests; one home for each.

- `samples`: parse an exposition into samples, pick one, compare two sets, keep the run or job part.
- `runs_oracle`, `jobs_oracle`: the samples /metrics must show, computed straight from raw records.
- `exporter_process`: the real exporter as a subprocess on 127.0.0.1, and its command line.
- `syncing`: syncs built in-process against a simulator, and their snapshots checked against the oracle.
- `waiting`: poll until a condition holds.  `ports`: a free port on 127.0.0.1.
- `logs`: the JSON lines of a log.  `tools`: external tools (skip here, fail under CI).
- `deploy`: the deploy tests' paths, the metric contract, helm and a shape checker.
"""
