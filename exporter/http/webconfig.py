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

This module reads and validates the YAML into a :class:`WebConfig`; the SSL context is built in
`exporter.http.tls`, basic auth is checked in `exporter.http.auth`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.filestamp import FileStamp, file_stamps
from exporter.http.auth import BCRYPT_HASH
from exporter.http.errors import WebConfigError, fail, one_line
from exporter.http.tls import ClientAuth, TLSServerConfig, canonical_san

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

Signature = tuple[FileStamp | None, ...]
"""The change stamp of each file a config came from (None for a file that is gone)."""

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
        """The stamp of each file now; differs from `signature` once one changed."""
        return file_stamps(self.files())


def load_web_config(path: Path) -> WebConfig:
    """Read and validate a web config file, including the certificates and keys it names."""
    path = Path(os.path.abspath(path))  # also folds `..`, as Go's filepath.Join does
    try:
        return _load(path)
    except WebConfigError as exc:
        raise WebConfigError(f"{path}: {exc}", exc.field) from None


def _load(path: Path) -> WebConfig:
    # Files are stat'ed before they are read, so a change racing with the load is seen next time.
    before = file_stamps((path,))
    try:
        text = path.read_bytes()
    except OSError as exc:
        fail("", f"cannot read: {exc.strerror or exc}")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a BaseLoader: strings only, no objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        fail("", f"not valid YAML{where}: {one_line(str(exc.problem or exc))}")
    except yaml.YAMLError as exc:
        fail("", f"not valid YAML: {one_line(str(exc))}")
    top = _mapping("", data)
    _check_keys("", top, _TOP_LEVEL)
    tls = _tls(_mapping("tls_server_config", top.get("tls_server_config")), path.parent)
    headers = _headers(_mapping("http_server_config", top.get("http_server_config")))
    users = _users(_mapping("basic_auth_users", top.get("basic_auth_users")))
    signature = (*before, *file_stamps(tls.files() if tls else ()))
    context = tls.context() if tls else None
    return WebConfig(path, tls, users, headers, context, signature)


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
            fail("tls_server_config.cert_file", "missing: TLS needs cert_file and key_file")
        return None  # no TLS, as in exporter-toolkit: the file may hold only basic_auth_users
    if not cert:
        fail("tls_server_config.cert_file", "missing: TLS needs cert_file and key_file")
    if not key:
        fail("tls_server_config.key_file", "missing: TLS needs cert_file and key_file")
    auth = _client_auth(auth_name or ClientAuth.NO_CLIENT_CERT.value)
    if ca and auth is ClientAuth.NO_CLIENT_CERT:
        fail(
            "tls_server_config.client_auth_type",
            "client_ca_file is set but client_auth_type is NoClientCert, so it would be ignored; "
            "use RequireAndVerifyClientCert",
        )
    if not ca and auth is not ClientAuth.NO_CLIENT_CERT:
        fail("tls_server_config.client_ca_file", f"required when client_auth_type is {auth.value}")
    sans = _string_list("tls_server_config.client_allowed_sans", section.get("client_allowed_sans"))
    if sans and auth is not ClientAuth.REQUIRE_AND_VERIFY_CLIENT_CERT:
        fail("tls_server_config.client_allowed_sans", "requires client_auth_type RequireAndVerifyClientCert")
    min_version = _tls_version("tls_server_config.min_version", section.get("min_version"), "TLS12")
    max_version = _tls_version("tls_server_config.max_version", section.get("max_version"), "TLS13")
    if min_version > max_version:
        fail("tls_server_config.min_version", "is above max_version")
    return TLSServerConfig(
        cert_file=_resolve(base, cert),
        key_file=_resolve(base, key),
        client_auth=auth,
        client_ca_file=_resolve(base, ca) if ca else None,
        client_allowed_sans=frozenset(canonical_san(san) for san in sans),
        min_version=min_version,
        max_version=max_version,
        prefer_server_cipher_suites=_bool(
            "tls_server_config.prefer_server_cipher_suites", section.get("prefer_server_cipher_suites"), True
        ),
    )


def _client_auth(name: str) -> ClientAuth:
    supported = [auth.value for auth in ClientAuth]
    if name in _UNVERIFIED_CLIENT_AUTH:
        fail(
            "tls_server_config.client_auth_type",
            f"{name} accepts client certificates without verifying them, which this exporter cannot do; "
            f"use {_UNVERIFIED_CLIENT_AUTH[name]} with client_ca_file",
        )
    if name not in supported:
        fail("tls_server_config.client_auth_type", f"unknown value {name!r}; one of {', '.join(supported)}")
    return ClientAuth(name)


def _tls_version(name: str, value: Any, default: str) -> ssl.TLSVersion:
    text = _string(name, value) or default
    if text in _OLD_TLS_VERSIONS:
        fail(name, f"{text} is not supported (insecure); use TLS12 or TLS13")
    if text not in _TLS_VERSIONS:
        fail(name, f"unknown TLS version {text!r}; use TLS12 or TLS13")
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
            fail(where, f"cannot be configured; one of {', '.join(HEADER_VALUES)}")
        text = _string(where, value)
        if "\r" in text or "\n" in text:
            fail(where, "must be one line")
        allowed = HEADER_VALUES[name]
        if text and allowed and text not in allowed:
            fail(where, f"invalid value {text!r}; one of {', '.join(allowed)}")
        if text:  # blank means unset, as in exporter-toolkit
            result[name] = text
    return result


def _users(section: dict[str, Any]) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for user, value in section.items():
        where = f"basic_auth_users.{user}"
        if not user or ":" in user:
            fail("basic_auth_users", f"user name {user!r} cannot be used with basic auth (empty or has ':')")
        hashed = _string(where, value)
        match = BCRYPT_HASH.fullmatch(hashed)
        # The value is never echoed: it could be a plain-text password put there by mistake.
        if match is None:
            fail(where, "not a bcrypt hash (like $2y$10$ followed by 53 characters, from htpasswd -nBC 10)")
        if not 4 <= int(match["cost"]) <= 31:
            fail(where, "bcrypt cost must be between 04 and 31")
        users[user] = hashed.encode("ascii")
    return users


def _check_keys(section: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    for key in data:
        where = f"{section}.{key}" if section else key
        if where in _UNSUPPORTED:
            fail(where, _UNSUPPORTED[where])
        if key not in allowed:
            what = f"{section} keys" if section else "top-level keys"
            fail(where, f"unknown key; {what} are {', '.join(sorted(allowed))}")


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":  # `section:` with nothing after it is an empty section
        return {}
    if not isinstance(value, dict):
        fail(name, "must be a mapping" if name else "the file must hold a YAML mapping")
    return value


def _string(name: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        fail(name, "must be a string")
    return value


def _string_list(name: str, value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        fail(name, "must be a list of non-empty strings")
    return value


def _bool(name: str, value: Any, default: bool) -> bool:
    text = _string(name, value)
    if not text:
        return default
    if text.lower() not in {"true", "false"}:
        fail(name, f"must be true or false, not {text!r}")
    return text.lower() == "true"


def _resolve(base: Path, name: str) -> Path:
    return Path(os.path.normpath(base / name))
