"""Release-ready: one version everywhere, a wheel that installs and runs, a changelog, checked workflows.

The version lives in pyproject.toml; everything else reads it (the package metadata, --version,
runloop_exporter_build_info, the image label through scripts/version.sh) or must equal it (Chart.yaml's
appVersion, uv.lock). The release workflow refuses a tag that names another version.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import __version__
from exporter.metrics.telemetry import Telemetry
from tests.support.deploy import CHART, Helm, load_yaml, run
from tests.support.tools import REPO, require_tool

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = str(PYPROJECT["project"]["version"])
WORKFLOWS = REPO / ".github" / "workflows"
CHANGELOG = REPO / "CHANGELOG.md"


def workflow(name: str) -> dict[Any, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["steps"])


# --- one version ---------------------------------------------------------------------------------------


def test_the_version_is_a_release_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION), VERSION


def test_package_cli_and_build_info_give_the_pyproject_version() -> None:
    assert __version__ == VERSION
    result = run([sys.executable, "-m", "exporter", "--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"runloop-exporter {VERSION}"
    registry = Telemetry().registry
    labels = {"version": VERSION, "revision": "unknown"}  # a source tree knows no commit (the image does)
    assert registry.get_sample_value("runloop_exporter_build_info", labels) == 1


def test_chart_lock_and_version_script_agree_with_pyproject() -> None:
    assert str(load_yaml(CHART / "Chart.yaml")["appVersion"]) == VERSION
    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    (ours,) = [p for p in lock["package"] if p["name"] == "runloop-exporter"]
    assert ours["version"] == VERSION, "run .tools/uv/bin/uv lock after changing the version"
    script = run(["bash", str(REPO / "scripts" / "version.sh")])
    assert script.returncode == 0, script.stderr
    assert script.stdout == f"{VERSION}\n"


def test_the_image_label_is_built_from_the_version_and_checked_against_the_package() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile
    # The build stage compares VERSION with what the installed package says, and fails on a mismatch.
    assert '[ "$installed" != "runloop-exporter $VERSION" ]' in dockerfile
    smoke = (REPO / "scripts" / "docker-smoke.sh").read_text(encoding="utf-8")
    assert 'version="$(bash scripts/version.sh)"' in smoke
    assert '--build-arg "VERSION=$version"' in smoke
    image = workflow("release.yml")["jobs"]["image"]
    (build,) = [s for s in steps(image) if str(s.get("uses", "")).startswith("docker/build-push-action@")]
    assert "VERSION=${{ needs.check.outputs.version }}" in build["with"]["build-args"]


def test_the_changelog_has_an_entry_for_the_version() -> None:
    headings = re.findall(r"^## \[([^\]]+)\]", CHANGELOG.read_text(encoding="utf-8"), re.MULTILINE)
    assert VERSION in headings


# --- changelog -----------------------------------------------------------------------------------------

SECTIONS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_the_changelog_keeps_a_changelog() -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "# Changelog"
    assert "https://keepachangelog.com/" in text
    releases = re.findall(r"^## (.*)$", text, re.MULTILINE)
    assert releases[0] == "[Unreleased]"
    versions = []
    for heading in releases[1:]:
        match = re.fullmatch(r"\[(\d+\.\d+\.\d+)\]( - \d{4}-\d{2}-\d{2})?", heading)
        assert match, f"a release heading is '## [X.Y.Z] - YYYY-MM-DD', not {heading!r}"
        versions.append(tuple(int(n) for n in match.group(1).split(".")))
    assert versions == sorted(versions, reverse=True), "newest release first"
    for section in re.findall(r"^### (.*)$", text, re.MULTILINE):
        assert section in SECTIONS, f"### {section} is not one of Keep a Changelog's sections"


# --- the built package ---------------------------------------------------------------------------------


def uv() -> str:
    """The uv that ./dev bootstraps in .tools/uv (or one on PATH)."""
    return require_tool("uv", "./dev installs it in .tools/uv")


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = run([uv(), "build", "--out-dir", str(dist), str(REPO)])
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob(f"runloop_exporter-{VERSION}-py3-none-any.whl")
    (sdist,) = dist.glob(f"runloop_exporter-{VERSION}.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "exporter/__init__.py", "exporter/cli.py"} <= names
    assert not any(name.startswith(("tests/", ".venv/", ".tools/", ".github/")) for name in names), names

    venv = tmp_path / "venv"
    created = run([os.path.realpath(sys.executable), "-m", "venv", str(venv)])
    assert created.returncode == 0, created.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    installed = run([uv(), "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)], env=env)
    assert installed.returncode == 0, installed.stderr

    exe = str(venv / "bin" / "runloop-exporter")
    version = run([exe, "--version"], env=env, cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"runloop-exporter {VERSION}"
    once = subprocess.run(
        [exe, "--once", "--demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert once.returncode == 0, once.stderr
    assert re.search(r"^runloop_benchmark_runs\{.*\} \d+", once.stdout, re.MULTILINE), once.stdout[:2000]
    assert f'runloop_exporter_build_info{{revision="unknown",version="{VERSION}"}} 1.0' in once.stdout


# --- workflows -----------------------------------------------------------------------------------------


def test_ci_workflow_runs_what_ci_runs() -> None:
    ci = workflow("ci.yml")
    assert set(ci[True]) >= {"push", "pull_request"}  # YAML 1.1 reads the key `on` as True
    (job,) = ci["jobs"].values()
    assert "bash .ci/run" in [s.get("run") for s in steps(job)]


def test_release_workflow_publishes_a_checked_version() -> None:
    release = workflow("release.yml")
    assert release[True] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    check = "\n".join(str(s.get("run", "")) for s in steps(jobs["check"]))
    assert "scripts/version.sh" in check
    assert '"$GITHUB_REF_NAME" != "v$version"' in check
    assert "bash .ci/run" in check
    pypi = jobs["pypi"]
    assert pypi["permissions"] == {"id-token": "write"}, "trusted publishing, nothing else"
    assert any(str(s.get("uses", "")).startswith("pypa/gh-action-pypi-publish@") for s in steps(pypi))
    (build,) = [s for s in steps(jobs["image"]) if str(s.get("uses", "")).startswith("docker/build-push")]
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True
    chart = "\n".join(str(s.get("run", "")) for s in steps(jobs["chart"]))
    assert "helm package deploy/helm/runloop-exporter" in chart
    assert 'helm push dist/runloop-exporter-*.tgz "oci://ghcr.io/' in chart
    for name in ("pypi", "image", "chart"):
        needs = jobs[name]["needs"]
        assert needs in ("check", "package"), f"{name} publishes only after the checks"


def test_the_published_chart_installs_the_published_image(helm: Helm, tmp_path: Path) -> None:
    """The image job tags and the chart job's default image come from one name, computed once by the check
    job; the chart job writes it into the chart before packaging. Here the check job's own command runs for
    a repository named in mixed case, the chart job's script on a copy of the chart, and helm packages and
    renders it: the default image is the one the release pushes, at the chart's appVersion."""
    jobs = workflow("release.yml")["jobs"]
    assert jobs["check"]["outputs"]["image"] == "${{ steps.image.outputs.image }}"
    (naming,) = [step for step in steps(jobs["check"]) if step.get("id") == "image"]
    output = tmp_path / "github-output"
    named = run(
        ["bash", "-c", naming["run"]],
        env={
            "GITHUB_REPOSITORY": "Acme/Runloop-Exporter",
            "GITHUB_OUTPUT": str(output),
            "PATH": "/usr/bin:/bin",
        },
    )
    assert named.returncode == 0, named.stderr
    image = output.read_text().strip().removeprefix("image=")
    assert image == "ghcr.io/acme/runloop-exporter"

    (build,) = [s for s in steps(jobs["image"]) if str(s.get("uses", "")).startswith("docker/build-push")]
    assert build["with"]["tags"].strip().splitlines() == [
        "${{ needs.check.outputs.image }}:${{ needs.check.outputs.version }}",
        "${{ needs.check.outputs.image }}:latest",
    ]
    (package,) = [s for s in steps(jobs["chart"]) if "helm package" in str(s.get("run", ""))]
    assert package["env"]["IMAGE"] == "${{ needs.check.outputs.image }}"
    script = str(package["run"])
    stamp = 'bash scripts/chart-image.sh deploy/helm/runloop-exporter "$IMAGE"'
    assert script.index(stamp) < script.index("helm package deploy/helm/runloop-exporter")

    chart = tmp_path / "runloop-exporter"
    shutil.copytree(CHART, chart)
    stamped = run(["bash", str(REPO / "scripts" / "chart-image.sh"), str(chart), image])
    assert stamped.returncode == 0, stamped.stderr
    packaged = helm("package", str(chart), "--destination", str(tmp_path / "dist"))
    assert packaged.returncode == 0, packaged.stderr
    (tgz,) = (tmp_path / "dist").glob("runloop-exporter-*.tgz")
    rendered = helm("template", "rel", str(tgz), "--set", "config.demo=true")
    assert rendered.returncode == 0, rendered.stderr
    (deployment,) = [d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{image}:{VERSION}"
    # Only that line changed; a name the registry would refuse is refused before it is written.
    before = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    after = (chart / "values.yaml").read_text(encoding="utf-8").splitlines()
    assert [(a, b) for a, b in zip(before, after, strict=True) if a != b] == [
        ("  repository: runloop-exporter", f"  repository: {image}")
    ]
    refused = run(["bash", str(REPO / "scripts" / "chart-image.sh"), str(chart), "ghcr.io/Acme/x:latest"])
    assert refused.returncode != 0
    assert "is not an image repository" in refused.stderr


def test_actionlint_passes_on_the_workflows() -> None:
    actionlint = require_tool("actionlint", "a dev dependency: ./dev installs it")
    result = run([actionlint, *sorted(str(p) for p in WORKFLOWS.glob("*.yml"))], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
