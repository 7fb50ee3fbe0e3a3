"""What the benchmarks share: a free port on 127.0.0.1, and a process's peak memory."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak RSS of a process (this one by default). Not getrusage's ru_maxrss: Linux carries that over
    from the parent across fork and exec, so a child of a big simulator would report the simulator's size."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
