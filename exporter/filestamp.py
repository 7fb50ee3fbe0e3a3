"""A file's change stamp: one stat tells whether a file was replaced or rewritten since it was last read.

Kubernetes updates a mounted Secret or ConfigMap by swapping a `..data` symlink; `os.stat` follows it, so
the stamp (inode, modification time, size) changes when the content does. The API key file and the web
config (with the certificates it names) are re-read only when their stamp changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

FileStamp = tuple[int, int, int]
"""Inode, modification time in nanoseconds and size."""


def file_stamp(path: Path) -> FileStamp:
    """The stamp of a file now; raises OSError when it cannot be stat'ed."""
    st = os.stat(path)  # follows symlinks: Kubernetes swaps a `..data` link on update
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def file_stamps(paths: Iterable[Path]) -> tuple[FileStamp | None, ...]:
    """The stamp of each file, None for a file that is gone or cannot be stat'ed."""
    result: list[FileStamp | None] = []
    for path in paths:
        try:
            result.append(file_stamp(path))
        except OSError:
            result.append(None)
    return tuple(result)
