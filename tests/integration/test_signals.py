"""A stream of stop signals (Ctrl-C pressed twice, a SIGTERM relayed by both a wrapper and its process
group) still stops the exporter cleanly. A Python signal handler that sets an Event can deadlock when a
second signal lands while the main thread holds that Event's lock; this stresses that window."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

from tests.support.exporter_process import Exporter


def test_a_stream_of_signals_exits_0_within_5_seconds(start_exporter: Callable[..., Exporter]) -> None:
    for attempt in range(6):
        exporter = start_exporter()
        assert exporter.proc is not None
        end = time.monotonic() + 0.5
        while time.monotonic() < end and exporter.proc.poll() is None:
            os.kill(exporter.proc.pid, signal.SIGTERM if attempt % 2 else signal.SIGINT)
            time.sleep(0.0001)
        try:
            code = exporter.proc.wait(5)  # the README's promise: a bound on behaviour, not a benchmark
        except subprocess.TimeoutExpired:
            exporter.proc.kill()
            raise AssertionError(
                f"attempt {attempt}: not stopped within 5 s of a stream of signals"
            ) from None
        assert code == 0
        assert '"event": "stopped"' in exporter.logs()
