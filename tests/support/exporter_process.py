"""Runs the real exporter as a subprocess on 127.0.0.1 and reads what it serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.samples import Samples, parse, sample
from tests.support.waiting import wait_until


@dataclass
class Exporter:
    """One exporter process; `env` and `args` as a user would give them."""

    args: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, tmp: Path) -> Exporter:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP")}
        env.update(self.env)
        self.log_path = tmp / f"exporter-{self.port}.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--address",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.args,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log_path.open("w"),
            text=True,
        )
        wait_until(self._healthy, what="the exporter to serve /healthz")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def get(self, path: str, **kw: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kw)  # type: ignore[arg-type]

    def scrape(self) -> Samples:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return parse(response.text)

    def successes(self) -> float:
        return sample(self.scrape(), "runloop_exporter_syncs_total", result="success") or 0.0

    def failures(self) -> float:
        return sample(self.scrape(), "runloop_exporter_syncs_total", result="failure") or 0.0

    def wait_for_sync(self, after: float | None = None, timeout: float = 20.0) -> Samples:
        """Wait for a successful sync that started after now, and return the scrape that shows it."""
        base = self.successes() if after is None else after
        wait_until(
            lambda: self.successes() >= base + 2 if after is None else self.successes() > base,
            timeout,
            "a sync",
        )
        return self.scrape()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def run_cli(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """The exporter's command line, as a user runs it, with only the given RUNLOOP_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
