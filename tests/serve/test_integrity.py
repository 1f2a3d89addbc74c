"""Never a wrong byte, never a lost reader: a blob read by a slow client is not evicted under
it (and the cap is restored once it is done, with no refs, trees or snapshots left dangling);
a range of a blob still being fetched carries no byte the hash has not checked."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx2

from unihub.testing import FakeHub, FakeRepo, Faults

from .conftest import ServeFactory

Factory = Callable[..., FakeHub]
MB = 1 << 20


def _blob_bytes(cache: Path) -> int:
    return sum(p.stat().st_size for p in cache.glob("*/blobs/*") if "." not in p.name)


def _slow_get(url: str, path: str) -> socket.socket:
    """A GET whose client reads nothing yet, with a small receive buffer: the server can only
    send a little ahead of it."""
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect((parts.hostname, parts.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(1 << 20):
        data += chunk
    sock.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return body


def test_a_blob_being_read_is_not_evicted_and_the_cap_holds_after(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    a = FakeRepo("org/a", files={"w.safetensors": 6 * MB})
    b = FakeRepo("org/b", files={"w.safetensors": 6 * MB})
    cache = tmp_path / "srv"
    cap = 9 * MB
    srv = serve_factory(fake_hub_factory("hf", repos=[a, b]), cache_dir=cache, max_cache_size=cap)
    url_a, url_b = "/org/a/resolve/main/w.safetensors", "/org/b/resolve/main/w.safetensors"
    assert httpx2.get(srv.url + url_a).content == a.content("w.safetensors")  # A warm
    blob_a = cache / "models--org--a" / "blobs" / a.files()["w.safetensors"].sha256
    reader = _slow_get(srv.url, url_a)
    assert reader.recv(1, socket.MSG_PEEK)  # the answer has begun: A is pinned
    assert httpx2.get(srv.url + url_b, timeout=60).content == b.content("w.safetensors")
    deadline = time.monotonic() + 10
    evictions = srv.app.metrics
    while not evictions.get("unihub_serve_evictions_total") and time.monotonic() < deadline:
        time.sleep(0.05)  # counted once the blob, its snapshot and refs are gone
    # the cap holds at once: B, served and done, goes; A, pinned by its reader, stays
    state = (sorted(p.name[:8] for p in cache.glob("*/blobs/*")), srv.app.metrics.render())
    assert _blob_bytes(cache) == 6 * MB <= cap, state
    assert blob_a.is_file(), state
    storage = cache / "models--org--b"
    assert not (storage / "blobs" / b.files()["w.safetensors"].sha256).exists()
    assert not [p for p in (storage / "refs").rglob("*") if p.is_file()]  # nothing dangles
    assert not list((storage / "trees").glob("*.json"))
    assert not list((storage / "snapshots").iterdir())
    body = _read_all(reader)
    assert hashlib.sha256(body).hexdigest() == a.files()["w.safetensors"].sha256
    assert (cache / "models--org--a" / "refs" / "main").is_file()  # A untouched
    assert srv.app.metrics.get("unihub_serve_evictions_total") == 1
    # asked again: fetched again, whole and right
    assert httpx2.get(srv.url + url_b, timeout=60).content == b.content("w.safetensors")


def test_a_blob_chosen_for_eviction_is_not_pinned_until_it_is_gone(tmp_path: Path) -> None:
    """The gap between choosing a victim and deleting it: a reader that pins the blob then
    must not find it complete and lose it mid-answer; its pin waits, then finds no blob."""
    from unihub.serve.blobs import BlobStore
    from unihub.serve.metrics import Metrics

    blob = tmp_path / "models--org--m" / "blobs" / ("a" * 64)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x" * 1000)
    store = BlobStore(tmp_path, max_size=10, metrics=Metrics())
    store._deleting.acquire()  # the eviction stops between its choice and its deletion
    evictor = threading.Thread(target=store.make_room, args=(0,))
    evictor.start()
    deadline = time.monotonic() + 5
    while blob not in store._evicting and time.monotonic() < deadline:
        time.sleep(0.01)  # not chosen yet (a pin now would keep it from being chosen)
    assert not store.try_pin(blob)  # chosen: no pin without waiting
    pinned = threading.Event()
    reader = threading.Thread(target=lambda: (store.pin(blob), pinned.set()))
    reader.start()
    assert not pinned.wait(0.3) and blob.exists()  # the reader waits for the deletion
    store._deleting.release()
    evictor.join(5)
    assert pinned.wait(5) and not blob.exists()  # then pins, and finds it gone (fetches)
    reader.join(5)


def test_readers_racing_evictions_get_every_byte(
    fake_hub_factory: Factory, serve_factory: ServeFactory, tmp_path: Path
) -> None:
    """Twelve clients reading (whole and ranged) eight blobs through a cap smaller than one:
    every blob is evicted as its last reader ends, while others pin and read it."""
    size, names = 2 * MB, [f"w{i}.bin" for i in range(8)]
    repo = FakeRepo("org/m", files=dict.fromkeys(names, size))
    srv = serve_factory(
        fake_hub_factory("hf", repos=[repo]), cache_dir=tmp_path / "srv", max_cache_size=MB
    )
    failures: list[object] = []

    def client(seed: int) -> None:
        rnd = random.Random(seed)
        with httpx2.Client(timeout=60) as http:
            for _ in range(6):
                name = rnd.choice(names)
                first = rnd.randrange(size)
                ranged = rnd.random() < 0.5
                headers = {"Range": f"bytes={first}-"} if ranged else {}
                try:
                    r = http.get(f"{srv.url}/org/m/resolve/main/{name}", headers=headers)
                    want = repo.content(name)[first:] if ranged else repo.content(name)
                    if r.content != want:
                        failures.append((name, r.status_code, len(r.content)))
                except httpx2.HTTPError as exc:
                    failures.append((name, repr(exc)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    assert srv.app.metrics.get("unihub_serve_evictions_total") > 0


def test_a_range_of_a_corrupt_blob_being_fetched_is_never_a_complete_206(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    repo = FakeRepo("org/model", files={"w.safetensors": 8 * MB})
    hub = fake_hub_factory(
        "hf", repos=[repo], faults=Faults(corrupt={"w.safetensors"}), per_connection_rate=8 * MB
    )
    srv = serve_factory(hub)
    url = f"{srv.url}/org/model/resolve/main/w.safetensors"
    r = httpx2.get(url, headers={"Range": "bytes=0-3999999"}, timeout=60)
    assert r.status_code == 502, (r.status_code, len(r.content))
    assert "mismatch" in r.headers["X-Error-Message"]
    assert r.headers["Retry-After"] == "10"  # the failure is answered for 10 s, then retried
    assert hub.stats.bytes_total >= 8 * MB  # it did fetch (and check) the whole blob first


def test_a_range_of_a_blob_being_fetched_is_its_verified_bytes(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    repo = FakeRepo("org/model", files={"w.safetensors": 8 * MB})
    hub = fake_hub_factory("hf", repos=[repo], per_connection_rate=4 * MB)
    srv = serve_factory(hub)
    url = f"{srv.url}/org/model/resolve/main/w.safetensors"
    data = repo.content("w.safetensors")
    r = httpx2.get(url, headers={"Range": "bytes=1000-4000999"}, timeout=60)
    assert (r.status_code, r.content) == (206, data[1000:4001000])
    assert r.headers["Content-Range"] == f"bytes 1000-4000999/{8 * MB}"
    assert srv.app.metrics.get("unihub_serve_fetches_total") == 1


def test_a_range_held_past_range_hold_is_redirected_to_itself_then_served(
    fake_hub_factory: Factory, serve_factory: ServeFactory
) -> None:
    """``range_hold``: a range of a blob still being fetched is answered with a redirect to
    the same URL once held that long (the client asks again with a fresh timeout); once the
    whole is verified the same request gets its bytes."""
    repo = FakeRepo("org/model", files={"w.safetensors": 8 * MB})
    hub = fake_hub_factory("hf", repos=[repo], per_connection_rate=2 * MB, total_rate=2 * MB)
    srv = serve_factory(hub, range_hold=0.5)
    path = "/org/model/resolve/main/w.safetensors?x=1"
    ranged = {"Range": "bytes=100-199"}
    started = time.monotonic()
    first = httpx2.get(srv.url + path, headers=ranged, timeout=60)
    assert first.status_code == 307 and first.headers["Location"] == path, first.status_code
    assert time.monotonic() - started < 3  # held about range_hold, not the 4 s fetch
    r = httpx2.get(srv.url + path, headers=ranged, timeout=60, follow_redirects=True)
    assert (r.status_code, r.content) == (206, repo.content("w.safetensors")[100:200])
    assert srv.app.metrics.get("unihub_serve_fetches_total") == 1  # one fetch for all asks
