#!/usr/bin/env bash
# Builds the container image and proves it runs: read-only root filesystem, non-root, demo mode on
# 127.0.0.1 with host networking; /healthz, /readyz and /metrics answer; Docker's HEALTHCHECK turns
# healthy. Prints the image size. Cleans up the container, and the Docker daemon if it started one.
#
#   bash scripts/docker-smoke.sh            # build from the work tree and check
#
# Environment:
#   DOCKER          docker CLI with BuildKit (default: /usr/bin/docker when present, else docker)
#   DOCKER_HOST     an existing daemon; if none answers and dockerd is installed (root), one is started
#                   without a bridge (--bridge=none, no iptables) with its data under .tools/docker
#   BASE_IMAGE      base image for the build (default: local/python-base:bookworm, made with mmdebstrap
#                   when missing, since Docker Hub may be unreachable)
#   IMAGE           tag to build (default: runloop-exporter:smoke)
#   CA_BUNDLE       CA bundle handed to the build as a BuildKit secret (default: $PIP_CERT, else
#                   /etc/ssl/certs/ca-certificates.crt when it exists); never stored in the image
# Needs: docker (docker.io), and mmdebstrap for the default base image.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

IMAGE="${IMAGE:-runloop-exporter:smoke}"
BASE_IMAGE="${BASE_IMAGE:-local/python-base:bookworm}"
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
CA_BUNDLE="${CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"

work="$(mktemp -d)"
container=""
volume=""
daemon_pid=""
run_dir=""
say() { echo "docker-smoke: $*"; }
die() { echo "docker-smoke: FAILED: $*" >&2; exit 1; }
cleanup() {
  if [ -n "$container" ]; then
    "$DOCKER" rm -f "$container" >/dev/null 2>&1 || true
  fi
  if [ -n "$volume" ]; then
    "$DOCKER" volume rm -f "$volume" >/dev/null 2>&1 || true
  fi
  if [ -n "$daemon_pid" ]; then
    kill "$daemon_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  if [ -n "$run_dir" ]; then
    # dockerd leaves its network namespace mounted in its exec root.
    awk -v dir="$run_dir/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mnt; do
      umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    done
    rm -rf "$run_dir" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- tools: Debian's docker.io (dockerd and a CLI with BuildKit) and mmdebstrap, when root can install them
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
  && { [ ! -x /usr/bin/docker ] || ! command -v dockerd >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1; }; then
  say "installing docker.io and mmdebstrap"
  # policy-rc.d answering 101 keeps the package from starting its own dockerd, which would make a
  # bridge on a private range; the daemon this script starts has none.
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  status=0
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io mmdebstrap; } \
    >"$work/apt.log" 2>&1 || status=$?
  if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  [ "$status" = 0 ] || { tail -n 20 "$work/apt.log" >&2; die "apt-get install docker.io mmdebstrap failed"; }
  [ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
fi
command -v "$DOCKER" >/dev/null 2>&1 || die "no docker CLI (apt-get install -y docker.io)"

# --- a daemon -----------------------------------------------------------------------------------------
if ! "$DOCKER" info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || die "no Docker daemon answers and dockerd is not installed"
  [ "$(id -u)" = 0 ] || die "no Docker daemon answers, and starting one needs root"
  state="$repo/.tools/docker"
  # Short paths: the daemon's unix sockets must fit in 108 bytes.
  run_dir="$(mktemp -d /tmp/rle-docker.XXXXXX)"
  mkdir -p "$state"
  setsid dockerd --bridge=none --iptables=false --ip6tables=false \
    --data-root "$state/data" --exec-root "$run_dir/exec" --pidfile "$run_dir/dockerd.pid" \
    -H "unix://$run_dir/docker.sock" >"$work/dockerd.log" 2>&1 </dev/null &
  daemon_pid=$!
  export DOCKER_HOST="unix://$run_dir/docker.sock"
  for _ in $(seq 100); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.2; done
  "$DOCKER" info >/dev/null 2>&1 || { tail -n 20 "$work/dockerd.log" >&2; die "dockerd did not start"; }
  say "started dockerd (pid $daemon_pid)"
fi

# --- the base image -----------------------------------------------------------------------------------
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  [ "$BASE_IMAGE" = "local/python-base:bookworm" ] || die "base image $BASE_IMAGE is not available"
  command -v mmdebstrap >/dev/null 2>&1 || die "no $BASE_IMAGE and no mmdebstrap to make it (apt-get install -y mmdebstrap)"
  sources=/etc/apt/sources.list.d/debian.sources
  [ -f "$sources" ] || sources="deb http://deb.debian.org/debian bookworm main"
  say "making $BASE_IMAGE with mmdebstrap"
  mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$work/rootfs.tar" "$sources" >"$work/mmdebstrap.log" 2>&1 \
    || { tail -n 20 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
  "$DOCKER" import "$work/rootfs.tar" "$BASE_IMAGE" >/dev/null
fi

# --- build --------------------------------------------------------------------------------------------
version="$(bash scripts/version.sh)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
source_url="$(git remote get-url origin 2>/dev/null || true)"
secret=()
if [ -s "$CA_BUNDLE" ]; then secret=(--secret "id=ca,src=$CA_BUNDLE"); fi
say "building $IMAGE on $BASE_IMAGE"
DOCKER_BUILDKIT=1 "$DOCKER" build --network host "${secret[@]}" \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url" \
  -t "$IMAGE" . >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; die "docker build failed"; }

inspect() { "$DOCKER" image inspect "$IMAGE" --format "$1"; }
user="$(inspect '{{.Config.User}}')"
[[ "$user" =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] || die "image user is '$user', not a numeric non-root uid"
[ "$(inspect '{{index .Config.Labels "org.opencontainers.image.revision"}}')" = "$revision" ] \
  || die "OCI revision label missing"
[ "$(inspect '{{index .Config.Labels "org.opencontainers.image.version"}}')" = "$version" ] \
  || die "OCI version label missing"

# --- run ----------------------------------------------------------------------------------------------
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The port goes in the environment (not --port) so that the image's HEALTHCHECK asks the same port.
container="$("$DOCKER" run -d --read-only --network host --cap-drop ALL --security-opt no-new-privileges \
  --health-interval 2s --health-start-period 2s --health-timeout 5s \
  -e RUNLOOP_EXPORTER_PORT="$port" "$IMAGE" --demo --address 127.0.0.1)"

fetch() {  # fetch PATH -> prints "STATUS" then the body into $work/body
  python3 - "http://127.0.0.1:$port$1" "$work/body" <<'EOF'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as err:
    status, body = err.code, err.read()
except OSError:
    status, body = 0, b""
open(sys.argv[2], "wb").write(body)
print(status)
EOF
}
wait_for() {  # wait_for PATH: until it answers 200, 60 s at most
  for _ in $(seq 120); do
    [ "$(fetch "$1")" = 200 ] && return 0
    [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$container")" = true ] || break
    sleep 0.5
  done
  "$DOCKER" logs "$container" 2>&1 | tail -n 20 >&2
  die "$1 did not answer 200"
}
wait_for /healthz
wait_for /readyz
[ "$(fetch /metrics)" = 200 ] || die "/metrics did not answer 200"
for series in 'runloop_up 1' 'runloop_benchmark_runs{' 'runloop_benchmark_info{' 'runloop_exporter_build_info{'; do
  grep -qF "$series" "$work/body" || die "/metrics has no '$series'"
done
for _ in $(seq 60); do
  health="$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$container")"
  [ "$health" = healthy ] && break
  [ "$health" = unhealthy ] && die "HEALTHCHECK says unhealthy"
  sleep 0.5
done
[ "$health" = healthy ] || die "HEALTHCHECK never turned healthy ($health)"
"$DOCKER" exec "$container" sh -c 'touch /probe 2>/dev/null' && die "the root filesystem is writable"
[ "$("$DOCKER" exec "$container" id -u)" != 0 ] || die "runs as root"
"$DOCKER" exec "$container" sh -c 'ls /run/secrets/ca' >/dev/null 2>&1 && die "the CA bundle is in the image"
# The checkpoint's place: a new named volume at /var/lib/runloop-exporter takes the image directory's owner,
# so the image's user can write its checkpoint there under a read-only root (README, docker run -v).
volume="rle-state-$$"
"$DOCKER" volume create "$volume" >/dev/null
"$DOCKER" run --rm --read-only --network none -v "$volume:/var/lib/runloop-exporter" --entrypoint python3 \
  "$IMAGE" -c "open('/var/lib/runloop-exporter/probe', 'w').write('ok')" \
  || die "a named volume at /var/lib/runloop-exporter is not writable by the image's user"

size="$(inspect '{{.Size}}')"
say "OK: $IMAGE (user $user) serves /healthz, /readyz, /metrics read-only; HEALTHCHECK healthy; a checkpoint volume is writable"
say "image size: $((size / 1000000)) MB ($size bytes)"
