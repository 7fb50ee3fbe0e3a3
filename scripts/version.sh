#!/usr/bin/env bash
# Prints the exporter's version from its one source, pyproject.toml. The image labels (docker-smoke.sh,
# the release workflow) and the release's tag check read it here; the package, --version and
# runloop_exporter_build_info read it from the installed metadata; Chart.yaml's appVersion must equal it
# (tests/deploy/test_release.py checks they all agree).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])'
