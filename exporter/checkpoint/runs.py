"""The runs' part of a checkpoint: each listing's ledger (totals per group, the runs that can still change,
the ends of the listing), what the sync learned of the listing, the labels' caps and the names of the
exported benchmarks, as JSON values and back.

Only what /metrics shows, and the ids needed to go on: group keys (benchmark ids and label values that
became labels), counts, histogram buckets and sums, run ids and times. Run names, metadata values that
are not labels, environment variables and secrets are never decoded by the exporter, so they cannot be
here. Decoding is strict and whole: the first value out of shape raises `CorruptError` and nothing is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.checkpoint import shape as s
from exporter.metrics.aggregate import (
    DURATION_SCALE,
    LAST_FAILED,
    SCORE_SCALE,
    FailedRun,
    GroupKey,
    GroupTotals,
    Histogram,
    RunningRun,
    Totals,
)
from exporter.metrics.labels import RunLabels
from exporter.runloop.models import TERMINAL_STATES
from exporter.sync.engine import IncrementalSync
from exporter.sync.ledger import HeldListing, Ledger
from exporter.sync.names import BenchmarkNames


@dataclass
class RunsCheckpoint:
    """What the runs' part keeps, and where it goes back to: one sync per listing (one, or one per
    included benchmark id), the labels' caps and the names."""

    names: BenchmarkNames
    labels: RunLabels
    score_buckets: tuple[float, ...]
    duration_buckets: tuple[float, ...]
    listings: dict[str | None, IncrementalSync] = field(default_factory=dict)

    def save(self) -> dict[str, Any] | None:
        """The part as JSON values, or None unless every listing's last sync found its ledger up to date."""
        held = {bid: sync.held() for bid, sync in self.listings.items()}
        kept = {bid: h for bid, h in held.items() if h is not None}
        if not kept or len(kept) < len(held):
            return None
        shown = {
            key.benchmark_id
            for h in kept.values()
            for key in [*h.ledger.totals.groups, *(run.key for run in h.ledger.running.values())]
        }
        names = self.names.names
        return {
            "listings": [_listing(bid, h) for bid, h in kept.items()],
            "labels": {name: sorted(values) for name, values in self.labels.admitted().items()},
            "names": {bid: names[bid] for bid in sorted(b for b in shown if b is not None and b in names)},
            "unnamed": sorted(self.names.unnamed),
        }

    def restore(self, body: Any, age_s: float) -> None:
        """Decode the whole part, then hand each listing its ledger; `CorruptError` before anything changes."""
        doc = s.obj(body, "runs")
        listings: dict[str | None, HeldListing] = {}
        for entry in s.items(s.field(doc, "listings", "runs"), "listings"):
            bid, held = self._held(entry, age_s)
            if bid in listings:
                raise s.CorruptError(f"listing {bid}: twice")
            listings[bid] = held
        if set(listings) != set(self.listings):
            raise s.CorruptError(
                "its listings are not this exporter's (RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_IDS)"
            )
        labels = {
            s.text(name, "labels"): [s.text(v, "label value") for v in s.items(values, "label values")]
            for name, values in s.obj(s.field(doc, "labels", "runs"), "labels").items()
        }
        if set(labels) != set(self.labels.names):
            raise s.CorruptError("its labels are not this exporter's (RUNLOOP_EXPORTER_METADATA_LABELS)")
        names = {
            s.text(b, "names"): s.text(n, "name") for b, n in s.obj(doc.get("names", {}), "names").items()
        }
        unnamed = [s.text(b, "unnamed") for b in s.items(doc.get("unnamed", []), "unnamed")]
        try:
            self.labels.restore(labels)
        except ValueError as exc:
            raise s.CorruptError(f"labels: {exc}") from None
        self.names.restore(names, unnamed)
        for bid, held in listings.items():
            self.listings[bid].resume(held)

    def _held(self, entry: Any, age_s: float) -> tuple[str | None, HeldListing]:
        doc = s.obj(entry, "listing")
        bid = s.maybe_text(s.field(doc, "benchmark_id", "listing"), "listing benchmark_id")
        totals = Totals(self.score_buckets, self.duration_buckets)
        for group in s.items(s.field(doc, "groups", "listing"), "groups"):
            key, kept = self._group(group)
            if key in totals.groups:
                raise s.CorruptError("a group twice")
            totals.groups[key] = kept
            totals.finished_runs += sum(kept.finished.values())
        if totals.finished_runs != s.count(s.field(doc, "finished_runs", "listing"), "finished_runs"):
            raise s.CorruptError("finished_runs does not add up")
        running: dict[str, RunningRun] = {}
        for item in s.items(s.field(doc, "running", "listing"), "running"):
            run_id, key_doc, start_ms, state = s.items(item, "running run")
            run = RunningRun(
                s.text(run_id, "run id"), _key(key_doc), s.integer(start_ms, "start"), s.text(state, "state")
            )
            if run.state in TERMINAL_STATES or run.id in running:
                raise s.CorruptError("a running run that ended, or twice")
            running[run.id] = run
        ledger = Ledger(
            totals,
            running,
            head=s.maybe_text(doc.get("head"), "head"),
            head_extra=s.count(doc.get("head_extra", 0), "head_extra"),
            tail=s.maybe_text(doc.get("tail"), "tail"),
            tail_extra=s.count(doc.get("tail_extra", 0), "tail_extra"),
            listed=s.count(s.field(doc, "listed", "listing"), "listed"),
            counted=s.flag(s.field(doc, "counted", "listing"), "counted"),
            backlog=s.count(doc.get("backlog", 0), "backlog"),
        )
        if not ledger.counted or ledger.listed < totals.finished_runs + len(running):
            raise s.CorruptError("the ledger does not add up")
        since = s.number(s.field(doc, "since_full_s", "listing"), "since_full_s")
        held = HeldListing(
            ledger,
            max(since, 0.0) + age_s,
            s.maybe_flag(doc.get("new_at_ends"), "new_at_ends"),
            s.maybe_flag(doc.get("new_at_head"), "new_at_head"),
        )
        return bid, held

    def _group(self, entry: Any) -> tuple[GroupKey, GroupTotals]:
        doc = s.obj(entry, "group")
        durations = s.obj(s.field(doc, "durations", "group"), "durations")
        if set(durations) != set(TERMINAL_STATES):
            raise s.CorruptError("durations: not one per finished state")
        last = doc.get("last_completed")
        end_ms, last_score = (None, None) if last is None else s.pair(last, "last_completed")
        failed = tuple(
            FailedRun(
                s.text(i, "failed id"), s.integer(st, "failed start"), _maybe_count(d, "failed duration")
            )
            for i, st, d in (
                s.items(f, "failed run") for f in s.items(doc.get("last_failed", []), "last_failed")
            )
        )
        if len(failed) > LAST_FAILED:
            raise s.CorruptError("last_failed: too many")
        kept = GroupTotals(
            finished=s.counts(s.field(doc, "finished", "group"), "finished"),
            durations={
                state: _histogram(h, self.duration_buckets, DURATION_SCALE) for state, h in durations.items()
            },
            scores=_histogram(s.field(doc, "scores", "group"), self.score_buckets, SCORE_SCALE),
            last_completed_end_ms=None if end_ms is None else s.integer(end_ms, "last end"),
            last_completed_score=None if last_score is None else s.score(last_score, "last score"),
            last_failed=failed,
        )
        return _key(s.field(doc, "key", "group")), kept


def _listing(bid: str | None, held: HeldListing) -> dict[str, Any]:
    ledger = held.ledger
    return {
        "benchmark_id": bid,
        "listed": ledger.listed,
        "counted": ledger.counted,
        "backlog": ledger.backlog,
        "head": ledger.head,
        "head_extra": ledger.head_extra,
        "tail": ledger.tail,
        "tail_extra": ledger.tail_extra,
        "since_full_s": held.since_full_s,
        "new_at_ends": held.new_at_ends,
        "new_at_head": held.new_at_head,
        "finished_runs": ledger.totals.finished_runs,
        "groups": [
            {
                "key": _key_doc(key),
                "finished": dict(group.finished),
                "durations": {state: _histogram_doc(h) for state, h in group.durations.items()},
                "scores": _histogram_doc(group.scores),
                "last_completed": None
                if group.last_completed_end_ms is None
                else [group.last_completed_end_ms, group.last_completed_score],
                "last_failed": [[f.id, f.start_ms, f.duration_ms] for f in group.last_failed],
            }
            for key, group in ledger.totals.groups.items()
        ],
        "running": [[r.id, _key_doc(r.key), r.start_ms, r.state] for r in ledger.running.values()],
    }


def _key_doc(key: GroupKey) -> list[Any]:
    return [key.benchmark_id, [list(label) for label in key.labels]]


def _key(value: Any) -> GroupKey:
    bid, labels = s.pair(value, "group key")
    pairs = tuple(
        (s.text(name, "label"), s.text(v, "label value"))
        for name, v in (s.pair(label, "label") for label in s.items(labels, "labels"))
    )
    return GroupKey(s.maybe_text(bid, "benchmark id"), pairs)


def _histogram_doc(histogram: Histogram) -> list[Any]:
    return [list(histogram.counts), histogram.total_units]


def _histogram(value: Any, bounds: tuple[float, ...], scale: int) -> Histogram:
    found, units = s.pair(value, "histogram")
    buckets = [s.count(n, "bucket") for n in s.items(found, "buckets")]
    if len(buckets) != len(bounds) + 1:
        raise s.CorruptError("a histogram of other buckets")
    return Histogram(bounds, scale, buckets, s.count(units, "histogram sum"))


def _maybe_count(value: Any, what: str) -> int | None:
    return None if value is None else s.count(value, what)
