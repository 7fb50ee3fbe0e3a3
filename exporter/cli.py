"""Command-line entry point: parse the settings and run the mode they ask for.

Three modes: serve (the default, exporter.serve), `--once` (exporter.once) and `check`
(exporter.check); exporter.app builds what each of them starts from. Bad settings exit 2 with one line
per problem. Logs always go to stderr, so stdout carries only what the mode prints.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.app import fail_settings
from exporter.check import check
from exporter.once import once
from exporter.serve import serve
from exporter.settings import SettingsError, load_invocation


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, or sync once, or check; exit 2 on bad settings."""
    try:
        invocation = load_invocation(argv)
    except SettingsError as exc:
        return fail_settings(exc.problems)
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    if invocation.mode == "check":
        return check(invocation.settings)
    if invocation.mode == "once":
        return once(invocation.settings)
    return serve(invocation.settings)
