"""`./dev bench [scale|soak|hostile|churn|jobs|freshness|restart|status|decode] [ARGS]`: run a benchmark script (scale by default)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("scale", "soak", "hostile", "churn", "jobs", "freshness", "restart", "status", "decode")


def main(argv: list[str]) -> int:
    """Dispatch to a benchmark module by name; each has `main(argv) -> int`."""
    name = argv[0] if argv and argv[0] in BENCHMARKS else "scale"
    rest = argv[1:] if argv and argv[0] in BENCHMARKS else argv
    module = importlib.import_module(f"bench.{name}")
    return int(module.main(rest))


sys.exit(main(sys.argv[1:]))
