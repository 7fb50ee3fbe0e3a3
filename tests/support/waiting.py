"""One way to wait: poll a check until it holds, never for a fixed time, watching the child processes it needs.

"Not yet" is a check that returns False or raises NotYet (a refused connection, a timeout, a 503 while a
process starts, a body that is not JSON); anything else is a real failure and ends the wait at once. A
watched child that exits ends the wait at once with the tail of its log; a timeout fails with those tails
too. The timeout only bounds a broken run: it is never a speed assertion.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

TAIL_LINES = 40


class NotYet(Exception):  # noqa: N818 - a state, not an error: the wait goes on
    """What a check waits for is not there yet; wait_until polls again."""


class Process(Protocol):
    """What a wait needs of a child process (subprocess.Popen has it)."""

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...


def log_tail(name: str, log: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a process's log, headed by its name."""
    try:
        text = log.read_text(errors="replace")
    except OSError as err:
        return f"--- {name}: no log ({err}) ---"
    return f"--- {name} (last lines of {log.name}) ---\n" + "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """Whether a process that need not be our child exists and is no zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: it exists
    return state != "Z"


class Pid:
    """A process that is not our child (another worker's), watched by its pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not pid_alive(self.pid):
            self.returncode = -1  # not our child: its exit status is not ours to read
        return self.returncode


@dataclass
class Child:
    """A child process the tests wait on, and the file its output goes to (what a failure shows)."""

    name: str
    proc: Process
    log: Path

    def tail(self, lines: int = TAIL_LINES) -> str:
        return log_tail(self.name, self.log, lines)

    def exited(self) -> str | None:
        """Why the child is gone, with its log tail; None while it runs."""
        if self.proc.poll() is None:
            return None
        return f"{self.name} exited with {self.proc.returncode}\n{self.tail()}"


def wait_until(
    check: Callable[[], object],
    timeout: float = 20.0,
    what: str = "condition",
    *,
    interval: float = 0.1,
    on_timeout: Callable[[], str] | None = None,
    watch: Child | Iterable[Child] = (),
) -> None:
    """Poll until `check()` is truthy; False or NotYet is "not yet".

    Polls start 10 ms apart and back off to `interval`: a short wait ends as soon as it can, a long one
    does not burn the CPU the processes it waits on need. `on_timeout` adds context to the failure.
    """
    children = [watch] if isinstance(watch, Child) else list(watch)
    deadline = time.monotonic() + timeout
    pause = min(0.01, interval)
    last = ""
    while True:
        for child in children:
            gone = child.exited()
            if gone is not None:
                raise AssertionError(f"while waiting for {what}: {gone}")
        try:
            if check():
                return
            last = ""
        except NotYet as err:
            last = str(err)
        if time.monotonic() >= deadline:
            break
        time.sleep(pause)
        pause = min(pause * 2, interval)
    parts = [f"timed out after {timeout:g} s waiting for {what}"]
    if last:
        parts.append(f"last answer: {last}")
    if on_timeout is not None:
        parts.append(on_timeout())
    parts += [child.tail() for child in children]
    raise AssertionError("\n".join(parts))


@functools.cache
def _client() -> httpx.Client:
    """One client for every probe (httpx clients may be shared between threads): httpx.get() builds a
    client, and with it an SSL context, on every call (~30 ms of CPU), most of a core for a fast poll."""
    return httpx.Client(timeout=10, trust_env=False)


def http_get(url: str, *, timeout: float = 10, **kwargs: Any) -> httpx.Response:
    """GET over the shared client; a refused connection, a timeout or a 503 (starting up) is NotYet."""
    try:
        response = _client().get(url, timeout=timeout, **kwargs)
    except httpx.TransportError as err:
        raise NotYet(f"GET {url}: {type(err).__name__}: {err}") from err
    if response.status_code == 503:
        raise NotYet(f"GET {url}: 503 {response.text[:200]!r}")
    return response


def get_json(url: str, *, timeout: float = 10) -> Any:
    """The JSON body of GET url, whatever the status (Prometheus explains a 4xx in JSON).

    A refused connection, a timeout, a 503 or a body that is not JSON (Prometheus answers a plain-text
    "Service Unavailable" while it starts) is NotYet.
    """
    response = http_get(url, timeout=timeout)
    try:
        return response.json()
    except json.JSONDecodeError as err:
        raise NotYet(f"GET {url}: {response.status_code}, not JSON: {response.text[:200]!r}") from err


def answers(url: str, *, timeout: float = 2) -> bool:
    """True when GET url answers 200: a readiness probe (Prometheus /-/ready, the exporter /healthz)."""
    return http_get(url, timeout=timeout).status_code == 200


def wait_ready(child: Child, url: str, timeout: float = 60.0) -> None:
    """Wait until a child's own readiness endpoint answers 200; fail at once if the child exits."""
    wait_until(lambda: answers(url), timeout, f"{child.name} to answer {url}", watch=child)
