"""A real Prometheus on 127.0.0.1 with a config of the test's own, and its HTTP API.

Started with a temporary TSDB and waited on through its own readiness endpoint (/-/ready): before that it
answers a plain-text 503, which is no answer to a query.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port
from tests.support.waiting import Child, get_json, wait_ready


@dataclass
class PrometheusApi:
    """Prometheus' HTTP API at `url` (a process of this test's, or of another's)."""

    url: str

    def api(self, path: str, what: str = "") -> Any:
        """The `data` of an API answer. NotYet while Prometheus cannot answer (refused, 503, not JSON);
        an answer that is an error (a bad query, say) fails the assertion."""
        body = get_json(f"{self.url}{path}")
        assert body.get("status") == "success", f"{what or path}: {body.get('error', body)}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        path = "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        result: list[dict[str, Any]] = self.api(path, expr)["result"]
        return result

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """The alerts of one rule, pending or firing."""
        alerts: list[dict[str, Any]] = self.api("/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == name]


@dataclass
class Prometheus(PrometheusApi):
    """One Prometheus process of this test's."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def child(self) -> Child:
        """The process, for a wait to watch."""
        return Child("prometheus", self.proc, self.log)

    @classmethod
    def start(cls, binary: str, config: dict[str, Any], folder: Path, *, timeout: float = 60.0) -> Prometheus:
        """Write the config into `folder`, start Prometheus on a free port and wait until it is ready."""
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        log = folder / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        prometheus = cls(f"http://127.0.0.1:{port}", proc, log)
        try:
            wait_ready(prometheus.child, f"{prometheus.url}/-/ready", timeout)
        except BaseException:
            prometheus.stop()
            raise
        return prometheus

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
