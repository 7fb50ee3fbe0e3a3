"""The file-change stamp that decides when the API key file and the web config are read again."""

from __future__ import annotations

import os
from pathlib import Path

from exporter.filestamp import file_stamp, file_stamps


def test_the_stamp_changes_when_a_file_is_rewritten_or_replaced_and_not_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("one")
    first = file_stamp(path)
    assert file_stamp(path) == first  # reading it again changes nothing

    path.write_text("two")  # same size, a new modification time
    os.utime(path, ns=(first[1] + 1_000_000, first[1] + 1_000_000))
    rewritten = file_stamp(path)
    assert rewritten != first

    replacement = tmp_path / "key.new"
    replacement.write_text("two")
    os.utime(replacement, ns=(rewritten[1], rewritten[1]))  # same time and size: only the inode differs
    replacement.replace(path)  # as Kubernetes swaps a Secret's files
    assert file_stamp(path) != rewritten


def test_stamps_give_none_for_a_file_that_is_gone(tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.write_text("x")
    stamps = file_stamps((present, tmp_path / "missing"))
    assert stamps == (file_stamp(present), None)
