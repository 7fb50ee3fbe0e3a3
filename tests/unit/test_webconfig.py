"""The web config file (exporter-toolkit format) and the basic-auth checker, without a server."""

from __future__ import annotations

import base64
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import trustme

from exporter.http.auth import BasicAuth
from exporter.http.errors import WebConfigError
from exporter.http.tls import ClientAuth
from exporter.http.webconfig import WebConfig, load_web_config

# A fixed hash of "s3cret" (cost 4): test ids are built from it, and parallel workers must collect the
# same ids, so it is not made afresh at import.
HASH = "$2b$04$LiCJHeqcrimGXANeSXKjq.EvcbTANlQTLCiQVZZC9aEeGGz0cPFF."


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """A folder `certs/` beside the config files, holding a server cert, its key and a CA."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path / "certs"
    folder.mkdir()
    server.cert_chain_pems[0].write_to_path(str(folder / "tls.crt"))
    server.private_key_pem.write_to_path(str(folder / "tls.key"))
    ca.cert_pem.write_to_path(str(folder / "ca.crt"))
    trustme.CA().issue_cert("other").private_key_pem.write_to_path(str(folder / "other.key"))
    (folder / "junk.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    )
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "web.yml"
    path.write_text(text)
    return path


TLS = "tls_server_config:\n  cert_file: certs/tls.crt\n  key_file: certs/tls.key\n"


def header(user: str, password: str | bytes) -> str:
    raw = user.encode() + b":" + (password.encode() if isinstance(password, str) else password)
    return "Basic " + base64.b64encode(raw).decode()


def test_relative_paths_are_relative_to_the_config_file_not_the_working_directory(
    certs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_web_config(Path(os.path.relpath(write(certs, TLS), elsewhere)))
    assert config.tls is not None
    assert config.tls.cert_file == certs / "certs" / "tls.crt"
    assert config.tls.key_file == certs / "certs" / "tls.key"
    assert config.source == certs / "web.yml"
    assert isinstance(config.ssl_context, ssl.SSLContext)


def test_absolute_paths_are_kept(certs: Path, tmp_path: Path) -> None:
    other = tmp_path / "conf"
    other.mkdir()
    path = write(
        other, f"tls_server_config:\n  cert_file: {certs}/certs/tls.crt\n  key_file: {certs}/certs/tls.key\n"
    )
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.cert_file == certs / "certs" / "tls.crt"


def test_full_config_maps_to_ssl_context(certs: Path) -> None:
    path = write(
        certs,
        TLS
        + "  client_auth_type: RequireAndVerifyClientCert\n"
        + "  client_ca_file: certs/ca.crt\n"
        + "  client_allowed_sans: [prometheus.monitoring.svc, '::1']\n"
        + "  min_version: TLS13\n"
        + "  prefer_server_cipher_suites: false\n"
        + "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    X-XSS-Protection: ''\n"
        + f"basic_auth_users:\n  prometheus: '{HASH}'\n  '007': '{HASH}'\n",
    )
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.client_auth is ClientAuth.REQUIRE_AND_VERIFY_CLIENT_CERT
    assert config.tls.client_allowed_sans == {"prometheus.monitoring.svc", "::1"}
    ctx = config.ssl_context
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert len(ctx.get_ca_certs()) == 1
    assert config.headers == {"X-Frame-Options": "deny"}  # blank means unset
    # every scalar stays a string, as in Go: '007' is a user name, not the number 7
    assert set(config.users) == {"prometheus", "007"}
    assert config.users["prometheus"] == HASH.encode()


@pytest.mark.parametrize(
    ("auth", "mode"),
    [("NoClientCert", ssl.CERT_NONE), ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL)],
)
def test_client_auth_types(certs: Path, auth: str, mode: ssl.VerifyMode) -> None:
    ca = "  client_ca_file: certs/ca.crt\n" if auth != "NoClientCert" else ""
    config = load_web_config(write(certs, TLS + f"  client_auth_type: {auth}\n" + ca))
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == mode
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2  # exporter-toolkit's default


@pytest.mark.parametrize("text", ["", "basic_auth_users:\n", "tls_server_config:\nhttp_server_config: {}\n"])
def test_files_without_tls_mean_plain_http(tmp_path: Path, text: str) -> None:
    config = load_web_config(write(tmp_path, text))
    assert config.tls is None
    assert config.ssl_context is None
    assert config.users == {}


def test_only_users_gives_basic_auth_without_tls(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: {HASH}\n"))
    assert config.tls is None
    assert config.users == {"alice": HASH.encode()}


USERS = f"basic_auth_users:\n  alice: '{HASH}'\n"


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("color: blue\n", "color", ["unknown key", "tls_server_config"]),
        (TLS + "  client_cert_file: x\n", "tls_server_config.client_cert_file", ["unknown key"]),
        ("http_server_config:\n  keepalive: true\n", "http_server_config.keepalive", ["unknown key"]),
        ("tls_server_config:\n  cert_file: certs/tls.crt\n", "tls_server_config.key_file", ["missing"]),
        ("tls_server_config:\n  key_file: certs/tls.key\n", "tls_server_config.cert_file", ["missing"]),
        ("tls_server_config:\n  min_version: TLS13\n", "tls_server_config.cert_file", ["missing"]),
        (TLS.replace("tls.key", "absent.key"), "tls_server_config.key_file", ["cannot read", "absent.key"]),
        (TLS.replace("certs/tls.crt", "certs"), "tls_server_config.cert_file", ["cannot read"]),
        (TLS.replace("tls.key", "ca.crt"), "tls_server_config.key_file", ["no PEM private key"]),
        (TLS.replace("tls.crt", "tls.key"), "tls_server_config.cert_file", ["no PEM certificate"]),
        (TLS.replace("tls.crt", "junk.pem"), "tls_server_config.cert_file", ["cannot load", "junk.pem"]),
        (TLS.replace("tls.key", "other.key"), "tls_server_config.key_file", ["does not match"]),
        (
            TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_ca_file",
            ["required"],
        ),
        (TLS + "  client_ca_file: certs/ca.crt\n", "tls_server_config.client_auth_type", ["NoClientCert"]),
        (
            TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: certs/tls.key\n",
            "tls_server_config.client_ca_file",
            ["no usable PEM certificate"],
        ),
        (TLS + "  client_auth_type: Always\n", "tls_server_config.client_auth_type", ["'Always'"]),
        (
            TLS + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: certs/ca.crt\n",
            "tls_server_config.client_auth_type",
            ["without verifying", "RequireAndVerifyClientCert"],
        ),
        (
            TLS + "  client_auth_type: RequestClientCert\n",
            "tls_server_config.client_auth_type",
            ["VerifyClientCertIfGiven"],
        ),
        (
            TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: certs/ca.crt\n"
            "  client_allowed_sans: [a]\n",
            "tls_server_config.client_allowed_sans",
            ["RequireAndVerifyClientCert"],
        ),
        (TLS + "  min_version: TLS11\n", "tls_server_config.min_version", ["TLS11", "TLS12"]),
        (TLS + "  max_version: SSL3\n", "tls_server_config.max_version", ["unknown"]),
        (TLS + "  min_version: TLS13\n  max_version: TLS12\n", "tls_server_config.min_version", ["above"]),
        (
            TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "tls_server_config.cipher_suites",
            ["not supported"],
        ),
        (TLS + "  curve_preferences: [X25519]\n", "tls_server_config.curve_preferences", ["not supported"]),
        ("tls_server_config:\n  cert: '-----BEGIN'\n", "tls_server_config.cert", ["cert_file"]),
        ("rate_limit:\n  burst: 1\n", "rate_limit", ["not supported"]),
        (
            TLS + "  prefer_server_cipher_suites: sometimes\n",
            "tls_server_config.prefer_server_cipher_suites",
            [],
        ),
        ("tls_server_config: [a]\n", "tls_server_config", ["mapping"]),
        ("http_server_config:\n  headers:\n    Server: x\n", "http_server_config.headers.Server", ["cannot"]),
        (
            "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
            "http_server_config.headers.X-Content-Type-Options",
            ["nosniff"],
        ),
        ("basic_auth_users:\n  alice: hunter2-plain\n", "basic_auth_users.alice", ["not a bcrypt hash"]),
        (f"basic_auth_users:\n  alice: '{HASH[:-1]}'\n", "basic_auth_users.alice", ["not a bcrypt hash"]),
        (
            f"basic_auth_users:\n  alice: '{HASH.replace('$04$', '$03$')}'\n",
            "basic_auth_users.alice",
            ["cost"],
        ),
        (f"basic_auth_users:\n  'a:b': '{HASH}'\n", "basic_auth_users", ["'a:b'"]),
        (f"basic_auth_users:\n  alice: [{HASH}]\n", "basic_auth_users.alice", ["string"]),
        (f"basic_auth_users:\n  alice: '{HASH}'\n  alice: '{HASH}'\n", "alice", ["twice"]),
        ("- tls_server_config\n", "", ["mapping"]),
        ("tls_server_config: {cert_file: a\n", "", ["YAML", "line"]),
        ("basic_auth_users: !!python/object/apply:os.system [exit 3]\n", "basic_auth_users", ["mapping"]),
    ],
)
def test_invalid_files_name_the_field(certs: Path, text: str, field: str, words: list[str]) -> None:
    path = write(certs, text)
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    message = str(caught.value)
    assert caught.value.field == field
    assert message.startswith(f"{path}: {field}: " if field else f"{path}: ")
    assert "\n" not in message
    for word in words:
        assert word in message
    assert "hunter2" not in message  # a password put where a hash belongs is never echoed
    assert HASH not in message


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"absent\.yml: cannot read: No such file"):
        load_web_config(tmp_path / "absent.yml")


def test_encrypted_key_is_refused_without_prompting(certs: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((certs / "certs" / "tls.key").read_bytes(), None)
    (certs / "certs" / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(WebConfigError, match="encrypted") as caught:
        load_web_config(write(certs, TLS))
    assert caught.value.field == "tls_server_config.key_file"


def test_signature_changes_when_a_named_file_changes(certs: Path) -> None:
    config = load_web_config(write(certs, TLS))
    assert config.current_signature() == config.signature
    (certs / "certs" / "tls.key").write_bytes((certs / "certs" / "tls.key").read_bytes() + b"\n")
    assert config.current_signature() != config.signature


def test_repr_shows_no_password_hash(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, USERS))
    assert HASH not in repr(config)


@pytest.mark.parametrize(
    ("sans", "allowed"),
    [
        ((("DNS", "prometheus.monitoring.svc"),), True),
        ((("DNS", "evil.example"), ("email", "ops@example.com")), False),
        ((("IP Address", "2001:DB8:0:0:0:0:0:1\n"),), True),  # OpenSSL's spelling of 2001:db8::1
        ((("URI", "spiffe://cluster/ns/monitoring/sa/prometheus"),), True),
        ((), False),
    ],
)
def test_client_allowed_sans(certs: Path, sans: tuple[tuple[str, str], ...], allowed: bool) -> None:
    path = write(
        certs,
        TLS
        + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: certs/ca.crt\n"
        + "  client_allowed_sans:\n    - prometheus.monitoring.svc\n    - 2001:db8::1\n"
        + "    - spiffe://cluster/ns/monitoring/sa/prometheus\n",
    )
    tls = load_web_config(path).tls
    assert tls is not None
    assert tls.allows_peer({"subjectAltName": sans}) is allowed


def test_no_allowed_sans_allows_any_verified_peer(certs: Path) -> None:
    tls = load_web_config(write(certs, TLS)).tls
    assert tls is not None
    assert tls.allows_peer({})


# --- BasicAuth ---------------------------------------------------------------------------------


class CountingCheck:
    """Real bcrypt, counted."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.calls += 1
        return bcrypt.checkpw(password, hashed)


def auth_for(users: dict[str, str]) -> tuple[BasicAuth, CountingCheck]:
    check = CountingCheck()
    return BasicAuth({user: hashed.encode() for user, hashed in users.items()}, check), check


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:s3cret").decode(),
        header("alice", "wrong"),
        header("alice", ""),
        header("mallory", "s3cret"),
        header("alice", "s3cret" + "x" * 80),  # over bcrypt's 72 bytes: no exception
    ],
)
def test_bad_credentials_are_refused(authorization: str | None) -> None:
    auth, _ = auth_for({"alice": HASH})
    assert not auth.check(authorization)


def test_right_credentials_are_accepted_in_any_scheme_case() -> None:
    auth, _ = auth_for({"alice": HASH, "bob": bcrypt.hashpw(b"p:w \xc3\xa9", bcrypt.gensalt(4)).decode()})
    assert auth.check(header("alice", "s3cret"))
    assert auth.check("basic " + header("alice", "s3cret").split(" ", 1)[1])
    assert auth.check(header("bob", "p:w \xc3\xa9".encode("latin-1")))  # colons after the first belong to it


def test_passwords_are_cut_at_72_bytes_like_htpasswd_and_go() -> None:
    long = "p" * 72
    auth, _ = auth_for({"alice": bcrypt.hashpw(long.encode(), bcrypt.gensalt(4)).decode()})
    assert auth.check(header("alice", long))
    assert auth.check(header("alice", long + "ignored"))
    assert not auth.check(header("alice", long[:-1]))


def test_unknown_users_pay_bcrypt_too() -> None:
    """Otherwise the response time would tell which user names exist."""
    auth, check = auth_for({"alice": HASH})
    assert not auth.check(header("mallory", "s3cret"))
    assert check.calls == 1


def test_fifty_concurrent_scrapers_pay_bcrypt_once() -> None:
    auth, check = auth_for({"alice": HASH})
    start = threading.Barrier(50)
    results: list[bool] = []

    def scrape() -> None:
        start.wait()
        results.append(auth.check(header("alice", "s3cret")))

    threads = [threading.Thread(target=scrape) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 50
    assert check.calls == 1


def test_only_successes_are_cached() -> None:
    auth, check = auth_for({"alice": HASH})
    assert auth.check(header("alice", "s3cret"))
    for _ in range(3):
        assert not auth.check(header("alice", "wrong"))
    assert check.calls == 4
    assert auth.check(header("alice", "s3cret"))
    assert check.calls == 4


def test_cache_is_per_hash() -> None:
    """A cached success for one user's hash never lets the same password in for another user."""
    other = bcrypt.hashpw(b"different", bcrypt.gensalt(4)).decode()
    auth, _ = auth_for({"alice": HASH, "bob": other})
    assert auth.check(header("alice", "s3cret"))
    assert not auth.check(header("bob", "s3cret"))


def test_cache_holds_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    auth, _ = auth_for({"alice": HASH})
    assert auth.check(header("alice", "s3cret"))
    assert b"s3cret" not in repr(vars(auth)).encode()


def make_checker(users: dict[str, str]) -> Callable[[str | None], bool]:
    return BasicAuth({user: hashed.encode() for user, hashed in users.items()}).check


def test_htpasswd_style_2y_hashes_are_accepted(tmp_path: Path) -> None:
    hashed = "$2y$" + HASH[4:]
    config: WebConfig = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n"))
    assert make_checker({k: v.decode() for k, v in config.users.items()})(header("alice", "s3cret"))
