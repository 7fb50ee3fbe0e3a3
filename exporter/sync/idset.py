"""A compact set of run ids, for spotting duplicates while reading a large listing.

A Python `set` of a million id strings costs about 100 MB; this keeps only a 64-bit hash of each id
in one flat array (16 MB for a million), which is what lets a full read of a large history stay within
the exporter's memory budget. Two different ids share a hash with a probability of about 1e-8 per
million pairs, far below any other source of error here.
"""

from __future__ import annotations

from array import array

_MASK64 = (1 << 64) - 1


class IdSet:
    """Insert-only open-addressing hash set of strings' 64-bit hashes."""

    def __init__(self, capacity_bits: int = 12) -> None:
        self._mask = (1 << capacity_bits) - 1
        self._table = array("Q", bytes(8 << capacity_bits))
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, key: str) -> bool:
        """Insert `key`; False when it was already present."""
        digest = (hash(key) & _MASK64) or 1  # 0 marks an empty slot
        table, mask = self._table, self._mask
        slot = digest & mask
        while (found := table[slot]) != 0:
            if found == digest:
                return False
            slot = (slot + 1) & mask
        table[slot] = digest
        self._size += 1
        if self._size * 2 > mask:
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._table
        self._mask = self._mask * 2 + 1
        self._table = table = array("Q", bytes(8 * (self._mask + 1)))
        mask = self._mask
        for digest in old:
            if digest:
                slot = digest & mask
                while table[slot]:
                    slot = (slot + 1) & mask
                table[slot] = digest
