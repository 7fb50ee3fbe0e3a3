"""A realistic fake of Runloop's HTTP API on a real HTTP server bound to 127.0.0.1.

Demo mode, the tests and the benchmarks all talk to it over real sockets, so the exporter's HTTP code
(auth, paging, retries, timeouts) is exercised exactly as against ``api.runloop.ai``. The modules, from
the bottom up:

* ``wire``: page sizes, the refusal :class:`SimulatedApiError` (an HTTP status with ``{"error": ...}``) and
  compact JSON, shared by every part.
* ``columns``: the World's compact storage pieces (run ids, interned strings, sorted slot indexes).
* ``jobs``: benchmark jobs (``/v1/benchmark_jobs``), whose runs are runs of the World.
* ``runs``: :class:`RunTable`, the World's runs stored column-wise (slots, indexes, ids, JSON).
* ``world``: :class:`World`, the account's state (benchmarks and runs) and its paged listings.
* ``faults``: :class:`Faults`, the switchboard of failures (5xx, 429, slow, broken bodies, bad cursors).
* ``transport``: the threaded HTTP server and handler that apply faults and latency to each request.
* ``server``: :class:`Simulator` (serves a World: life cycle, auth, routing, request records) and
  :class:`Latency` (how long an answer takes from across the internet).
* ``demo``: :class:`DemoDriver`, which makes a World change as time passes, for demo mode.

This module re-exports the names the tests, the benchmarks and demo mode use.
"""

from exporter.simulator.demo import DemoDriver
from exporter.simulator.faults import Faults
from exporter.simulator.server import DEFAULT_API_KEY, Latency, Simulator
from exporter.simulator.transport import RequestRecord
from exporter.simulator.wire import MAX_LIMIT
from exporter.simulator.world import Order, World

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
