"""Bounded resources per client: idle and slow request heads are closed, large heads refused,
a flood of idle connections never locks out a working client, slow readers hold little
memory, and the descriptor limit is raised at start."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from unihub.testing import FakeHub, FakeRepo

from ._proc import descriptors, rss, server_process
from .conftest import ServeFactory

Factory = Callable[..., FakeHub]
MB = 1 << 20
_ESTABLISHED = 1  # tcpi_state in Linux's TCP_INFO


def _connect(url: str, rcvbuf: int | None = None) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((parts.hostname, parts.port))
    return sock


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed it (EOF, after any answer it sent)."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if not sock.recv(65536):
                return True
    except OSError:
        return True
    return False


def test_idle_and_slow_request_heads_are_closed(serve_factory: ServeFactory) -> None:
    srv = serve_factory(header_timeout=1.0, keep_alive=1.0)
    idle = [_connect(srv.url) for _ in range(100)]
    slow = [_connect(srv.url) for _ in range(100)]
    for sock in slow:  # slowloris: a head begun, never finished
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: ")
    time.sleep(0.5)
    assert not any(_closed(s) for s in idle + slow)  # not before the timeout
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not all(_closed(s) for s in idle + slow):
        time.sleep(0.1)
    assert sum(_closed(s) for s in idle + slow) == 200
    for sock in idle + slow:
        sock.close()
    assert httpx2.get(f"{srv.url}/healthz").status_code == 200


def test_a_large_request_head_is_refused(serve_factory: ServeFactory) -> None:
    srv = serve_factory(max_header_bytes=16 * 1024)
    sock = _connect(srv.url)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
    sock.settimeout(5)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    ok = httpx2.get(f"{srv.url}/healthz", headers={"X-Fine": "b" * 8000})
    assert ok.status_code == 200


def test_a_flood_of_idle_clients_does_not_lock_out_a_working_one(
    serve_factory: ServeFactory,
) -> None:
    srv = serve_factory(max_connections=50)  # header_timeout stays 10 s: not what saves us
    flood = [_connect(srv.url) for _ in range(300)]
    t0 = time.monotonic()
    r = httpx2.get(f"{srv.url}/healthz", timeout=5)
    assert r.status_code == 200 and time.monotonic() - t0 < 2.0
    time.sleep(0.5)
    still_open = sum(not _closed(s) for s in flood)
    assert still_open <= 50, still_open
    for sock in flood:
        sock.close()


def test_the_descriptor_limit_is_raised_to_the_hard_limit() -> None:
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))\n"
        "from unihub.serve import raise_descriptor_limit\n"
        "print(raise_descriptor_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2048", "2048"]


@pytest.mark.timeout(180)
def test_slow_readers_hold_little_memory_and_descriptors_come_back(
    fake_hub_factory: Factory, tmp_path: Path
) -> None:
    repo = FakeRepo("org/model", files={"w.safetensors": 32 * MB})
    hub = fake_hub_factory("hf", repos=[repo])
    with server_process(tmp_path / "srv", (hub.source,), header_timeout=30.0) as (url, proc):
        path = "/org/model/resolve/main/w.safetensors"
        assert len(httpx2.get(url + path, timeout=60).content) == 32 * MB  # warm
        time.sleep(0.5)
        fds, before = descriptors(proc.pid), rss(proc.pid)
        readers = []
        for _ in range(40):
            sock = _connect(url, rcvbuf=16 * 1024)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            readers.append(sock)
        time.sleep(2.0)  # every answer has started, and stalled on its reader
        per_reader = (rss(proc.pid) - before) / 40
        print(f"server memory per stalled reader: {per_reader / 1024:.0f} KiB")
        assert per_reader < 256 * 1024, per_reader  # sendfile: nothing read into memory
        assert descriptors(proc.pid) >= fds + 40
        for sock in readers:
            sock.close()
        deadline = time.monotonic() + 10
        while descriptors(proc.pid) > fds and time.monotonic() < deadline:
            time.sleep(0.1)
        assert descriptors(proc.pid) <= fds  # each connection and blob descriptor released


@pytest.mark.parametrize("warm", [True, False])
def test_a_reader_that_reads_nothing_is_closed_after_the_send_timeout(
    fake_hub_factory: Factory, serve_factory: ServeFactory, warm: bool
) -> None:
    """A client that asks for a large body and never reads it does not hold its connection
    for ever: past ``send_timeout`` with nothing drained the server closes it, whether the
    blob goes out with sendfile (warm) or streams as it is fetched (cold)."""
    size = 64 * MB
    repo = FakeRepo("org/unread", files={"w.safetensors": size})
    hub = fake_hub_factory("hf", repos=[repo])
    srv = serve_factory(hub, send_timeout=1.5)
    path = "/org/unread/resolve/main/w.safetensors"
    if warm:
        assert httpx2.get(srv.url + path, timeout=60).status_code == 200
    sock = _connect(srv.url, rcvbuf=64 * 1024)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(4.0)  # read nothing: the server's buffers fill, then the clock runs
    # let go of without a byte read (a close would wait for ever to flush to this reader)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != _ESTABLISHED
    got = 0
    sock.settimeout(10)
    try:
        while chunk := sock.recv(1 << 20):
            got += len(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    assert 0 < got < size  # what the buffers held, then the end: the server closed it
    assert httpx2.get(f"{srv.url}/healthz").status_code == 200


def test_a_request_body_is_bounded_in_time_and_size(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    """The only body the server takes (paths-info's) must come within header_timeout after its
    head and be at most 1 MiB, declared or streamed: a client sending a byte a second, or
    400 MB, holds neither a connection nor memory."""
    repo = FakeRepo("org/bodies", files={"config.json": "{}"})
    hub = fake_hub_factory("hf", repos=[repo])
    srv = serve_factory(hub, header_timeout=1.0)
    url = f"{srv.url}/api/models/org/bodies/paths-info/main"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert [e["path"] for e in httpx2.post(url, data={"paths": "config.json"}).json()] == [
        "config.json"
    ]
    many = "&".join(f"paths=dir/file-{i:05d}.json" for i in range(5000)) + "&paths=config.json"
    assert len(many) > 100_000  # with its head in one read: a body, not a large head
    got = httpx2.post(url, content=many.encode(), headers=form)
    assert got.status_code == 200 and [e["path"] for e in got.json()] == ["config.json"]
    slow = _connect(srv.url)
    slow.sendall(
        b"POST /api/models/org/bodies/paths-info/main HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\npaths="
    )
    time.sleep(0.5)
    assert not _closed(slow)
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline and not _closed(slow):
        slow.sendall(b"a")
        time.sleep(0.2)
    assert _closed(slow)
    slow.close()
    big = b"paths=" + b"a" * (2 * MB)
    assert httpx2.post(url, content=big, headers=form).status_code == 413
    chunked = httpx2.post(url, content=iter([big[i : i + MB] for i in range(0, len(big), MB)]))
    assert chunked.status_code == 413
    assert httpx2.get(f"{srv.url}/healthz").status_code == 200


def test_stopping_does_not_wait_for_a_reader_that_reads_nothing(
    fake_hub_factory: Factory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    isolated_env: None,
) -> None:
    """A client that stopped reading a blob still being fetched: the server's stop cuts it at
    once, instead of waiting out the graceful period and logging a cancelled task's
    traceback."""
    from unihub.serve import ServeOptions, running
    from unihub.settings import Settings

    repo = FakeRepo("org/stop", files={"w.safetensors": 96 * MB})
    hub = fake_hub_factory("hf", repos=[repo], total_rate=16 * MB)  # still fetching at the stop
    opts = ServeOptions(port=0, cache_dir=tmp_path / "cache", sources=(hub.source,))
    with running(opts, Settings.from_env()) as srv:
        sock = _connect(srv.url, rcvbuf=64 * 1024)
        sock.sendall(b"GET /org/stop/resolve/main/w.safetensors HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(2.0)  # its buffers fill; it reads nothing
        t0 = time.monotonic()
    stopped = time.monotonic() - t0
    sock.close()
    assert stopped < 5, stopped
    assert not any("Exception in ASGI application" in r.getMessage() for r in caplog.records)
