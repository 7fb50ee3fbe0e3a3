"""Helpers shared by the unit, integration and deploy tests; one home for each.

- `samples`: parse an exposition into samples, pick one, compare two sets, keep the run or job part.
- `runs_oracle`, `jobs_oracle`: the samples /metrics must show, computed straight from raw records.
- `exporter_process`: the real exporter as a subprocess on 127.0.0.1, and its command line.
- `prometheus`: a real Prometheus on 127.0.0.1, waited on through /-/ready, and its HTTP API.
- `e2e_stack`: the e2e tests' simulator, exporter and Prometheus, in a process of its own, once per run.
- `once`: the run's folder shared by the xdist workers, and work done once per run under its lock.
- `syncing`: syncs built in-process against a simulator, and their snapshots checked against the oracle.
- `waiting`: the one way to wait: poll until a check holds, watching child processes.
- `ports`: a free port on 127.0.0.1.
- `logs`: the JSON lines of a log.  `tools`: external tools (skip here, fail under CI).
- `deploy`: the deploy tests' paths, the metric contract, helm and a shape checker.
"""
