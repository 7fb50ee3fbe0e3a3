"""The chart's container settings, given to the real exporter: it accepts them and serves.

The environment and arguments come from `helm template`, so a setting the chart spells differently from
the exporter (or a value the exporter rejects) fails here rather than as a crash-looping pod. Paths inside
the pod are mapped to temporary files, the API to the simulator, and the listen address to 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.simulator import Simulator, World
from tests.support.deploy import Helm, ci_values
from tests.support.ports import free_port
from tests.support.waiting import Child, wait_ready, wait_until

API_KEY = "chart-key"
WAIT_S = 60.0


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    world = World(seed=2)
    world.add_benchmark("bmd_chartRun0001", "chart run")
    world.add_run(
        benchmark_id="bmd_chartRun0001", state="completed", start_ms=0, duration_ms=60_000, score=0.5
    )
    with Simulator(world, api_key=API_KEY) as sim:
        yield sim


def _status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""
    except OSError:
        return 0, ""


def _run_as_the_pod_would(helm: Helm, values: str, simulator: Simulator, tmp_path: Path) -> None:
    manifests = helm.render(ci_values(values))
    (box,) = manifests.one("Deployment")["spec"]["template"]["spec"]["containers"]
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP")}
    for item in box["env"]:
        value = item["value"]
        if item["name"] == "RUNLOOP_API_KEY_FILE":
            assert value.startswith("/etc/runloop-exporter/secret/")
            value = str(key_file)
        elif item["name"] == "RUNLOOP_BASE_URL":
            value = simulator.url
        elif item["name"] == "RUNLOOP_EXPORTER_PORT":
            assert value == str(box["ports"][0]["containerPort"])
            value = str(port)
        elif item["name"] == "SSL_CERT_FILE":  # a file of the pod's extra volume
            continue
        elif item["name"] == "RUNLOOP_EXPORTER_STATE_DIR":  # the pod's checkpoint volume
            mounts = {m["name"]: m["mountPath"] for m in box["volumeMounts"]}
            assert value == mounts["state"]
            value = str(tmp_path / "state")
        env[item["name"]] = value
    env["RUNLOOP_EXPORTER_ADDRESS"] = "127.0.0.1"  # the pod listens on all addresses; a test only here
    log_path = tmp_path / "exporter.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", *box.get("args", [])],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"

        # The pod's own readiness probe, as the kubelet would ask it.
        wait_ready(Child("exporter", proc, log_path), base + box["readinessProbe"]["httpGet"]["path"], WAIT_S)
        assert _status(base + box["livenessProbe"]["httpGet"]["path"])[0] == 200
        code, metrics = _status(base + "/metrics")
        assert code == 200
        assert "runloop_up 1.0" in metrics
        assert "runloop_benchmark_info{" in metrics
        if "RUNLOOP_EXPORTER_STATE_DIR" in env:  # the checkpoint is written where the pod mounts its volume
            wait_until((tmp_path / "state" / "runs.json.gz").exists, WAIT_S, "the checkpoint")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("values", ["default", "extras", "demo"])
def test_exporter_accepts_the_chart_settings(
    helm: Helm, simulator: Simulator, tmp_path: Path, values: str
) -> None:
    _run_as_the_pod_would(helm, values, simulator, tmp_path)
