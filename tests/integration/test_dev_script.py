"""`./dev` is idempotent and safe to run beside itself, also when python3 is a pyenv-style shim.

Each test works on a copy of the project in a temporary folder with its own .venv (sharing uv's cache),
so the suite's own environment is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.samples import parse, sample
from tests.support.waiting import Child, http_get, wait_until

REPO = Path(__file__).resolve().parents[2]
# What `./dev` needs to set up the environment and run the exporter.
PROJECT_FILES = ("dev", "pyproject.toml", "uv.lock", "README.md", "exporter")

pytestmark = pytest.mark.slow


def real_python() -> str:
    """The interpreter behind this test run, with every symlink (the suite's .venv) resolved."""
    return os.path.realpath(sys.executable)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project without .venv; the uv of the work tree is reused when it is there."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / name)
    if (REPO / ".tools" / "uv" / "bin" / "uv").exists():
        (copy / ".tools").mkdir()
        (copy / ".tools" / "uv").symlink_to(REPO / ".tools" / "uv")
    return copy


@pytest.fixture
def plain_path(tmp_path: Path) -> str:
    """PATH where python3 is a symlink to the real interpreter, as with a system Python."""
    bin_dir = tmp_path / "plain-bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(real_python())
    return f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"


@pytest.fixture
def shim_path(tmp_path: Path) -> str:
    """PATH where python3 is a script that execs the real interpreter, like pyenv's and asdf's shims."""
    bin_dir = tmp_path / "shim-bin"
    bin_dir.mkdir()
    shim = bin_dir / "python3"
    shim.write_text(f'#!/bin/sh\nexec "{real_python()}" "$@"\n')
    shim.chmod(0o755)
    return f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"


def dev_env(path: str) -> dict[str, str]:
    """The environment of a fresh shell: none of the suite's own virtualenv settings leak in."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    env["PATH"] = path
    return env


def dev(project: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(project / "dev"), *args],
        env=dev_env(path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def venv_state(project: Path) -> dict[str, tuple[int, int]]:
    """Inode and mtime (ns) of .venv and the folders an install, uninstall or rebuild changes."""
    venv = project / ".venv"
    paths = [venv, venv / "bin", *venv.glob("lib/python3*/site-packages")]
    assert len(paths) == 3, paths
    return {str(p.relative_to(project)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def test_a_second_call_touches_nothing_even_under_a_shim(
    project: Path, plain_path: str, shim_path: str
) -> None:
    first = dev(project, plain_path, "run", "--version")
    assert first.stdout.startswith("runloop-exporter ")
    before = venv_state(project)
    time.sleep(0.05)  # so that a rewrite would show in the mtimes
    second = dev(project, shim_path, "run", "--version")
    assert second.stdout == first.stdout
    assert venv_state(project) == before


def test_concurrent_calls_after_a_change_both_succeed(project: Path, shim_path: str) -> None:
    dev(project, shim_path, "run", "--version")
    (project / ".venv" / ".dev-synced").unlink()  # as if uv.lock had changed
    calls = [
        subprocess.Popen(
            [str(project / "dev"), "run", "--version"],
            env=dev_env(shim_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    for call in calls:
        out, _ = call.communicate(timeout=600)
        assert call.returncode == 0, out
        assert out.startswith("runloop-exporter ")


@dataclass(frozen=True)
class Demo:
    """`./dev demo` running: its /metrics URL and the process, for a wait to watch."""

    url: str
    child: Child


@pytest.fixture
def demo(project: Path, shim_path: str, tmp_path: Path) -> Iterator[Demo]:
    """`./dev demo` running in the copy, serving; its process group is stopped after."""
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(project / "dev"), "demo", "--address", "127.0.0.1", "--port", str(port)],
            env=dev_env(shim_path),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Demo(f"http://127.0.0.1:{port}/metrics", Child("./dev demo", proc, log))
    try:
        wait_until(lambda: serves(running.url), 300, "./dev demo serves /metrics", watch=running.child)
        yield running
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def serves(url: str) -> bool:
    """The exposition with benchmark runs in it; a refused connection is not yet."""
    response = http_get(url, timeout=5)
    return response.status_code == 200 and "runloop_benchmark_runs{" in response.text


def successful_syncs(url: str) -> float:
    return sample(parse(http_get(url, timeout=5).text), "runloop_exporter_syncs_total", result="success") or 0


def test_a_sync_while_the_demo_runs_leaves_it_serving(project: Path, shim_path: str, demo: Demo) -> None:
    before = venv_state(project)
    stamp = project / ".venv" / ".dev-synced"
    synced = stamp.read_text()
    # A change to pyproject.toml makes the next call sync, as a `git pull` that touched it would.
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# changed\n")
    dev(project, shim_path, "run", "--version")
    assert stamp.read_text() != synced, "the second call did not sync"
    assert (project / ".venv" / "bin" / "runloop-exporter").exists()
    assert venv_state(project)[".venv"] == before[".venv"], ".venv was rebuilt"
    assert serves(demo.url)
    synced_before = successful_syncs(demo.url)
    wait_until(
        lambda: successful_syncs(demo.url) > synced_before, 30, "a demo sync (every 5 s)", watch=demo.child
    )
    assert serves(demo.url)  # a demo sync later, it still serves


@pytest.mark.parametrize("workers", ["1", ""])
def test_dev_test_runs_in_parallel_on_the_workers_it_is_told(workers: str) -> None:
    """The README's `./dev test`: at least 4 workers by default, `RUNLOOP_TEST_WORKERS=N` wins, even 1;
    idle workers steal tests; the 15 slowest are listed."""
    env = {k: v for k, v in os.environ.items() if k != "RUNLOOP_TEST_WORKERS"}
    if workers:
        env["RUNLOOP_TEST_WORKERS"] = workers
    result = subprocess.run(
        [str(REPO / "dev"), "test", "tests/unit/test_idset.py", "-p", "no:cacheprovider", "-v"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    created = [line for line in result.stdout.splitlines() if line.startswith("created: ")]
    assert len(created) == 1, result.stdout
    count = int(created[0].removeprefix("created: ").split("/")[0])
    cores = len(os.sched_getaffinity(0))  # what nproc counts
    assert count == (int(workers) if workers else max(4, 3 * cores)), created
    assert "scheduling tests via WorkStealingScheduling" in result.stdout
    assert "slowest 15 durations" in result.stdout
