"""Runs the real exporter as a subprocess on 127.0.0.1 and reads what it serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.samples import Samples, parse, sample
from tests.support.waiting import Child, NotYet, wait_until


@dataclass(frozen=True)
class SyncReading:
    """What one scrape says of the run syncs so far: how many succeeded and failed, when the last success
    ended (wall clock), and the count and sum of their durations (every sync, successful or not)."""

    successes: float
    failures: float
    last_success: float
    count: float
    total_s: float

    @classmethod
    def of(cls, scraped: Samples) -> SyncReading:
        def value(name: str, **labels: str) -> float:
            return sample(scraped, name, **labels) or 0.0

        return cls(
            value("runloop_exporter_syncs_total", result="success"),
            value("runloop_exporter_syncs_total", result="failure"),
            value("runloop_exporter_last_successful_sync_timestamp_seconds"),
            value("runloop_exporter_sync_duration_seconds_count"),
            value("runloop_exporter_sync_duration_seconds_sum"),
        )

    @property
    def settled(self) -> bool:
        """Every sync whose duration is counted is counted as a success or a failure too (a sync records
        its duration, then its result, then its end: a scrape may fall in between)."""
        return self.count == self.successes + self.failures

    def one_success_since(self, before: SyncReading, *, started_after: float) -> bool:
        """Whether exactly one sync was recorded since `before`, a success, that started after
        `started_after` (its end less its duration). Both readings must be settled and the last success
        must have moved; anything else (two syncs between the polls, a scrape mid-record) is not
        attributed, and the caller waits for two successes instead."""
        one = (
            self.settled
            and before.settled
            and self.count == before.count + 1
            and self.successes == before.successes + 1
            and self.last_success != before.last_success
        )
        return one and self.last_success - (self.total_s - before.total_s) > started_after


@dataclass
class Exporter:
    """One exporter process; `env` and `args` as a user would give them."""

    args: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    log_path: Path | None = None
    # One client per exporter: httpx.get() builds a client (and an SSL context, ~30 ms of CPU) per call.
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10, trust_env=False), repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, tmp: Path) -> Exporter:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP")}
        env.update(self.env)
        self.log_path = tmp / f"exporter-{self.port}.log"
        with self.log_path.open("w") as log:
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
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        wait_until(self._healthy, 60, "the exporter to serve /healthz", watch=self.child)
        return self

    @property
    def child(self) -> Child:
        """The process, for a wait to watch: it fails at once, with the log's tail, if the exporter exits."""
        assert self.proc is not None, "not started"
        assert self.log_path is not None
        return Child(f"exporter :{self.port}", self.proc, self.log_path)

    def _healthy(self) -> bool:
        try:
            return self.get("/healthz", timeout=2).status_code == 200
        except httpx.TransportError as err:
            raise NotYet(f"/healthz: {type(err).__name__}") from err

    def wait_until(self, check: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
        """tests.support.waiting.wait_until, watching this exporter."""
        wait_until(check, timeout, what, watch=self.child)

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def get(self, path: str, **kw: object) -> httpx.Response:
        kw.setdefault("timeout", 10)
        return self.http.get(f"{self.url}{path}", **kw)  # type: ignore[arg-type]

    def scrape(self) -> Samples:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return parse(response.text)

    def successes(self) -> float:
        return sample(self.scrape(), "runloop_exporter_syncs_total", result="success") or 0.0

    def failures(self) -> float:
        return sample(self.scrape(), "runloop_exporter_syncs_total", result="failure") or 0.0

    def wait_for_sync(self, after: float | None = None, timeout: float = 20.0) -> Samples:
        """Wait for a successful sync that started after now (with `after`: for more successes than
        that), and return the scrape that shows it.

        Two more successes always include one that started after now (the first may have been under way).
        Most waits end a sync sooner: when one success, and nothing else, was recorded between two polls,
        its start is its end less its duration (see SyncReading), so the next sync to start will do.
        """
        if after is not None:
            self.wait_until(lambda: self.successes() > after, timeout, "a sync")
            return self.scrape()
        since = time.time()
        first = SyncReading.of(self.scrape())
        base = [first]  # the last reading with every sync it counts wholly recorded

        def synced() -> bool:
            reading = SyncReading.of(self.scrape())
            if reading.successes >= first.successes + 2 or reading.one_success_since(
                base[0], started_after=since
            ):
                return True
            if reading.settled:
                base[0] = reading
            return False

        self.wait_until(synced, timeout, "a sync")
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
        self.http.close()
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
