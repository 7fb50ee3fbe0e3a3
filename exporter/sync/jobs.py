"""The sync of benchmark jobs: a separate part beside the runs, whose failures never fail the run sync.

Cost discipline as for runs. A job that ended (`completed`, `failed`, `cancelled`, `timeout`) never
changes, so it is folded into add-only totals and forgotten; only live jobs are kept (reduced to their
outcome counts, with where each was last listed) and read again. Each sync sends one probe with
`total_count` from the top of the listing, and its limit reaches down to the deepest live job near the
top, as far as a page's bytes allow: live jobs are usually the newest, so in a newest-first listing the
probe alone re-reads every live job and a sync where nothing new came costs 1 request whatever the
history and the live jobs. When the first job changed, it reads down to the one that was first before
(new jobs, newest first; no deeper than the count allows), and when the count still does not add up, on
from the last job it knows (where new jobs land if the listing is oldest first). Live jobs not seen in
those pages are read on in pages or looked up by id (concurrently, one request each), whichever takes
fewer requests (`cut_depth`): a few live jobs far down (an oldest-first listing) are looked up, many of them
read in pages. Anything that still does not add up is healed by a full read, as is drift no probe sees,
at the reconcile interval.

Job views are heavy (hundreds of kilobytes with their scenario outcomes), so pages are sized by bytes:
the limit of the next page is chosen from the bytes per job of the last one to stay near
`TARGET_PAGE_BYTES`, a body past the client's MAX_JOB_BODY_BYTES is refused and the page asked again
with half the limit, and each page is reduced to counts before the next is read.

What it holds and how pages are sized: exporter/sync/jobpages.py. Its isolation from the runs:
exporter/sync/withjobs.py.

Long because the probe, the scans and the full read share one paging loop and the rules of the ledger;
apart, each would have to know the others' (the run sync's parts are split as each is also used alone).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, overload

import structlog

from exporter.metrics.agents import (
    AgentCaps,
    JobsSnapshot,
    JobsTotals,
    build_jobs_snapshot,
)
from exporter.runloop.client import Page, RunloopClient, record_id
from exporter.runloop.errors import (
    ApiError,
    CancelledError,
    PaginationError,
    ResponseTooLargeError,
    ShutdownError,
)
from exporter.runloop.jobs import parse_job
from exporter.runloop.models import Invalid
from exporter.sync.background import Background, Bell, Finished, page_time, patience
from exporter.sync.idset import IdSet
from exporter.sync.jobpages import (
    FIRST_LIMIT,
    TARGET_PAGE_BYTES,
    HeldJobs,
    JobsLedger,
    LiveWalk,
    PageSizer,
    cut_depth,
    last_id,
)
from exporter.sync.lookups import Lookups
from exporter.sync.planner import Costs
from exporter.sync.progress import ReadBoard
from exporter.sync.recheck import Recheck, Rechecks
from exporter.sync.records import InvalidRecords

log = structlog.get_logger("exporter.sync.jobs")

MAX_JOB_PAGES = 200_000


Admits = Callable[[str | None], bool]
"""Whether jobs of a benchmark (None: a job with no benchmark) are exported."""


class JobsSync:
    """Keeps benchmark-job figures up to date; `run` raises RunloopError when it cannot."""

    def __init__(
        self,
        client: RunloopClient,
        *,
        score_buckets: tuple[float, ...],
        caps: AgentCaps,
        admits: Admits,
        invalid: InvalidRecords,
        page_size: int = 100,
        max_concurrent: int = 4,
        reconcile_interval_s: float = 86400.0,
        full_read_timeout_s: float = 21600.0,
        recheck_min_s: float = 0.0,
        recheck_max_s: float = 600.0,
        on_full_read: Callable[[str], None] | None = None,
        on_read_failed: Callable[[], None] | None = None,
        reader: RunloopClient | None = None,
        board: ReadBoard | None = None,
        bell: Bell | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.reader = reader or client  # full reads: beside the sync, their requests counted apart
        self._score_buckets = score_buckets
        self._caps = caps
        self._admits = admits
        self._invalid = invalid
        self._sizer = PageSizer(page_size)
        self._lookups = Lookups(
            client, max_concurrent, Costs(), get=lambda jid, deadline: client.get_job(jid, deadline=deadline)
        )
        self._reconcile_s = reconcile_interval_s
        self._full_read_timeout_s = full_read_timeout_s
        self._on_full_read = on_full_read or (lambda reason: None)
        self._on_read_failed = on_read_failed or (lambda: None)
        self._rechecks = Rechecks(recheck_min_s, recheck_max_s)
        self._board = board or ReadBoard()
        self._reads: Background[JobsLedger] = Background("jobs-read", bell, clock=clock)
        self._clock = clock
        self._ledger: JobsLedger | None = None
        self._last_full = 0.0
        self._cycle = 0
        self._fresh_at: float | None = None  # when the held ledger was last known up to date
        self._confirmed = -1  # the cycle that last found the held ledger up to date (-1: none yet)
        self._resumed = False  # the ledger came from a checkpoint that no sync has confirmed yet

    @property
    def ledger(self) -> JobsLedger | None:
        """What is held between syncs (for tests and benchmarks)."""
        return self._ledger

    @property
    def caps(self) -> AgentCaps:
        """The caps on agent and exception-type labels (a checkpoint keeps what they admitted)."""
        return self._caps

    def now(self) -> float:
        """The sync's clock now (live jobs' rechecks are due on it)."""
        return self._clock()

    def held(self) -> HeldJobs | None:
        """What a checkpoint keeps: the ledger when the last sync found it up to date, else None."""
        ledger = self._ledger
        if ledger is None or self._confirmed != self._cycle or not ledger.counted:
            return None
        now = self._clock()
        return HeldJobs(ledger, now - self._last_full, now)

    def resume(self, held: HeldJobs) -> None:
        """Start from a checkpoint instead of a backfill (as IncrementalSync.resume): nothing is
        published before a sync has brought it up to date. Live jobs keep their place in the recheck
        backoff (a restart does not read every quiet job again), within this process's cap."""
        now = self._clock()
        cap = self._rechecks.max_s
        for job_id, recheck in list(held.ledger.rechecks.items()):  # under these settings' cap
            if recheck.period_s > cap or recheck.due > now + cap:
                held.ledger.rechecks[job_id] = Recheck(
                    min(recheck.period_s, cap), min(recheck.due, now + cap)
                )
        self._ledger = held.ledger
        self._last_full = now - held.since_full_s
        self._resumed = True

    def _confirm(self) -> None:
        self._fresh_at = self._clock()
        self._confirmed = self._cycle
        self._resumed = False

    @property
    def reading(self) -> str | None:
        """The reason of the full read in progress beside the sync, or None."""
        return self._reads.reading

    @overload
    def run(self, deadline: None = None) -> JobsSnapshot: ...
    @overload
    def run(self, deadline: float | None) -> JobsSnapshot | None: ...
    def run(self, deadline: float | None = None) -> JobsSnapshot | None:
        """One sync of the jobs listing, then the snapshot of what we hold (None until the first full
        read ends; never without a deadline, when the sync waits for it)."""
        ledger = self._advance(deadline)
        if ledger is None:
            return None
        return build_jobs_snapshot(ledger.totals, ledger.live.values(), self._caps)

    def _advance(self, deadline: float | None) -> JobsLedger | None:
        """The probes over what we hold, a full read beside them when due or needed, then the swap of a
        full read that ended (as for runs: exporter/sync/engine.py)."""
        self._cycle += 1
        ledger = self._ledger
        if ledger is None:
            self._read("backfill", deadline)
        elif not ledger.counted or not self._incremental(ledger, deadline):
            self._read("probe_mismatch", deadline)
        else:
            self._confirm()
            if self._clock() - self._last_full >= self._reconcile_s:
                self._read("scheduled", deadline, wait=deadline is None)
        finished = self._reads.take()
        if finished is not None:
            self._swap(finished, deadline)
        return None if self._resumed else self._ledger

    def _read(self, reason: str, deadline: float | None, *, wait: bool = True) -> None:
        """Start a full read beside the sync (unless one is going on), and wait for it half of what is
        left of the sync, so that the sync still has time to catch it up and publish."""
        per_page = page_time(deadline)
        self._reads.start(reason, lambda: self._full_read(reason, per_page), cycle=self._cycle)
        if wait:
            self._reads.wait(patience(deadline))

    def _swap(self, finished: Finished[JobsLedger], deadline: float | None) -> None:
        """Swap in a full read that ended: at once when it is as new as this sync, else once the probes
        have brought it up to date. A failed read is tried again by the next sync that needs it."""
        if finished.error is not None:
            if self._ledger is None or not isinstance(finished.error, Exception):
                raise finished.error  # the backfill's failure is the sync's
            self._on_read_failed()
            log.warning(
                "benchmark jobs: full read failed; publishing what we hold, and reading again",
                reason=finished.reason,
                error=str(finished.error),
                error_type=type(finished.error).__name__,
            )
            return
        assert finished.result is not None
        ledger, held = finished.result, self._ledger
        if held is not None:
            self._keep_rechecks(held, ledger)
        newer = held is not None and self._fresh_at is not None and self._fresh_at > finished.started
        try:
            caught_up = (
                finished.cycle == self._cycle or not ledger.counted or self._incremental(ledger, deadline)
            )
        except CancelledError as exc:  # what it learned stays in the read's ledger: go on next sync
            if isinstance(exc, ShutdownError):
                raise
            log.info(
                "benchmark jobs: bringing a full read up to date ran out of time; going on at the next sync"
            )
            self._reads.put_back(finished)
            return
        if not caught_up and newer:  # what we hold is newer: keep it (a reconcile reads again)
            log.info("benchmark jobs: a full read could not be brought up to date; keeping what we hold")
            return
        if finished.reason == "scheduled" and held is not None:
            self._report_drift(held, ledger)
        self._ledger = ledger
        self._last_full = finished.started
        self._confirm()
        self._on_full_read(finished.reason)

    def _keep_rechecks(self, held: JobsLedger, ledger: JobsLedger) -> None:
        """A job still live and unchanged keeps its place in the backoff across a full read."""
        for job_id, job in ledger.live.items():
            if held.live.get(job_id) == job and job_id in held.rechecks:
                ledger.rechecks[job_id] = held.rechecks[job_id]

    # --- incremental -----------------------------------------------------------------------------

    def _incremental(self, ledger: JobsLedger, deadline: float | None) -> bool:
        """Bring the ledger up to date with the probes; False when only a full read can."""
        probe = self._probe(ledger, deadline)
        total = probe.total_count
        if total is None:
            return False
        walk = LiveWalk(ledger, room=max(total - ledger.listed, 0))
        if not walk.note(probe.records):
            return False
        head = record_id(probe.records[0]) if probe.records else None
        last = last_id(probe.records)
        more = probe.has_more and last is not None
        if walk.above and more:  # new jobs above the old head fill more than the probe: read down to it
            assert last is not None
            # At most the new jobs the count allows, and the old head: no history read again.
            for page in self._paged(last, lambda: deadline, cap=lambda: walk.room - len(walk.new) + 1):
                if not walk.note(page.records):
                    return False
                last, more = last_id(page.records) or last, page.has_more
                if not walk.above:
                    break
        if walk.above and head is not None and ledger.head is not None and head != ledger.head:
            return False  # the old head is gone or the listing is not newest first: a full read knows
        missing = self._due(ledger, walk.seen)
        if missing and more and last is not None:
            wanted = self._read_on_entries(ledger, missing, walk)
            if wanted:
                for page in self._paged(last, lambda: deadline, cap=lambda: wanted - walk.reached):
                    walk.note(page.records)
                    if walk.reached >= wanted or all(jid in walk.seen for jid in missing):
                        break
        self._update_live(ledger, walk.seen, deadline)
        new = walk.new
        if ledger.listed + len(new) < total and ledger.tail is not None:
            room = total - ledger.listed - len(new)
            tail_from = ledger.listed + len(new)
            pages = self._pages(ledger.tail, deadline)
            try:
                if not self._scan_pages(pages, ledger, walk.seen, new, room=room, stop_at=None):
                    return False
            except ApiError:  # the last job we knew is gone (400 on its cursor): a full read heals it
                return False
            for offset, record in enumerate(new[len(walk.new_top) :]):
                rid = record_id(record)
                if rid is not None:
                    walk.positions[rid] = tail_from + offset
        if ledger.listed + len(new) != total:
            log.info("benchmark jobs: probes disagree with what we hold", total_count=total)
            return False
        for record in new:
            self._file(ledger, record, IdSet())
        shift = len(walk.new_top)
        ledger.depth = {jid: walk.positions.get(jid, ledger.depth.get(jid, 0) + shift) for jid in ledger.live}
        if head is not None:
            ledger.head = head
        return True

    def _probe(self, ledger: JobsLedger, deadline: float | None) -> Page:
        """The top of the listing with `total_count`: one job, or down to the deepest live job near the
        top when that many jobs fit a page's bytes, so the probe re-reads those live jobs too."""
        limit = self._probe_limit(ledger)
        while True:
            try:
                page = self._client.list_jobs(limit=limit, include_total_count=True, deadline=deadline)
            except ResponseTooLargeError:
                if limit <= 1:
                    raise
                limit = max(1, limit // 2)
                continue
            if page.records and page.body_bytes:
                ledger.top_bytes = page.body_bytes / len(page.records)
            return page

    def _probe_limit(self, ledger: JobsLedger) -> int:
        """The probe reads down to the live jobs worth reading in pages (see `cut_depth`), one page at most."""
        fit = self._fit(ledger.top_bytes)
        reach = cut_depth(sorted(ledger.depth.values()), 0, fit, first_page_free=True)
        return max(1, min(fit, reach))

    def _fit(self, per_job: float) -> int:
        """Jobs of `per_job` bytes that fit one page."""
        if per_job <= 0:
            return min(FIRST_LIMIT, self._sizer.max_limit)
        return max(1, min(self._sizer.max_limit, int(TARGET_PAGE_BYTES // per_job)))

    def _read_on_entries(self, ledger: JobsLedger, missing: list[str], walk: LiveWalk) -> int:
        """How far down (entries from the top) to read on below the pages read, to find live jobs not
        seen yet; the ones deeper than that are looked up by id. 0: look them all up."""
        shift = len(walk.new_top)
        depths = sorted(ledger.depth.get(jid, 0) + shift for jid in missing)
        return cut_depth(depths, walk.reached, self._fit(ledger.top_bytes))

    def _pages(self, after: str, deadline: float | None) -> Iterator[Page]:
        return self._paged(after, lambda: deadline)

    def _scan(
        self,
        records: list[Any],
        ledger: JobsLedger,
        seen: dict[str, Any],
        new: list[Any],
        *,
        room: int,
        stop_at: str | None,
    ) -> bool | None:
        """Note the records of one page; True when `stop_at` was reached, None to read on, False when
        more new jobs showed than the count allows (the listing is not where we thought)."""
        for record in records:
            rid = record_id(record)
            if rid is not None and rid == stop_at:
                return True
            if rid is not None and rid in ledger.live:
                seen[rid] = record
                continue
            new.append(record)
            if rid is not None:
                seen[rid] = record
                if stop_at is None:
                    ledger.tail = rid
            if len(new) > room:
                return False
        return None

    def _scan_pages(
        self,
        pages: Iterator[Page],
        ledger: JobsLedger,
        seen: dict[str, Any],
        new: list[Any],
        *,
        room: int,
        stop_at: str | None,
    ) -> bool:
        for page in pages:
            found = self._scan(page.records, ledger, seen, new, room=room, stop_at=stop_at)
            if found is not None:
                return found
        return stop_at is None  # the head scan must find the old head; the tail scan ends with the list

    def _update_live(self, ledger: JobsLedger, seen: dict[str, Any], deadline: float | None) -> None:
        """Learn what each live job is now: from a page this sync read, or by id (concurrently)."""
        for job_id in [jid for jid in ledger.live if jid in seen]:
            self._settle(ledger, job_id, seen[job_id])
        for job_id, record in self._lookups.fetch(self._due(ledger, seen), deadline):
            self._settle(ledger, job_id, record)

    def _due(self, ledger: JobsLedger, seen: dict[str, Any]) -> list[str]:
        """Live jobs this sync has not read yet and reads now: every active one, and the quiet ones that
        are due, the most overdue first, within the sync's budget (see exporter/sync/recheck.py)."""
        now = self._clock()
        active: list[str] = []
        quiet: list[tuple[float, str]] = []
        for jid in ledger.live:
            if jid in seen:
                continue
            recheck = ledger.rechecks.get(jid)
            if self._rechecks.active(recheck):
                active.append(jid)
            elif recheck is not None and recheck.due <= now:
                quiet.append((recheck.due, jid))
        quiet.sort()
        budget = self._rechecks.budget(len(ledger.live) - len(active))
        return active + [jid for _, jid in quiet[:budget]]

    def _settle(self, ledger: JobsLedger, job_id: str, record: Any | None) -> None:
        """A live job as it is now: gone (404), ended (folded into the totals) or still live."""
        held = ledger.live.pop(job_id)
        if record is None:
            ledger.listed -= 1
            return
        job = parse_job(record)
        if isinstance(job, Invalid):
            self._invalid.report(job)
            ledger.live[job_id] = held  # keep what we knew; the next full read decides
            return
        if job.is_terminal:
            ledger.totals.add(job, self._caps)
            ledger.rechecks.pop(job_id, None)
        else:
            ledger.live[job_id] = job
            ledger.rechecks[job_id] = self._rechecks.after_read(
                job_id, ledger.rechecks.get(job_id), changed=job != held, now=self._clock()
            )

    # --- full read -------------------------------------------------------------------------------

    def _full_read(self, reason: str, per_page: float | None) -> JobsLedger:
        """Read the whole listing into a fresh ledger (in the background: `_swap` takes it)."""
        now = time.monotonic()
        overall = now + self._full_read_timeout_s

        def page_deadline() -> float:
            return overall if per_page is None else min(overall, time.monotonic() + per_page)

        ledger = JobsLedger(JobsTotals(self._score_buckets))
        ids = IdSet()
        total: int | None = None
        progress = self._board.start("jobs", reason, self._clock)
        try:
            for page in self._paged(None, page_deadline, include_total_count=True, client=self.reader):
                if total is None:
                    total = page.total_count
                    if page.records and page.body_bytes:
                        ledger.top_bytes = page.body_bytes / len(page.records)
                progress.page(len(page.records), page.total_count)
                for record in page.records:
                    rid = record_id(record)
                    if ledger.head is None and rid is not None:
                        ledger.head = rid
                    if rid is not None:
                        ledger.tail = rid
                    index = ledger.listed
                    self._file(ledger, record, ids)
                    if rid is not None and rid in ledger.live and rid not in ledger.depth:
                        ledger.depth[rid] = index
        finally:
            progress.done(jobs=ledger.listed, live=len(ledger.live))
        ledger.counted = total == ledger.listed
        return ledger

    def _report_drift(self, before: JobsLedger, after: JobsLedger) -> None:
        held = build_jobs_snapshot(before.totals, before.live.values(), self._caps)
        found = build_jobs_snapshot(after.totals, after.live.values(), self._caps)
        if held != found or before.listed != after.listed:
            log.warning(
                "benchmark jobs: reconcile found drift and healed it",
                jobs_held=before.listed,
                jobs_found=after.listed,
            )

    def _file(self, ledger: JobsLedger, record: Any, ids: IdSet) -> None:
        """Account for one listed job: count it, and hold it (live) or fold it (ended)."""
        ledger.listed += 1  # total_count counts every entry, invalid and filtered-out ones too
        job = parse_job(record)
        if isinstance(job, Invalid):
            self._invalid.report(job)
            return
        if not ids.add(job.id):
            self._invalid.report(
                Invalid("job_duplicate_id", job.id, "the same job id came twice in one listing")
            )
            return
        if not self._admits(job.benchmark_id):
            return
        if job.is_terminal:
            ledger.totals.add(job, self._caps)
        else:
            ledger.live[job.id] = job
            ledger.rechecks[job.id] = self._rechecks.first(self._clock())

    def _paged(
        self,
        after: str | None,
        deadline: Callable[[], float | None],
        *,
        include_total_count: bool = False,
        cap: Callable[[], int] | None = None,
        client: RunloopClient | None = None,
    ) -> Iterator[Page]:
        """Pages of the listing after `after`, each limit sized by the weight of the jobs before it.

        A page refused as too large is asked again with half the limit. Paging stops with
        PaginationError when the cursor does not advance or pages outnumber what the count allows.
        """
        cursor = after
        used: set[str] = set()
        max_pages = MAX_JOB_PAGES
        number = 0
        while True:
            try:
                limit = self._sizer.limit if cap is None else max(1, min(self._sizer.limit, cap()))
                page = (client or self._client).list_jobs(
                    limit=limit,
                    starting_after=cursor,
                    include_total_count=include_total_count and number == 0,
                    deadline=deadline(),
                )
            except ResponseTooLargeError:
                self._sizer.limit = min(self._sizer.limit, limit)
                if not self._sizer.halve():
                    raise
                log.info("a page of benchmark jobs was too large; asking for fewer", limit=self._sizer.limit)
                continue
            number += 1
            if number == 1 and page.total_count is not None:
                max_pages = 2 * page.total_count + 2
            self._sizer.seen(page)
            yield page
            has_more = page.has_more
            ids = [rid for rid in map(record_id, page.records) if rid is not None]
            # The caller is done with this page: free its jobs before the next page arrives, so one
            # page, not two, is ever held (a caller keeps only the records it took out of it).
            page.records.clear()
            del page
            if not has_more:
                return
            if not ids:
                raise PaginationError(f"jobs page {number} says has_more but holds no id to continue from")
            if ids[-1] in used or ids[-1] == cursor:
                raise PaginationError(f"the jobs cursor did not advance after {number} pages")
            if number >= max_pages:
                raise PaginationError(f"jobs: has_more still true after {number} pages")
            used.add(ids[-1])
            cursor = ids[-1]
