"""Work done once per pytest run, however many xdist workers need it: a file lock in a folder of the run.

The controller (or a run without xdist) makes the run's folder and hands it to each worker; the first
worker to ask for a piece of work does it under the lock and writes its JSON result there, the others
wait on the lock and read that result. A failure or a skip is written too, so the others report it
instead of trying again. (xdist's own grouping, `xdist_group` with `--dist loadgroup`, silently stopped
grouping under pytest 9.2.)
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

_KEY = "runloop_run_folder"
_FOLDER = pytest.StashKey[Path]()


def make_run_folder(config: pytest.Config) -> None:
    """In the controller, or in a run without xdist: the folder every worker of this run shares."""
    if not hasattr(config, "workerinput"):
        config.stash[_FOLDER] = Path(tempfile.mkdtemp(prefix="runloop-tests-"))


def hand_to_worker(config: pytest.Config, workerinput: dict[str, Any]) -> None:
    """In the controller, for each xdist worker it starts."""
    workerinput[_KEY] = str(config.stash[_FOLDER])


def run_folder(config: pytest.Config) -> Path:
    """The run's shared folder, in the controller and in every worker."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    return Path(workerinput[_KEY]) if workerinput is not None else config.stash[_FOLDER]


def remove_run_folder(config: pytest.Config) -> None:
    """In the controller, when every worker is done."""
    if not hasattr(config, "workerinput") and _FOLDER in config.stash:
        shutil.rmtree(config.stash[_FOLDER], ignore_errors=True)


def owner_pid(config: pytest.Config) -> int:
    """The pid of the run's own pytest process (an xdist worker's parent), for what must not outlive it."""
    return os.getppid() if hasattr(config, "workerinput") else os.getpid()


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing), held by this process for the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def once_per_run(folder: Path, name: str, make: Callable[[], Any]) -> Any:
    """`make()`'s JSON value, made by the first caller of this run and read back by every later one."""
    record = folder / f"{name}.json"
    with locked(folder / f"{name}.lock"):
        if record.exists():
            saved = json.loads(record.read_text())
            if "skip" in saved:
                pytest.skip(saved["skip"])
            if "error" in saved:
                pytest.fail(f"{name} failed in worker {saved['by']}: {saved['error']}", pytrace=False)
            return saved["value"]
        try:
            value = make()
        except pytest.skip.Exception as skip:
            record.write_text(json.dumps({"skip": skip.msg, "by": worker_id()}))
            raise
        except (Exception, pytest.fail.Exception) as err:
            record.write_text(json.dumps({"error": f"{type(err).__name__}: {err}", "by": worker_id()}))
            raise
        record.write_text(json.dumps({"value": value, "by": worker_id()}))
        return value
