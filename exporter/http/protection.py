"""Basic auth and TLS settings in force, and their reload when a file they came from changes.

Like exporter-toolkit, the server notices when the web config file or a certificate it names changes
(cert-manager rotating a Secret) and loads it again; a broken new version is logged and the previous
one kept, and a new version that would turn TLS on or off is refused (that needs a restart).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from exporter.http.auth import BasicAuth
from exporter.http.errors import WebConfigError
from exporter.http.webconfig import Signature, WebConfig, load_web_config

log = structlog.get_logger(__name__)

RELOAD_CHECK_INTERVAL_S = 1.0
"""How often a request may stat the config's files; between checks the protection in force is used."""


@dataclass(frozen=True)
class Protection:
    """A loaded web config with the basic-auth checker (and its cache) that belongs to it."""

    web: WebConfig
    auth: BasicAuth | None

    @classmethod
    def of(cls, web: WebConfig) -> Protection:
        """Protection for a freshly loaded config (a new config gets a fresh cache)."""
        return cls(web, BasicAuth(web.users) if web.users else None)

    def allows(self, authorization: str | None) -> bool:
        """Whether a request with this Authorization header may see protected paths."""
        return self.auth is None or self.auth.check(authorization)


class WatchedProtection:
    """The protection in force, loaded again when a file it came from changed (checked once a second)."""

    def __init__(self, web: WebConfig) -> None:
        self.latest = Protection.of(web)
        self._reload_lock = threading.Lock()
        self._next_reload_check = time.monotonic() + RELOAD_CHECK_INTERVAL_S
        self._rejected_signature: Signature | None = None

    def current(self) -> Protection:
        """The protection in force now, after loading it again if a file changed since the last check."""
        current = self.latest
        if current.web.source is None or time.monotonic() < self._next_reload_check:
            return current
        with self._reload_lock:
            current = self.latest
            if current.web.source is None or time.monotonic() < self._next_reload_check:
                return current  # another thread checked while this one waited
            self._next_reload_check = time.monotonic() + RELOAD_CHECK_INTERVAL_S
            signature = current.web.current_signature()
            if signature not in (current.web.signature, self._rejected_signature):
                self.latest = self._reload(current.web, current.web.source, signature) or current
            return self.latest

    def _reload(self, old: WebConfig, source: Path, signature: Signature) -> Protection | None:
        try:
            new = load_web_config(source)
        except WebConfigError as exc:
            self._rejected_signature = signature  # tried again once a file changes again
            log.error("web config reload failed; keeping the previous one", error=str(exc))
            return None
        if (new.tls is None) != (old.tls is None):
            self._rejected_signature = signature
            log.error(
                "web config reload would turn TLS on or off; keeping the previous one (restart to change it)",
                path=str(source),
            )
            return None
        log.info("web config reloaded", path=str(source), basic_auth_users=len(new.users))
        return Protection.of(new)
