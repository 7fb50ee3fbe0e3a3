"""The README's configuration table lists every setting, and nothing that is not one."""

from __future__ import annotations

from pathlib import Path

from exporter.settings import OPTIONS

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def table_rows() -> dict[str, list[str]]:
    """Rows of the settings table keyed by environment variable; cells without their backticks."""
    text = README.read_text(encoding="utf-8")
    assert text.count(START) == 1
    assert text.count(END) == 1
    body = text[text.index(START) + len(START) : text.index(END)]
    rows: dict[str, list[str]] = {}
    for line in body.strip().splitlines()[2:]:  # after the header and the |---| line
        cells = [cell.strip() for cell in line.replace("\\|", "/").strip().strip("|").split("|")]
        assert len(cells) == 5, line
        env = cells[0].strip("`")
        assert env not in rows, f"{env} is listed twice"
        rows[env] = [cell.strip("`") for cell in cells]
    return rows


def expected() -> dict[str, str]:
    """Environment variable -> flag, for every option and --demo."""
    return {option.env: option.flag for option in OPTIONS} | {"RUNLOOP_EXPORTER_DEMO": "--demo"}


def test_every_setting_is_in_the_table_with_its_flag_and_meaning() -> None:
    rows = table_rows()
    for env, flag in expected().items():
        assert env in rows, f"{env} is missing from the README's settings table"
        row = rows[env]
        assert row[1] == flag, f"{env}: the table says {row[1]}, the parser says {flag}"
        assert row[4], f"{env} has no meaning in the table"


def test_the_table_lists_no_setting_that_does_not_exist() -> None:
    assert set(table_rows()) - set(expected()) == set()
