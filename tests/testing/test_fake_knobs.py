"""Every FakeHub knob acts, measured from the outside with plain HTTP clients."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import httpx2
import pytest

from unihub.testing import FakeHub, FakeRepo, Faults

HubFactory = Callable[..., FakeHub]
MB = 1_000_000


def _repo() -> FakeRepo:
    return FakeRepo("org/m", files={"w.bin": 3 * MB, "big.bin": 16 << 20, "a.txt": "hello"})


def _url(hub: FakeHub, path: str = "w.bin") -> str:
    return f"{hub.endpoint}/org/m/resolve/main/{path}"


def _timed_get(url: str, headers: dict[str, str] | None = None) -> tuple[float, bytes]:
    t0 = time.monotonic()
    r = httpx2.get(url, headers=headers or {}, timeout=30, follow_redirects=True)
    r.raise_for_status()
    return time.monotonic() - t0, r.content


def test_per_connection_rate(fake_hub_factory: HubFactory) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], cdn=None, per_connection_rate=1 * MB)
    elapsed, body = _timed_get(_url(hub))
    assert body == repo.content("w.bin")
    # Never faster than the cap (+20 % slack); slower only by a generous margin (a loaded machine).
    assert 3 / 1.2 <= elapsed <= 3 / 0.3, elapsed


def test_total_rate_caps_connections_together(fake_hub_factory: HubFactory) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], cdn=None, total_rate=2 * MB)
    results: list[float] = []

    def one(i: int) -> None:
        elapsed, body = _timed_get(_url(hub), {"Range": f"bytes={i * MB}-{(i + 1) * MB - 1}"})
        assert len(body) == MB
        results.append(elapsed)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    total = time.monotonic() - t0
    assert len(results) == 3
    assert 1.5 / 1.25 <= total <= 1.5 / 0.3, total  # 3 MB at 2 MB/s together


def test_configure_rate_live(fake_hub_factory: HubFactory) -> None:
    hub = fake_hub_factory("hf", repos=[_repo()], cdn=None, per_connection_rate=100_000)
    hub.configure(per_connection_rate=None)
    elapsed, _ = _timed_get(_url(hub))
    assert elapsed < 15.0  # would take 30 s at the old rate


def test_latency(fake_hub_factory: HubFactory) -> None:
    hub = fake_hub_factory("hf", repos=[_repo()], latency=2.0)
    elapsed, body = _timed_get(_url(hub, "a.txt"))
    assert body == b"hello" and elapsed >= 2.0
    hub.configure(latency=0.0)
    assert _timed_get(_url(hub, "a.txt"))[0] < 1.5


def test_blackhole_accepts_but_never_answers(fake_hub_factory: HubFactory) -> None:
    hub = fake_hub_factory("hf", repos=[_repo()], blackhole=True)
    host, port = hub.endpoint.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=1) as sock:  # TCP accepted
        sock.sendall(b"GET /api/models/org/m HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(socket.timeout):
            sock.recv(1)
    with pytest.raises(httpx2.TimeoutException):
        httpx2.get(_url(hub, "a.txt"), timeout=1)
    hub.configure(blackhole=False)
    assert httpx2.get(_url(hub, "a.txt"), timeout=5).content == b"hello"
    assert not any(r.path.startswith("/api") for r in hub.stats.requests)  # never answered


def test_drop_mid_body(fake_hub_factory: HubFactory) -> None:
    hub = fake_hub_factory("hf", repos=[_repo()], cdn=None, faults=Faults(drop_mid_body=1.0))
    received = 0
    # RemoteProtocolError: incomplete body
    with pytest.raises(httpx2.TransportError), httpx2.stream("GET", _url(hub), timeout=10) as r:
        for chunk in r.iter_bytes():
            received += len(chunk)
    assert 0 < received < 3 * MB
    assert httpx2.head(_url(hub), timeout=5).status_code == 200  # HEAD is never faulted


def test_error_5xx_and_429_only_on_file_gets(fake_hub_factory: HubFactory) -> None:
    hub = fake_hub_factory("hf", repos=[_repo()], faults=Faults(too_many_requests=2))
    assert httpx2.get(f"{hub.endpoint}/api/models/org/m", timeout=5).status_code == 200
    first = httpx2.get(_url(hub, "a.txt"), timeout=5)
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    assert httpx2.get(_url(hub, "a.txt"), timeout=5).status_code == 429
    assert httpx2.get(_url(hub, "a.txt"), timeout=5).status_code == 200
    hub.configure(faults=Faults(error_5xx=1.0))
    assert httpx2.head(_url(hub, "a.txt"), timeout=5).status_code == 200
    assert httpx2.get(_url(hub, "a.txt"), timeout=5).status_code == 503


def test_fault_sequence_is_deterministic(fake_hub_factory: HubFactory) -> None:
    def statuses(hub: FakeHub) -> list[int]:
        return [httpx2.get(_url(hub, "a.txt"), timeout=5).status_code for _ in range(12)]

    faults = Faults(seed=7, error_5xx=0.5)
    a = fake_hub_factory("hf", repos=[_repo()], faults=faults)
    b = fake_hub_factory("hf", repos=[_repo()], faults=faults)
    seq = statuses(a)
    assert seq == statuses(b) and {200, 503} == set(seq)
    a.configure(faults=faults)  # restarts the sequence
    assert statuses(a) == seq


def test_corrupt_keeps_listing_hashes(fake_hub_factory: HubFactory) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], faults=Faults(corrupt={"a.txt", "w.bin"}))
    bad = httpx2.get(_url(hub, "a.txt"), timeout=5).content
    assert len(bad) == 5 and bad != b"hello"
    part = httpx2.get(
        _url(hub), headers={"Range": "bytes=10-19"}, timeout=5, follow_redirects=True
    ).content
    assert len(part) == 10 and part != repo.content("w.bin")[10:20]
    tree = httpx2.get(f"{hub.endpoint}/api/models/org/m/tree/main", timeout=5).json()
    w = next(e for e in tree if e["path"] == "w.bin")
    assert w["lfs"]["oid"] == repo.files()["w.bin"].sha256


def test_ignore_range(fake_hub_factory: HubFactory) -> None:
    hub = fake_hub_factory("hf", repos=[_repo()], faults=Faults(ignore_range=True))
    r = httpx2.get(_url(hub, "a.txt"), headers={"Range": "bytes=1-2"}, timeout=5)
    assert r.status_code == 200 and r.content == b"hello"


def test_stall_keeps_connection_open(fake_hub_factory: HubFactory) -> None:
    hub = fake_hub_factory("hf", repos=[_repo()], cdn=None, faults=Faults(stall=1.0))
    received = 0
    t0 = time.monotonic()
    timeout = httpx2.Timeout(5, read=1)
    with pytest.raises(httpx2.ReadTimeout), httpx2.stream("GET", _url(hub), timeout=timeout) as r:
        for chunk in r.iter_bytes():
            received += len(chunk)
    assert received == 3 * MB // 2
    assert time.monotonic() - t0 < 5


def test_html_block_page_and_status_override(fake_hub_factory: HubFactory) -> None:
    hub = fake_hub_factory("hf", repos=[_repo()], html=True)
    r = httpx2.get(f"{hub.endpoint}/api/models/org/m", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert b"<html" in r.content
    hub.configure(html=False, status_override=451)
    r = httpx2.get(f"{hub.endpoint}/api/models/org/m", timeout=5)
    assert r.status_code == 451 and b"<html" in r.content
    hub.configure(status_override=None)
    assert httpx2.get(f"{hub.endpoint}/api/models/org/m", timeout=5).json()["id"] == "org/m"


@pytest.mark.parametrize("kind", ["hf", "ms"])
def test_hostile_entries_and_lying_sizes(fake_hub_factory: HubFactory, kind: str) -> None:
    hostile = ("../evil.txt", "/abs.txt", "a\\..\\b", "C:/x")
    faults = Faults(hostile_entries=hostile, lying_sizes={"a.txt": 999})
    hub = fake_hub_factory(kind, repos=[_repo()], faults=faults)
    if kind == "hf":
        entries = httpx2.get(
            f"{hub.endpoint}/api/models/org/m/tree/main?recursive=true", timeout=5
        ).json()
        sizes = {e["path"]: e["size"] for e in entries}
    else:
        data = httpx2.get(
            f"{hub.endpoint}/api/v1/models/org/m/repo/files?Recursive=True", timeout=5
        ).json()["Data"]["Files"]
        sizes = {e["Path"]: e["Size"] for e in data}
    assert set(hostile) <= set(sizes)
    assert sizes["a.txt"] == 999
    served = (
        httpx2.get(
            f"{hub.endpoint}/api/v1/models/org/m/repo", params={"FilePath": "a.txt"}, timeout=5
        )
        if kind == "ms"
        else httpx2.get(_url(hub, "a.txt"), timeout=5)
    )
    assert served.content == b"hello"


def test_64_concurrent_connections(fake_hub_factory: HubFactory) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], cdn=None, latency=0.5)
    content = repo.content("big.bin")
    step = len(content) // 64
    barrier = threading.Barrier(64)
    ok: list[int] = []
    client = httpx2.Client(limits=httpx2.Limits(max_connections=64), timeout=20)

    def one(i: int) -> None:
        barrier.wait(10)
        r = client.get(
            _url(hub, "big.bin"), headers={"Range": f"bytes={i * step}-{(i + 1) * step - 1}"}
        )
        if r.status_code == 206 and r.content == content[i * step : (i + 1) * step]:
            ok.append(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
    t0 = time.monotonic()
    with client:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(ok) == 64
    assert hub.stats.connections == 64
    assert hub.stats.peak_connections >= 48  # most of them open at the same time
    assert time.monotonic() - t0 < 10  # served together: 64 x 0.5 s latency would be 32 s


def test_range_forms(fake_hub_factory: HubFactory) -> None:
    hub = fake_hub_factory("hf", repos=[_repo()])
    url = _url(hub, "a.txt")

    def get(spec: str) -> httpx2.Response:
        return httpx2.get(url, headers={"Range": spec}, timeout=5)

    r = get("bytes=1-3")
    assert (r.status_code, r.content, r.headers["content-range"]) == (206, b"ell", "bytes 1-3/5")
    assert get("bytes=2-").content == b"llo"
    assert get("bytes=-2").content == b"lo"
    assert get("bytes=3-100").content == b"lo"
    r = get("bytes=5-")
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */5"
    assert get("bytes=0-0,2-3").status_code == 200  # several ranges: whole body


def test_resolve_headers_and_stats(fake_hub_factory: HubFactory) -> None:
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], cdn="other-host")
    small = httpx2.head(_url(hub, "a.txt"), timeout=5)
    info = repo.files()["a.txt"]
    assert small.headers["etag"] == f'"{info.git_oid}"'
    assert small.headers["x-repo-commit"] == repo.head()
    assert small.headers["content-length"] == "5" and small.headers["accept-ranges"] == "bytes"
    big = httpx2.head(_url(hub), timeout=5)
    w = repo.files()["w.bin"]
    assert big.status_code == 302
    assert big.headers["x-linked-etag"] == f'"{w.sha256}"'
    assert big.headers["x-linked-size"] == str(3 * MB)
    assert big.headers["location"].startswith(hub.cdn_endpoint + "/cdn/")
    missing = httpx2.head(_url(hub, "nope"), timeout=5)
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "EntryNotFound"
    assert missing.headers["x-repo-commit"] == repo.head()
    httpx2.get(_url(hub), headers={"Range": "bytes=0-99"}, follow_redirects=True, timeout=5)
    assert hub.stats.bytes_by_file == {"org/m/w.bin": 100} and hub.stats.bytes_total == 100
    last = hub.stats.requests[-1]
    assert last.status == 206 and last.range == "bytes=0-99" and last.method == "GET"
    hub.reset_stats()
    assert hub.stats.bytes_total == 0 and hub.stats.requests == []


def test_stop_and_restart_keeps_the_endpoint(fake_hub_factory: HubFactory) -> None:
    hub = fake_hub_factory("hf", repos=[_repo()], cdn="other-host")
    endpoint, cdn = hub.endpoint, hub.cdn_endpoint
    hub.stop()
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{endpoint}/org/m/resolve/main/a.txt", timeout=2)
    hub.start()
    assert (hub.endpoint, hub.cdn_endpoint) == (endpoint, cdn)
    r = httpx2.get(_url(hub), timeout=5, follow_redirects=True)
    assert r.status_code == 200 and len(r.content) == 3 * MB


def test_per_client_rate_caps_each_address_and_counts_its_bytes(
    fake_hub_factory: HubFactory,
) -> None:
    """All connections from one address share its cap (per-IP throttling); bytes are counted per
    address."""
    repo = _repo()
    hub = fake_hub_factory("hf", repos=[repo], cdn=None, per_client_rate=2 * MB)
    elapsed: dict[str, float] = {}

    def client(address: str) -> None:
        transport = httpx2.HTTPTransport(local_address=address)
        with httpx2.Client(transport=transport, timeout=30) as c:
            ranges = [f"bytes={i * MB}-{(i + 1) * MB - 1}" for i in range(3)]
            t0 = time.monotonic()
            threads = [
                threading.Thread(target=lambda r=r: c.get(_url(hub), headers={"Range": r}))
                for r in ranges
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            elapsed[address] = time.monotonic() - t0

    clients = [threading.Thread(target=client, args=(a,)) for a in ("127.0.0.1", "127.0.0.2")]
    for t in clients:
        t.start()
    for t in clients:
        t.join(60)
    assert hub.stats.bytes_by_client == {"127.0.0.1": 3 * MB, "127.0.0.2": 3 * MB}
    assert hub.stats.bytes_total == 6 * MB
    for address, seconds in elapsed.items():
        # three connections together never beat one address's cap (+25 % slack: the burst)
        assert seconds >= 1.5 / 1.25, (address, seconds)
    hub.configure(per_client_rate=None)
    hub.reset_stats()
    _timed_get(_url(hub))
    assert hub.stats.bytes_by_client == {"127.0.0.1": 3 * MB}
