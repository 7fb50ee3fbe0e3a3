"""/metrics behind TLS, mTLS and basic auth: the real exporter process, real TLS clients, real Prometheus.

Certificates are made per test with trustme. The exporter is started with a web config file in the
exporter-toolkit format; SecureExporter below talks to it (its /healthz wait included) over HTTPS with the
test's client context and credentials.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import httpx
import pytest
import trustme

from exporter.simulator import DEFAULT_API_KEY, Simulator, World
from tests.support.exporter_process import Exporter
from tests.support.ports import free_port
from tests.support.prometheus import Prometheus
from tests.support.samples import parse, sample
from tests.support.tools import require_tool
from tests.support.waiting import wait_until

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
SETTING = "RUNLOOP_EXPORTER_WEB_CONFIG_FILE (--web-config-file)"
REALM = 'Basic realm="runloop-exporter"'
NOW_MS = 1_760_000_000_000


@dataclass
class SecureExporter(Exporter):
    """An exporter whose health is checked with `client` (trusting the test CA), over HTTPS if set."""

    client: ssl.SSLContext | None = None
    auth: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        scheme = "https" if self.client else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def __post_init__(self) -> None:
        self.http = httpx.Client(verify=self.client or True, timeout=30, trust_env=False)

    def get(self, path: str, **kw: object) -> httpx.Response:
        """Over this exporter's client (its TLS context), unless the call brings a `verify` of its own."""
        kw.setdefault("auth", self.auth)
        if "verify" in kw:
            kw.setdefault("timeout", 30)
            return httpx.get(f"{self.url}{path}", **kw)  # type: ignore[arg-type]
        return self.http.get(f"{self.url}{path}", **kw)  # type: ignore[arg-type]

    def wait_synced(self) -> httpx.Response:
        """The first /metrics response that shows a successful sync."""
        responses: list[httpx.Response] = []

        def synced() -> bool:
            response = self.get("/metrics")
            assert response.status_code == 200, response.text
            responses.append(response)
            return sample(parse(response.text), "runloop_up") == 1.0

        self.wait_until(synced, what="a successful sync")
        return responses[-1]


@dataclass
class Pki:
    """A server CA and certificate, a separate CA for client certificates, all as files in `folder`."""

    folder: Path
    server_ca: trustme.CA = field(default_factory=trustme.CA)
    client_ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.write_server_cert(self.server_ca)
        self.client_ca.cert_pem.write_to_path(str(self.folder / "client-ca.crt"))

    def write_server_cert(self, ca: trustme.CA) -> None:
        """(Re)issue the server's certificate, as cert-manager would on rotation."""
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(self.folder / "tls.key"))
        cert.cert_chain_pems[0].write_to_path(str(self.folder / "tls.crt"))
        ca.cert_pem.write_to_path(str(self.folder / "server-ca.crt"))

    def client(
        self,
        *,
        cert_from: trustme.CA | None = None,
        san: str = "prometheus.monitoring.svc",
        trust: trustme.CA | None = None,
    ) -> ssl.SSLContext:
        """A client context trusting the server CA, with a client certificate from `cert_from` if given."""
        ctx = ssl.create_default_context()
        (trust or self.server_ca).configure_trust(ctx)
        if cert_from is not None:
            cert_from.issue_cert(san).configure_cert(ctx)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    folder = tmp_path / "pki"
    folder.mkdir()
    return Pki(folder)


def web_config(pki: Pki, text: str) -> Path:
    """Write a web config next to the certificates, so that its relative paths resolve there."""
    path = pki.folder / "web-config.yml"
    path.write_text(text)
    return path


TLS = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
MTLS = TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n"
USERS = f"basic_auth_users:\n  prometheus: '{HASH}'\n"


@pytest.fixture
def start_secure(
    simulator: Simulator, world: World, tmp_path: Path
) -> Iterator[Callable[..., SecureExporter]]:
    """Start exporters with a web config; the health wait uses `client` and `auth`."""
    world.add_benchmark("bmd_alpha", "Alpha")
    world.add_run(benchmark_id="bmd_alpha", state="completed", start_ms=NOW_MS, duration_ms=60_000, score=0.5)
    started: list[SecureExporter] = []

    def start(
        config: Path,
        client: ssl.SSLContext | None,
        auth: tuple[str, str] | None = None,
        *,
        flag: bool = False,
    ) -> SecureExporter:
        env = {
            "RUNLOOP_BASE_URL": simulator.url,
            "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "1",
            "RUNLOOP_API_KEY": DEFAULT_API_KEY,
        }
        args = ["--web-config-file", str(config)] if flag else []
        if not flag:
            env["RUNLOOP_EXPORTER_WEB_CONFIG_FILE"] = str(config)
        exporter = SecureExporter(args, env, client=client, auth=auth)
        started.append(exporter)
        return exporter.start(tmp_path)  # type: ignore[return-value]

    yield start
    for exporter in started:
        exporter.stop()
        assert PASSWORD not in exporter.logs()


def raw_tls_get(port: int, ctx: ssl.SSLContext, path: str = "/healthz") -> tuple[str, bytes]:
    """One request with Python's own ssl module: the negotiated TLS version and the raw response."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        version = str(tls.version())
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
        return version, b"".join(chunks)


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """True when the server drops the connection instead of answering."""
    try:
        _, response = raw_tls_get(port, ctx)
    except (ssl.SSLError, ConnectionError):
        return True
    return response == b""


# --- TLS ---------------------------------------------------------------------------------------


def test_tls_serves_metrics_to_clients_that_trust_the_ca(
    pki: Pki, start_secure: Callable[..., SecureExporter]
) -> None:
    exporter = start_secure(web_config(pki, TLS), pki.client())
    scrape = exporter.wait_synced()
    assert scrape.url.scheme == "https"
    assert (
        sample(parse(scrape.text), "runloop_benchmark_runs", benchmark_id="bmd_alpha", state="completed")
        == 1.0
    )
    version, response = raw_tls_get(exporter.port, pki.client())
    assert version in {"TLSv1.2", "TLSv1.3"}
    assert response.startswith(b"HTTP/1.1 200 ")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        exporter.get("/metrics", verify=pki.client(trust=trustme.CA()))


def test_plain_http_to_the_tls_port_gets_a_clear_400_and_no_metrics(
    pki: Pki, start_secure: Callable[..., SecureExporter]
) -> None:
    exporter = start_secure(web_config(pki, TLS), pki.client())
    exporter.wait_synced()
    response = httpx.get(f"http://127.0.0.1:{exporter.port}/metrics", timeout=10)
    assert response.status_code == 400
    assert "HTTP request to an HTTPS server" in response.text
    assert "runloop_" not in response.text
    assert exporter.get("/healthz").status_code == 200  # the server is unharmed


def test_gzip_scrape_over_tls(pki: Pki, start_secure: Callable[..., SecureExporter]) -> None:
    exporter = start_secure(web_config(pki, TLS), pki.client())
    plain = exporter.wait_synced()
    zipped = exporter.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert int(zipped.headers["Content-Length"]) < len(plain.content)
    benchmark_lines = [line for line in plain.text.splitlines() if line.startswith("runloop_benchmark")]
    assert benchmark_lines
    assert set(benchmark_lines) <= set(zipped.text.splitlines())  # httpx decoded one valid gzip stream


def test_min_version_tls13_refuses_tls12_clients(
    pki: Pki, start_secure: Callable[..., SecureExporter]
) -> None:
    exporter = start_secure(web_config(pki, TLS + "  min_version: TLS13\n"), pki.client())
    old = pki.client()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        raw_tls_get(exporter.port, old)
    assert raw_tls_get(exporter.port, pki.client())[0] == "TLSv1.3"


def test_slow_or_broken_clients_do_not_block_others(
    pki: Pki, start_secure: Callable[..., SecureExporter]
) -> None:
    """The handshake runs in the connection's thread: stalled clients leave the accept loop free."""
    exporter = start_secure(web_config(pki, TLS), pki.client())
    stalled = [socket.create_connection(("127.0.0.1", exporter.port)) for _ in range(3)]
    try:
        stalled[1].sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        stalled[2].sendall(b"\x16")
        # The handshake timeout is 10 s: a server that handshakes in its accept loop fails this.
        for _ in range(3):
            assert exporter.get("/healthz", timeout=5).status_code == 200
    finally:
        for sock in stalled:
            sock.close()


# --- mTLS --------------------------------------------------------------------------------------


def test_require_and_verify_client_cert(pki: Pki, start_secure: Callable[..., SecureExporter]) -> None:
    good = pki.client(cert_from=pki.client_ca)
    exporter = start_secure(web_config(pki, MTLS), good)
    assert exporter.get("/metrics").status_code == 200
    assert raw_tls_get(exporter.port, good)[1].startswith(b"HTTP/1.1 200 ")

    # No certificate: TLS 1.3 clients finish their side first, then read the server's alert.
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
        raw_tls_get(exporter.port, pki.client())
    with pytest.raises(httpx.TransportError):
        exporter.get("/metrics", verify=pki.client())
    # A certificate from a CA the server does not trust for clients (here: the server's own CA).
    with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
        raw_tls_get(exporter.port, pki.client(cert_from=pki.server_ca))
    assert "client certificate refused" in exporter.logs()


def test_verify_if_given_with_basic_auth_keeps_probes_working(
    pki: Pki, start_secure: Callable[..., SecureExporter]
) -> None:
    """Kubelet probes never present a client certificate: this is the setup that lets them in."""
    config = TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: client-ca.crt\n" + USERS
    prometheus = pki.client(cert_from=pki.client_ca)
    exporter = start_secure(web_config(pki, config), prometheus, ("prometheus", PASSWORD))
    probe = pki.client()
    assert exporter.get("/healthz", verify=probe, auth=None).status_code == 200
    assert exporter.get("/readyz", verify=probe, auth=None).status_code in {200, 503}
    assert exporter.get("/metrics", verify=probe, auth=None).status_code == 401
    assert exporter.get("/metrics").status_code == 200  # certificate and password
    with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
        raw_tls_get(exporter.port, pki.client(cert_from=pki.server_ca))  # a given cert is verified


def test_client_allowed_sans(pki: Pki, start_secure: Callable[..., SecureExporter]) -> None:
    config = MTLS + "  client_allowed_sans: [prometheus.monitoring.svc]\n"
    exporter = start_secure(web_config(pki, config), pki.client(cert_from=pki.client_ca))
    assert exporter.get("/metrics").status_code == 200
    other = pki.client(cert_from=pki.client_ca, san="intruder.default.svc")
    assert refused(exporter.port, other)
    assert not refused(exporter.port, pki.client(cert_from=pki.client_ca))
    assert "client_allowed_sans" in exporter.logs()


# --- basic auth --------------------------------------------------------------------------------


def test_basic_auth_over_tls(pki: Pki, start_secure: Callable[..., SecureExporter]) -> None:
    headers = (
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        "    Content-Security-Policy: \"default-src 'self'\"\n"
    )
    auth = ("prometheus", PASSWORD)
    exporter = start_secure(web_config(pki, TLS + USERS + headers), pki.client(), auth, flag=True)
    exporter.wait_synced()

    for path in ("/metrics", "/", "/nope"):
        for credentials in (None, ("prometheus", "wrong"), ("grafana", PASSWORD), ("", "")):
            response = exporter.get(path, auth=credentials)
            assert response.status_code == 401, (path, credentials)
            assert response.headers["WWW-Authenticate"] == REALM
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "runloop_" not in response.text
    assert exporter.get("/metrics", auth=auth).status_code == 200
    page = exporter.get("/", auth=auth)
    assert 'href="/metrics"' in page.text
    # A configured Content-Security-Policy replaces the page's own, once.
    assert page.headers.get_list("Content-Security-Policy") == ["default-src 'self'"]
    assert exporter.get("/", auth=auth, headers={"Accept-Encoding": "gzip"}).status_code == 200
    assert exporter.get("/nope", auth=auth).status_code == 404
    for probe in ("/healthz", "/readyz"):
        response = exporter.get(probe, auth=None)
        assert response.status_code == 200, probe
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_basic_auth_without_tls(pki: Pki, start_secure: Callable[..., SecureExporter]) -> None:
    exporter = start_secure(web_config(pki, USERS), None)
    assert exporter.get("/metrics").status_code == 401
    assert exporter.get("/metrics", auth=("prometheus", PASSWORD)).status_code == 200
    assert exporter.get("/healthz").status_code == 200
    assert "clear text" in exporter.logs()


# --- reloads -----------------------------------------------------------------------------------


def test_rotated_certificate_is_served_without_restart(
    pki: Pki, start_secure: Callable[..., SecureExporter]
) -> None:
    exporter = start_secure(web_config(pki, TLS), pki.client())
    new_ca = trustme.CA()
    pki.write_server_cert(new_ca)

    def serves_new_cert() -> bool:
        try:
            return exporter.get("/healthz", verify=pki.client(trust=new_ca)).status_code == 200
        except httpx.ConnectError:
            return False

    exporter.wait_until(serves_new_cert, what="the rotated certificate")
    assert "web config reloaded" in exporter.logs()


def logged(exporter: SecureExporter, text: str) -> bool:
    """Whether the exporter logged `text`; makes a request, since files are checked when one comes."""
    exporter.get("/healthz")
    return text in exporter.logs()


def test_changed_users_apply_without_restart_and_a_broken_file_keeps_the_last_good_one(
    pki: Pki, start_secure: Callable[..., SecureExporter]
) -> None:
    config = web_config(pki, TLS + USERS)
    exporter = start_secure(config, pki.client())
    old = ("prometheus", PASSWORD)
    new = ("prometheus", "rotated password")
    assert exporter.get("/metrics", auth=old).status_code == 200

    config.write_text(
        TLS
        + f"basic_auth_users:\n  prometheus: '{bcrypt.hashpw(b'rotated password', bcrypt.gensalt(4)).decode()}'\n"
    )
    exporter.wait_until(
        lambda: exporter.get("/metrics", auth=new).status_code == 200, what="the new password"
    )
    assert exporter.get("/metrics", auth=old).status_code == 401

    config.write_text(TLS + "basic_auth_users:\n  prometheus: not-a-hash\n")
    exporter.wait_until(lambda: logged(exporter, "web config reload failed"), what="the failed reload")
    assert "not-a-hash" not in exporter.logs()
    assert exporter.get("/metrics", auth=new).status_code == 200
    assert exporter.get("/metrics", auth=None).status_code == 401

    config.write_text(USERS)  # dropping TLS on the fly would silently downgrade: refused
    exporter.wait_until(lambda: logged(exporter, "turn TLS on or off"), what="the refused downgrade")
    assert exporter.get("/metrics", auth=new).status_code == 200


# --- bad files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (TLS + "  verify: true\n", "tls_server_config.verify"),
        ("tls_server_config:\n  cert_file: tls.crt\n", "tls_server_config.key_file"),
        ("basic_auth_users:\n  prometheus: hunter2\n", "basic_auth_users.prometheus"),
        (TLS.replace("tls.crt", "."), "tls_server_config.cert_file"),  # a directory: unreadable
        (TLS.replace("tls.crt", "gone.crt"), "tls_server_config.cert_file"),
        (TLS.replace("tls.crt", "client-ca.crt"), "tls_server_config.key_file"),  # key of another cert
        (TLS + "  client_auth_type: RequireAnyClientCert\n", "tls_server_config.client_auth_type"),
        ("tls_server_config: [\n", "web-config.yml"),
    ],
)
def test_bad_web_config_exits_2_with_one_line(pki: Pki, text: str, field: str) -> None:
    path = web_config(pki, text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP")}
    env.update(
        {
            "RUNLOOP_API_KEY": "k3y-value",
            "RUNLOOP_BASE_URL": "http://127.0.0.1:9",
            "RUNLOOP_EXPORTER_WEB_CONFIG_FILE": str(path),
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--address", "127.0.0.1", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,  # generous: CI machines may be busy; a healthy run takes about a second
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"runloop-exporter: {SETTING}: {path}")
    assert field in lines[0]
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
    assert result.stdout == ""


# --- Prometheus --------------------------------------------------------------------------------


@pytest.fixture
def prometheus_binary() -> str:
    return require_tool("prometheus")


def test_prometheus_scrapes_through_mtls_and_basic_auth(
    pki: Pki, start_secure: Callable[..., SecureExporter], prometheus_binary: str, tmp_path: Path
) -> None:
    """An ordinary Prometheus scrape config (scheme, tls_config, basic_auth) works unchanged."""
    exporter = start_secure(
        web_config(pki, MTLS + USERS),
        pki.client(cert_from=pki.client_ca),
        ("prometheus", PASSWORD),
    )
    exporter.wait_synced()
    client = pki.client_ca.issue_cert("prometheus.monitoring.svc")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.crt"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))

    def job(name: str, password: str) -> dict[str, object]:
        return {
            "job_name": name,
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "scheme": "https",
            "tls_config": {
                "ca_file": str(pki.folder / "server-ca.crt"),
                "cert_file": str(tmp_path / "client.crt"),
                "key_file": str(tmp_path / "client.key"),
            },
            "basic_auth": {"username": "prometheus", "password": password},
            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
        }

    prometheus = Prometheus.start(
        prometheus_binary,
        {"scrape_configs": [job("runloop", PASSWORD), job("intruder", "guess")]},
        tmp_path / "prometheus",
    )

    def by_job(expr: str) -> dict[str, str]:
        return {r["metric"].get("job", ""): r["value"][1] for r in prometheus.query(expr)}

    try:
        wait_until(
            lambda: by_job("up") == {"runloop": "1", "intruder": "0"},
            60,
            "Prometheus scrapes",
            watch=[prometheus.child, exporter.child],
            on_timeout=lambda: f"up: {by_job('up')}",
        )
        assert by_job('count by (job) ({job="runloop", __name__=~"runloop_benchmark_.+"})')["runloop"] != "0"
        assert by_job('runloop_up{job="runloop"}') == {"runloop": "1"}
    finally:
        prometheus.stop()
