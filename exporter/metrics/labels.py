"""Extra labels on the benchmark-run series: allowlisted run metadata and `purpose`, with a cardinality cap.

Nothing is added unless an operator allowlists it. Metadata key `k` becomes label `metadata_<k>`, with
every character outside [a-zA-Z0-9_] replaced by `_` (the `metadata_` prefix makes the name valid
whatever `k` starts with). A run without the key, or with an empty value, gets no such label rather
than an empty one: Prometheus treats the two alike, and two series differing only by an empty label
would collide once scraped.

The cap: each label keeps at most `max_values` distinct values, admitted first-come in the order runs
are grouped, which is the listing order of the backfill at start-up and then the order of new runs.
Once full, the set never changes for the life of the process, so a value keeps its label across
syncs and full reads and no series flaps; later values are exported as `__other__`. A restart decides
again from the backfill. Finished runs are kept only as totals per label set, which is why a run's
labels must be decided once and never depend on anything that changes between syncs.

The count of folded runs is read from each successful snapshot (runs under `__other__`, running or
finished) and the counter grows by the increase since the previous snapshot. So each folded run is
counted once, when it is first exported, however often it is regrouped: running runs are regrouped
every sync and a full read regroups everything, both to the same labels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar, overload

from exporter.metrics.aggregate import GroupKey, Labels, Snapshot
from exporter.metrics.filters import BenchmarkFilter, NameOf
from exporter.runloop.models import Run


class _Syncs(Protocol):
    """What FoldCounting wraps: an exporter.sync.Sync (named structurally: sync is a layer above)."""

    @overload
    def run(self, deadline: None = None) -> Snapshot: ...
    @overload
    def run(self, deadline: float | None) -> Snapshot | None: ...


OTHER = "__other__"
PURPOSE_LABEL = "purpose"
METADATA_PREFIX = "metadata_"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_V = TypeVar("_V", bound=Hashable)


def metadata_label_name(key: str) -> str:
    """The Prometheus label name for a metadata key: `metadata_` and the key with invalid characters as `_`."""
    return METADATA_PREFIX + _INVALID.sub("_", key)


def check_metadata_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """The keys, stripped and deduplicated in order; ValueError when two would share a label name."""
    out: dict[str, str] = {}  # label name -> key
    for raw in keys:
        key = raw.strip()
        if not key:
            continue
        name = metadata_label_name(key)
        if name in out and out[name] != key:
            raise ValueError(f"keys {out[name]!r} and {key!r} would both become label {name}; keep one")
        out[name] = key
    return tuple(out.values())


class Cap(Generic[_V]):
    """Distinct label values (or pairs), first come up to a maximum; the rest fold into `__other__`.

    Once admitted a value stays for the life of the process, so totals keyed by it stay right across
    syncs and full reads. Also the cap of agent labels (exporter.metrics.agents).
    """

    def __init__(self, max_values: int) -> None:
        self._max = max_values
        self._admitted: set[_V] = set()

    def admits(self, value: _V) -> bool:
        """True when the value keeps its own label: admitted before, or now while there is room.

        The caller folds a value that is (or holds) `__other__` before asking, so it takes no slot.
        """
        if value in self._admitted:
            return True
        if len(self._admitted) >= self._max:
            return False
        self._admitted.add(value)
        return True

    def value(self: Cap[str], value: str) -> str:
        """The label value: the value itself, or `__other__` once the cap is full."""
        return value if value != OTHER and self.admits(value) else OTHER

    @property
    def max_values(self) -> int:
        """The most distinct values admitted."""
        return self._max

    @property
    def admitted(self) -> frozenset[_V]:
        """The values admitted so far (a copy: a full read in another thread may admit more)."""
        return frozenset(self._admitted.copy())

    def restore(self, values: Iterable[_V]) -> None:
        """Admit these values as a checkpoint kept them; ValueError when they pass the maximum."""
        admitted = set(values)
        if len(admitted) > self._max:
            raise ValueError(f"{len(admitted)} values kept where at most {self._max} are admitted")
        self._admitted = admitted


class RunLabels:
    """Decides the extra labels of a run; the same value always gets the same label in one process."""

    def __init__(self, metadata_keys: Sequence[str], *, purpose: bool, max_values: int) -> None:
        self._fields: list[tuple[str, str | None, Cap[str]]] = [
            (metadata_label_name(key), key, Cap(max_values)) for key in metadata_keys
        ]
        if purpose:
            self._fields.append((PURPOSE_LABEL, None, Cap(max_values)))

    @property
    def names(self) -> tuple[str, ...]:
        """The label names this may add, in the order they appear in a GroupKey."""
        return tuple(name for name, _, _ in self._fields)

    def admitted(self) -> dict[str, frozenset[str]]:
        """The values each label has admitted so far, by label name (what a checkpoint keeps)."""
        return {name: cap.admitted for name, _, cap in self._fields}

    def restore(self, admitted: Mapping[str, Iterable[str]]) -> None:
        """Admit the values a checkpoint kept, so that later runs get the labels they would have got;
        ValueError (and nothing admitted) when one label has more than its cap."""
        caps = []
        for name, _, cap in self._fields:
            restored: Cap[str] = Cap(cap.max_values)
            restored.restore(admitted.get(name, ()))
            caps.append(restored)
        self._fields = [(name, key, cap) for (name, key, _), cap in zip(self._fields, caps, strict=True)]

    def labels(self, run: Run) -> Labels:
        """The run's extra labels; a missing or empty value leaves its label out."""
        out = []
        for name, key, cap in self._fields:
            value = run.purpose if key is None else run.metadata.get(key)
            if value:
                out.append((name, cap.value(value)))
        return tuple(out)


def make_grouping(
    benchmarks: BenchmarkFilter, labels: RunLabels, name_of: NameOf
) -> Callable[[Run], GroupKey | None]:
    """The sync's grouping (an exporter.sync.Grouping): None for a run filtered out, else its benchmark and extra labels.

    The filter is applied first, so runs that are not exported take no slot under the cap.
    """
    if benchmarks.is_empty and not labels.names:
        return lambda run: GroupKey(run.benchmark_id)

    def grouping(run: Run) -> GroupKey | None:
        if not benchmarks.admits(run.benchmark_id, name_of):
            return None
        return GroupKey(run.benchmark_id, labels.labels(run))

    return grouping


def folded_runs(snapshot: Snapshot, names: Iterable[str]) -> dict[str, int]:
    """Runs (in any state) exported under `__other__`, per label."""
    out = dict.fromkeys(names, 0)
    for group in snapshot.groups:
        runs = sum(group.counts.values())
        for name, value in group.key.labels:
            if value == OTHER and name in out:
                out[name] += runs
    return out


class FoldCounting:
    """A Sync that also counts runs newly folded into `__other__`, from each successful snapshot."""

    def __init__(self, sync: _Syncs, names: Sequence[str], count: Callable[[str, int], None]) -> None:
        self._sync = sync
        self._names = tuple(names)
        self._count = count
        self._previous = dict.fromkeys(self._names, 0)

    @overload
    def run(self, deadline: None = None) -> Snapshot: ...
    @overload
    def run(self, deadline: float | None) -> Snapshot | None: ...

    def run(self, deadline: float | None = None) -> Snapshot | None:
        """Sync, then add the increase of folded runs per label to the counter."""
        snapshot = self._sync.run(deadline)
        if snapshot is None:
            return None
        now = folded_runs(snapshot, self._names)
        for name, folded in now.items():
            if folded > self._previous[name]:
                self._count(name, folded - self._previous[name])
        self._previous = now
        return snapshot
