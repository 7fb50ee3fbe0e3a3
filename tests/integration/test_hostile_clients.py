"""Hostile and broken clients cannot starve the exporter (the real process, real sockets on 127.0.0.1).

Each test measures the exporter process itself: its threads and RSS from /proc, scrapes on fresh
connections (each must answer within 1 s), and its sync counters (syncs keep succeeding).
"""

from __future__ import annotations

import resource
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from exporter.runloop.client import MAX_BODY_BYTES
from exporter.simulator import DEFAULT_API_KEY, Simulator, World
from tests.integration.test_web_config import TLS, Pki, SecureExporter, web_config
from tests.support.exporter_process import Exporter
from tests.support.samples import Samples, parse, sample

FLOOD = 1_000
HALF_SENT = b"GET /metrics HTTP/1.1\r\n"
NOW_MS = 1_760_000_000_000
MAX_THREADS = 20  # main, http loop, four workers, scheduler, sync...; the old server had one per client


@pytest.fixture(autouse=True)
def enough_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * FLOOD + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * FLOOD), hard))


@pytest.fixture(autouse=True)
def some_runs(world: World) -> None:
    world.add_benchmark("bmd_alpha", "Alpha")
    world.add_many_finished(2_000, ["bmd_alpha"], NOW_MS, seed=3)


def proc_status(exporter: Exporter) -> dict[str, str]:
    assert exporter.proc is not None
    lines = Path(f"/proc/{exporter.proc.pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def threads(exporter: Exporter) -> int:
    return int(proc_status(exporter)["Threads"])


def rss_mb(exporter: Exporter, field: str = "VmRSS") -> float:
    return int(proc_status(exporter)[field].split(maxsplit=1)[0]) / 1024


def timed_get(url: str, path: str = "/metrics", verify: ssl.SSLContext | bool = True) -> tuple[float, str]:
    """One request on a fresh connection; seconds taken and the body. Must answer 200."""
    started = time.monotonic()
    response = httpx.get(f"{url}{path}", timeout=5, verify=verify)
    took = time.monotonic() - started
    assert response.status_code == 200, response.text
    return took, response.text


def scrape_for(url: str, seconds: float, verify: ssl.SSLContext | bool = True) -> tuple[float, Samples]:
    """Scrape /metrics and /healthz on fresh connections for a while: the slowest time and the last scrape."""
    slowest = 0.0
    last = ""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        took, last = timed_get(url, verify=verify)
        slowest = max(slowest, took, timed_get(url, "/healthz", verify=verify)[0])
        time.sleep(0.1)
    return slowest, parse(last)


def syncs(samples: Samples) -> tuple[float, float]:
    return (
        sample(samples, "runloop_exporter_syncs_total", result="success") or 0.0,
        sample(samples, "runloop_exporter_syncs_total", result="failure") or 0.0,
    )


def closed_count(samples: Samples, reason: str) -> float:
    return sample(samples, "runloop_exporter_http_connections_closed_total", reason=reason) or 0.0


def connect(port: int, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if first:
        sock.sendall(first)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes this connection within `within` seconds (what it sent is skipped)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length bytes of body) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def flood() -> Iterator[list[socket.socket]]:
    """Sockets the test opens; all closed at the end whatever happens."""
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def test_a_flood_of_half_sent_requests_and_its_sudden_close(
    start_exporter: Callable[..., Exporter], flood: list[socket.socket]
) -> None:
    exporter = start_exporter()
    before = exporter.wait_for_sync(after=0)
    rss_before = rss_mb(exporter)
    ok_before, failed_before = syncs(before)

    flood.extend(connect(exporter.port, HALF_SENT) for _ in range(FLOOD))
    slowest, during = scrape_for(exporter.url, 3.0)
    assert slowest < 1.0, f"a scrape took {slowest:.2f} s during the flood"
    assert threads(exporter) <= MAX_THREADS
    assert rss_mb(exporter) - rss_before < 10, "memory grows with the clients"
    ok, failed = syncs(during)
    assert ok >= ok_before + 2
    assert failed == failed_before
    # The cap holds: the clients that waited longest were closed to make room for the newer ones.
    assert (sample(during, "runloop_exporter_http_connections") or 0) <= 512
    assert closed_count(during, "over_capacity") >= FLOOD - 512

    for sock in flood:  # they all let go at once
        sock.close()
    flood.clear()
    slowest, after = scrape_for(exporter.url, 2.0)
    assert slowest < 1.0, f"a scrape took {slowest:.2f} s after the flood closed"
    final = exporter.wait_for_sync(after=syncs(after)[0], timeout=10)
    assert syncs(final)[1] == failed_before
    assert rss_mb(exporter, "VmHWM") - rss_before < 15
    assert threads(exporter) <= MAX_THREADS


def test_slow_silent_and_idle_connections_are_closed_after_their_timeouts(
    start_exporter: Callable[..., Exporter], flood: list[socket.socket]
) -> None:
    exporter = start_exporter(
        env={
            "RUNLOOP_EXPORTER_READ_HEADER_TIMEOUT_SECONDS": "1",
            "RUNLOOP_EXPORTER_IDLE_TIMEOUT_SECONDS": "1.5",
        }
    )
    exporter.wait_for_sync(after=0)
    silent = [connect(exporter.port) for _ in range(20)]
    half = [connect(exporter.port, HALF_SENT) for _ in range(20)]
    flood.extend(silent + half)

    keep_alive = connect(exporter.port)
    flood.append(keep_alive)
    request = b"GET /healthz HTTP/1.1\r\nHost: exporter\r\n\r\n"
    for _ in range(2):  # two requests on one connection, the second after a pause shorter than the timeout
        keep_alive.sendall(request)
        assert read_response(keep_alive).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.5)

    trickle = connect(exporter.port)
    flood.append(trickle)
    started = time.monotonic()
    cut_off = False
    try:  # a byte now and then does not extend the deadline
        for byte in HALF_SENT * 10:
            trickle.sendall(bytes([byte]))
            time.sleep(0.1)
    except OSError:
        cut_off = True
    assert cut_off
    assert time.monotonic() - started < 3

    assert all(closed_by_server(sock, 3) for sock in silent + half)
    assert closed_by_server(keep_alive, 3)
    samples = exporter.scrape()
    assert closed_count(samples, "header_timeout") >= 41
    assert closed_count(samples, "idle_timeout") >= 1
    assert threads(exporter) <= MAX_THREADS

    huge = connect(exporter.port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    flood.append(huge)
    assert huge.recv(4096).startswith(b"HTTP/1.1 431 ")


def client_hello() -> bytes:
    """The first flight of a TLS client, made in memory: sent, then never followed by anything."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_tls_handshakes_that_never_finish_are_bounded(
    simulator: Simulator, tmp_path: Path, flood: list[socket.socket]
) -> None:
    folder = tmp_path / "pki"
    folder.mkdir()
    pki = Pki(folder)
    client = pki.client()
    env = {
        "RUNLOOP_BASE_URL": simulator.url,
        "RUNLOOP_API_KEY": DEFAULT_API_KEY,
        "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "1",
        "RUNLOOP_EXPORTER_WEB_CONFIG_FILE": str(web_config(pki, TLS)),
        "RUNLOOP_EXPORTER_READ_HEADER_TIMEOUT_SECONDS": "2",
    }
    exporter = SecureExporter([], env, client=client)
    exporter.start(tmp_path)
    try:
        exporter.wait_synced()
        rss_before = rss_mb(exporter)
        ok_before, failed_before = syncs(parse(exporter.get("/metrics").text))
        hello = client_hello()
        for first in (b"", b"\x16\x03\x01", hello):  # silent, a few bytes, a whole ClientHello
            flood.extend(connect(exporter.port, first) for _ in range(150))

        slowest, during = scrape_for(exporter.url, 1.5, verify=client)
        assert slowest < 1.0, f"a TLS scrape took {slowest:.2f} s during the flood"
        assert threads(exporter) <= MAX_THREADS
        assert rss_mb(exporter) - rss_before < 15
        assert syncs(during)[0] >= ok_before + 1

        assert all(closed_by_server(sock, 3) for sock in flood)
        samples = parse(exporter.get("/metrics").text)
        assert closed_count(samples, "header_timeout") >= 450
        assert syncs(samples)[1] == failed_before
    finally:
        exporter.stop()


def test_a_huge_answer_from_the_api_is_refused_counted_and_not_read_whole(
    simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    exporter = start_exporter()
    before = exporter.wait_for_sync(after=0)
    rss_before = rss_mb(exporter)
    failed_before = syncs(before)[1]
    size = 4 * MAX_BODY_BYTES
    # On the runs listing, which the assertions below name: the next request under /v1 may be the
    # jobs part's, and which part asks first is a matter of timing.
    simulator.faults.huge_body_next(1, size, declare_length=False, path_prefix="/v1/benchmark_runs")

    def refused(scraped: Samples) -> float | None:
        return sample(
            scraped, "runloop_exporter_api_requests_total", path="/v1/benchmark_runs", code="too_large"
        )

    # Not any failed sync: on a busy machine a healthy one may overrun its deadline first.
    exporter.wait_until(
        lambda: syncs(scraped := exporter.scrape())[1] > failed_before and refused(scraped) is not None,
        what="the sync that got the huge answer",
    )
    slowest, samples = scrape_for(exporter.url, 1.0)
    assert slowest < 1.0
    assert refused(samples) == 1
    assert simulator.faults.huge_bytes_sent < size, "the exporter read the whole answer"
    assert rss_mb(exporter, "VmHWM") - rss_before < MAX_BODY_BYTES * 3 / 2**20
    assert threads(exporter) <= MAX_THREADS
    assert f"larger than {MAX_BODY_BYTES} bytes" in exporter.logs()
    exporter.wait_for_sync()  # the next sync works again
    assert simulator.faults.pending() == 0
