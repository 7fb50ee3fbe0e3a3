"""The web config file: TLS and basic auth for /metrics, in the Prometheus exporter-toolkit format.

The format is the one every Go exporter reads with `--web.config.file`, so an operator can reuse
their file and Prometheus scrape configs (`scheme: https`, `tls_config`, `basic_auth`) unchanged:

    tls_server_config:
      cert_file: tls.crt              # relative paths are relative to this file's directory
      key_file: tls.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      client_allowed_sans: [prometheus.monitoring.svc]
      min_version: TLS12              # TLS12 (default) or TLS13; max_version likewise
    http_server_config:
      headers: {X-Content-Type-Options: nosniff}
    basic_auth_users:
      prometheus: $2y$10$...          # bcrypt, e.g. from `htpasswd -nBC 10 "" | tr -d ':\\n'`

Everything is validated when the file is loaded, certificates included, so a mistake stops the
exporter at start with one line naming the field rather than failing the first scrape. Keys that
exporter-toolkit knows but Python's `ssl` cannot honour (`cipher_suites`, `curve_preferences`, inline
`cert`/`key`/`client_ca`, `rate_limit`, and client auth types that accept unverified certificates)
are refused with the reason, never silently ignored: a security setting that is ignored is worse than
an error.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import ssl
import threading
from base64 import b64decode
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

import bcrypt
import yaml


class WebConfigError(Exception):
    """The web config file is unreadable or invalid; the message says which field."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class ClientAuth(Enum):
    """The exporter-toolkit client auth types this server can honour, as OpenSSL verify modes."""

    NO_CLIENT_CERT = "NoClientCert"
    VERIFY_CLIENT_CERT_IF_GIVEN = "VerifyClientCertIfGiven"
    REQUIRE_AND_VERIFY_CLIENT_CERT = "RequireAndVerifyClientCert"

    @property
    def verify_mode(self) -> ssl.VerifyMode:
        """What the SSL context asks of the client."""
        return {
            ClientAuth.NO_CLIENT_CERT: ssl.CERT_NONE,
            ClientAuth.VERIFY_CLIENT_CERT_IF_GIVEN: ssl.CERT_OPTIONAL,
            ClientAuth.REQUIRE_AND_VERIFY_CLIENT_CERT: ssl.CERT_REQUIRED,
        }[self]


# Go's crypto/tls accepts these without verifying the certificate against a CA; OpenSSL as exposed
# by Python's ssl module always verifies a certificate it asks for, so the honest answer is a refusal.
_UNVERIFIED_CLIENT_AUTH = {
    "RequestClientCert": "VerifyClientCertIfGiven",
    "RequireAnyClientCert": "RequireAndVerifyClientCert",
    "RequireClientCert": "RequireAndVerifyClientCert",  # exporter-toolkit's old name for RequireAny
}
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_OLD_TLS_VERSIONS = {"TLS10", "TLS11"}

# exporter-toolkit's fixed list, with the values it accepts where the header is an enumeration.
HEADER_VALUES: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

Signature = tuple[tuple[int, int, int] | None, ...]
"""Inode, mtime and size of each file a config came from (None for a file that is gone)."""

_BCRYPT_MAX_PASSWORD = 72
_BCRYPT_HASH = re.compile(r"\$2[abxy]?\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")

_TOP_LEVEL = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
}
_HTTP_KEYS = {"http2", "headers"}
_UNSUPPORTED = {
    "rate_limit": "rate limiting is not supported by runloop-exporter; remove it",
    "tls_server_config.cert": "inline PEM is not supported; put the certificate in a file and use cert_file",
    "tls_server_config.key": "inline PEM is not supported; put the key in a file and use key_file",
    "tls_server_config.client_ca": "inline PEM is not supported; put the CAs in a file and use client_ca_file",
    "tls_server_config.cipher_suites": (
        "not supported: Go cipher suite names have no OpenSSL equivalent here; OpenSSL's defaults apply"
    ),
    "tls_server_config.curve_preferences": "not supported: OpenSSL's default curves apply",
}


@dataclass(frozen=True)
class TLSServerConfig:
    """Validated `tls_server_config`; file paths are already resolved against the config's folder."""

    cert_file: Path
    key_file: Path
    client_auth: ClientAuth = ClientAuth.NO_CLIENT_CERT
    client_ca_file: Path | None = None
    client_allowed_sans: frozenset[str] = frozenset()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    prefer_server_cipher_suites: bool = True

    def files(self) -> tuple[Path, ...]:
        """The files the context is built from (watched for changes)."""
        return (self.cert_file, self.key_file, *((self.client_ca_file,) if self.client_ca_file else ()))

    def context(self) -> ssl.SSLContext:
        """A server-side SSL context; raises WebConfigError naming the file that is wrong."""
        cert_pem = _read("tls_server_config.cert_file", self.cert_file)
        key_pem = _read("tls_server_config.key_file", self.key_file)
        if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
            _fail("tls_server_config.cert_file", f"{self.cert_file} holds no PEM certificate")
        if b"PRIVATE KEY-----" not in key_pem:
            _fail("tls_server_config.key_file", f"{self.key_file} holds no PEM private key")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self.min_version
        ctx.maximum_version = self.max_version
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_password(self.key_file))
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                _fail(
                    "tls_server_config.key_file",
                    f"{self.key_file} does not match the certificate in cert_file",
                )
            _fail(
                "tls_server_config.cert_file",
                f"cannot load {self.cert_file} with key_file: {_ssl_reason(exc)}"
                " (a valid PEM certificate whose key is in key_file is expected)",
            )
        if self.client_ca_file is not None:
            _read("tls_server_config.client_ca_file", self.client_ca_file)
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except ssl.SSLError as exc:
                _fail(
                    "tls_server_config.client_ca_file",
                    f"{self.client_ca_file} holds no usable PEM certificate: {_ssl_reason(exc)}",
                )
        ctx.verify_mode = self.client_auth.verify_mode
        return ctx

    def allows_peer(self, peer_cert: Mapping[str, Any] | None) -> bool:
        """Whether a verified client certificate carries one of `client_allowed_sans` (if any are set)."""
        if not self.client_allowed_sans:
            return True
        for kind, value in (peer_cert or {}).get("subjectAltName", ()):
            # OpenSSL spells IPv6 uncompressed and upper case; exporter-toolkit uses Go's canonical form.
            san = _canonical_san(value.strip()) if kind == "IP Address" else value
            if san in self.client_allowed_sans:
                return True
        return False


@dataclass(frozen=True)
class WebConfig:
    """TLS and basic-auth settings for the HTTP server, validated, with its SSL context built."""

    source: Path | None = None
    tls: TLSServerConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    signature: Signature = field(default=(), compare=False, repr=False)

    def files(self) -> tuple[Path, ...]:
        """The config file and every file it names: a change to any of them means a reload."""
        return (*((self.source,) if self.source else ()), *(self.tls.files() if self.tls else ()))

    def current_signature(self) -> Signature:
        """Identity, time and size of each file now; differs from `signature` once one changed."""
        return _signature(self.files())


def load_web_config(path: Path) -> WebConfig:
    """Read and validate a web config file, including the certificates and keys it names."""
    path = Path(os.path.abspath(path))  # also folds `..`, as Go's filepath.Join does
    try:
        return _load(path)
    except WebConfigError as exc:
        raise WebConfigError(f"{path}: {exc}", exc.field) from None


def _load(path: Path) -> WebConfig:
    # Files are stat'ed before they are read, so a change racing with the load is seen next time.
    before = _signature((path,))
    try:
        text = path.read_bytes()
    except OSError as exc:
        _fail("", f"cannot read: {exc.strerror or exc}")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a BaseLoader: strings only, no objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        _fail("", f"not valid YAML{where}: {_one_line(str(exc.problem or exc))}")
    except yaml.YAMLError as exc:
        _fail("", f"not valid YAML: {_one_line(str(exc))}")
    top = _mapping("", data)
    _check_keys("", top, _TOP_LEVEL)
    tls = _tls(_mapping("tls_server_config", top.get("tls_server_config")), path.parent)
    headers = _headers(_mapping("http_server_config", top.get("http_server_config")))
    users = _users(_mapping("basic_auth_users", top.get("basic_auth_users")))
    signature = (*before, *_signature(tls.files() if tls else ()))
    context = tls.context() if tls else None
    return WebConfig(path, tls, users, headers, context, signature)


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes, paying bcrypt once per password.

    bcrypt is slow on purpose (about 70 ms at cost 10), and Prometheus sends the same credentials on
    every scrape: so a successful check is remembered per (user, hash) as an HMAC of the password under
    a per-process random key, compared in constant time. Only successes are cached, so a wrong
    password always pays full bcrypt; and bcrypt runs one at a time, so neither 50 scrapers arriving
    together nor a guessing client can take every core. Unknown users are checked against a dummy
    hash of the highest cost configured, so timing does not reveal which user names exist.
    """

    def __init__(
        self, users: Mapping[str, bytes], checkpw: Callable[[bytes, bytes], bool] = bcrypt.checkpw
    ) -> None:
        self._users = dict(users)
        self._checkpw = checkpw
        # Made once per config; capped so that an absurd cost cannot stall a start or a reload.
        cost = min(max((_cost(hashed) for hashed in self._users.values()), default=10), 14)
        self._dummy_hash = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
        self._key = secrets.token_bytes(32)
        self._verified: dict[tuple[str, bytes], bytes] = {}
        self._bcrypt_lock = threading.Lock()

    def check(self, authorization: str | None) -> bool:
        """True when the header carries a configured user and that user's password."""
        credentials = _parse_basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        digest = hmac.new(self._key, password, hashlib.sha256).digest()
        if hashed is not None and self._is_cached(user, hashed, digest):
            return True
        with self._bcrypt_lock:
            if hashed is not None and self._is_cached(user, hashed, digest):
                return True  # another thread verified the same password while this one waited
            ok = self._bcrypt(password, hashed or self._dummy_hash) and hashed is not None
            if ok and hashed is not None:
                self._verified[(user, hashed)] = digest
        return ok

    def _is_cached(self, user: str, hashed: bytes, digest: bytes) -> bool:
        known = self._verified.get((user, hashed))
        return known is not None and hmac.compare_digest(known, digest)

    def _bcrypt(self, password: bytes, hashed: bytes) -> bool:
        # bcrypt uses 72 bytes of a password; htpasswd and Go's CompareHashAndPassword ignore the rest,
        # while the Python library raises: cut it, so hashes made by those tools behave the same here.
        try:
            return self._checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed)
        except ValueError:  # a hash the library cannot use: it matches nothing
            return False


def _cost(hashed: bytes) -> int:
    match = _BCRYPT_HASH.fullmatch(hashed.decode("ascii", "replace"))
    return int(match["cost"]) if match else 10


def _parse_basic(authorization: str | None) -> tuple[str, bytes] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = b64decode(encoded.strip(), validate=True)
    except ValueError:
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class _StrictLoader(yaml.BaseLoader):
    """Every scalar stays a string (as Go's typed decoding sees it) and a repeated key is an error."""


def _construct_mapping(loader: yaml.BaseLoader, node: yaml.MappingNode) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            line = key_node.start_mark.line + 1
            raise WebConfigError(f"a key on line {line} is not a plain string")
        if key in result:
            raise WebConfigError(f"{key}: given twice (line {key_node.start_mark.line + 1})", key)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _tls(section: dict[str, Any], base: Path) -> TLSServerConfig | None:
    _check_keys("tls_server_config", section, _TLS_KEYS)
    cert = _string("tls_server_config.cert_file", section.get("cert_file"))
    key = _string("tls_server_config.key_file", section.get("key_file"))
    ca = _string("tls_server_config.client_ca_file", section.get("client_ca_file"))
    auth_name = _string("tls_server_config.client_auth_type", section.get("client_auth_type"))
    if not (cert or key or ca or auth_name):
        if section:
            _fail("tls_server_config.cert_file", "missing: TLS needs cert_file and key_file")
        return None  # no TLS, as in exporter-toolkit: the file may hold only basic_auth_users
    if not cert:
        _fail("tls_server_config.cert_file", "missing: TLS needs cert_file and key_file")
    if not key:
        _fail("tls_server_config.key_file", "missing: TLS needs cert_file and key_file")
    auth = _client_auth(auth_name or ClientAuth.NO_CLIENT_CERT.value)
    if ca and auth is ClientAuth.NO_CLIENT_CERT:
        _fail(
            "tls_server_config.client_auth_type",
            "client_ca_file is set but client_auth_type is NoClientCert, so it would be ignored; "
            "use RequireAndVerifyClientCert",
        )
    if not ca and auth is not ClientAuth.NO_CLIENT_CERT:
        _fail("tls_server_config.client_ca_file", f"required when client_auth_type is {auth.value}")
    sans = _string_list("tls_server_config.client_allowed_sans", section.get("client_allowed_sans"))
    if sans and auth is not ClientAuth.REQUIRE_AND_VERIFY_CLIENT_CERT:
        _fail("tls_server_config.client_allowed_sans", "requires client_auth_type RequireAndVerifyClientCert")
    min_version = _tls_version("tls_server_config.min_version", section.get("min_version"), "TLS12")
    max_version = _tls_version("tls_server_config.max_version", section.get("max_version"), "TLS13")
    if min_version > max_version:
        _fail("tls_server_config.min_version", "is above max_version")
    return TLSServerConfig(
        cert_file=_resolve(base, cert),
        key_file=_resolve(base, key),
        client_auth=auth,
        client_ca_file=_resolve(base, ca) if ca else None,
        client_allowed_sans=frozenset(_canonical_san(san) for san in sans),
        min_version=min_version,
        max_version=max_version,
        prefer_server_cipher_suites=_bool(
            "tls_server_config.prefer_server_cipher_suites", section.get("prefer_server_cipher_suites"), True
        ),
    )


def _client_auth(name: str) -> ClientAuth:
    supported = [auth.value for auth in ClientAuth]
    if name in _UNVERIFIED_CLIENT_AUTH:
        _fail(
            "tls_server_config.client_auth_type",
            f"{name} accepts client certificates without verifying them, which this exporter cannot do; "
            f"use {_UNVERIFIED_CLIENT_AUTH[name]} with client_ca_file",
        )
    if name not in supported:
        _fail("tls_server_config.client_auth_type", f"unknown value {name!r}; one of {', '.join(supported)}")
    return ClientAuth(name)


def _tls_version(name: str, value: Any, default: str) -> ssl.TLSVersion:
    text = _string(name, value) or default
    if text in _OLD_TLS_VERSIONS:
        _fail(name, f"{text} is not supported (insecure); use TLS12 or TLS13")
    if text not in _TLS_VERSIONS:
        _fail(name, f"unknown TLS version {text!r}; use TLS12 or TLS13")
    return _TLS_VERSIONS[text]


def _headers(section: dict[str, Any]) -> dict[str, str]:
    _check_keys("http_server_config", section, _HTTP_KEYS)
    # http2 is accepted for compatibility; this server speaks HTTP/1.1, which every scraper supports.
    _bool("http_server_config.http2", section.get("http2"), True)
    headers = _mapping("http_server_config.headers", section.get("headers"))
    result: dict[str, str] = {}
    for name, value in headers.items():
        where = f"http_server_config.headers.{name}"
        if name not in HEADER_VALUES:
            _fail(where, f"cannot be configured; one of {', '.join(HEADER_VALUES)}")
        text = _string(where, value)
        if "\r" in text or "\n" in text:
            _fail(where, "must be one line")
        allowed = HEADER_VALUES[name]
        if text and allowed and text not in allowed:
            _fail(where, f"invalid value {text!r}; one of {', '.join(allowed)}")
        if text:  # blank means unset, as in exporter-toolkit
            result[name] = text
    return result


def _users(section: dict[str, Any]) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for user, value in section.items():
        where = f"basic_auth_users.{user}"
        if not user or ":" in user:
            _fail("basic_auth_users", f"user name {user!r} cannot be used with basic auth (empty or has ':')")
        hashed = _string(where, value)
        match = _BCRYPT_HASH.fullmatch(hashed)
        # The value is never echoed: it could be a plain-text password put there by mistake.
        if match is None:
            _fail(where, "not a bcrypt hash (like $2y$10$ followed by 53 characters, from htpasswd -nBC 10)")
        if not 4 <= int(match["cost"]) <= 31:
            _fail(where, "bcrypt cost must be between 04 and 31")
        users[user] = hashed.encode("ascii")
    return users


def _check_keys(section: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    for key in data:
        where = f"{section}.{key}" if section else key
        if where in _UNSUPPORTED:
            _fail(where, _UNSUPPORTED[where])
        if key not in allowed:
            what = f"{section} keys" if section else "top-level keys"
            _fail(where, f"unknown key; {what} are {', '.join(sorted(allowed))}")


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":  # `section:` with nothing after it is an empty section
        return {}
    if not isinstance(value, dict):
        _fail(name, "must be a mapping" if name else "the file must hold a YAML mapping")
    return value


def _string(name: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        _fail(name, "must be a string")
    return value


def _string_list(name: str, value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        _fail(name, "must be a list of non-empty strings")
    return value


def _bool(name: str, value: Any, default: bool) -> bool:
    text = _string(name, value)
    if not text:
        return default
    if text.lower() not in {"true", "false"}:
        _fail(name, f"must be true or false, not {text!r}")
    return text.lower() == "true"


def _canonical_san(san: str) -> str:
    try:
        return str(ipaddress.ip_address(san))
    except ValueError:
        return san


def _resolve(base: Path, name: str) -> Path:
    return Path(os.path.normpath(base / name))


def _read(name: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(name, f"cannot read {path}: {exc.strerror or exc}")


def _no_password(key_file: Path) -> Callable[[], str]:
    def refuse() -> str:
        raise WebConfigError(
            f"tls_server_config.key_file: {key_file} is encrypted; give an unencrypted key",
            "tls_server_config.key_file",
        )

    return refuse


def _signature(paths: tuple[Path, ...]) -> Signature:
    result: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks: Kubernetes swaps a `..data` link on update
        except OSError:
            result.append(None)
        else:
            result.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(result)


def _ssl_reason(exc: ssl.SSLError) -> str:
    return _one_line(str(exc.reason or exc.strerror or exc))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(name: str, problem: str) -> NoReturn:
    raise WebConfigError(f"{name}: {problem}" if name else problem, name)
