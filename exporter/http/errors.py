"""The one error of the web config, raised by its loader and by the TLS context it builds.

Every message names the field at fault (`tls_server_config.cert_file: ...`), so a mistake stops the
exporter at start with one line an operator can act on.
"""

from __future__ import annotations

from typing import NoReturn


class WebConfigError(Exception):
    """The web config file is unreadable or invalid; the message says which field."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def fail(name: str, problem: str) -> NoReturn:
    """Raise the error for field `name` (empty: the file as a whole)."""
    raise WebConfigError(f"{name}: {problem}" if name else problem, name)


def one_line(text: str) -> str:
    """A library's message (YAML, OpenSSL) folded onto one line, for a one-line error."""
    return " ".join(text.split())
