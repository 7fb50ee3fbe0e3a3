"""A checkpoint's header: what it must match before it is believed.

The format version, the part, the API's base URL, the account and every setting that shapes the part's
figures. The account is an HMAC-SHA256 of the API key under a random salt kept beside it: the same key
gives the same digest under that salt, the digest cannot give the key back, and each process draws its
own salt, so one key gives different digests in different files. Settings are kept as digests, by the name of
their environment variable, so that a mismatch can be named without the file holding filter patterns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter import __version__

MAGIC = "runloop-exporter-checkpoint"
VERSION = 1
"""Bumped whenever what a checkpoint holds, or what its figures mean, changes: an older file is then
read in full again, never misread."""

MISSING = "missing"
UNREADABLE = "unreadable"
CORRUPT = "corrupt"
REJECTED = "rejected"
USED = "used"
LOAD_RESULTS = (USED, MISSING, UNREADABLE, CORRUPT, REJECTED)


class UnusableError(Exception):
    """A checkpoint that is not used, with the result it is counted under and why, in words."""

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


def digest(value: object) -> str:
    """A short digest of a setting's value (the same value always gives the same digest)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Identity:
    """What a checkpoint must have been written for: this API, this key's account, these settings."""

    base_url: str
    key: Callable[[], str]
    settings: Mapping[str, Mapping[str, str]]  # part -> environment variable -> digest of its value
    salt: bytes = field(default_factory=lambda: os.urandom(16))

    def account(self, salt: bytes | None = None) -> str:
        """The HMAC-SHA256 of the current key under `salt` (this process's own by default)."""
        return hmac.new(self.salt if salt is None else salt, self.key().encode(), hashlib.sha256).hexdigest()


def envelope(part: str, identity: Identity, account: str, body: Any, written_at: float) -> dict[str, Any]:
    """The document written for a part: its header and its body."""
    return {
        "format": MAGIC,
        "version": VERSION,
        "part": part,
        "written_at": written_at,
        "exporter_version": __version__,
        "base_url": identity.base_url,
        "account": {"salt": identity.salt.hex(), "hmac_sha256": account},
        "settings": dict(identity.settings.get(part, {})),
        "body": body,
    }


def open_envelope(doc: Any, part: str, identity: Identity) -> tuple[Any, float]:
    """The body and the time it was written, once the header matches; else UnusableError saying why."""
    if not isinstance(doc, dict) or doc.get("format") != MAGIC:
        raise UnusableError(CORRUPT, "not a runloop-exporter checkpoint")
    if doc.get("version") != VERSION:
        raise UnusableError(
            REJECTED, f"written in checkpoint format {doc.get('version')!r}; this exporter reads {VERSION}"
        )
    if doc.get("part") != part:
        raise UnusableError(CORRUPT, f"not a checkpoint of the {part}")
    written_at = doc.get("written_at")
    if isinstance(written_at, bool) or not isinstance(written_at, int | float):
        raise UnusableError(CORRUPT, "no time of writing")
    if doc.get("base_url") != identity.base_url:
        raise UnusableError(
            REJECTED, f"written for another API ({doc.get('base_url')!r}, not {identity.base_url!r})"
        )
    account = doc.get("account")
    if not isinstance(account, dict):
        raise UnusableError(CORRUPT, "no account fingerprint")
    try:
        salt = bytes.fromhex(str(account["salt"]))
        same = bool(salt) and hmac.compare_digest(str(account["hmac_sha256"]), identity.account(salt))
    except (KeyError, ValueError):
        raise UnusableError(CORRUPT, "no account fingerprint") from None
    if not salt:
        raise UnusableError(CORRUPT, "no account fingerprint")
    if not same:
        raise UnusableError(REJECTED, "written for another account (the API key differs)")
    settings = doc.get("settings")
    if not isinstance(settings, dict):
        raise UnusableError(CORRUPT, "no settings fingerprint")
    want = identity.settings.get(part, {})
    differ = sorted(name for name in want.keys() | settings.keys() if want.get(name) != settings.get(name))
    if differ:
        raise UnusableError(REJECTED, "written with other settings: " + ", ".join(differ))
    if "body" not in doc:
        raise UnusableError(CORRUPT, "no body")
    return doc["body"], float(written_at)
