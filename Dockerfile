# runloop-exporter container image.
#
#   docker build -t runloop-exporter \
#     --build-arg VERSION="$(bash scripts/version.sh)" --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm -p 9756:9756 -e RUNLOOP_API_KEY_FILE=/run/secrets/runloop-api-key \
#     -v "$PWD/key:/run/secrets/runloop-api-key:ro" --read-only \
#     -v runloop-exporter-state:/var/lib/runloop-exporter -e RUNLOOP_EXPORTER_STATE_DIR=/var/lib/runloop-exporter \
#     runloop-exporter
#
# BASE_IMAGE must provide python3 (>= 3.11) with the venv module; both stages use it, so the virtualenv
# built in the first stage points at the same interpreter path in the second. Behind a TLS-intercepting
# proxy, hand its CA bundle to the build as a BuildKit secret (never baked into any layer):
#   DOCKER_BUILDKIT=1 docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt ...
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build
# Same uv as ./dev, so the image resolves exactly what uv.lock says.
ARG UV_VERSION=0.13.9
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/runloop-exporter
WORKDIR /src

RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"

# Dependencies only: this layer is rebuilt when the lock changes, not when the code does.
COPY pyproject.toml uv.lock ./
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && /opt/uv/bin/uv sync --frozen --no-dev --no-install-project --python "$(command -v python3)"

# The project itself, installed as a regular (non-editable) wheel; bytecode compiled by UV_COMPILE_BYTECODE.
# VERSION (from scripts/version.sh) becomes the image's version label, so it must be the package's own.
ARG VERSION=""
COPY README.md ./
COPY exporter ./exporter
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && /opt/uv/bin/uv sync --frozen --no-dev --no-editable --python "$(command -v python3)" \
    && installed="$(/opt/runloop-exporter/bin/runloop-exporter --version)" \
    && if [ -n "$VERSION" ] && [ "$installed" != "runloop-exporter $VERSION" ]; then \
         echo "--build-arg VERSION=$VERSION, but the package says: $installed" >&2; exit 1; \
       fi

# ---------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
# The package version, e.g. --build-arg VERSION="$(bash scripts/version.sh)"; checked in the build stage.
ARG VERSION=""
ARG REVISION=unknown
# The repository URL, e.g. --build-arg SOURCE="$(git remote get-url origin)".
ARG SOURCE=""
LABEL org.opencontainers.image.title="runloop-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Runloop benchmark runs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"

COPY --from=build /opt/runloop-exporter /opt/runloop-exporter
# Where a checkpoint volume goes (RUNLOOP_EXPORTER_STATE_DIR=/var/lib/runloop-exporter, README "Restarts and
# the checkpoint"), owned by the image's user: a new named volume mounted here takes that owner, so
# `-v runloop-exporter-state:/var/lib/runloop-exporter` is writable with a read-only root. Python, not a
# shell: the base needs nothing but python3.
RUN ["python3", "-c", "import os; os.makedirs('/var/lib/runloop-exporter', 0o700); os.chown('/var/lib/runloop-exporter', 65532, 65532)"]

# HOME=/tmp: uid 65532 has no passwd entry and the root filesystem may be read-only.
# RUNLOOP_EXPORTER_BUILD_REVISION: the commit, for runloop_exporter_build_info{revision} (not a setting).
ENV PATH=/opt/runloop-exporter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    RUNLOOP_EXPORTER_PORT=9756 \
    RUNLOOP_EXPORTER_BUILD_REVISION=${REVISION}

# Numeric, so Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 65532:65532
EXPOSE 9756

# No curl in the image: Python asks /healthz on the port the exporter listens on. Any HTTP answer below
# 500 means the server is serving (401 when a web config demands basic auth); HTTPS when the web config
# enables TLS (the certificate is not checked: this only asks "is it up").
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 CMD ["python3", "-c", "\
import os, ssl, sys, urllib.error, urllib.request\n\
conf = os.environ.get('RUNLOOP_EXPORTER_WEB_CONFIG_FILE', '')\n\
tls = bool(conf) and 'tls_server_config' in open(conf).read()\n\
url = '%s://127.0.0.1:%s/healthz' % ('https' if tls else 'http', os.environ.get('RUNLOOP_EXPORTER_PORT', '9756'))\n\
ctx = ssl._create_unverified_context() if tls else None\n\
try:\n\
    code = urllib.request.urlopen(url, timeout=4, context=ctx).status\n\
except urllib.error.HTTPError as err:\n\
    code = err.code\n\
sys.exit(0 if code < 500 else 1)\n\
"]

ENTRYPOINT ["runloop-exporter"]
