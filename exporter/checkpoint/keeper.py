"""When checkpoints are read and written: read once at start, before the first cycle; written after a cycle
that found its part up to date, at most every `interval_s`, and at a clean stop.

A checkpoint is a shortcut, never a need: a problem is told once (one line when a part's checkpoint is
not used, one when writes start failing, not one per sync) and the exporter runs on, reading in full.

A part is written only after a cycle that ran under one key: the key file may change at runtime, to a
key of another account, and what a cycle learned while it changed may mix the two. The next cycle under
the new key either agrees with what is held (the probes find its run and job ids, which belong to one
account) or reads in full; either way what it confirms is written under the new key's fingerprint.

The write runs in the part's cycle thread after it published (the ledger must not change while it is
serialised), so it delays that part's next cycle by the time it takes, never a publish.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from exporter.checkpoint.header import (
    CORRUPT,
    MISSING,
    UNREADABLE,
    USED,
    Identity,
    UnusableError,
    envelope,
    open_envelope,
)
from exporter.checkpoint.store import Store
from exporter.metrics.telemetry import Telemetry

log = structlog.get_logger("exporter.checkpoint")


class Source(Protocol):
    """A part as a checkpoint sees it (exporter.checkpoint.runs, exporter.checkpoint.jobs)."""

    def save(self) -> dict[str, Any] | None: ...
    def restore(self, body: Any, age_s: float) -> None: ...


@dataclass(frozen=True)
class Verdict:
    """What a start would do with a part's checkpoint (for `check`)."""

    part: str
    path: Path
    result: str  # USED, or why not: MISSING, UNREADABLE, CORRUPT, REJECTED
    reason: str = ""
    age_s: float | None = None
    since_full_s: float | None = None  # since the full read it descends from, at the time of reading


@dataclass
class _Part:
    source: Source
    account: str | None  # the key's fingerprint when the part's last cycle ended
    lock: threading.Lock = field(default_factory=threading.Lock)
    written: float | None = None  # monotonic, of the last write
    unsaved: bool = False  # a cycle confirmed something since the last write


class Checkpoints:
    """Reads each part's checkpoint at start, writes them as the parts' cycles go, and at a clean stop."""

    def __init__(
        self,
        store: Store,
        identity: Identity,
        sources: dict[str, Source],
        telemetry: Telemetry,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._identity = identity
        self._telemetry = telemetry
        self._interval_s = interval_s
        self._clock = clock
        self._wall = wall
        self._usable = True  # the directory can be used at all
        self._failing = False  # writes fail: told once, until one succeeds again
        self._telling = threading.Lock()  # the parts write from their own threads: one of them tells
        account = self._account()
        self._parts = {name: _Part(source, account) for name, source in sources.items()}
        telemetry.init_checkpoint(self._parts)

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts kept (runs, and jobs when they are read)."""
        return tuple(self._parts)

    def start(self) -> None:
        """Make the directory, take the writer's lock, and hand each part its checkpoint when it matches."""
        store = self._store
        try:
            store.make()
            os.listdir(store.directory)
        except OSError as exc:
            self._usable = False
            log.warning(
                "the checkpoint directory cannot be used; reading in full, and running without a checkpoint",
                path=str(store.directory),
                error=exc.strerror or str(exc),
            )
            for part in self._parts:
                self._telemetry.checkpoint_loads.labels(part, UNREADABLE).inc()
            return
        if not store.take_lock():
            log.warning(
                "another exporter holds the checkpoint directory's lock; this one reads the checkpoint but "
                "writes none while it holds it",
                path=str(store.directory),
                holder_pid=store.holder(),
            )
        for name, kept in self._parts.items():
            self._load(name, kept)

    def inspect(self) -> list[Verdict]:
        """What a start would do with each part's checkpoint, changing nothing on disk (`check`): the
        same checks as `start`, the body decoded into this process's parts (which `check` never syncs)."""
        out = []
        for name, part in self._parts.items():
            path = self._store.path(name)
            try:
                body, age_s = self._restore(name, part)
            except UnusableError as exc:
                out.append(Verdict(name, path, exc.result, exc.reason))
                continue
            out.append(Verdict(name, path, USED, age_s=age_s, since_full_s=_since_full(body) + age_s))
        return out

    def held_elsewhere(self) -> str | None:
        """The pid of a running exporter that holds the directory's lock, if one does."""
        return self._store.holder() if self._store.locked_elsewhere() else None

    def after_cycle(self, name: str) -> None:
        """After a successful cycle of a part: write it when it is due and the key did not change."""
        part = self._parts.get(name)
        if part is None or not self._usable:
            return
        with part.lock:
            account = self._account()
            same, part.account = account is not None and account == part.account, account
            if not same:
                return  # the key changed during the cycle: the next one confirms under the new key
            part.unsaved = True
            if part.written is not None and self._clock() - part.written < self._interval_s:
                return
            self._write(name, part, account)

    def stop(self, idle: Iterable[str]) -> None:
        """At a clean stop: write each part whose loop is idle and has news, then let the lock go."""
        if self._usable:
            for name in idle:
                part = self._parts.get(name)
                if part is None:
                    continue
                with part.lock:
                    account = self._account()
                    if part.unsaved and account is not None and account == part.account:
                        self._write(name, part, account)
        self._store.close()

    def _restore(self, name: str, part: _Part) -> tuple[Any, float]:
        """Read a part's checkpoint, check it against this process and restore it into the part: its
        body and age. Raises UnusableError (a body out of shape is CORRUPT) and restores nothing then."""
        body, written_at = open_envelope(self._store.read(name), name, self._identity)
        age_s = max(self._wall() - written_at, 0.0)
        try:
            part.source.restore(body, age_s)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise UnusableError(CORRUPT, f"damaged ({exc})") from None
        return body, age_s

    def _load(self, name: str, part: _Part) -> None:
        path = self._store.path(name)
        try:
            _, age_s = self._restore(name, part)
        except UnusableError as exc:
            self._telemetry.checkpoint_loads.labels(name, exc.result).inc()
            if exc.result == MISSING:
                log.info("no checkpoint yet; reading in full", part=name, path=str(path))
            else:
                log.warning(
                    "checkpoint not used; reading in full", part=name, reason=exc.reason, path=str(path)
                )
            return
        self._telemetry.checkpoint_loads.labels(name, USED).inc()
        self._telemetry.checkpoint_age.labels(name).set(age_s)
        log.info(
            "resuming from the checkpoint; the first sync brings it up to date",
            part=name,
            age_s=round(age_s, 1),
            path=str(path),
        )

    def _write(self, name: str, part: _Part, account: str | None) -> None:
        """Write a part now, if this process may and its last cycle confirmed what it holds."""
        if account is None or not self._store.take_lock():
            return
        body = part.source.save()
        if body is None:
            return  # the last cycle did not find the part up to date: nothing sure to keep
        started = self._clock()
        try:
            size = self._store.write(name, envelope(name, self._identity, account, body, self._wall()))
        except (OSError, ValueError) as exc:
            part.written = self._clock()  # tried again at the interval, not at every sync
            self._telemetry.checkpoint_writes.labels(name, "failure").inc()
            with self._telling:
                tell, self._failing = not self._failing, True
            if tell:
                log.warning(
                    "the checkpoint cannot be written; the exporter runs on, and a restart will read in full",
                    part=name,
                    path=str(self._store.directory),
                    error=getattr(exc, "strerror", None) or str(exc),
                )
            return
        part.written, part.unsaved = self._clock(), False
        self._telemetry.checkpoint_writes.labels(name, "success").inc()
        self._telemetry.checkpoint_last_write.labels(name).set(self._wall())
        with self._telling:
            told, self._failing = self._failing, False
        if told:
            log.info("the checkpoint is written again", part=name)
        log.debug("checkpoint written", part=name, bytes=size, duration_s=round(self._clock() - started, 3))

    def _account(self) -> str | None:
        try:
            return self._identity.account()
        except (OSError, ValueError):  # the key cannot be read now: write nothing under a doubt
            return None


def _since_full(body: Any) -> float:
    """The longest time since a full read among a body's listings (runs) or of the body (jobs)."""
    found = [body.get("since_full_s", 0.0)] + [
        listing.get("since_full_s", 0.0) for listing in body.get("listings", []) if isinstance(listing, dict)
    ]
    return max(float(x) for x in found if isinstance(x, int | float))
