"""A realistic fake of Runloop's HTTP API on a real HTTP server bound to 127.0.0.1 (see world.py)."""

from exporter.simulator.world import (
    DEFAULT_API_KEY,
    MAX_LIMIT,
    DemoDriver,
    Faults,
    Latency,
    Order,
    RequestRecord,
    Simulator,
    World,
)

__all__ = [
    "DEFAULT_API_KEY",
    "MAX_LIMIT",
    "DemoDriver",
    "Faults",
    "Latency",
    "Order",
    "RequestRecord",
    "Simulator",
    "World",
]
