"""The Dockerfile, read without Docker (scripts/docker-smoke.sh builds and runs it), and its HEALTHCHECK run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.support.tools import REPO


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", "", (REPO / "Dockerfile").read_text(encoding="utf-8"))
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


INSTRUCTIONS = instructions()


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in INSTRUCTIONS:
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def healthcheck_command() -> list[str]:
    (rest,) = [rest for keyword, rest in INSTRUCTIONS if keyword == "HEALTHCHECK"]
    command: list[str] = json.loads(rest.split(" CMD ", 1)[1])
    return command


def test_base_image_is_an_argument_for_every_stage() -> None:
    first_from = next(i for i, (keyword, _) in enumerate(INSTRUCTIONS) if keyword == "FROM")
    args_before = [rest for keyword, rest in INSTRUCTIONS[:first_from] if keyword == "ARG"]
    assert any(arg.startswith("BASE_IMAGE=") for arg in args_before)
    froms = [rest for keyword, rest in INSTRUCTIONS if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert all(rest.startswith("${BASE_IMAGE}") for rest in froms)


def test_dependencies_are_a_layer_of_their_own() -> None:
    build = stages()[0]
    steps = [f"{keyword} {rest}" for keyword, rest in build]
    lock_copy = next(i for i, step in enumerate(steps) if step.startswith("COPY") and "uv.lock" in step)
    code_copy = next(i for i, step in enumerate(steps) if step.startswith("COPY") and "exporter" in step)
    deps_install = next(i for i, step in enumerate(steps) if "--no-install-project" in step)
    assert lock_copy < deps_install < code_copy
    assert "--frozen" in steps[deps_install]
    assert any("UV_COMPILE_BYTECODE=1" in step for step in steps), "bytecode compiled at build time"


def test_final_stage_runs_as_a_numeric_user_with_labels_and_healthcheck() -> None:
    final = stages()[-1]
    keywords = [keyword for keyword, _ in final]
    (user,) = [rest for keyword, rest in final if keyword == "USER"]
    assert re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user), "a name breaks runAsNonRoot"
    labels = " ".join(rest for keyword, rest in final if keyword == "LABEL")
    for field, arg in (("version", "VERSION"), ("revision", "REVISION"), ("source", "SOURCE")):
        assert f'org.opencontainers.image.{field}="${{{arg}}}"' in labels
    assert "HEALTHCHECK" in keywords
    env = " ".join(rest for keyword, rest in final if keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "nothing to write on a read-only root"
    # The commit reaches runloop_exporter_build_info{revision} (exporter.metrics.telemetry.REVISION_ENV).
    assert "RUNLOOP_EXPORTER_BUILD_REVISION=${REVISION}" in env
    (entrypoint,) = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["runloop-exporter"]


def test_the_checkpoint_directory_belongs_to_the_user_before_it_is_switched_to() -> None:
    """A named volume mounted at /var/lib/runloop-exporter takes the image directory's owner: 65532."""
    final = stages()[-1]
    keywords = [keyword for keyword, _ in final]
    runs = [(i, rest) for i, (keyword, rest) in enumerate(final) if keyword == "RUN"]
    made = [(i, json.loads(rest)) for i, rest in runs if "/var/lib/runloop-exporter" in rest]
    assert len(made) == 1
    index, command = made[0]
    assert index < keywords.index("USER")
    assert command[:2] == ["python3", "-c"]
    assert "os.chown('/var/lib/runloop-exporter', 65532, 65532)" in command[2]
    assert "os.makedirs('/var/lib/runloop-exporter', 0o700)" in command[2]


def test_ca_bundle_is_only_a_build_secret() -> None:
    for keyword, rest in INSTRUCTIONS:
        if keyword in {"COPY", "ADD"}:
            assert "ca" not in rest.split(), rest
            assert "cert" not in rest, rest
        if keyword == "RUN" and "/run/secrets/ca" in rest:
            assert rest.startswith("--mount=type=secret,id=ca")


def test_healthcheck_uses_python_not_curl() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python3", "-c"]
    assert "/healthz" in command[-1]
    assert "curl" not in " ".join(command)
    assert "wget" not in " ".join(command)


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!uv.lock", "!exporter/", "!README.md"} <= set(lines)


class _Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _run_healthcheck(port: int, tmp_path: Path) -> int:
    code = healthcheck_command()[-1]
    env = {"RUNLOOP_EXPORTER_PORT": str(port), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, cwd=tmp_path, capture_output=True, timeout=30
    )
    return done.returncode


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (401, True), (500, False), (503, False)])
def test_healthcheck_command_judges_the_answer(
    health_server: HTTPServer, tmp_path: Path, status: int, healthy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Handler, "status", status)
    port = health_server.server_address[1]
    assert (_run_healthcheck(port, tmp_path) == 0) is healthy


def test_healthcheck_fails_when_nothing_listens(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.server_close()
    assert _run_healthcheck(port, tmp_path) != 0
