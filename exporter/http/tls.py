"""TLS for the HTTP server: the validated `tls_server_config` and the SSL context built from it.

The context is Python's `ssl` (OpenSSL): certificates and keys are loaded when the config is loaded, so a
wrong file is an error at start (or a rejected reload) naming the field, never a failed handshake later.
`client_allowed_sans` is checked after the handshake against the verified client certificate.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from exporter.http.errors import WebConfigError, fail, one_line


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
            fail("tls_server_config.cert_file", f"{self.cert_file} holds no PEM certificate")
        if b"PRIVATE KEY-----" not in key_pem:
            fail("tls_server_config.key_file", f"{self.key_file} holds no PEM private key")
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
                fail(
                    "tls_server_config.key_file",
                    f"{self.key_file} does not match the certificate in cert_file",
                )
            fail(
                "tls_server_config.cert_file",
                f"cannot load {self.cert_file} with key_file: {ssl_reason(exc)}"
                " (a valid PEM certificate whose key is in key_file is expected)",
            )
        if self.client_ca_file is not None:
            _read("tls_server_config.client_ca_file", self.client_ca_file)
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except ssl.SSLError as exc:
                fail(
                    "tls_server_config.client_ca_file",
                    f"{self.client_ca_file} holds no usable PEM certificate: {ssl_reason(exc)}",
                )
        ctx.verify_mode = self.client_auth.verify_mode
        return ctx

    def allows_peer(self, peer_cert: Mapping[str, Any] | None) -> bool:
        """Whether a verified client certificate carries one of `client_allowed_sans` (if any are set)."""
        if not self.client_allowed_sans:
            return True
        for kind, value in (peer_cert or {}).get("subjectAltName", ()):
            # OpenSSL spells IPv6 uncompressed and upper case; exporter-toolkit uses Go's canonical form.
            san = canonical_san(value.strip()) if kind == "IP Address" else value
            if san in self.client_allowed_sans:
                return True
        return False


def canonical_san(san: str) -> str:
    try:
        return str(ipaddress.ip_address(san))
    except ValueError:
        return san


def _read(name: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(name, f"cannot read {path}: {exc.strerror or exc}")


def _no_password(key_file: Path) -> Callable[[], str]:
    def refuse() -> str:
        raise WebConfigError(
            f"tls_server_config.key_file: {key_file} is encrypted; give an unencrypted key",
            "tls_server_config.key_file",
        )

    return refuse


def ssl_reason(exc: ssl.SSLError) -> str:
    return one_line(str(exc.reason or exc.strerror or exc))
