"""The API key, from the environment or from a file that may be rotated while the exporter runs.

Kubernetes updates a mounted Secret in place; the file is checked (a cheap stat) before each request
and re-read when it changed, so a rotated key is used without a restart. Every key ever read is
registered with the log redactor.
"""

from __future__ import annotations

import threading
from pathlib import Path

import structlog
from pydantic import SecretStr

from exporter.filestamp import FileStamp, file_stamp
from exporter.logs import REDACTOR

log = structlog.get_logger(__name__)


def read_key_file(path: Path) -> str:
    """Read a key from a file such as a mounted Kubernetes Secret; surrounding whitespace is ignored."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(
            f"must be a readable file holding the key; {path} cannot be read: {exc.strerror or exc}"
        ) from None
    if not key:
        raise ValueError(f"must be a file holding the key; {path} is empty")
    return key


class ApiKey:
    """Callable giving the current key."""

    def __init__(self, value: SecretStr | None = None, path: Path | None = None) -> None:
        if (value is None) == (path is None):
            raise ValueError("give exactly one of a key value or a key file")
        self._path = path
        self._lock = threading.Lock()
        self._stamp: FileStamp | None = None
        self._problem: str | None = None  # the last read error logged, so that it is logged once
        self._key = SecretStr("")
        if value is not None:
            self._set(value.get_secret_value())
        else:
            self._reload()

    def _set(self, key: str) -> None:
        REDACTOR.add(key)
        self._key = SecretStr(key)

    def _reload(self) -> None:
        assert self._path is not None
        try:
            stamp = file_stamp(self._path)
            if stamp == self._stamp:
                return
            key = read_key_file(self._path)
        except (OSError, ValueError) as exc:
            if self._key.get_secret_value():
                if str(exc) != self._problem:  # checked before every request: say it once, not each time
                    self._problem = str(exc)
                    log.warning("the API key file cannot be read; keeping the previous key", error=str(exc))
                return
            raise
        self._problem = None
        if self._stamp is not None and key != self._key.get_secret_value():
            log.info("the API key file changed; using the new key", path=str(self._path))
        self._stamp = stamp
        self._set(key)

    def __call__(self) -> str:
        if self._path is not None:
            with self._lock:
                self._reload()
        return self._key.get_secret_value()

    def __repr__(self) -> str:
        return "ApiKey(**********)"
