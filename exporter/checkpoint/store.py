"""Where checkpoints live on disk: one gzip-compressed JSON file per part (`runs.json.gz`, `jobs.json.gz`),
written atomically, and a lock so that one process at a time writes them.

Why JSON and gzip: what is kept is small (totals per group, the live runs and jobs, a few learned
facts) and is rewritten whole each time, so an embedded store's partial updates would buy nothing and
add a schema to migrate; a person can read it with `zcat runs.json.gz | jq`; and gzip's CRC-32 and
length trailer make a truncated or damaged file fail to decompress, before any of it is believed. One
file per part, because each part writes after its own syncs, from its own thread, and is checked alone:
turning the jobs off, or a jobs file that cannot be used, leaves the runs' checkpoint good.

Writing: serialised and compressed in memory, then a temporary file with a name of its own in the same
directory (mkstemp: unique, mode 0600), fsync, rename over the old file, fsync the directory. Whatever
kills the writer, a reader finds the old file or the new one, never half of one; a temporary file left by
a kill is removed by the next process that takes the lock.

Two processes: the one that takes the advisory lock (flock on `lock`) writes. Another reads the
checkpoint at start like any process but writes nothing while the lock is held, and takes the lock over
when its holder is gone. Where flock is not supported (some network file systems) both write: renames
keep every file whole, and each file is a consistent state of one of them, checked like any other.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import io
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any

from exporter.checkpoint.header import CORRUPT, MISSING, UNREADABLE, UnusableError

FILES = {"runs": "runs.json.gz", "jobs": "jobs.json.gz"}
LOCK = "lock"
MAX_BYTES = 1 << 30
"""A checkpoint decompressed past this is refused (it is a few MB for the largest accounts)."""


class Store:
    """A state directory: reads, atomic writes, and the writer's lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock_fd: int | None = None
        self.lock_supported = True

    def path(self, part: str) -> Path:
        """The file of a part."""
        return self.directory / FILES[part]

    def read(self, part: str) -> Any:
        """The parsed document of a part; UnusableError (missing, unreadable or corrupt) when there is none."""
        path = self.path(part)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise UnusableError(MISSING, "no checkpoint yet") from None
        except OSError as exc:
            raise UnusableError(UNREADABLE, f"cannot be read: {exc.strerror or exc}") from None
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
                data = unzipped.read(MAX_BYTES + 1)
        except EOFError:
            raise UnusableError(CORRUPT, "truncated") from None
        except (OSError, zlib.error) as exc:
            raise UnusableError(CORRUPT, f"damaged ({exc})") from None
        if len(data) > MAX_BYTES:
            raise UnusableError(CORRUPT, "too large")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise UnusableError(CORRUPT, f"not JSON ({exc})") from None

    def write(self, part: str, document: Any) -> int:
        """Replace a part's file atomically; the bytes written. Raises OSError (or ValueError for a value
        JSON cannot hold) and leaves the old file as it was."""
        data = gzip.compress(
            json.dumps(document, separators=(",", ":"), allow_nan=False).encode(), compresslevel=6, mtime=0
        )
        final = self.path(part)
        fd, temporary = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, final)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return len(data)

    def make(self) -> None:
        """Create the directory when it is missing (OSError when it cannot be)."""
        self.directory.mkdir(parents=True, exist_ok=True)

    def take_lock(self) -> bool:
        """Whether this process may write: it holds the lock now (taking it if it is free), or the file
        system cannot lock. Cheap to call before each write: a second process takes over this way."""
        if self._lock_fd is not None or not self.lock_supported:
            return True
        try:
            fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return True  # the directory cannot be written: the write says so, once
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False  # another process holds it
            self.lock_supported = False  # ENOLCK, EOPNOTSUPP: no locks here; renames still keep files whole
            return True
        self._lock_fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._remove_leftovers()
        return True

    @property
    def locked_by_us(self) -> bool:
        """Whether this process holds the lock."""
        return self._lock_fd is not None

    def holder(self) -> str | None:
        """The pid another process wrote into the lock file, for the log."""
        try:
            return (self.directory / LOCK).read_text(encoding="ascii").strip() or None
        except (OSError, ValueError):
            return None

    def locked_elsewhere(self) -> bool:
        """Whether another process holds the lock now (changes nothing: for `check`)."""
        if self._lock_fd is not None:
            return False
        try:
            fd = os.open(self.directory / LOCK, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        finally:
            os.close(fd)  # closing lets a lock we took go
        return False

    def close(self) -> None:
        """Let the lock go (another process may write from now on)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _remove_leftovers(self) -> None:
        """Temporary files of writes that were killed: only the lock's holder may remove them."""
        for name in FILES.values():
            for leftover in self.directory.glob(f".{name}.*.tmp"):
                leftover.unlink(missing_ok=True)
