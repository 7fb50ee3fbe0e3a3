"""Basic auth for the HTTP server: `Authorization: Basic` checked against the web config's bcrypt hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from base64 import b64decode
from collections.abc import Callable, Mapping

import bcrypt

_BCRYPT_MAX_PASSWORD = 72

BCRYPT_HASH = re.compile(r"\$2[abxy]?\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")


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
        cost = min(max((bcrypt_cost(hashed) for hashed in self._users.values()), default=10), 14)
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


def bcrypt_cost(hashed: bytes) -> int:
    """The cost factor of a bcrypt hash (10 when it cannot be read)."""
    match = BCRYPT_HASH.fullmatch(hashed.decode("ascii", "replace"))
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
