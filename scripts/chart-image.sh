#!/usr/bin/env bash
# Writes the image a release pushes into a chart's values.yaml (image.repository), so that the chart the
# release publishes installs that very image by default (with its appVersion as the tag). The release
# workflow runs it on the checkout before `helm package`; tests/deploy/test_release.py runs it on a copy of
# the chart and renders the result with helm.
#
#   bash scripts/chart-image.sh CHART_DIR IMAGE_REPOSITORY     # e.g. ... ghcr.io/acme/runloop-exporter
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 CHART_DIR IMAGE_REPOSITORY" >&2
  exit 2
fi
chart="$1"
image="$2"
values="$chart/values.yaml"

# A registry host (optionally with a port) and a lowercase path: what `docker push` and the kubelet accept.
component='[a-z0-9]+([._-][a-z0-9]+)*'
if ! printf '%s' "$image" | grep -Eq "^$component(:[0-9]+)?(/$component)+\$"; then
  echo "$0: '$image' is not an image repository (lowercase registry/path, no tag)" >&2
  exit 1
fi

# The `repository:` line of the top-level `image:` block, and only that one.
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
awk -v image="$image" '
  /^[^ #]/ { in_image = ($0 ~ /^image:/) }
  in_image && /^  repository: / { print "  repository: " image; done++; next }
  { print }
  END { if (done != 1) exit 1 }
' "$values" >"$tmp" || {
  echo "$0: $values has no image.repository line to replace" >&2
  exit 1
}
cat "$tmp" >"$values"
echo "image.repository: $image"
